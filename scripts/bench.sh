#!/usr/bin/env bash
# The reference workloads of docs/benchmarks.md. Usage: scripts/bench.sh [parse|w1|send|all]
# Builds release binaries, makes a Python venv with feedparser, starts PostgreSQL when none
# runs, and appends results to docs/bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/venv.sh
what=${1:-all}
ensure_venv feedparser aiosmtpd
cargo build --release --locked --bin finrep
if [ "$what" = parse ] || [ "$what" = all ]; then
  bench_bin=$(cargo bench --locked --bench parse --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="parse" and m.get("executable"): print(m["executable"])' | tail -1)
  "$VENV/bin/python" scripts/bench.py parse --finrep-bench "$bench_bin" --runs "${RUNS:-5}"
fi
if [ "$what" != parse ]; then
  ensure_postgres
  trap stop_throwaway_postgres EXIT
  db=finrep_bench_w1
  psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists $db" -c "create database $db" >/dev/null
  url="${FINREP_PG_ADMIN_URL%/*}/$db"
  if [ "$what" = w1 ] || [ "$what" = all ]; then
    "$VENV/bin/python" scripts/bench.py w1 --finrep target/release/finrep --database-url "$url" --runs "${RUNS:-5}"
  fi
  if [ "$what" = send ] || [ "$what" = all ]; then
    "$VENV/bin/python" scripts/bench.py w1-send --finrep target/release/finrep --database-url "$url" --runs "${RUNS:-5}"
  fi
fi
