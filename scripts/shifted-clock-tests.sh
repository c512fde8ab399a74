#!/usr/bin/env bash
# The tests that handle dates, run days and clocks, run with the system clock moved by OFFSET
# (libfaketime; default +400d): a test whose fixture or expectation is tied to the calendar
# instead of to its own injected clock fails here. Usage: scripts/shifted-clock-tests.sh [OFFSET]
# Needs PostgreSQL as scripts/test.sh provides it (FINREP_PG_ADMIN_URL) and its venv.
set -euo pipefail
cd "$(dirname "$0")/.."
offset=${1:-+400d}
if ! command -v faketime >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing faketime from the distribution's packages..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >&2; }
  else
    echo "faketime is not installed (Debian: apt-get install faketime)" >&2
    exit 1
  fi
fi
# The shifted clock must be what the tests see: prove the wrapper works before trusting a pass.
shifted_year=$(faketime -f "$offset" date -u +%Y)
if [ "$shifted_year" = "$(date -u +%Y)" ] && [ "$offset" = +400d ]; then
  echo "faketime did not move the clock (still $shifted_year)" >&2
  exit 1
fi
echo "clock for these tests: $(faketime -f "$offset" date -u +%FT%TZ)"
# tests/clock_guard.rs fails unless the test processes see at least this (a day short of the
# offset, for the time the run takes).
FINREP_TEST_CLOCK_AT_LEAST=$(faketime -f "$offset" date -u -d '-1 day' +%FT%TZ)
export FINREP_TEST_CLOCK_AT_LEAST
# Only the test processes (and the finrep processes they start) see the shifted clock: cargo
# runs them through the target runner; the build and PostgreSQL keep the real one.
triple=$(rustc -vV | sed -n 's/^host: //p')
runner_var="CARGO_TARGET_$(echo "$triple" | tr '[:lower:]-' '[:upper:]_')_RUNNER"
export "$runner_var"="faketime -f $offset"
# Monotonic clocks stay real: timers and timeouts are not what is being tested.
export FAKETIME_DONT_FAKE_MONOTONIC=1
tests=(--lib --test clock_guard --test pipeline --test plan_golden --test standalone --test delivery
  --test controller_reconcile --test controller_health --test backup --test hostile_input --test web)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "${tests[@]}"
else
  cargo test --locked --no-fail-fast "${tests[@]}"
fi
