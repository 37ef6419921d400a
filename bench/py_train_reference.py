#!/usr/bin/python3
"""Independent PyTorch reference for bench_train: the same OpenLM-style transformer (pre-norm,
LayerNorm with gain+bias, fused qkv, rotary halves, causal attention, SwiGLU, untied output),
AdamW, random tokens. Prints tokens/s as one JSON line. Written for Debian's python3-torch 1.13
(no F.scaled_dot_product_attention there, so attention is spelled out, as on our 1.13 path)."""
import json, math, resource, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

def main():
    a = dict(arg.split("=") for arg in sys.argv[1:])
    d, L, H = int(a["dim"]), int(a["layers"]), int(a["heads"])
    T, V, B = int(a["seq"]), int(a["vocab"]), int(a["batch"])
    steps, warm = int(a.get("steps", 10)), int(a.get("warmup", 2))
    if "threads" in a:
        torch.set_num_threads(int(a["threads"]))
    bf16 = a.get("precision", "fp32") == "bf16"  # CPU autocast, fp32 master weights
    hd = d // H
    hidden = 256 * ((int(8 * d / 3) + 255) // 256)
    torch.manual_seed(0)

    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(T).float(), inv)
    cos = torch.cat([ang, ang], -1).cos()[None, :, None, :]
    sin = torch.cat([ang, ang], -1).sin()[None, :, None, :]
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def rot(x):
        x1, x2 = x.chunk(2, -1)
        return x * cos + torch.cat([-x2, x1], -1) * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.out = nn.Linear(d, d, bias=False)
            self.w12 = nn.Linear(d, 2 * hidden, bias=False)
            self.w3 = nn.Linear(hidden, d, bias=False)

        def forward(self, x):
            q, k, v = self.qkv(self.n1(x)).chunk(3, -1)
            q, k, v = (t.reshape(x.shape[0], T, H, hd) for t in (q, k, v))
            q, k = rot(q).transpose(1, 2), rot(k).transpose(1, 2)
            s = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            att = s.masked_fill(~mask, float("-inf")).softmax(-1) @ v.transpose(1, 2)
            h = x + self.out(att.transpose(1, 2).reshape(x.shape[0], T, d))
            g, u = self.w12(self.n2(h)).chunk(2, -1)
            return h + self.w3(F.silu(g) * u)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, d)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, V, bias=False)

        def forward(self, t):
            x = self.emb(t)
            for b in self.blocks:
                x = b(x)
            return self.head(self.norm(x)).float()

    m = Model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.033)
    tokens = torch.randint(0, V, (B, T + 1))
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = m(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        loss = loss + 1e-4 * torch.logsumexp(logits, -1).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    for _ in range(warm):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"tokens_per_s": B * T * steps / dt, "threads": torch.get_num_threads(),
                      "params": sum(p.numel() for p in m.parameters()), "torch": torch.__version__,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))

if __name__ == "__main__":
    main()
