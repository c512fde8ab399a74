#!/usr/bin/env bash
# One real report, end to end, on this machine: no cluster, no Docker.
#
# Starts a throwaway PostgreSQL when none runs (installing Debian's package if needed), serves
# sample feeds on loopback, starts a local SMTP catcher, runs `finrep migrate` and
# `finrep run` with the examples' recipients, and prints where the received messages are.
# Everything it started is stopped on exit; its files stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/venv.sh
. scripts/lib/cargo.sh

work=$(mktemp -d /tmp/finrep-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_throwaway_postgres
}
trap cleanup EXIT

echo "== preparing (build, Python venv, PostgreSQL)"
ensure_venv aiosmtpd
cargo build --locked --quiet --bin finrep
ensure_postgres
psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists finrep_demo" -c "create database finrep_demo" >/dev/null
export DATABASE_URL="${FINREP_PG_ADMIN_URL%/*}/finrep_demo"

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== serving sample feeds on loopback"
"$VENV/bin/python" scripts/demo_feeds.py "$work/feeds"
feed_port=$(free_port)
"$VENV/bin/python" -m http.server "$feed_port" --bind 127.0.0.1 --directory "$work/feeds" >"$work/feeds.log" 2>&1 &
pids+=($!)

echo "== starting the SMTP catcher"
smtp_port=$(free_port)
SMTP_IGNORE_STDIN=1 "$VENV/bin/python" tests/smtp/smtp_server.py --port "$smtp_port" \
  --log "$work/mail/messages.jsonl" --maildir "$work/mail" >"$work/smtp.log" 2>&1 </dev/null &
pids+=($!)
mkdir -p "$work/config" "$work/mail"
sed -e "s#@FEEDS@#http://127.0.0.1:$feed_port#g" -e "s#@SMTP_PORT@#$smtp_port#g" \
  deploy/demo/config.yaml.in >"$work/config/desk.yaml"
cp manifests/examples/recipients.yaml "$work/config/"
for _ in $(seq 50); do grep -q ready "$work/smtp.log" 2>/dev/null && break; sleep 0.1; done

echo "== finrep validate, migrate, run"
"$(cargo_target_dir)/debug/finrep" validate -f "$work/config"
"$(cargo_target_dir)/debug/finrep" migrate
status=0
"$(cargo_target_dir)/debug/finrep" run --config "$work/config" --report morning-brief \
  --allow-private-networks --output "$work/out" >"$work/outcome.json" || status=$?

echo
echo "run outcome (exit $status): $work/outcome.json"
"$VENV/bin/python" - "$work" <<'PY'
import json, sys, pathlib
work = pathlib.Path(sys.argv[1])
o = json.loads((work / "outcome.json").read_text().strip().splitlines()[-1])
d = o.get("delivery") or {}
print(f"  phase {o['phase']}: {o['articles']} articles from {o['sourcesOk']}/{o['sourcesTotal']} sources; "
      f"{d.get('sent', 0)} of {d.get('recipients', 0)} recipients sent")
PY
echo "report as stored:   $work/out/report.html  and  $work/out/report.txt"
echo "received messages:  $work/mail/*.eml  (one file per message; open one in a mail client or a browser)"
ls "$work/mail"/*.eml 2>/dev/null | sed 's/^/  /'
echo "remove the demo files with: rm -rf $work"
exit "$status"
