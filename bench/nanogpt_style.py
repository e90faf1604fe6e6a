"""The plain-PyTorch sides of bench_text.py, each trained like ours on the same batches: the reference
model (`TorchSide`, bench/reference_model.py) and the `gpt` preset written the way nanoGPT writes its model
(`NanoGPTSide`):

torch.nn modules, one fused q/k/v `Linear`, `F.scaled_dot_product_attention(is_causal=True)` (torch's
fused attention kernel, no materialized mask), exact GELU, LayerNorm without bias, the head tied to the
token embedding, autograd for the backward and `torch.optim.AdamW`. It is built from our trainer's
weights, so its loss on a batch equals ours (checked at start), and the clock compares implementations of
one model, not two models. Benchmark code only: lm never imports torch.nn.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.reference_model import reference_loss  # bench/reference_model.py (bench_text puts tests/ on the path)
from lm.data import get_batch
from lm.optim import lr_schedule


class Block(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.fc_out = nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class NanoGPTStyle(nn.Module):
    def __init__(self, params: dict[str, torch.Tensor], cfg):
        super().__init__()
        if (cfg.norm, cfg.norm_placement, cfg.positions, cfg.ffn) != ("layernorm", "pre", "learned", "gelu"):
            raise ValueError("the nanoGPT-style peer is the gpt preset only")
        self.tok_emb = nn.Parameter(params["tok_emb"].detach().clone())
        self.pos_emb = nn.Parameter(params["pos_emb"].detach().clone())
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.d_ff) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        with torch.no_grad():  # ours computes x @ W; nn.Linear computes x @ weight.T
            for i, block in enumerate(self.blocks):
                w = {n: params[f"layers.{i}.{n}"] for n in ("wq", "wk", "wv", "wo", "w1", "w2", "norm1", "norm2")}
                block.qkv.weight.copy_(torch.cat([w["wq"], w["wk"], w["wv"]], 1).T)
                block.proj.weight.copy_(w["wo"].T)
                block.fc.weight.copy_(w["w1"].T)
                block.fc_out.weight.copy_(w["w2"].T)
                block.ln1.weight.copy_(w["norm1"])
                block.ln2.weight.copy_(w["norm2"])
            self.ln_f.weight.copy_(params["norm_f"])
        self.to(params["tok_emb"].dtype)

    def forward(self, ids, targets):
        T = ids.shape[1]
        x = self.tok_emb[ids] + self.pos_emb[:T]
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.tok_emb.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class EagerSide:
    """Training steps of a plain-PyTorch model on the same batches as our trainer (the same seed):
    autograd, clip_grad_norm_, torch.optim.AdamW with our param groups (decay on matrices only) and our
    schedule. A subclass gives `parameters()` and `loss(x, y)`."""

    def __init__(self, ours):
        cfg = self.cfg = ours.config
        self.data, self.val_batches = ours.source, ours.val_batches  # the windows source: .train tokens
        matrices = [p for p in self.parameters() if p.dim() >= 2]
        gains = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": gains, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
        self.batches = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    def train_step(self) -> float:
        cfg = self.cfg
        # labelled for torch.profiler (lm/profile.py counts "lm.profile: " work as outside the graph)
        with torch.profiler.record_function("lm.profile: batch"):
            x, y = get_batch(self.data.train, cfg.batch_size, cfg.context, self.batches)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, y)
        loss.backward()
        if cfg.clip:
            with torch.profiler.record_function("lm.profile: clip"):
                torch.nn.utils.clip_grad_norm_(self.parameters(), cfg.clip)
        for group in self.opt.param_groups:
            group["lr"] = lr_schedule(self.step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
        self.opt.step()
        self.step += 1
        return loss.item()

    def evaluate(self) -> float:
        with torch.no_grad():
            losses = [self.loss(x, y).item() for x, y in self.val_batches]
        return sum(losses) / len(losses)


class TorchSide(EagerSide):
    """The plain-PyTorch reference (bench/reference_model.py), parameters copied from our trainer."""

    def __init__(self, ours):
        self.model_config = ours.model.config
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in ours.model.params.items()}
        super().__init__(ours)

    def parameters(self):
        return list(self.params.values())

    def loss(self, x, y):
        return reference_loss(self.params, self.model_config, x, y, ignore_index=-100)


class NanoGPTSide(EagerSide):
    """The nanoGPT-style model, built from our trainer's weights."""

    def __init__(self, ours):
        self.model = NanoGPTStyle(ours.model.params, ours.model.config)
        super().__init__(ours)

    def parameters(self):
        return list(self.model.parameters())

    def loss(self, x, y):
        return self.model(x, y)
