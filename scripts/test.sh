#!/usr/bin/env bash
# Installs what is missing, builds both trees and runs the whole test suite (ctest) in each:
#   build/         Debian's LibTorch 1.13 (CPU, Gloo)                      scripts/setup.sh
#   build-torch2/  PyPI's torch wheel, LibTorch 2.x with CUDA and NCCL     scripts/setup-torch2.sh
# (CPU ops of a CUDA LibTorch run without a GPU; GPU-only tests skip with the reason printed), then
# every libFuzzer target for a bounded number of runs. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
stamp() { echo "test.sh: $1 at $(( $(date +%s) - t0 )) s"; }
scripts/setup.sh
stamp "build/ ready"
scripts/setup-torch2.sh
stamp "build-torch2/ ready"
jobs=$(nproc 2>/dev/null || echo 2)
status=0
for tree in build build-torch2; do
  echo "test.sh: ctest in $tree"
  (cd "$tree" && ctest --output-on-failure -j"$jobs" --timeout 600) || status=1
  stamp "ctest in $tree done"
done
[ $status = 0 ] || { echo "test.sh: test failures (see above)" >&2; exit 1; }
scripts/fuzz.sh "${FUZZ_RUNS:-20000}"
stamp "all done"
