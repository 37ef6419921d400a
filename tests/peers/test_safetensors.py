"""Peer test: Python's `safetensors` package (the reference Rust implementation) against openlm.

A. Files openlm writes open with safetensors.safe_open and hold what we meant:
   - a training run's model.safetensors, its checkpoint shards (model / optim / rng) and
     `eval --logits-out`: every file opens, has __metadata__.format == "pt", every tensor reads;
     the final checkpoint's weights == model.safetensors (bit-exact); the rng file is U8;
   - `export-hf --format llama --dtype fp32` (sharded and not) == the run's weights under the Llama
     names (bit-exact), `--dtype bf16` == the fp32 export rounded to bf16 (bit-exact, header dtype BF16);
   - re-serializing what safe_open read with safetensors.torch.save(..., metadata) gives our bytes
     exactly (same tensor order, header layout and padding as the reference writer; only the order
     of __metadata__ keys may differ: the reference keeps them in a hash map).
B. Files safetensors writes, one per dtype it can write with this torch (F64 F32 F16 BF16 I64 I32 I16
   I8 U8 BOOL, U16 U32 U64, F8_E4M3 F8_E5M2), as the model.safetensors of a tiny Llama directory, go
   through `openlm import-hf`: the floating dtypes F64/F32/F16/BF16 must import as exactly
   `tensor.float()`; every other dtype either imports exactly the same way or is refused with an
   error naming the dtype or the tensor, writing no config.json.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402


def header(path):
    with open(path, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def main():
    a = pc.args()
    torch, safetensors, st_torch = pc.need("torch", "safetensors", "safetensors.torch")
    print("torch %s, safetensors %s" % (torch.__version__, safetensors.__version__))
    ob = a.openlm

    def read_all(path):
        with safetensors.safe_open(path, framework="pt") as f:
            meta = f.metadata()
            return {k: f.get_tensor(k) for k in f.keys()}, meta

    def bit_equal(x, y):
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if x.dtype == torch.bool:
            return bool((x == y).all())
        return x.contiguous().view(torch.uint8).equal(y.contiguous().view(torch.uint8))

    def same_bytes_as_reference(path):
        """Our file == safetensors.torch.save of what safe_open read (tensor order, header layout,
        padding, data), except the order of __metadata__ keys: the reference writer keeps them in a
        Rust HashMap (arbitrary order), ours sorts them; there they are compared as a dict."""
        tensors, meta = read_all(path)
        ref = st_torch.save(tensors, metadata=meta)
        mine = open(path, "rb").read()

        def split(b):
            n, = struct.unpack("<Q", b[:8])
            h = json.loads(b[8:8 + n], object_pairs_hook=list)
            return n, [(k, v) for k, v in h if k != "__metadata__"], dict(dict(h).get("__metadata__", [])), b[8 + n:]
        a, b = split(mine), split(ref)
        if a != b:
            print("%s differs from safetensors' serialization of the same tensors:" % path)
            print("  ours   header: %s" % mine[8:8 + a[0]][:400])
            print("  theirs header: %s" % ref[8:8 + b[0]][:400])
        return a == b

    # ---- A. what we write ----------------------------------------------------------------------------
    run, _ = pc.train_tiny(ob, a.work, os.path.join(a.work, "run"), steps=4,
                           extra={"checkpoint.every_steps": 2})
    written = []
    for root, _, files in os.walk(run):
        written += [os.path.join(root, f) for f in files if f.endswith(".safetensors")]
    pc.check(len(written) >= 4, "the run wrote %d safetensors files" % len(written))
    for p in sorted(written):
        tensors, meta = read_all(p)
        pc.check(meta is not None and meta.get("format") == "pt" and len(tensors) > 0,
                 "%s opens (%d tensors, metadata %s)" % (os.path.relpath(p, a.work), len(tensors), meta))
        pc.check(same_bytes_as_reference(p), "%s: byte-identical to safetensors.torch.save" % os.path.relpath(p, a.work))
    final, _ = read_all(os.path.join(run, "model.safetensors"))
    pc.check(all(t.dtype == torch.float32 for t in final.values()), "model.safetensors is F32")
    latest = open(os.path.join(run, "checkpoints", "latest")).read().strip()
    ck = os.path.join(run, "checkpoints", latest)
    ckfiles = sorted(os.listdir(ck))
    model_shards = [f for f in ckfiles if f.startswith("model-shard") and f.endswith(".safetensors")]
    pc.check(len(model_shards) == 1, "one-process checkpoint %s has one model shard (%s)" % (latest, ckfiles))
    ckw, _ = read_all(os.path.join(ck, model_shards[0]))
    pc.check(set(ckw) == set(final) and all(bit_equal(ckw[k].reshape(-1), final[k].reshape(-1)) for k in final),
             "final checkpoint %s weights == model.safetensors (bit-exact)" % latest)
    rng = [f for f in ckfiles if f.startswith("rng")]
    if rng:
        h = header(os.path.join(ck, rng[0]))
        pc.check(all(v["dtype"] == "U8" for k, v in h.items() if k != "__metadata__"), "rng states are U8")
    optim = [f for f in ckfiles if f.startswith("optim-shard")]
    if optim:
        ow, _ = read_all(os.path.join(ck, optim[0]))
        pc.check(set(ow) == {k + s for k in final for s in (".exp_avg", ".exp_avg_sq")},
                 "optimizer shard holds exp_avg / exp_avg_sq of every parameter")

    # export-hf fp32 (several shards) and bf16 (one file)
    m = pc.LLAMA_MODEL
    A, hd, kv = m["dim"], m["dim"] // m["n_heads"], m["n_kv_heads"]
    Akv = kv * hd
    fp32, bf16 = os.path.join(a.work, "hf32"), os.path.join(a.work, "hf16")
    pc.openlm(ob, "export-hf", run, fp32, "--format", "llama", "--dtype", "fp32", "--max-shard-size", "100KB")
    pc.openlm(ob, "export-hf", run, bf16, "--format", "llama", "--dtype", "bf16")
    idx = json.load(open(os.path.join(fp32, "model.safetensors.index.json")))
    shards = sorted(set(idx["weight_map"].values()))
    pc.check(len(shards) >= 2, "fp32 export is sharded (%d files)" % len(shards))
    e32 = {}
    for s in shards:
        t, meta = read_all(os.path.join(fp32, s))
        pc.check(all(idx["weight_map"][k] == s for k in t), "%s holds what the index assigns" % s)
        pc.check(same_bytes_as_reference(os.path.join(fp32, s)), "%s byte-identical to safetensors.torch.save" % s)
        e32.update(t)
    pc.check(sum(t.numel() * 4 for t in e32.values()) == idx["metadata"]["total_size"], "index total_size")
    pc.check(all(v["dtype"] == "F32" for s in shards for k, v in header(os.path.join(fp32, s)).items()
                 if k != "__metadata__"), "fp32 export header dtypes are F32")
    h16 = header(os.path.join(bf16, "model.safetensors"))
    pc.check(all(v["dtype"] == "BF16" for k, v in h16.items() if k != "__metadata__"), "bf16 export header dtypes are BF16")
    e16, _ = read_all(os.path.join(bf16, "model.safetensors"))
    pc.check(same_bytes_as_reference(os.path.join(bf16, "model.safetensors")), "bf16 export byte-identical to safetensors.torch.save")
    pc.check(set(e16) == set(e32), "bf16 and fp32 exports hold the same names")
    pc.check(all(bit_equal(e16[k], e32[k].to(torch.bfloat16)) for k in e32),
             "bf16 export == fp32 export rounded to bf16 (bit-exact)")
    # fp32 export == the run's weights under the Llama names (rotary halves: rows copied as they are)
    expect = {"model.embed_tokens.weight": final["tok_embeddings.weight"], "model.norm.weight": final["norm.weight"],
              "lm_head.weight": final["output.weight"]}
    for i in range(m["n_layers"]):
        p, q = "layers.%d." % i, "model.layers.%d." % i
        w = final[p + "attention.in_proj.weight"]
        expect[q + "self_attn.q_proj.weight"] = w[:A]
        expect[q + "self_attn.k_proj.weight"] = w[A:A + Akv]
        expect[q + "self_attn.v_proj.weight"] = w[A + Akv:A + 2 * Akv]
        expect[q + "self_attn.o_proj.weight"] = final[p + "attention.out_proj.weight"]
        w12 = final[p + "feed_forward.w12.weight"]
        h = w12.shape[0] // 2
        expect[q + "mlp.gate_proj.weight"] = w12[:h]
        expect[q + "mlp.up_proj.weight"] = w12[h:]
        expect[q + "mlp.down_proj.weight"] = final[p + "feed_forward.w3.weight"]
        expect[q + "input_layernorm.weight"] = final[p + "attention_norm.weight"]
        expect[q + "post_attention_layernorm.weight"] = final[p + "ffn_norm.weight"]
    pc.check(set(expect) == set(e32), "fp32 export names are the Llama names (%d tensors)" % len(e32))
    pc.check(all(bit_equal(e32[k], expect[k].contiguous()) for k in expect),
             "fp32 export == the run's weights (bit-exact)")
    # logits file
    toks = os.path.join(a.work, "tokens.txt")
    pc.write_tokens(toks, [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    lp = os.path.join(a.work, "logits.safetensors")
    pc.openlm(ob, "eval", run, "--tokens", toks, "--logits-out", lp)
    lh = header(lp)
    pc.check(lh["logits"]["dtype"] == "F32" and lh["logits"]["shape"] == [2, 6, m["vocab_size"]],
             "--logits-out header: %s" % lh["logits"])
    lg, lmeta = read_all(lp)
    pc.check(lmeta.get("format") == "pt" and bool(torch.isfinite(lg["logits"]).all()), "logits file reads, finite")

    # ---- B. what safetensors writes, through import-hf ------------------------------------------------
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 4,
           "hidden_act": "silu", "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "vocab_size": 16, "attention_bias": False, "mlp_bias": False}
    shapes = {"model.embed_tokens.weight": [16, 8], "model.norm.weight": [8], "lm_head.weight": [16, 8],
              "model.layers.0.input_layernorm.weight": [8], "model.layers.0.post_attention_layernorm.weight": [8],
              "model.layers.0.mlp.gate_proj.weight": [16, 8], "model.layers.0.mlp.up_proj.weight": [16, 8],
              "model.layers.0.mlp.down_proj.weight": [8, 16]}
    for n in "qkvo":
        shapes["model.layers.0.self_attn.%s_proj.weight" % n] = [8, 8]
    dtypes = [("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
              ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"),
              ("BOOL", "bool"), ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
              ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")]
    must_load = {"F64", "F32", "F16", "BF16"}
    g = torch.Generator().manual_seed(0)
    outcomes = {}
    for name, tname in dtypes:
        dt = getattr(torch, tname, None)
        if dt is None:
            print("torch %s has no %s: %s not tried" % (torch.__version__, tname, name))
            continue
        t = {}
        for k, shp in shapes.items():
            if name == "BOOL":
                v = torch.rand(shp, generator=g) < 0.5
            elif name.startswith("U"):
                v = torch.randint(0, 9, shp, generator=g).to(dt)
            elif name.startswith("I"):
                v = torch.randint(-4, 5, shp, generator=g).to(dt)
            else:
                v = (torch.randn(shp, generator=g, dtype=torch.float64) * 0.7).to(dt)
            t[k] = v
        d = os.path.join(a.work, "st_" + name)
        os.makedirs(d)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        try:
            st_torch.save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        except Exception as e:
            print("safetensors %s cannot write %s: %s" % (safetensors.__version__, name, e))
            continue
        got_dtype = {v["dtype"] for k, v in header(os.path.join(d, "model.safetensors")).items() if k != "__metadata__"}
        pc.check(got_dtype == {name}, "safetensors wrote %s" % name)
        out = os.path.join(a.work, "imported_" + name)
        rc, so, se = pc.openlm(ob, "import-hf", d, out, expect_ok=False)
        msg = (so + se).strip()
        if rc == 0:
            imp, _ = read_all(os.path.join(out, "model.safetensors"))
            f = {k: v.to(torch.float32) for k, v in t.items()}
            ref = {"tok_embeddings.weight": f["model.embed_tokens.weight"], "norm.weight": f["model.norm.weight"],
                   "output.weight": f["lm_head.weight"],
                   "layers.0.attention_norm.weight": f["model.layers.0.input_layernorm.weight"],
                   "layers.0.ffn_norm.weight": f["model.layers.0.post_attention_layernorm.weight"],
                   "layers.0.attention.in_proj.weight": torch.cat([f["model.layers.0.self_attn.%s_proj.weight" % n]
                                                                   for n in "qkv"]),
                   "layers.0.attention.out_proj.weight": f["model.layers.0.self_attn.o_proj.weight"],
                   "layers.0.feed_forward.w12.weight": torch.cat([f["model.layers.0.mlp.gate_proj.weight"],
                                                                  f["model.layers.0.mlp.up_proj.weight"]]),
                   "layers.0.feed_forward.w3.weight": f["model.layers.0.mlp.down_proj.weight"]}
            pc.check(set(imp) == set(ref), "%s: import holds the OpenLM names" % name)
            exact = all(bit_equal(imp[k], ref[k]) for k in ref)
            pc.check(exact, "%s: loaded, every tensor == tensor.float() exactly" % name)
            outcomes[name] = "loaded, exact"
        else:
            last = msg.splitlines()[-1] if msg else ""
            print("%s refused: %s" % (name, last))
            pc.check(name not in must_load, "%s may be refused (only F64 F32 F16 BF16 must load)" % name)
            named = name in msg or tname in msg or any(k in msg for k in shapes)
            pc.check(named, "%s: refusal names the dtype or a tensor: %s" % (name, last))
            pc.check(not os.path.exists(os.path.join(out, "config.json")), "%s: refused import wrote no config.json" % name)
            outcomes[name] = "refused: " + last
    print("\nsafetensors-written dtypes through import-hf:")
    for k, v in outcomes.items():
        print("  %-8s %s" % (k, v))
    pc.check(must_load <= set(outcomes), "every floating dtype was tried")


if __name__ == "__main__":
    pc.main(main)
