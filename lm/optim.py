"""Optimizers on plain tensors: SGD and AdamW, each `.step(params, grads)` updating params in place.

They take the gradients the autodiff graph computed (not PyTorch's autograd). AdamW follows the same
update as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments); a test checks it.
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
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
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
        torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)  # p <- p (1 - lr wd)
        torch._foreach_lerp_(self.m, grads, 1 - b1)  # m <- b1 m + (1 - b1) g
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - b2)  # v <- b2 v + (1 - b2) g^2
        # p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with bias corrections bc = 1 - beta^t
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, self.m, denom, -self.lr / bc1)


def make_optimizer(name: str, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8):
    """'sgd' or 'adamw' by name (what a config or a command line holds)."""
    if name == "sgd":
        return SGD(lr)
    if name == "adamw":
        return AdamW(lr, betas, eps, weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use 'sgd' or 'adamw'")
