#!/usr/bin/env bash
# The compose fallback for real: builds finrep's runtime image from deploy/Dockerfile (on a
# Debian 13 base made by debootstrap, with the binaries cargo just built), starts
# deploy/compose.yml's dev profile with local stand-ins for PostgreSQL and the mail catcher
# (tests/compose/override.yml: test-only, every service on an internal network), and checks
# what a person installing finrep with Docker would: migrations, health, a delivered report,
# a backup restored, a read-only non-root container within its memory limit, a clean stop and
# restart without a second report, the prod profile.
#
# Installs what it needs (docker.io, debootstrap, Compose v2 from Debian 13's docker-compose
# package); starts its own dockerd only when none answers, and stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo.sh
started_at=$SECONDS
current=""
# step NAME FN: runs FN under a heading with its time. Not through `stage`, whose `||` would
# switch `set -e` off inside FN: every command of a check must stop the test when it fails.
step() {
  current=$1
  local t=$SECONDS
  echo "== $current"
  "${@:2}"
  echo "== $current: $((SECONDS - t)) s"
}
work=$(mktemp -d /tmp/finrep-compose.XXXXXX)
project="finrep-test-$$"
dockerd_pid=""

# Debian's docker CLI: BuildKit is built in (a newer CLI without buildx cannot use it).
DOCKER=/usr/bin/docker
install_tools() {
  local missing=()
  [ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Compose v2: the plugin binary of Debian 13's docker-compose package (Debian 12's is v1).
  if ! "$DOCKER" compose version 2>/dev/null | grep -q 'version v\?2'; then
    local apt="$work/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=- \
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    apt-get "${opts[@]}" update -qq >/dev/null
    (cd "$apt" && apt-get "${opts[@]}" download -qq docker-compose >/dev/null 2>&1)
    dpkg-deb -x "$apt"/docker-compose_*.deb "$apt/x"
    install -D -m 0755 "$apt/x/usr/libexec/docker/cli-plugins/docker-compose" \
      /usr/libexec/docker/cli-plugins/docker-compose
  fi
  "$DOCKER" compose version
}

start_dockerd() {
  "$DOCKER" info >/dev/null 2>&1 && return 0
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && return 0; sleep 0.5; done
  cat "$work/dockerd.log" >&2
  return 1
}

compose() {
  "$DOCKER" compose -p "$project" -f deploy/compose.yml -f tests/compose/override.yml "$@"
}

