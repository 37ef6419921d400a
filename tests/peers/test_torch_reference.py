"""Peer test: the project's Python reference scripts run on the venv's torch 2.x (they were written
for Debian's python3-torch 1.13).

bench/py_train_reference.py with tiny arguments: it must run, print one JSON line with a positive
tokens/s and the parameter count of its model (checked against the formula), on this torch.
(The plain-torch Llama forward of tests/checkpoint runs on the venv as the ctest entry
`peer_torch_llama_forward`: test_hf's IndependentTorchLlamaForwardMatchesOurLogits with
OPENLM_REFERENCE_PYTHON set.)
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402


def main():
    a = pc.args()
    torch, = pc.need("torch")
    d, L, H, T, V, B = 32, 2, 4, 16, 64, 2
    cmd = [sys.executable, os.path.join(a.source, "bench", "py_train_reference.py"), "dim=%d" % d, "layers=%d" % L,
           "heads=%d" % H, "seq=%d" % T, "vocab=%d" % V, "batch=%d" % B, "steps=3", "warmup=1"]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    print(p.stdout)
    pc.check(p.returncode == 0, "py_train_reference.py runs on torch %s (rc %d)" % (torch.__version__, p.returncode))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    pc.check(r["torch"] == torch.__version__, "it ran on the venv's torch %s" % r["torch"])
    pc.check(r["tokens_per_s"] > 0, "tokens_per_s %.1f > 0" % r["tokens_per_s"])
    hidden = 256 * ((int(8 * d / 3) + 255) // 256)
    norm = 2 * d  # LayerNorm gain + bias
    params = V * d + L * (2 * norm + 3 * d * d + d * d + 2 * hidden * d + hidden * d) + norm + V * d
    pc.check(r["params"] == params, "parameter count %d == formula %d" % (r["params"], params))


if __name__ == "__main__":
    pc.main(main)
