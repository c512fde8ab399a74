# shellcheck shell=bash
# ensure_postgres: make sure a PostgreSQL server is reachable and export FINREP_PG_ADMIN_URL,
# a URL of a superuser connection to its `postgres` database.
#
#   1. FINREP_PG_ADMIN_URL, when already set and reachable;
#   2. a server on 127.0.0.1:5432 that lets `postgres` in (the usual local install);
#   3. otherwise a throwaway cluster on 127.0.0.1:${FINREP_PG_PORT:-55432} in a temporary
#      directory, installing Debian's postgresql package first when no server binaries exist.
#      `stop_throwaway_postgres` removes it. FINREP_PG_EXTRA_OPTS adds server options.

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

pg_reachable() {
  psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

install_postgres_packages() {
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed and this user cannot install it; install postgresql or set FINREP_PG_ADMIN_URL" >&2
    return 1
  fi
  echo "installing PostgreSQL from the distribution's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql postgresql-client >&2
}

ensure_postgres() {
  if ! command -v psql >/dev/null 2>&1 || ! pg_bin_dir >/dev/null; then
    if [ -z "${FINREP_PG_ADMIN_URL:-}" ] || ! command -v psql >/dev/null 2>&1; then
      install_postgres_packages || return 1
    fi
  fi
  if [ -n "${FINREP_PG_ADMIN_URL:-}" ] && pg_reachable "$FINREP_PG_ADMIN_URL"; then
    return 0
  fi
  local local_url="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_reachable "$local_url"; then
    export FINREP_PG_ADMIN_URL="$local_url"
    return 0
  fi
  start_throwaway_postgres
}

start_throwaway_postgres() {
  local bin port dir owner
  bin=$(pg_bin_dir) || { echo "no PostgreSQL server binaries found" >&2; return 1; }
  port=${FINREP_PG_PORT:-55432}
  dir=$(mktemp -d /tmp/finrep-pg.XXXXXX)
  owner=$(id -un)
  # initdb refuses to run as root; the package's postgres user owns the throwaway cluster.
  if [ "$(id -u)" = 0 ]; then
    owner=postgres
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown "$owner" "$dir"
  fi
  as_owner() { if [ "$owner" = "$(id -un)" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
    || as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off ${FINREP_PG_EXTRA_OPTS:-}" start >/dev/null
  export FINREP_PG_THROWAWAY_DIR="$dir" FINREP_PG_THROWAWAY_OWNER="$owner" FINREP_PG_BIN="$bin"
  export FINREP_PG_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "started a throwaway PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2
}

stop_throwaway_postgres() {
  [ -n "${FINREP_PG_THROWAWAY_DIR:-}" ] || return 0
  if [ "$FINREP_PG_THROWAWAY_OWNER" = "$(id -un)" ]; then
    "$FINREP_PG_BIN/pg_ctl" -D "$FINREP_PG_THROWAWAY_DIR/data" -m fast stop >/dev/null 2>&1 || true
  else
    runuser -u "$FINREP_PG_THROWAWAY_OWNER" -- "$FINREP_PG_BIN/pg_ctl" -D "$FINREP_PG_THROWAWAY_DIR/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$FINREP_PG_THROWAWAY_DIR"
  unset FINREP_PG_THROWAWAY_DIR
}
