# shellcheck shell=bash
# cargo_target_dir: where cargo puts what it builds, as cargo itself says (CARGO_TARGET_DIR,
# a `build.target-dir` in a cargo config, or target/), so no script assumes target/.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}
