#!/usr/bin/env bash
# Builds the libFuzzer targets with clang 14 (fuzz/) and runs each for N inputs (default 20000)
# starting from its seed corpus in fuzz/corpus/<name>/. A crash fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
cmake -S fuzz -B build/fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j"$(nproc 2>/dev/null || echo 2)"
for f in build/fuzz/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds=()
  [ -d "fuzz/corpus/$name" ] && seeds+=("fuzz/corpus/$name")
  echo "fuzz: $name ($runs runs)"
  "$f" -runs="$runs" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=0 "$work" "${seeds[@]}" >/tmp/"$name".log 2>&1 \
    || { tail -50 /tmp/"$name".log; rm -rf "$work"; exit 1; }
  rm -rf "$work"
done
