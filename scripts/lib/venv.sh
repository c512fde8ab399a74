# shellcheck shell=bash
# ensure_venv PKG...: a Python venv in .venv with the given PyPI packages; exports VENV.
ensure_venv() {
  export VENV="${FINREP_VENV:-$PWD/.venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || {
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      fi
      python3 -m venv "$VENV"
    }
  fi
  local missing=()
  for pkg in "$@"; do
    "$VENV/bin/python" -m pip show -q "${pkg%%[=<>]*}" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
  fi
}
