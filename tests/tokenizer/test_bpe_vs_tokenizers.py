"""Peer test: `openlm tokenizer encode|decode` against the `tokenizers` package, id for id.

Trains a small GPT-NeoX-like byte-level BPE with `tokenizers` (NFC, ByteLevel, <|endoftext|> = 0,
whitespace added tokens), derives variants (legacy "a b" merges, a Llama-3-style Split + ByteLevel
sequence with flagged added tokens, add_prefix_space, NFKC with every split behaviour), and checks
encode on tricky and random texts and on invalid UTF-8 (expected: tokenizers on
bytes.decode("utf-8", "replace")), and decode of the same ids. Exit 77 (skip) without the package.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import tokenizers  # noqa: F401
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover
    print(f"SKIP: the tokenizers package is not importable ({e})")
    sys.exit(77)

import bpe_peer_cases as cases


def run(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def byte_vocab_spec(normalizer, pre_tokenizer):
    """A tokenizer.json whose ids are the bytes: it shows what the normalizer and pre-tokenizer did."""
    from tokenizers import pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    assert sorted(vocab) == alphabet
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": []}}


def check_unicode_tables(a):
    """Every code point through the regex classes (Oniguruma's in tokenizers, PCRE2 + rewrites in
    ours) and the normalizers (Unicode 9.0 tables in tokenizers, filtered ICU in ours)."""
    chars = [chr(c) for c in range(1, 0x110000) if not (0xD800 <= c <= 0xDFFF)]
    sep = "a"
    every = sep.join(chars)
    # Composition and canonical order: marks, and code points unassigned in Python's Unicode tables
    # (which may be marks in newer Unicode versions), each around other marks and starters.
    import unicodedata
    probe = [c for c in chars if ord(c) >= 0x300 and (unicodedata.category(c)[0] == "M" or
                                                      (unicodedata.category(c) == "Cn" and ord(c) < 0x20000))]
    marks = "".join(f"a\u0301{c} {c}\u0316 \u1100{c} {c}\u0301{c}e{c} " for c in probe)
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    def split(rx, behavior="Removed"):
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": rx}, "behavior": behavior, "invert": False}, bl]}
    checks = [
        ("class \\s", None, split(r"\s"), every),
        ("class \\S", None, split(r"\S"), every),
        ("class \\p{L}", None, split(r"\p{L}"), every),
        ("class \\p{N}", None, split(r"\p{N}"), every),
        ("class [^\\s\\p{L}\\p{N}]", None, split(r"[^\s\p{L}\p{N}]"), every),
        ("class \\P{L}", None, split(r"\P{L}"), every),
        ("class \\d", None, split(r"\d"), every),
        ("class \\D", None, split(r"\D"), every),
        ("GPT-2 regex", None, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                               "use_regex": True}, every),
        ("NFC", {"type": "NFC"}, bl, marks),
        ("NFD", {"type": "NFD"}, bl, marks),
        ("NFKC", {"type": "NFKC"}, bl, every + marks),
        ("NFKD", {"type": "NFKD"}, bl, every),
    ]
    failures = 0
    for name, norm, pre, text in checks:
        path = os.path.join(a.work, "unicode", "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(byte_vocab_spec(norm, pre), f, ensure_ascii=False)
        ref = Tokenizer.from_file(path)
        want = ref.encode(text).ids
        got = [int(x) for x in run([a.openlm, "tokenizer", "encode", "--tokenizer", path],
                                   text.encode("utf-8")).split()]
        if got != want:
            failures += 1
            k = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            ctx = bytes(want[max(0, k - 12):k + 12]).decode("utf-8", "replace")
            print(f"FAIL unicode {name}: ids differ at {k} (ours {len(got)}, tokenizers {len(want)}) near {ctx!r}")
        else:
            print(f"unicode {name}: {len(text)} characters, identical")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--openlm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--random", type=int, default=1500)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    print(f"tokenizers {tokenizers.__version__}")

    base = cases.train_base(a.work)
    texts = cases.TRICKY + cases.random_texts(a.random)
    raw = [t.encode("utf-8") for t in texts] + cases.INVALID_UTF8
    as_str = texts + [b.decode("utf-8", "replace") for b in cases.INVALID_UTF8]
    failures = 0
    for name, spec in cases.variants(base).items():
        path = os.path.join(a.work, name, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        ref = Tokenizer.from_file(path)
        expected = [e.ids for e in ref.encode_batch(as_str)]
        # Texts holding NUL go one by one; the rest in one NUL-separated run.
        batch = [i for i, b in enumerate(raw) if b"\0" not in b]
        out = run([a.openlm, "tokenizer", "encode", "--tokenizer", path, "--nul"],
                  b"".join(raw[i] + b"\0" for i in batch))
        lines = out.decode().split("\n")[:-1]
        got = [None] * len(raw)
        if len(lines) == len(batch):
            for i, line in zip(batch, lines):
                got[i] = [int(x) for x in line.split()]
        for i, b in enumerate(raw):
            if b"\0" in b:
                got[i] = [int(x) for x in run([a.openlm, "tokenizer", "encode", "--tokenizer", path], b).split()]
        bad = 0
        if len(lines) != len(batch):
            print(f"FAIL {name}: {len(lines)} output lines for {len(batch)} texts")
            failures += 1
            continue
        for i, (g, e) in enumerate(zip(got, expected)):
            if g != e:
                bad += 1
                if bad <= 5:
                    print(f"FAIL {name}: text {i} {raw[i][:120]!r}\n  ours       {g[:40]}\n  tokenizers {e[:40]}")
        # decode: the same ids through both (texts holding NUL one by one)
        want_text = [ref.decode(e, skip_special_tokens=False) for e in expected]
        dbatch = [i for i, w in enumerate(want_text) if "\0" not in w]
        dec = run([a.openlm, "tokenizer", "decode", "--tokenizer", path, "--nul"],
                  "".join(" ".join(map(str, expected[i])) + "\n" for i in dbatch).encode())
        parts = dec.decode("utf-8").split("\0")[:-1]
        got_text = [None] * len(expected)
        if len(parts) == len(dbatch):
            for i, t in zip(dbatch, parts):
                got_text[i] = t
        for i, w in enumerate(want_text):
            if "\0" in w:
                got_text[i] = run([a.openlm, "tokenizer", "decode", "--tokenizer", path],
                                  " ".join(map(str, expected[i])).encode()).decode("utf-8")
        dbad = 0
        for i, (g, w) in enumerate(zip(got_text, want_text)):
            if g != w:
                dbad += 1
                if dbad <= 5:
                    print(f"FAIL {name} decode: ids of text {i}\n  ours       {g and g[:80]!r}\n  tokenizers {w[:80]!r}")
        print(f"{name}: {len(expected)} texts, {sum(map(len, expected))} ids, encode mismatches {bad}, "
              f"decode mismatches {dbad}")
        failures += bad + dbad
    failures += check_unicode_tables(a)
    if failures:
        print(f"FAIL: {failures} mismatches")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
