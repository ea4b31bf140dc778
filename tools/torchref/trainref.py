#!/usr/bin/env python3
"""PyTorch CPU reference for `persona bench train`.

Trains a Llama-style model (RMSNorm, half-split RoPE, grouped-query causal
attention, SwiGLU MLP, tied or untied head) on random tokens with the same
step persona's trainer takes: forward, backward, global-norm clipping, AdamW.
It prints one JSON object with the measured tokens per second, so the Go
benchmark can put both numbers side by side in the same run.

Only torch is needed (Debian: python3-torch; install libopenblas0-pthread too,
or torch runs on the slow reference BLAS). Written for torch 1.13, the Debian
version: no scaled_dot_product_attention, no torch.compile.

    python3 tools/torchref/trainref.py --hidden 128 --ffn 384 --layers 4 \
        --heads 4 --kv-heads 4 --vocab 1024 --seq-len 256 --rows 4 --steps 10
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hd, theta):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)  # (T, hd/2)
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    # x: (B, H, T, hd), half-split pairs (i, i + hd/2) as Hugging Face does.
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        D, H, KV, hd = a.hidden, a.heads, a.kv_heads, a.head_dim
        self.H, self.KV, self.hd = H, KV, hd
        self.attn_norm = RMSNorm(D, a.eps)
        self.q = nn.Linear(D, H * hd, bias=False)
        self.k = nn.Linear(D, KV * hd, bias=False)
        self.v = nn.Linear(D, KV * hd, bias=False)
        self.o = nn.Linear(H * hd, D, bias=False)
        self.ffn_norm = RMSNorm(D, a.eps)
        self.gate = nn.Linear(D, a.ffn, bias=False)
        self.up = nn.Linear(D, a.ffn, bias=False)
        self.down = nn.Linear(a.ffn, D, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        att = F.softmax(s, dim=-1) @ v
        x = x + self.o(att.transpose(1, 2).reshape(B, T, self.H * self.hd))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab, a.hidden)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden, a.eps)
        self.head = None if a.tied else nn.Linear(a.hidden, a.vocab, bias=False)
        cos, sin = rope_tables(a.seq_len, a.head_dim, a.rope_theta)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        mask = torch.full((a.seq_len, a.seq_len), float("-inf")).triu(1)
        self.register_buffer("mask", mask)

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        x = self.norm(x)
        w = self.embed.weight if self.head is None else self.head.weight
        return x @ w.t()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--ffn", type=int, default=384)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=0, help="default: heads")
    p.add_argument("--head-dim", type=int, default=0, help="default: hidden/heads")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--untied", action="store_true")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--rows", type=int, default=4, help="rows per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up step)")
    p.add_argument("--threads", type=int, default=0, help="default: torch's choice")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-denormals", action="store_true",
                   help="leave denormal floats on (by default they are flushed to zero: on this CPU they made "
                        "torch's CPU kernels up to 10x slower)")
    a = p.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.head_dim = a.head_dim or a.hidden // a.heads
    a.tied = not a.untied
    a.eps, a.rope_theta = 1e-5, 10000.0
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.set_flush_denormal(not a.keep_denormals)

    model = Llama(a)
    # GPT-2 initialisation, as persona's trainer uses from scratch: N(0, 0.02²)
    # matrices, residual output projections scaled by 1/sqrt(2·layers).
    for name, t in model.named_parameters():
        if t.dim() == 2:
            std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("o.weight", "down.weight")) else 0.02
            nn.init.normal_(t, std=std)
    params = sum(t.numel() for t in model.parameters())
    decay = [t for t in model.parameters() if t.dim() == 2]
    other = [t for t in model.parameters() if t.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(a.vocab, (a.rows, a.seq_len))
    targets = torch.randint(a.vocab, (a.rows, a.seq_len))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, a.vocab), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step()  # warm-up
    start = time.perf_counter()
    loss = 0.0
    for _ in range(a.steps):
        loss = step()
    secs = time.perf_counter() - start
    tokens = a.steps * a.rows * a.seq_len
    print(json.dumps({"params": params, "steps": a.steps, "tokens": tokens, "seconds": secs,
                      "tok_s": tokens / secs, "final_loss": loss, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "flush_denormal": not a.keep_denormals}))


if __name__ == "__main__":
    main()
