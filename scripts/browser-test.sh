#!/usr/bin/env bash
# The console and one-click unsubscribe in a real browser (Debian's headless Chromium through
# chromedriver, driven by Selenium): a real run of the demo desk into a local SMTP server,
# then tests/e2e/console_browser.py logs in, opens the dashboard, the report and its delivery
# log, takes the unsubscribe link from a delivered message, confirms it as a recipient, and
# the next run's plan must leave that recipient out. Screenshots go to
# ${FINREP_ARTIFACTS:-target/browser-artifacts}. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/venv.sh
. scripts/lib/cargo.sh

# Chromium, its driver, and a CJK font so the screenshots show the Chinese pages as text.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! fc-list :lang=zh | grep -q .; then
  echo "installing chromium, chromium-driver and fonts-wqy-zenhei" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-wqy-zenhei fontconfig >/dev/null
fi
ensure_venv aiosmtpd selenium
# axe-core, the accessibility scan the browser test runs in every console page (npm registry).
npm_dir="$(cargo_target_dir)/npm"
if [ ! -f "$npm_dir/node_modules/axe-core/axe.min.js" ]; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent axe-core@4 >/dev/null
fi
cargo build --locked --quiet --bin finrep
finrep="$(cargo_target_dir)/debug/finrep"
ensure_postgres

work=$(mktemp -d /tmp/finrep-browser.XXXXXX)
artifacts="${FINREP_ARTIFACTS:-$(cargo_target_dir)/browser-artifacts}"
rm -rf "$artifacts" && mkdir -p "$artifacts"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists finrep_browser" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }

psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists finrep_browser" -c "create database finrep_browser" >/dev/null 2>&1
export DATABASE_URL="${FINREP_PG_ADMIN_URL%/*}/finrep_browser"
export FINREP_UNSUBSCRIBE_KEY="browser-test-signing-key-$(date +%s%N)"
password="browser test password $$"
export FINREP_WEB_PASSWORD_HASH
FINREP_WEB_PASSWORD_HASH=$(printf '%s\n' "$password" | "$finrep" web hash-password)

# The demo desk's feeds, and one hostile source whose item tries markup and script.
"$VENV/bin/python" scripts/demo_feeds.py "$work/feeds"
"$VENV/bin/python" - "$work/feeds/hostile.xml" <<'PY'
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
when = format_datetime(datetime.now(timezone.utc) - timedelta(hours=2))
title = "&lt;img src=x onerror=&quot;document.title='pwned'&quot;&gt;&lt;script&gt;alert('pwned')&lt;/script&gt;央行宣布降准0.5个百分点"
open(sys.argv[1], "w", encoding="utf-8").write(f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>hostile</title><link>https://hostile.example/</link><description>x</description>
<item><title>{title}</title><link>https://hostile.example/a?x=%22%3E%3Cscript%3E</link>
<description>&lt;a href="javascript:alert(1)"&gt;点击&lt;/a&gt;&lt;iframe src="javascript:alert(2)"&gt;&lt;/iframe&gt;货币政策</description>
<pubDate>{when}</pubDate></item></channel></rss>
""")
PY
feed_port=$(free_port)
"$VENV/bin/python" -m http.server "$feed_port" --bind 127.0.0.1 --directory "$work/feeds" >"$work/feeds.log" 2>&1 &
pids+=($!)
smtp_port=$(free_port)
mkdir -p "$work/mail" "$work/config"
SMTP_IGNORE_STDIN=1 "$VENV/bin/python" tests/smtp/smtp_server.py --port "$smtp_port" \
  --log "$work/mail/messages.jsonl" --maildir "$work/mail" >"$work/smtp.log" 2>&1 </dev/null &
pids+=($!)
sed -e "s#@FEEDS@#http://127.0.0.1:$feed_port#g" -e "s#@SMTP_PORT@#$smtp_port#g" \
  deploy/demo/config.yaml.in >"$work/config/desk.yaml"
cat >>"$work/config/desk.yaml" <<YAML
---
apiVersion: finrep.io/v1alpha1
kind: Source
metadata: {name: hostile-wire, labels: {finrep.io/desk: research}}
spec: {kind: feed, displayName: "<b>Hostile</b> wire", url: "http://127.0.0.1:$feed_port/hostile.xml", category: 宏观}
YAML
cp manifests/examples/recipients.yaml "$work/config/"
wait_for grep -q ready "$work/smtp.log"

"$finrep" migrate >/dev/null
web_port=$(free_port)
# localhost, not 127.0.0.1: the session cookie is Secure, which browsers allow on plain HTTP
# only for localhost.
base="http://localhost:$web_port"
"$finrep" web --listen "127.0.0.1:$web_port" --manage-subscriptions >"$work/web.log" 2>&1 &
pids+=($!)
wait_for curl -fsS "$base/readyz"

"$finrep" run --config "$work/config" --report morning-brief --allow-private-networks \
  --public-url "$base" >"$work/first-run.json"
# An editor's preview, so its page is in the browser's round too.
"$finrep" preview --config "$work/config" --report morning-brief --allow-private-networks \
  >"$work/preview.json"
"$VENV/bin/python" tests/e2e/console_browser.py --base "$base" --user admin --password "$password" \
  --maildir "$work/mail" --artifacts "$artifacts" \
  --axe "$npm_dir/node_modules/axe-core/axe.min.js" >"$work/browser.json"
cat "$work/browser.json"
unsubscribed=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["unsubscribed"])' "$work/browser.json")

# The next run's plan leaves the address out, and `finrep status` says why.
"$finrep" run --config "$work/config" --report morning-brief --allow-private-networks \
  --no-send --recompose >"$work/next-run.json"
"$VENV/bin/python" - "$work" "$unsubscribed" <<'PY'
import json, pathlib, subprocess, sys
work, email = pathlib.Path(sys.argv[1]), sys.argv[2]
outcome = json.loads((work / "next-run.json").read_text().strip().splitlines()[-1])
notes = " ".join(outcome.get("notes", []))
assert "left out as blacklisted" in notes, f"the next plan still mails {email}: {notes}"
print(f"next plan: {notes}")
PY
"$finrep" status -o json >"$work/status.json" || true
"$VENV/bin/python" - "$work/status.json" "$unsubscribed" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))
entries = [b for b in status["blacklist"] if b["email"] == sys.argv[2]]
assert entries and entries[0]["reason"] == "unsubscribe", status["blacklist"]
print(f"finrep status: {sys.argv[2]} unsubscribed")
PY
echo "browser test passed; screenshots in $artifacts"
