#!/usr/bin/env bash
# The tiny demo on 2 CPU ranks (Gloo) under FULL_SHARD, with checkpoints every 10 steps and
# automatic restart: if a rank dies, the launcher restarts the group and training resumes from the
# newest complete checkpoint (`resume: latest`).
# Usage: examples/distributed_tiny.sh [RUN_DIR]   (after scripts/setup.sh; STEPS=N to change length)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OPENLM_BIN:-build/bin}
run=${1:-runs/example_fsdp}
OMP_NUM_THREADS=1 "$bin/openlm" launch --standalone --nproc-per-node 2 --max-restarts 2 -- \
  "$bin/openlm" train recipes/train/tiny_demo.yaml --run-dir "$run" --max-steps "${STEPS:-40}" \
  --set parallel.strategy=full_shard --set resume=latest --set checkpoint.every_steps=10
