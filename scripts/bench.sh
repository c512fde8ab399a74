#!/usr/bin/env bash
# The reference workloads of docs/benchmarks.md.
# Usage: scripts/bench.sh [parse|w1|send|w2|w3|w4|abuse|pg|build|all]
#   W2_ANNOTATION_BYTES=250000 W2_LABELS=64 scripts/bench.sh w2   tenants' bloat on 650 objects
#   W2_STEADY_SECONDS=600 scripts/bench.sh w2                     memory again 10 minutes later
#   BUILD_PROFILES="release small-host" scripts/bench.sh build     clean builds, peak memory
#   BUILD_PROFILES=small-host BUILD_MEMORY_LIMIT_MIB=1600 scripts/bench.sh build
#                                 the same in a memory cgroup of 1.6 GiB without swap (root)
# Builds release binaries, makes a Python venv with feedparser, starts PostgreSQL when none
# runs, and appends results to docs/bench-results/.
#
# SMOKE=1 scripts/bench.sh all runs every workload at tiny sizes with debug binaries and
# records nothing: the test command does so, so every documented bench command keeps working.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/venv.sh
. scripts/lib/cargo.sh
what=${1:-all}
# Where cargo puts what it builds, as cargo says.
target_dir=$(cargo_target_dir)
if [ "${SMOKE:-0}" = 1 ]; then
  smoke=(--smoke) build=(cargo build --locked) finrep=$target_dir/debug/finrep db=finrep_bench_smoke
else
  smoke=() build=(cargo build --release --locked) finrep=$target_dir/release/finrep db=finrep_bench_w1
fi
ensure_venv feedparser aiosmtpd
"${build[@]}" --bin finrep --bin finrep-controller --bin finrep-pipeline
# W2 measures the controller as the image ships it: built in its own profile.
controller=$target_dir/debug/finrep-controller
if [ "${SMOKE:-0}" != 1 ]; then
  cargo build --profile controller --locked --bin finrep-controller
  controller=$target_dir/controller/finrep-controller
fi
# The path of a bench executable, built in the profile of this mode.
bench_exe() {
  local name=$1 build
  if [ "${SMOKE:-0}" = 1 ]; then
    build=(cargo build --locked --bench "$name" --message-format=json)
  else
    build=(cargo bench --locked --bench "$name" --no-run --message-format=json)
  fi
  "${build[@]}" 2>/dev/null | python3 -c 'import json,sys
name=sys.argv[1]
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")==name and m.get("executable"): print(m["executable"])' "$name" | tail -1
}
if [ "$what" = parse ] || [ "$what" = all ]; then
  "$VENV/bin/python" scripts/bench.py "${smoke[@]}" parse --finrep-bench "$(bench_exe parse)" --runs "${RUNS:-5}"
fi
if [ "$what" = w2 ] || [ "$what" = all ]; then
  "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w2-plan --finrep-bench "$(bench_exe plan)" --runs "${RUNS:-5}"
fi
if [ "$what" = w3 ] || [ "$what" = all ]; then
  # wrk, the HTTP load generator (Debian's package).
  command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [ "$what" = w1 ] || [ "$what" = send ] || [ "$what" = w2 ] || [ "$what" = w3 ] || [ "$what" = w4 ] || [ "$what" = abuse ] || [ "$what" = all ]; then
  # A throwaway server started by a caller (scripts/test.sh) is the caller's to stop.
  if [ -n "${FINREP_PG_THROWAWAY_DIR:-}" ]; then
    ensure_postgres
  else
    ensure_postgres
    trap stop_throwaway_postgres EXIT
  fi
  psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists $db" -c "create database $db" >/dev/null
  url="${FINREP_PG_ADMIN_URL%/*}/$db"
  if [ "$what" = w1 ] || [ "$what" = all ]; then
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w1 --finrep "$finrep" --database-url "$url" --runs "${RUNS:-5}"
  fi
  if [ "$what" = send ] || [ "$what" = all ]; then
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w1-send --finrep "$finrep" --database-url "$url" --runs "${RUNS:-5}"
  fi
  if [ "$what" = w3 ] || [ "$what" = all ]; then
    psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists ${db}_w3" -c "create database ${db}_w3" >/dev/null
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w3 --finrep "$finrep" \
      --database-url "${FINREP_PG_ADMIN_URL%/*}/${db}_w3"
  fi
  if [ "$what" = w4 ] || [ "$what" = all ]; then
    # Makes a database per round (finrep_w4_<round>) next to this one.
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w4 --finrep "$finrep" --database-url "$url"
    # The same workload through the controller, its queue and the Job runner
    # (tests/operator_w4.rs; its small version is in the test command, so not in the smoke run).
    if [ "${SMOKE:-0}" != 1 ]; then
      FINREP_W4=full FINREP_TEST_PYTHON="$VENV/bin/python" cargo nextest run --locked --cargo-profile release \
        --test operator_w4 --no-capture 2>&1 | tee /dev/stderr | grep '^w4-operator: ' | sed 's/^w4-operator: //' |
        "$VENV/bin/python" scripts/bench.py record W4-operator
    fi
  fi
  if [ "$what" = abuse ] || [ "$what" = all ]; then
    psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists ${db}_abuse" -c "create database ${db}_abuse" >/dev/null
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" abuse --finrep "$finrep" \
      --database-url "${FINREP_PG_ADMIN_URL%/*}/${db}_abuse"
  fi
  if [ "$what" = w2 ] || [ "$what" = all ]; then
    psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists ${db}_w2" -c "create database ${db}_w2" >/dev/null
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" w2-controller --finrep-bench "$(bench_exe controller)" \
      --finrep "$controller" --database-url "${FINREP_PG_ADMIN_URL%/*}/${db}_w2" --runs "${RUNS:-3}" \
      --annotation-bytes "${W2_ANNOTATION_BYTES:-0}" --labels "${W2_LABELS:-0}" --steady-seconds "${W2_STEADY_SECONDS:-0}"
  fi
fi
if [ "$what" = build ] || [ "$what" = all ]; then
  # Clean builds in target/build-bench/<profile> (the smoke run: an incremental debug build).
  if [ "${SMOKE:-0}" = 1 ]; then
    "$VENV/bin/python" scripts/bench.py --smoke build --profile dev --target-dir "$target_dir"
  else
    for profile in ${BUILD_PROFILES:-release small-host}; do
      "$VENV/bin/python" scripts/bench.py build --profile "$profile" --jobs "${BUILD_JOBS:-0}" \
        --memory-limit-mib "${BUILD_MEMORY_LIMIT_MIB:-0}"
    done
  fi
fi
if [ "$what" = pg ] || [ "$what" = all ]; then
  # PostgreSQL configured as the Helm chart configures it, in a cluster of its own, measured
  # (proportional set size of all its processes) through W1 and a backup: the database's
  # line of the 2 GB node's memory budget.
  (
    unset FINREP_PG_THROWAWAY_DIR
    export FINREP_PG_PORT=55433 FINREP_PG_EXTRA_OPTS="-c shared_buffers=32MB -c max_connections=40"
    start_throwaway_postgres
    trap stop_throwaway_postgres EXIT
    psql "$FINREP_PG_ADMIN_URL" -qc "create database finrep_pg" >/dev/null
    "$VENV/bin/python" scripts/bench.py "${smoke[@]}" pg-memory --finrep "$finrep" \
      --database-url "${FINREP_PG_ADMIN_URL%/*}/finrep_pg" --data-dir "$FINREP_PG_THROWAWAY_DIR/data" \
      --settings "$FINREP_PG_EXTRA_OPTS"
  )
fi
