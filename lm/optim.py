"""Optimizers on plain tensors: SGD and AdamW, each `.step(params, grads)` updating params in place;
the learning-rate schedule (warmup, cosine, floor) and global-norm gradient clipping.

They take the gradients the autodiff graph computed (not PyTorch's autograd). AdamW follows the same
update as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments), with weight decay on a
chosen subset (matrices, not gains: `decay_mask`); tests check it, the schedule and the clipping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Tensor = torch.Tensor


class SGD:
    """p <- p - lr * g."""

    def __init__(self, lr: float = 0.05):
        self.lr = lr

    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        torch._foreach_add_(list(params), list(grads), alpha=-self.lr)


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        decay_mask: Sequence[bool] | None = None,
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.decay_mask = None if decay_mask is None else list(decay_mask)  # None: decay every parameter
        self.t = 0  # steps taken
        self.m: list[Tensor] | None = None  # first moments, one per parameter
        self.v: list[Tensor] | None = None  # second moments

    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        params, grads = list(params), list(grads)
        if self.m is None:
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
        self.t += 1
        b1, b2 = self.betas
        decayed = params if self.decay_mask is None else [p for p, d in zip(params, self.decay_mask) if d]
        if decayed and self.weight_decay:
            torch._foreach_mul_(decayed, 1 - self.lr * self.weight_decay)  # p <- p (1 - lr wd)
        torch._foreach_lerp_(self.m, grads, 1 - b1)  # m <- b1 m + (1 - b1) g
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - b2)  # v <- b2 v + (1 - b2) g^2
        # p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with bias corrections bc = 1 - beta^t
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, self.m, denom, -self.lr / bc1)

    def state_dict(self) -> dict:
        """Step count and moments (what a checkpoint needs to continue exactly)."""
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`'s values (copied: the two optimizers share no tensors)."""
        copy = lambda xs: None if xs is None else [x.clone() for x in xs]  # noqa: E731
        self.t, self.m, self.v = int(state["t"]), copy(state["m"]), copy(state["v"])


def matrices_only(params: dict[str, Tensor]) -> list[bool]:
    """The weight-decay mask of nanoGPT and most recipes: decay matrices (2-D: embeddings and weights),
    not 1-D gains, which decay would pull toward 0 instead of their neutral 1."""
    return [p.dim() >= 2 for p in params.values()]


def lr_schedule(step: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The learning rate of step `step` (0-based): linear warmup over `warmup` steps ((step + 1) /
    (warmup + 1) of max_lr), cosine from max_lr down to min_lr at step `total`, then min_lr."""
    if step < warmup:
        return max_lr * (step + 1) / (warmup + 1)
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def clip_grad_norm_(grads: Sequence[Tensor], max_norm: float) -> float:
    """Scale `grads` in place so their global L2 norm is at most `max_norm` (as
    torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6), capped at 1); returns the norm before."""
    grads = list(grads)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    factor = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, factor)
    return float(norm)


def make_optimizer(name: str, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8):
    """'sgd' or 'adamw' by name (what a config or a command line holds)."""
    if name == "sgd":
        return SGD(lr)
    if name == "adamw":
        return AdamW(lr, betas, eps, weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use 'sgd' or 'adamw'")
