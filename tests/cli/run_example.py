#!/usr/bin/env python3
"""Runs one example script from an empty run directory and asserts on what it produced.

Usage: run_example.py EXAMPLE.sh RUN_DIR STEPS
Checks (all examples): metrics.jsonl holds steps 1..STEPS exactly once each with finite losses,
the loss fell from the first to the last quarter of the run, config.json and model.safetensors
were written, and checkpoints/latest names a step directory with a metadata.json.
tiny_pretrain also prints an eval JSON line (finite loss over > 0 tokens) and a sample that starts
with the prompt.
"""
import json
import math
import os
import shutil
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    script, run, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shutil.rmtree(run, ignore_errors=True)  # never pass on a previous run's files
    env = dict(os.environ, STEPS=str(steps))
    p = subprocess.run([script, run], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout)
    if p.returncode != 0:
        fail(f"{script} exited {p.returncode}")

    recs = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind", "train") == "train" and "loss" in r:
                recs.append(r)
    got = sorted(r["step"] for r in recs)
    if got != list(range(1, steps + 1)):
        fail(f"metrics.jsonl steps {got}, expected 1..{steps} once each")
    losses = [r["loss"] for r in sorted(recs, key=lambda r: r["step"])]
    if not all(math.isfinite(x) for x in losses):
        fail(f"non-finite loss in {losses}")
    q = max(1, steps // 4)
    first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
    if not last < first:
        fail(f"loss did not fall: first quarter {first:.4f}, last quarter {last:.4f}")
    for f in ("config.json", "model.safetensors"):
        path = os.path.join(run, f)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            fail(f"{path} missing or empty")
    latest = os.path.join(run, "checkpoints", "latest")
    if not os.path.exists(latest):
        fail(f"{latest} missing")
    step_dir = open(latest).read().strip() if os.path.isfile(latest) else os.readlink(latest)
    step_dir = os.path.join(run, "checkpoints", os.path.basename(step_dir))
    if not os.path.isfile(os.path.join(step_dir, "metadata.json")):
        fail(f"latest checkpoint {step_dir} has no metadata.json")

    if os.path.basename(script).startswith("tiny_pretrain"):
        evals = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{") and '"loss"' in l]
        if not evals:
            fail("no eval JSON line in the output")
        e = evals[-1]
        if not (math.isfinite(e["loss"]) and e["tokens"] > 0 and e["loss"] > 0):
            fail(f"bad eval result {e}")
        if "A friend is" not in p.stdout:
            fail("the generated sample (prompt 'A friend is') is not in the output")
    print(f"OK: {steps} steps, loss {first:.4f} -> {last:.4f}")


if __name__ == "__main__":
    main()
