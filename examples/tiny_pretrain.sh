#!/usr/bin/env bash
# Tiny pretraining on the embedded default corpus, then sampling from the run and scoring it.
# Usage: examples/tiny_pretrain.sh [RUN_DIR]   (after scripts/setup.sh; STEPS=N to change length)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OPENLM_BIN:-build/bin}
run=${1:-runs/example_tiny}
"$bin/openlm" train recipes/train/tiny_demo.yaml --run-dir "$run" --max-steps "${STEPS:-40}"
"$bin/openlm" generate "$run" --prompt "A friend is" --max-new-tokens 30 --temperature 0.8 --top-k 40
# Score the model on a few token sequences (whitespace-separated ids, one sequence per line).
"$bin/openlm" tokenizer encode --model "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["tokenizer"]["path"])' "$run/config.json")" \
  "Time flies like an arrow; fruit flies like a banana." > "$run/eval_tokens.txt"
"$bin/openlm" eval "$run" --tokens "$run/eval_tokens.txt" --json
