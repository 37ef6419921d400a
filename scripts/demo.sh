#!/usr/bin/env bash
# The main job: set up, then a tiny pretraining run on the embedded default corpus (built from the
# text of Debian's fortunes packages, with a SentencePiece tokenizer trained on it). Outputs go to
# runs/tiny_demo/ (metrics.jsonl, tensorboard/, checkpoints/, model.safetensors, loss.png); a
# generated sample is printed at the end, then the loss curve's path. Rerunning resumes from the
# last checkpoint or starts a new run with RUN_DIR=... set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
RUN_DIR=${RUN_DIR:-runs/tiny_demo}
rm -rf "$RUN_DIR"
build/bin/openlm train recipes/train/tiny_demo.yaml --run-dir "$RUN_DIR" "$@"
echo "demo: outputs in $RUN_DIR"
# The loss curve (gnuplot, from metrics.jsonl; scripts/setup.sh installs gnuplot-nox).
build/bin/openlm plot "$RUN_DIR" --out "$RUN_DIR/loss.png" --title "tiny_demo: training loss"
echo "demo: loss curve $RUN_DIR/loss.png"
