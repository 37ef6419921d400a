#!/usr/bin/env bash
# The GPU check, one script: on a machine with one NVIDIA GPU and pip's torch (2.x, CUDA), build
# against that torch, run the GPU-only tests (NCCL collectives at world size 1, CUDA bf16 vs CPU fp32
# logits, fused AdamW, an FSDP step over NCCL), then time the training step of open_lm_411m_v2 (seq
# 2048, bf16 autocast, DCLM settings) at micro-batches 8, 12, 16 and open_lm_1b at 4 and 8: one JSON
# line per run (tokens/s, MFU against 989 TFLOP/s bf16 dense, peak memory) on stdout and in
# $OUT/results.jsonl.
#
#   bench/gpu/run.sh                        GPU machine (python3 must import torch; see docs/BUILDING.md)
#   bench/gpu/run.sh --cpu-smoke [--build-dir DIR]
#                                           same steps on the CPU with a tiny model and an existing
#                                           build tree (the test suite runs this so it cannot rot)
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=gpu
build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) mode=cpu ;;
    --build-dir) build=$2; shift ;;
    *) echo "usage: $0 [--cpu-smoke] [--build-dir DIR]" >&2; exit 2 ;;
  esac
  shift
done
out=${OUT:-$PWD/bench-gpu-out}
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
t_start=$(date +%s)
log() { echo "[gpu/run.sh $(( $(date +%s) - t_start )) s] $*" >&2; }

# 1. Build (GPU mode) against the torch of the machine's Python; CPU smoke uses a built tree.
if [ "$mode" = gpu ]; then
  py=${PYTHON:-python3}
  torch_dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  prefix="$torch_dir;$torch_dir/share/cmake"
  [ -d .device-deps/usr ] && prefix="$prefix;$PWD/.device-deps/usr"  # staged Debian libraries
  build=${build:-build-gpu}
  log "configuring $build against $torch_dir"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DOPENLM_PYTHON="$(command -v "$py")" \
    -DOPENLM_BUILD_FUZZ=OFF > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  log "building"
  cmake --build "$build" -j"$(nproc)" --target openlm test_cuda test_comm_cuda bench_step > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
else
  build=${build:-build}
  [ -x "$build/bin/bench_step" ] || { echo "no $build/bin/bench_step: build the tree first" >&2; exit 1; }
fi
bin="$build/bin"

# 2. GPU-only tests (they print why they skip when there is no CUDA device).
for t in test_comm_cuda test_cuda; do
  log "running $t"
  "$bin/$t" --gtest_brief=0 2>&1 | tee "$out/$t.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED)|Skipped|FAILED|OK \]" || true
  if grep -q "FAILED" "$out/$t.log"; then echo "$t failed (see $out/$t.log)" >&2; fail=1; fi
done

# 3. Training-step throughput, one JSON line per run (a failed run, e.g. out of memory, prints an
#    "error" line and the others still run).
dclm=(--set norm_type=gain_only_lp_layer_norm --set qk_norm=true --set ffn_type=swiglu_torch)
runs=()
if [ "$mode" = gpu ]; then
  for b in 8 12 16; do runs+=("open_lm_411m_v2 $b 2048"); done
  for b in 4 8; do runs+=("open_lm_1b $b 2048"); done
  common=(--device cuda --precision amp_bfloat16 --steps 20 --warmup 3)
else
  for b in 2 3; do runs+=("open_lm_test_tiny $b 64"); done
  common=(--device cpu --precision fp32 --steps 2 --warmup 1)
fi
for r in "${runs[@]}"; do
  read -r model mb seq <<< "$r"
  log "bench_step $model micro-batch $mb seq $seq"
  line=$("$bin/bench_step" --model "$model" "${dclm[@]}" --micro-batch "$mb" --seq-len "$seq" "${common[@]}" || true)
  echo "$line" | tee -a "$results"
done
# One bf16-on-CPU line in the smoke too (LibTorch 2.x: oneDNN bf16 matmuls).
if [ "$mode" = cpu ]; then
  "$bin/bench_step" --model open_lm_test_tiny "${dclm[@]}" --micro-batch 2 --seq-len 64 --device cpu \
    --precision amp_bfloat16 --steps 2 --warmup 1 | tee -a "$results"
fi
log "done in $(( $(date +%s) - t_start )) s; results in $results"
[ -z "${fail:-}" ] || exit 1
# Every run must have produced a measurement.
if grep -q '"error"' "$results"; then echo "a run failed (see $results)" >&2; exit 1; fi
want=$(( ${#runs[@]} + $([ "$mode" = cpu ] && echo 1 || echo 0) ))
got=$(grep -c '"tokens_per_s"' "$results" || true)
[ "$got" = "$want" ] || { echo "expected $want measurements, got $got" >&2; exit 1; }
