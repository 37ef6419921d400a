"""Peer test: Hugging Face transformers (the real LlamaForCausalLM) against openlm.

1. A tiny run trained by `openlm train` (fp32, GQA), exported with `openlm export-hf --format llama`,
   loads with AutoModelForCausalLM; its logits on token sequences equal `openlm eval --logits-out`'s
   (max |diff| / max |logit| < 1e-4), its loss equals eval's, and greedy generation of 20 tokens
   (`openlm generate --temperature 0 --json` vs `model.generate(do_sample=False)`) gives the same ids.
2. Llama checkpoints made by transformers itself (random init, GQA, several shards via
   save_pretrained(max_shard_size=...), rope_theta / rms_norm_eps / tying / intermediate_size varied)
   import with `openlm import-hf` and give transformers' logits through `openlm eval --logits-out`,
   both from the import and from the HF directory directly.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

TOL = 1e-4


def rel_diff(a, b):
    return float((a - b).abs().max() / b.abs().max())


def main():
    a = pc.args()
    torch, transformers, safetensors_torch = pc.need("torch", "transformers", "safetensors.torch")
    print("torch %s, transformers %s" % (torch.__version__, transformers.__version__))
    torch.manual_seed(0)
    torch.set_num_threads(2)
    ob = a.openlm

    def ours_logits(source, tokfile, name):
        out = os.path.join(a.work, name + ".safetensors")
        _, so, _ = pc.openlm(ob, "eval", source, "--tokens", tokfile, "--logits-out", out, "--json")
        return safetensors_torch.load_file(out)["logits"], json.loads(so.strip().splitlines()[-1])

    def theirs_logits(model, seqs):
        with torch.no_grad():
            return model(torch.tensor(seqs)).logits.float()

    # ---- 1. our trained run -> export-hf llama -> transformers --------------------------------------
    run, _ = pc.train_tiny(ob, a.work, os.path.join(a.work, "run"), steps=40, extra={"optim.lr": 1e-2})
    hf = os.path.join(a.work, "hf")
    pc.openlm(ob, "export-hf", run, hf, "--format", "llama")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    model.eval()
    pc.check(type(model).__name__ == "LlamaForCausalLM", "export loads as LlamaForCausalLM (%s)" % type(model).__name__)
    cfg = model.config
    pc.check(cfg.num_key_value_heads == 2 and cfg.num_attention_heads == 4, "GQA config read by transformers")
    g = torch.Generator().manual_seed(1)
    V = cfg.vocab_size
    seqs = torch.randint(0, V, (3, 40), generator=g).tolist()
    tokfile = os.path.join(a.work, "tokens.txt")
    pc.write_tokens(tokfile, seqs)
    ours, ev = ours_logits(run, tokfile, "ours_run")
    theirs = theirs_logits(model, seqs)
    pc.check(tuple(ours.shape) == (3, 40, V) and ours.dtype == torch.float32,
             "--logits-out shape [3, 40, %d] fp32 (got %s %s)" % (V, tuple(ours.shape), ours.dtype))
    d = rel_diff(ours, theirs)
    print("trained run: max|ours - transformers| / max|logit| = %.3g (max |logit| %.3g)" % (d, theirs.abs().max()))
    pc.check(d < TOL, "trained run logits equal transformers' within %g (%.3g)" % (TOL, d))
    # eval's loss is the mean next-token CE of seq[:-1] -> seq[1:]; transformers' logits at [:-1] give it too.
    # (inputs seq[:-1] vs the whole seq give the same logits at those positions: causal attention)
    t = torch.tensor(seqs)
    ce = torch.nn.functional.cross_entropy(theirs[:, :-1].reshape(-1, V), t[:, 1:].reshape(-1)).item()
    pc.check(abs(ce - ev["loss"]) < 1e-4 * max(1.0, abs(ce)) and ev["tokens"] == 3 * 39,
             "eval loss %.6f equals transformers' CE %.6f over %d tokens" % (ev["loss"], ce, ev["tokens"]))
    # The HF directory itself through openlm eval (load_for_inference reads HF dirs) gives the same.
    ours_hf, _ = ours_logits(hf, tokfile, "ours_hfdir")
    pc.check(rel_diff(ours_hf, ours) == 0.0, "eval of the export directory == eval of the run (bit-exact)")

    # unequal lengths are refused, naming the problem, and nothing is written
    bad = os.path.join(a.work, "unequal.txt")
    pc.write_tokens(bad, [seqs[0], seqs[1][:30]])
    out = os.path.join(a.work, "unequal.safetensors")
    rc, so, se = pc.openlm(ob, "eval", run, "--tokens", bad, "--logits-out", out, expect_ok=False)
    pc.check(rc != 0 and "equal length" in (so + se) and not os.path.exists(out),
             "--logits-out refuses unequal lengths: %s" % (so + se).strip().splitlines()[-1:])

    # greedy generation: 20 tokens
    _, so, _ = pc.openlm(ob, "generate", run, "--prompt", "The old farmer sings", "--temperature", "0",
                         "--max-new-tokens", "20", "--json")
    gen = json.loads(so.strip().splitlines()[-1])
    prompt, ours_ids = gen["prompt_ids"], gen["ids"]
    pc.check(len(prompt) > 0, "prompt encodes to %d ids" % len(prompt))
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20)
    hf_ids = out[0, len(prompt):].tolist()
    print("ours        ", ours_ids)
    print("transformers", hf_ids)
    if ours_ids != hf_ids:  # report the first difference and how close the top-2 logits were there
        i = next((k for k in range(min(len(ours_ids), len(hf_ids))) if ours_ids[k] != hf_ids[k]),
                 min(len(ours_ids), len(hf_ids)))
        with torch.no_grad():
            lg = model(torch.tensor([prompt + hf_ids[:i]])).logits[0, -1]
        top = lg.topk(2).values
        print("first difference at generated token %d; transformers' top-2 logit margin there %.3g" %
              (i, float(top[0] - top[1])))
    pc.check(ours_ids == hf_ids and len(ours_ids) > 0,
             "greedy generation: openlm and transformers give the same %d ids" % len(ours_ids))
    eos = cfg.eos_token_id
    if len(ours_ids) < 20:
        pc.check(ours_ids[-1] == eos, "generation stopped early only at eos %s" % eos)

    # ---- 2. transformers' own checkpoints -> import-hf -> openlm eval --------------------------------
    variants = [
        # name, config overrides
        ("tied_theta5e5_eps1e-6", dict(tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-6,
                                       intermediate_size=160)),
        ("untied_ffn96", dict(tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5,
                              intermediate_size=96)),
    ]
    for name, over in variants:
        c = transformers.LlamaConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2,
                                     bos_token_id=1, eos_token_id=2, **over)
        torch.manual_seed(3)
        m = transformers.LlamaForCausalLM(c).float().eval()
        with torch.no_grad():  # norm gains away from 1 so that they matter
            for n, p in m.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
        src = os.path.join(a.work, "hf_" + name)
        m.save_pretrained(src, max_shard_size="40KB")
        files = sorted(os.listdir(src))
        print(name, files)
        shards = [f for f in files if f.endswith(".safetensors")]
        pc.check(len(shards) >= 2 and "model.safetensors.index.json" in files,
                 "%s: transformers wrote %d shards + index" % (name, len(shards)))
        nat = os.path.join(a.work, "native_" + name)
        rc, so, se = pc.openlm(ob, "import-hf", src, nat, expect_ok=False)
        if rc != 0:
            print("import-hf refused a transformers %s Llama checkpoint:\n%s%s" % (transformers.__version__, so, se))
            print("its config.json:\n" + open(os.path.join(src, "config.json")).read())
        pc.check(rc == 0, "%s: import-hf accepts transformers' checkpoint" % name)
        seqs2 = torch.randint(0, 96, (2, 48), generator=g).tolist()
        tf = os.path.join(a.work, "tokens_%s.txt" % name)
        pc.write_tokens(tf, seqs2)
        theirs2 = theirs_logits(m, seqs2)
        for label, source in (("import", nat), ("hf dir", src)):
            ours2, _ = ours_logits(source, tf, "ours_%s_%s" % (name, label.replace(" ", "_")))
            d = rel_diff(ours2, theirs2)
            print("%s via %s: max|ours - transformers| / max|logit| = %.3g (max |logit| %.3g)"
                  % (name, label, d, theirs2.abs().max()))
            pc.check(d < TOL, "%s via %s: logits equal transformers' within %g (%.3g)" % (name, label, TOL, d))


if __name__ == "__main__":
    pc.main(main)
