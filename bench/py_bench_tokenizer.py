"""The `tokenizers` side of bench/bench_tokenizer.cpp.

  py_bench_tokenizer.py train --text FILE --out tokenizer.json [--vocab 32000]
      trains a GPT-NeoX-like byte-level BPE (NFC, ByteLevel, <|endoftext|> = 0) on FILE
  py_bench_tokenizer.py bench --tokenizer tokenizer.json --docs FILE [--passes 3]
      encode_batch throughput on the documents of FILE (NUL-separated); the thread count is the
      environment's RAYON_NUM_THREADS (set by the caller, one process per count). Prints one JSON
      line: {"mb_per_s": ..., "tokens": ..., "checksum": ...}
"""
import argparse
import json
import os
import sys
import time


def train(a):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    with open(a.text, encoding="utf-8", errors="replace") as f:
        tok.train_from_iterator(f, trainer=trainer)
    tok.save(a.out)


def checksum(batch):
    """Token count and sum of id * (running position + 1) mod 2^64, as bench_tokenizer.cpp computes."""
    n, h = 0, 0
    for enc in batch:
        for i in enc.ids:
            n += 1
            h = (h + i * n) % (1 << 64)
    return n, h


def bench(a):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(a.tokenizer)
    with open(a.docs, "rb") as f:
        docs = [d.decode("utf-8") for d in f.read().split(b"\0") if d]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    out = tok.encode_batch(docs)  # warm-up (word cache, thread pool)
    n, h = checksum(out)
    best = None
    for _ in range(a.passes):
        t0 = time.perf_counter()
        tok.encode_batch(docs)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    import tokenizers
    print(json.dumps({"mb_per_s": nbytes / best / 1e6, "tokens": n, "checksum": str(h),
                      "threads": os.environ.get("RAYON_NUM_THREADS"), "version": tokenizers.__version__}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--text", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--vocab", type=int, default=32000)
    b = sub.add_parser("bench")
    b.add_argument("--tokenizer", required=True)
    b.add_argument("--docs", required=True)
    b.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    try:
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(json.dumps({"error": f"tokenizers not importable: {e}"}))
        return 3
    train(a) if a.cmd == "train" else bench(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