cleanup() {
  local rc=$?
  [ "$rc" = 0 ] || echo "== $current: FAILED (exit $rc)" >&2
  if [ "$rc" != 0 ] && [ -n "${FINREP_TEST_ENV_FILE:-}" ]; then
    compose --profile dev --profile prod ps -a >&2 2>/dev/null || true
    compose --profile dev --profile prod logs --tail=40 >&2 2>/dev/null || true
  fi
  compose --profile dev --profile prod down -v --remove-orphans >/dev/null 2>&1 || true
  # Each run adds the new binaries' layers: keep the cache and old images from growing.
  "$DOCKER" image prune -f >/dev/null 2>&1 || true
  "$DOCKER" builder prune -f --keep-storage 1gb >/dev/null 2>&1 || true
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# The base: Debian 13 from debootstrap, cached under a tag derived from how it is made.
BASE_RECIPE="debootstrap --variant=minbase --include=ca-certificates,tzdata trixie"
base_image() {
  local tag
  tag="finrep-test/debian:trixie-$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)"
  if ! "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
    $BASE_RECIPE "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -20 "$work/debootstrap.log" >&2; return 1; }
    tar -C "$work/rootfs" -c . | "$DOCKER" import - "$tag" >/dev/null
    rm -rf "$work/rootfs"
  fi
  echo "$tag"
}

build_images() {
  local base=$1
  cargo build --locked --quiet --bin finrep --bin finrep-controller --bin finrep-pipeline
  mkdir -p "$work/image/prebuilt"
  cp "$target_dir/debug/finrep" "$target_dir/debug/finrep-controller" "$target_dir/debug/finrep-pipeline" \
    "$work/image/prebuilt/"
  export DOCKER_BUILDKIT=1
  "$DOCKER" build -q -f deploy/Dockerfile --build-arg "RUNTIME_IMAGE=$base" \
    --build-arg BINARIES=prebuilt -t "$FINREP_IMAGE" "$work/image" >/dev/null
  "$DOCKER" build -q -f tests/compose/postgres.Dockerfile --build-arg "BASE_IMAGE=$base" \
    -t finrep-test/postgres:17 tests/compose >/dev/null
  mkdir -p "$work/catcher"
  cp tests/compose/mailcatcher.Dockerfile tests/smtp/smtp_server.py "$work/catcher/"
  python3 scripts/demo_feeds.py "$work/catcher/feeds"
  "$DOCKER" build -q -f "$work/catcher/mailcatcher.Dockerfile" --build-arg "BASE_IMAGE=$base" \
    -t finrep-test/mailcatcher "$work/catcher" >/dev/null
}

# The release before the newest migration: the parent of the commit that added it, built by
# cargo into the same target directory (its dependencies are mostly the same) and wrapped in
# the same runtime image.
build_previous() {
  local added rev
  # A shallow clone lacks the commits before: fetch them when its origin can give them.
  if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then
    git fetch -q --unshallow 2>/dev/null || true
  fi
  added=$(git log -1 --format=%H --diff-filter=A -- migrations/ 2>/dev/null || true)
  if [ -z "$added" ] || ! rev=$(git rev-parse --verify -q "$added^"); then
    echo "no git history before the newest migration (a shallow clone?): the upgrade cannot be tested; clone with history" >&2
    return 1
  fi
  git worktree add --detach "$work/previous" "$rev" >/dev/null 2>&1
  (cd "$work/previous" && CARGO_TARGET_DIR="$target_dir" cargo build --locked --quiet --bin finrep --bin finrep-controller)
  mkdir -p "$work/previous-image/prebuilt"
  cp "$target_dir/debug/finrep" "$target_dir/debug/finrep-controller" "$work/previous-image/prebuilt/"
  git worktree remove --force "$work/previous"
  # This tree's binaries back in place (nothing to compile: only copied again).
  cargo build --locked --quiet --bin finrep --bin finrep-controller --bin finrep-pipeline
  DOCKER_BUILDKIT=1 "$DOCKER" build -q -f deploy/Dockerfile --build-arg "RUNTIME_IMAGE=$base" \
    --build-arg BINARIES=prebuilt -t "$PREVIOUS_IMAGE" "$work/previous-image" >/dev/null
  echo "previous release: $(git log -1 --format='%h %s' "$rev" | cut -c1-80)"
}

# The image's Debian packages as a CycloneDX SBOM (from dpkg's own database, offline), with
# finrep itself, next to cargo's build output.
write_sbom() {
  local out
  out="$target_dir/finrep-image-sbom.cdx.json"
  "$DOCKER" run --rm --entrypoint dpkg-query "$FINREP_IMAGE" -W -f '${Package}\t${Version}\t${Architecture}\n' |
    python3 -c '
import json, sys
version = sys.argv[2]
components = [{"type": "application", "name": "finrep", "version": version,
               "purl": f"pkg:cargo/finrep@{version}"}]
for line in sys.stdin:
    name, ver, arch = line.rstrip("\n").split("\t")
    components.append({"type": "library", "name": name, "version": ver,
                       "purl": f"pkg:deb/debian/{name}@{ver}?arch={arch}&distro=debian-13"})
json.dump({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
           "metadata": {"component": {"type": "container", "name": sys.argv[1]}},
           "components": components}, open(sys.argv[3], "w"), indent=1)
print(f"SBOM: {len(components) - 1} Debian packages and finrep {version} in {sys.argv[3]}")
' "$FINREP_IMAGE" "$("$target_bin" --version | cut -d" " -f2)" "$out"
}

# The test's configuration (the demo desk, its feeds and mail in containers) and secrets.
prepare_config() {
  mkdir -p "$work/config"
  sed -e "s#@FEEDS@#http://feeds:8000#g" -e "s#@SMTP_PORT@#1025#g" -e "s#host: 127.0.0.1#host: mailpit#" \
    deploy/demo/config.yaml.in >"$work/config/desk.yaml"
  # The reports' slots twelve hours away, so none falls inside the test and every message
  # counted comes from a run the test started.
  local morning evening
  read -r morning evening < <(python3 -c '
from datetime import datetime, timedelta, timezone
h = (datetime.now(timezone(timedelta(hours=8))) + timedelta(hours=12)).hour
h = min(h, 22)
print(h, (h + 1) % 23)')
  sed -i -e "s/\"0 6 \* \* \*\"/\"0 $morning * * *\"/" \
    -e "s/{start: \"06:05\", end: \"06:20\"}/{start: \"$(printf %02d "$morning"):05\", end: \"$(printf %02d "$morning"):20\"}/" \
    "$work/config/desk.yaml"
  # A second report, for the new release to deliver after the upgrade.
  sed -n '/^kind: DailyReport/,$p' "$work/config/desk.yaml" |
    sed -e 's/name: morning-brief/name: evening-brief/' -e "s/\"0 $morning \* \* \*\"/\"0 $evening * * *\"/" \
      -e "s/$(printf %02d "$morning"):05/$(printf %02d "$evening"):05/; s/$(printf %02d "$morning"):20/$(printf %02d "$evening"):20/" |
    { echo "apiVersion: finrep.io/v1alpha1"; cat; } >"$work/config/evening.yaml"
  cp manifests/examples/recipients.yaml "$work/config/"
  chmod -R a+rX "$work/config"
  local hash
  hash=$(printf '%s\n' "compose test password $$" | "$target_bin" web hash-password)
  cat >"$work/test.env" <<ENV
FINREP_UNSUBSCRIBE_KEY=compose-test-signing-key-$(date +%s%N)
FINREP_PUBLIC_URL=http://localhost:8081
FINREP_WEB_PASSWORD_HASH='$hash'
ENV
  export FINREP_TEST_ENV_FILE="$work/test.env" FINREP_TEST_CONFIG="$work/config"
  export POSTGRES_PASSWORD="pw-$$-$RANDOM"
}

mails() { compose exec -T mailpit sh -c 'cat /mail/messages.jsonl 2>/dev/null | wc -l'; }
psql_in() { compose exec -T postgres psql -U finrep -d "$1" -Atc "$2"; }

# The previous release installed and delivering: what an upgrade starts from.
up_previous() {
  # Its services (it has no `finrep web`; the web comes with the upgrade).
  FINREP_IMAGE=$PREVIOUS_IMAGE compose --profile dev up -d --wait --wait-timeout 120 migrate-dev finrep-dev
  local outcome
  outcome=$(compose exec -T finrep-dev finrep --log-format json run --config /config --report morning-brief | tail -1)
  printf '%s' "$outcome" | python3 -c 'import json,sys; d=json.load(sys.stdin)["delivery"]; assert d["sent"] > 0, d; print("previous release delivered", d["sent"])'
}

# `up -d` with the new image: the migration runs first, the scheduler's state is kept, and
# the morning's report is not sent again; the previous binary still reads the new schema.
check_upgrade() {
  # The reports' scheduling state (the installation's own backup schedule, namespace '', may
  # be new with the upgrade).
  local state_q="SELECT (SELECT count(*) FROM schedule_state WHERE namespace <> '') || '/' || (SELECT count(*) FROM schedule_slots WHERE namespace <> '') || '/' || (SELECT count(*) FROM delivery_log WHERE status = 'sent')"
  local before_state before_mails newest applied
  before_state=$(psql_in finrep "$state_q")
  before_mails=$(mails)
  compose --profile dev up -d --wait --wait-timeout 120
  newest=$(ls migrations | sort | tail -1 | cut -d_ -f1)
  applied=$(psql_in finrep "SELECT max(version) FROM _sqlx_migrations WHERE success")
  [ "$applied" = "$newest" ] || { echo "newest migration applied: $applied, expected $newest" >&2; return 1; }
  [ "$("$DOCKER" inspect -f '{{.Config.Image}}' "$(compose ps -q finrep-dev)")" = "$FINREP_IMAGE" ]
  compose exec -T finrep-dev finrep --log-format json run --config /config --report morning-brief >/dev/null
  [ "$(mails)" = "$before_mails" ] || { echo "the upgraded release sent the morning's report again" >&2; return 1; }
  [ "$(psql_in finrep "$state_q")" = "$before_state" ] ||
    { echo "schedule state or deliveries changed across the upgrade: $before_state" >&2; return 1; }
  # Expand, then contract: the previous release still works against the new schema.
  "$DOCKER" run --rm --network "${project}_default" --read-only --cap-drop ALL \
    -e "DATABASE_URL=postgres://finrep:$POSTGRES_PASSWORD@postgres:5432/finrep" \
    "$PREVIOUS_IMAGE" status -o json >/dev/null || [ $? = 1 ]
  echo "upgraded to the newest migration ($newest): no report re-sent, schedule state kept ($before_state), the previous release still reads the schema"
}

check_up() {
  compose --profile dev up -d --wait --wait-timeout 120
  local code
  code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(compose ps -a -q migrate-dev)")
  [ "$code" = 0 ] || { echo "migrate-dev exited $code" >&2; return 1; }
  compose exec -T finrep-dev finrep probe
  compose exec -T web-dev finrep probe --url http://127.0.0.1:8081/readyz
  compose exec -T finrep-dev finrep status --config /config || [ $? = 1 ]
}

check_delivery() {
  local before after outcome
  before=$(mails)
  outcome=$(compose exec -T finrep-dev finrep --log-format json run --config /config --report evening-brief | tail -1)
  after=$(mails)
  local sent
  sent=$(printf '%s' "$outcome" | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivery"]["sent"])')
  [ "$sent" -gt 0 ] && [ $((after - before)) = "$sent" ] ||
    { echo "the run says $sent sent, the mail server counted $((after - before))" >&2; return 1; }
  echo "delivered: $sent messages counted by the mail server"
}

check_backup_restore() {
  local file
  file=$(compose exec -T finrep-dev finrep backup --dir /backups --name compose | tail -1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["file"])')
  compose exec -T finrep-dev test -s "$file"
  psql_in finrep "CREATE DATABASE restored" >/dev/null
  compose exec -T -e "DATABASE_URL=postgres://finrep:$POSTGRES_PASSWORD@postgres:5432/restored" \
    finrep-dev finrep restore --file "$file"
  local q="SELECT (SELECT count(*) FROM reports) || '/' || (SELECT count(*) FROM delivery_log) || '/' || (SELECT count(*) FROM articles)"
  local a b
  a=$(psql_in finrep "$q") b=$(psql_in restored "$q")
  [ "$a" = "$b" ] || { echo "restored $b rows, the database holds $a" >&2; return 1; }
  echo "backup $file restored: reports/deliveries/articles $b"
}

check_container() {
  local id
  id=$(compose ps -q finrep-dev)
  [ "$("$DOCKER" inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$id")" = true ]
  [ "$(compose exec -T finrep-dev id -u)" = 10001 ]
  compose exec -T finrep-dev sh -c 'grep -q "^CapEff:[[:space:]]*0000000000000000$" /proc/1/status'
  if compose exec -T finrep-dev touch /usr/local/bin/x 2>/dev/null; then
    echo "the root filesystem is writable" >&2
    return 1
  fi
  local limit peak
  limit=$("$DOCKER" inspect -f '{{.HostConfig.Memory}}' "$id")
  peak=$(cat "/sys/fs/cgroup/memory/docker/$id/memory.max_usage_in_bytes" 2>/dev/null ||
    cat "/sys/fs/cgroup/system.slice/docker-$id.scope/memory.peak" 2>/dev/null || echo 0)
  [ "$peak" -gt 0 ] && [ "$peak" -le "$limit" ] ||
    { echo "peak $peak of limit $limit" >&2; return 1; }
  echo "finrep-dev: read-only root, uid 10001, no capabilities, peak $((peak / 1048576)) MiB of $((limit / 1048576)) MiB"
}

check_stop_and_restart() {
  local before t0 service
  before=$(mails)
  t0=$SECONDS
  compose --profile dev stop
  for service in finrep-dev web-dev postgres mailpit; do
    local code
    code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(compose ps -a -q "$service")")
    [ "$code" = 0 ] || { echo "$service exited $code on stop" >&2; return 1; }
  done
  echo "stopped cleanly in $((SECONDS - t0)) s (grace 40 s)"
  compose --profile dev up -d --wait --wait-timeout 120
  sleep 5
  [ "$(mails)" = "$before" ] || { echo "a second report after the restart" >&2; return 1; }
  echo "restarted: no second report"
}

check_prod() {
  # The prod profile against the dev database, with the test configuration as deploy/config.
  DATABASE_URL="postgres://finrep:$POSTGRES_PASSWORD@postgres:5432/finrep" FINREP_CONFIG_DIR="$work/config" \
    compose --profile prod up -d --wait --wait-timeout 120 migrate finrep web
  compose exec -T finrep finrep probe
  local out
  if out=$(DATABASE_URL="" compose --profile prod run --rm -T migrate 2>&1); then
    echo "prod migrate ran without DATABASE_URL" >&2
    return 1
  fi
  printf '%s' "$out" | grep -q "DATABASE_URL is empty" ||
    { echo "prod without DATABASE_URL did not say why: $out" >&2; return 1; }
  echo "prod profile: healthy against the dev database; refuses without DATABASE_URL"
}

step "compose test: tools" install_tools
step "compose test: dockerd" start_dockerd
current="compose test: base image"
base=$(base_image)
export FINREP_IMAGE="finrep:compose-test" PREVIOUS_IMAGE="finrep:compose-test-previous"
# Where cargo puts its build output (asked once), and the finrep it built there.
target_dir=$(cargo_target_dir)
target_bin=$target_dir/debug/finrep
step "compose test: images" build_images "$base"
step "compose test: image SBOM" write_sbom
step "compose test: previous release" build_previous
prepare_config
step "compose test: previous release up (dev)" up_previous
step "compose test: upgrade" check_upgrade
step "compose test: up (dev)" check_up
step "compose test: a report delivered" check_delivery
step "compose test: backup and restore" check_backup_restore
step "compose test: the container" check_container
step "compose test: stop and restart" check_stop_and_restart
step "compose test: prod profile" check_prod
echo "compose test passed in $((SECONDS - started_at)) s; docker disk use:"
"$DOCKER" system df
