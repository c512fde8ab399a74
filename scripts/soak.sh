#!/usr/bin/env bash
# The operator's month: tests/operator_month.rs over thirty mornings instead of seven — the
# controller on a clock file, each slot's Job run by the in-memory API's Job runner as the
# real finrep-pipeline, two reports in Shanghai and New York across New York's change to
# standard time, a leader failover, a slot missed while no controller runs, a pod SIGKILLed
# mid-delivery and retried, and an edit, each week; every copy counted from the SMTP server's
# and the chat stand-in's own records.
#
# Usage: scripts/soak.sh [DAYS]    (default 30; the test command runs 7)
# Starts PostgreSQL when none runs and makes the Python venv with aiosmtpd. Prints the
# month's figures; docs/benchmarks.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/venv.sh
days=${1:-30}
ensure_postgres
ensure_venv aiosmtpd
export FINREP_TEST_PYTHON=$PWD/.venv/bin/python
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
if cargo nextest --version >/dev/null 2>&1; then
  run=(cargo nextest run --locked --test operator_month --no-capture)
else
  run=(cargo test --locked --test operator_month -- --nocapture)
fi
FINREP_MONTH_DAYS=$days "${run[@]}" >"$log" 2>&1 || status=$?
grep -E "operator month:|PASS|FAIL|panicked|Summary" "$log" || true
[ "$status" = 0 ] || tail -n 80 "$log"
echo "soak: $days mornings in $(( $(date +%s) - start )) s on $(nproc) cores (exit $status)"
exit "$status"
