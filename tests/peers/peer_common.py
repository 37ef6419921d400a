"""Shared by the peer tests (tests/peers/test_*.py): argument parsing, the skip protocol (print
`SKIP: <reason>`, exit 77: ctest's SKIP_RETURN_CODE), running the openlm binary, and a tiny corpus,
tokenizer and training run made from scratch in the test's own work directory (a few seconds on
2 cores; nothing from assets/ or runs/ is used).

Usage of a test script:  PYTHON test_x.py --openlm BUILD/bin/openlm --work WORKDIR --source SRC_ROOT
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

SKIP_CODE = 77
# Quiet, offline Hugging Face libraries (everything the tests load is local).
for _k, _v in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
               ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP_CODE)


def need(*modules):
    """Imports each module or skips the test naming the missing one."""
    import importlib
    out = []
    for m in modules:
        try:
            out.append(importlib.import_module(m))
        except Exception as e:  # ImportError, or a broken install (missing shared library)
            skip("python module '%s' not importable with %s: %s" % (m, sys.executable, e))
    return out


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--openlm", required=True, help="the openlm binary")
    p.add_argument("--work", required=True, help="this test's work directory (emptied at start)")
    p.add_argument("--source", required=True, help="source tree root")
    a = p.parse_args()
    if not os.access(a.openlm, os.X_OK):
        raise SystemExit("openlm binary not found: " + a.openlm)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    return a


class Failed(Exception):
    pass


def check(cond, what):
    """A named assertion that survives `python -O`."""
    if not cond:
        raise Failed(what)
    print("ok: " + what, flush=True)


def openlm(binary, *argv, expect_ok=True, env=None):
    """Runs `openlm argv...`; returns (returncode, stdout, stderr). expect_ok=True fails on rc != 0."""
    cmd = [binary] + [str(x) for x in argv]
    t0 = time.time()
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "2")
    if env:
        e.update(env)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    print("$ %s   [rc %d, %.1f s]" % (" ".join(cmd), p.returncode, time.time() - t0), flush=True)
    if expect_ok and p.returncode != 0:
        raise Failed("command failed (rc %d): %s\nstdout:\n%s\nstderr:\n%s"
                     % (p.returncode, " ".join(cmd), p.stdout[-4000:], p.stderr[-4000:]))
    return p.returncode, p.stdout, p.stderr


WORDS = ("the a one every some small old new quiet bright green red blue dark cold warm cat dog bird fish "
         "tree river stone house garden road city friend child teacher farmer sings runs reads writes sees "
         "finds keeps builds paints carries likes near under over behind beside with without and but so "
         "because when while morning evening night winter summer rain snow wind light song story letter "
         "book window door table bread apple water fire music time place world day year").split()


def write_text(path, n_sentences=3000, seed=7):
    """Deterministic English-like text: short sentences, paragraphs separated by blank lines."""
    r = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n_sentences):
            n = r.randint(4, 12)
            s = " ".join(r.choice(WORDS) for _ in range(n))
            f.write(s[0].upper() + s[1:] + ".\n")
            if i % 8 == 7:
                f.write("\n")


def tiny_corpus(binary, work, seq_len=64, vocab=512):
    """Text -> SentencePiece model (vocab `vocab`) -> native shards. Returns (manifest, tokenizer)."""
    d = os.path.join(work, "corpus")
    os.makedirs(d, exist_ok=True)
    text = os.path.join(d, "text.txt")
    write_text(text)
    openlm(binary, "tokenizer", "train", "--input", text, "--model-prefix", os.path.join(d, "sp"),
           "--vocab-size", vocab)
    tok = os.path.join(d, "sp.model")
    openlm(binary, "prepare-data", "--input", text, "--tokenizer", tok, "--seq-len", seq_len,
           "--output", os.path.join(d, "shards"), "--format", "native", "--seed", 0, "--no-pad")
    return os.path.join(d, "shards", "manifest.jsonl"), tok


# A Llama-exportable model: RMSNorm, SwiGLU, rotary (halves), no qk-norm, GQA 4 heads / 2 kv heads.
LLAMA_MODEL = {"name": "peer_tiny", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "seq_len": 64,
               "vocab_size": 512, "norm_type": "rms_norm", "qk_norm": False, "ffn_type": "swiglu",
               "positional_embedding_type": "rotary", "weight_tying": False}


def train_tiny(binary, work, run_dir, steps=6, model=None, extra=None):
    """A tiny fp32 CPU training run on tiny_corpus(); returns (run_dir, tokenizer path)."""
    model = dict(model or LLAMA_MODEL)
    manifest, tok = tiny_corpus(binary, work, seq_len=model["seq_len"], vocab=model["vocab_size"])
    recipe = {
        "model": model,
        "tokenizer": {"type": "sentencepiece", "path": tok},
        "data": {"manifests": [{"path": manifest}], "num_workers": 1},
        "batch": {"global_batch_size": 8, "micro_batch_size": 4},
        "optim": {"lr": 3e-3, "z_loss": 1e-4},
        "schedule": {"warmup": 2},
        "precision": "fp32",
        "seed": 5,
        "max_steps": steps,
        "run_dir": run_dir,
        "logging": {"every_steps": 1, "tensorboard": True},
        "checkpoint": {"every_steps": 0, "keep_last": 2},
        "generate": {"prompt": ""},
    }
    if extra:
        for k, v in extra.items():  # "a.b": value
            node = recipe
            *path, last = k.split(".")
            for p in path:
                node = node.setdefault(p, {})
            node[last] = v
    path = os.path.join(work, "recipe.json")  # JSON is YAML
    with open(path, "w") as f:
        json.dump(recipe, f, indent=1)
    openlm(binary, "train", path)
    return run_dir, tok


def write_tokens(path, seqs):
    with open(path, "w") as f:
        for s in seqs:
            f.write(" ".join(str(int(x)) for x in s) + "\n")


def main(fn):
    """Runs fn(); a Failed check prints FAIL and exits 1."""
    t0 = time.time()
    try:
        fn()
    except Failed as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    print("PASS (%.1f s)" % (time.time() - t0), flush=True)
