"""Peer check of `openlm eval --task` (downstream, CORE-style scoring, docs/EVALUATION.md) against
transformers: a tiny trained run, exported with `export-hf --format llama`, scores multiple_choice,
schema and language_modeling tasks (0- and 2-shot, with contexts long enough to be truncated); every
choice's token count and summed log-likelihood from `--per-example` must equal what
`LlamaForCausalLM` gives on the prompt built here, independently, from the documented rules, with
the `tokenizers` package for the byte-level BPE (GPT-NeoX style: continuations get a leading space);
pred, pred_sum, gold and the summary's acc / acc_sum / centered_acc must follow from those numbers.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

WS = " \t\n\r\x0b\x0c"
SEQ = 64  # LLAMA_MODEL seq_len


def fewshot_indices(n, k, i, seed):
    """The documented draw: splitmix64 partial Fisher-Yates over the indices other than i, sorted."""
    m = n - 1
    k = min(k, m)
    if k <= 0:
        return []
    M = (1 << 64) - 1
    g = 0x9E3779B97F4A7C15
    state = (seed ^ ((g * (i + 1)) & M) ^ ((n << 32) & M)) & M
    moved = {}
    out = []
    for t in range(k):
        state = (state + g) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z = z ^ (z >> 31)
        r = t + z % (m - t)
        vr, vt = moved.get(r, r), moved.get(t, t)
        moved[r], moved[t] = vt, vr
        out.append(vr if vr < i else vr + 1)
    return sorted(out)


def records():
    words = ["the cat", "a dog", "was running", "in the garden", "of the house", "and then", "it is", "they said",
             "very quickly", "on a table", "to the sea", "for a while"]
    mc, schema, lm = [], [], []
    for i in range(9):
        w = words[i % len(words)]
        query = ("long story " * 12 + w) if i == 4 else w + " " + words[(i + 3) % len(words)]
        choices = [words[(i + c * 5) % len(words)] for c in range(3 + i % 2)]
        mc.append({"query": query + "  ", "choices": choices, "gold": i % len(choices)})
        schema.append({"context_options": [words[(i + c) % len(words)] for c in range(2)],
                       "continuation": words[(i + 7) % len(words)], "gold": i % 2})
        lm.append({"context": query, "continuation": words[(i + 1) % len(words)]})
    return {"multiple_choice": mc, "schema": schema, "language_modeling": lm}


def main():
    a = pc.args()
    torch, transformers, tokenizers = pc.need("torch", "transformers", "tokenizers")
    ob = a.openlm
    run, _ = pc.train_tiny(ob, a.work, os.path.join(a.work, "run"), steps=6)
    hf = os.path.join(a.work, "hf")
    pc.openlm(ob, "export-hf", run, hf, "--format", "llama")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    tok_path = os.path.join(a.source, "tests", "tokenizer", "data", "neox_tiny_tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(tok_path)

    def enc(s):
        return tok.encode(s, add_special_tokens=False).ids if s else []

    space = len(enc(" a")) == 1
    pc.check(space, "the NeoX test tokenizer encodes ' a' as one token")

    def score(ctx, cont):
        ctx = ctx[max(0, len(ctx) + len(cont) - SEQ):]  # truncate the context from the left
        ids = torch.tensor([ctx + cont[:-1]])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), -1)
        rows = lp[len(ctx) - 1:len(ctx) - 1 + len(cont)]
        s = sum(float(rows[j, c]) for j, c in enumerate(cont))
        greedy = all(int(rows[j].argmax()) == c for j, c in enumerate(cont))
        return len(cont), s, greedy

    for typ, recs in records().items():
        path = os.path.join(a.work, typ + ".jsonl")
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        for k in (0, 2):
            per = os.path.join(a.work, "%s_%d.per.jsonl" % (typ, k))
            _, out, _ = pc.openlm(ob, "eval", run, "--task", path, "--tokenizer", tok_path, "--num-fewshot", k,
                                  "--json", "--no-record", "--per-example", per)
            summary = json.loads(out.strip().splitlines()[-1])
            got = [json.loads(l) for l in open(per)]
            pc.check(len(got) == len(recs), "%s: %d per-example lines" % (typ, len(recs)))
            st = lambda s: s.strip(WS)  # noqa: E731
            acc = acc_sum = inv = 0.0
            for i, r in enumerate(recs):
                def shown(x):
                    if typ == "multiple_choice":
                        return st(x["query"]) + " " + st(x["choices"][x["gold"]])
                    if typ == "schema":
                        return st(x["context_options"][x["gold"]]) + " " + st(x["continuation"])
                    return st(x["context"]) + " " + st(x["continuation"])
                prefix = ""
                for j in fewshot_indices(len(recs), k, i, 1234):
                    prefix += ("\n" if prefix else "") + shown(recs[j])
                lead = "\n" if prefix else ""
                cont = lambda c: enc(c if c.startswith(" ") else " " + c)  # noqa: E731
                if typ == "multiple_choice":
                    reqs = [(enc(prefix) + enc((lead + st(r["query"]) + " ").rstrip(WS)), cont(st(c)))
                            for c in r["choices"]]
                elif typ == "schema":
                    reqs = [(enc(prefix) + enc(lead + st(c) if prefix else st(c)), cont(st(r["continuation"])))
                            for c in r["context_options"]]
                else:
                    reqs = [(enc(prefix) + enc((lead + st(r["context"]) + " ").rstrip(WS)), cont(st(r["continuation"])))]
                ref = [score(c, d) for c, d in reqs]
                g = got[i]
                where = "%s %d-shot example %d" % (typ, k, i)
                pc.check(len(g["choices"]) == len(ref), where + ": number of choices")
                for c, (n, s, greedy) in enumerate(ref):
                    gc = g["choices"][c]
                    pc.check(gc["tokens"] == n, "%s choice %d: tokens %s vs %d" % (where, c, gc["tokens"], n))
                    pc.check(abs(gc["sum_logprob"] - s) < 1e-4 * max(1.0, abs(s)),
                             "%s choice %d: sum_logprob %r vs transformers %r" % (where, c, gc["sum_logprob"], s))
                    pc.check(abs(gc["mean_logprob"] - s / n) < 1e-4 * max(1.0, abs(s / n)), where + ": mean")
                    pc.check(gc["greedy_match"] == greedy, where + ": greedy_match")
                if typ == "language_modeling":
                    pred = pred_sum = 0 if ref[0][2] else -1
                    gold = 0
                else:
                    means = [s / n for n, s, _ in ref]
                    sums = [s for _, s, _ in ref]
                    pred, pred_sum, gold = means.index(max(means)), sums.index(max(sums)), r["gold"]
                    # near-ties could flip on 1e-6 differences: only compare clear decisions
                    if sorted(means)[-1] - sorted(means)[-2] > 1e-4:
                        pc.check(g["pred"] == pred, where + ": pred %s vs %s" % (g["pred"], pred))
                    if sorted(sums)[-1] - sorted(sums)[-2] > 1e-4:
                        pc.check(g["pred_sum"] == pred_sum, where + ": pred_sum")
                pc.check(g["gold"] == gold, where + ": gold")
                acc += g["pred"] == gold
                acc_sum += g["pred_sum"] == gold
                inv += 1.0 / len(ref)
            n = float(len(recs))
            rb = 0.0 if typ == "language_modeling" else inv / n
            pc.check(summary["n"] == len(recs) and abs(summary["acc"] - acc / n) < 1e-12 and
                     abs(summary["acc_sum"] - acc_sum / n) < 1e-12 and
                     abs(summary["centered_acc"] - (acc / n - rb) / (1 - rb)) < 1e-12,
                     "%s %d-shot summary %s" % (typ, k, summary))
            print("%s %d-shot: %d examples equal transformers (acc %.3f)" % (typ, k, len(recs), summary["acc"]),
                  flush=True)


if __name__ == "__main__":
    pc.main(main)
