#!/usr/bin/env bash
# A fuzzing session over hostile input: the property tests of tests/hostile_input.rs
# (arbitrary and damaged bytes through decode → parse → clean → extract, hostile text in
# every format, tricky JSON, the text functions) with many generated cases, in release mode.
#
#   scripts/fuzz.sh [CASES]        # default 20000 per property
#
# A failure prints the minimal input proptest shrank it to; proptest also records it under
# tests/hostile_input.proptest-regressions, which the test command then replays every time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-20000}"
exec cargo test --release --locked --test hostile_input -- --test-threads "$(nproc)"
