#!/usr/bin/env python3
"""Independent reference reader for OpenLM tar shards, decoding the way webdataset does:
tarfile iterates members, gzip.decompress + json.loads each .json.gz (ast-free: .txt members are
not used by the benchmark). Prints one JSON line: {"tokens": N, "seconds": S, "tokens_per_s": R}.

--dump prints every sequence as a JSON list of lists instead (tests compare it with the C++ reader).
"""
import argparse
import gzip
import json
import os
import tarfile
import time


def shard_paths(manifest):
    base = os.path.dirname(manifest)
    with open(manifest) as f:
        for line in f:
            if line.strip():
                yield os.path.join(base, json.loads(line)["shard"] + ".tar")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--dump", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    seqs = []
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(a.repeat):
        for path in shard_paths(a.manifest):
            with tarfile.open(path, "r") as tar:
                for m in tar:
                    if not m.isfile() or not m.name.endswith(".json.gz"):
                        continue
                    ids = json.loads(gzip.decompress(tar.extractfile(m).read()))
                    tokens += len(ids)
                    if a.dump:
                        seqs.append(ids)
    dt = time.perf_counter() - t0
    if a.dump:
        print(json.dumps(seqs))
    else:
        print(json.dumps({"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt if dt > 0 else 0.0}))


if __name__ == "__main__":
    main()
