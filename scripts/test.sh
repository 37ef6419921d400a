#!/usr/bin/env bash
# Installs what is missing, builds, runs the whole test suite (ctest), then every libFuzzer target
# for a bounded number of runs. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)
scripts/fuzz.sh "${FUZZ_RUNS:-20000}"
