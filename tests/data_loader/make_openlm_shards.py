#!/usr/bin/env python3
"""Writes OpenLM/webdataset-style tar shards the way OpenLM's tools do (tarfile + gzip + json), as
an independent writer for the C++ reader's tests.

Token t of global sequence g is g when t == 0, else (g * 31 + t) % 997 (tests recompute this).
--txt writes legacy .txt members (Python list text) with the literal '<|endoftext|>' at t == 1.
"""
import argparse
import gzip
import io
import json
import os
import tarfile


def tokens(g, length):
    return [g if t == 0 else (g * 31 + t) % 997 for t in range(length)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--per-shard", type=int, default=4)
    ap.add_argument("--len", type=int, default=9)
    ap.add_argument("--start", type=int, default=0, help="global id of the first sequence")
    ap.add_argument("--txt", action="store_true")
    ap.add_argument("--prefix", default="shard")
    ap.add_argument("--num-chunks", action="store_true", help="write num_chunks instead of num_sequences")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = a.start
    with open(os.path.join(a.out, "manifest.jsonl"), "w") as man:
        for s in range(a.shards):
            name = f"{a.prefix}_{s:05d}"
            with tarfile.open(os.path.join(a.out, name + ".tar"), "w") as tar:
                for i in range(a.per_shard):
                    toks = tokens(g, a.len)
                    if a.txt:
                        lst = [("<|endoftext|>" if t == 1 else v) for t, v in enumerate(toks)]
                        data = str(lst).encode()
                        key = f"{name}_{i:06d}.txt"
                    else:
                        data = gzip.compress(json.dumps(toks).encode())
                        key = f"{name}_{i:06d}.json.gz"
                    info = tarfile.TarInfo(key)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    g += 1
            field = "num_chunks" if a.num_chunks else "num_sequences"
            man.write(json.dumps({"shard": name, field: a.per_shard}) + "\n")


if __name__ == "__main__":
    main()
