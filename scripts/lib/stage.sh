# shellcheck shell=bash
# stage NAME CMD...: runs CMD under a heading and prints how long it took (also on failure).
stage() {
  local name=$1 started=$SECONDS rc=0
  shift
  echo "== $name"
  "$@" || rc=$?
  echo "== $name: $((SECONDS - started)) s$([ "$rc" = 0 ] || echo ", FAILED (exit $rc)")"
  return "$rc"
}
