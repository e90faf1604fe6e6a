"""Optimizers on named tensors: SGD and AdamW, each `.step(grads)` updating its parameters in place from
a {name: gradient} mapping; the learning-rate schedule (warmup, cosine, floor) and global-norm clipping.

They take the gradients the autodiff graph computed (not PyTorch's autograd). AdamW computes the same
update as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments), with parameter groups by
name (`decay_groups`: decay on matrices, none on gains) and its state by parameter name; a parameter
whose gradient is None or absent is skipped, as torch skips a parameter whose `.grad` is None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

Tensor = torch.Tensor


class SGD:
    """p <- p - lr * g."""

    def __init__(self, params: Mapping[str, Tensor], lr: float = 0.05):
        self.params, self.lr = dict(params), lr

    def step(self, grads: Mapping[str, Tensor | None]) -> None:
        names = [n for n in self.params if grads.get(n) is not None]
        torch._foreach_add_([self.params[n] for n in names], [grads[n] for n in names], alpha=-self.lr)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def decay_groups(params: Mapping[str, Tensor], weight_decay: float) -> list[dict]:
    """The parameter groups of nanoGPT and most recipes: weight decay on matrices (2-D: embeddings and
    weights), none on 1-D gains, which decay would pull toward 0 instead of their neutral 1."""
    return [
        {"params": [n for n, p in params.items() if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [n for n, p in params.items() if p.dim() < 2], "weight_decay": 0.0},
    ]


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it.

    `groups` ([{"params": [names], "weight_decay": wd}, ...]) give each parameter its weight decay; without
    them every parameter decays by `weight_decay`. State, by name: the steps taken and both moments."""

    def __init__(
        self,
        params: Mapping[str, Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        groups: Sequence[dict] | None = None,
    ):
        self.params = dict(params)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.groups = [dict(g) for g in groups] if groups is not None else [
            {"params": list(self.params), "weight_decay": weight_decay}
        ]  # fmt: skip
        named = [n for g in self.groups for n in g["params"]]
        if sorted(named) != sorted(self.params):
            unknown, missing = set(named) - set(self.params), set(self.params) - set(named)
            raise ValueError(
                f"each parameter must be in exactly one group: unknown {sorted(unknown)}, missing {sorted(missing)}"
                if unknown or missing else "a parameter is in two groups"
            )  # fmt: skip
        self.steps: dict[str, int] = {}  # name -> steps taken (bias correction is per parameter, as torch's)
        self.m: dict[str, Tensor] = {}  # first moments
        self.v: dict[str, Tensor] = {}  # second moments

    def step(self, grads: Mapping[str, Tensor | None]) -> None:
        for group in self.groups:
            names = [n for n in group["params"] if grads.get(n) is not None]
            for n in names:
                if n not in self.m:
                    p = self.params[n]
                    self.m[n], self.v[n], self.steps[n] = torch.zeros_like(p), torch.zeros_like(p), 0
                self.steps[n] += 1
            # parameters at the same step share their bias corrections: one foreach call per step count
            for t in sorted({self.steps[n] for n in names}):
                same = [n for n in names if self.steps[n] == t]
                self._update(same, [grads[n] for n in same], t, group["weight_decay"])

    def _update(self, names: list[str], grads: list[Tensor], t: int, weight_decay: float) -> None:
        params, m, v = [self.params[n] for n in names], [self.m[n] for n in names], [self.v[n] for n in names]
        b1, b2 = self.betas
        if weight_decay:
            torch._foreach_mul_(params, 1 - self.lr * weight_decay)  # p <- p (1 - lr wd)
        torch._foreach_lerp_(m, grads, 1 - b1)  # m <- b1 m + (1 - b1) g
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, 1 - b2)  # v <- b2 v + (1 - b2) g^2
        # p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with bias corrections bc = 1 - beta^t
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom, -self.lr / bc1)

    def state_dict(self) -> dict:
        """Steps and moments by parameter name (what a checkpoint needs to continue exactly)."""
        return {"steps": dict(self.steps), "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`'s values (copied onto each parameter's device: no tensor is shared)."""
        unknown = set(state["m"]) - set(self.params)
        if unknown:
            raise ValueError(f"the optimizer state names unknown parameters: {sorted(unknown)[:5]}")
        self.steps = {n: int(t) for n, t in state["steps"].items()}
        self.m = {n: x.to(self.params[n].device, copy=True) for n, x in state["m"].items()}
        self.v = {n: x.to(self.params[n].device, copy=True) for n, x in state["v"].items()}


def lr_schedule(step: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The learning rate of step `step` (0-based): linear warmup over `warmup` steps ((step + 1) /
    (warmup + 1) of max_lr), cosine from max_lr down to min_lr at step `total`, then min_lr. With
    min_lr == max_lr and no warmup it is constant."""
    if step < warmup:
        return max_lr * (step + 1) / (warmup + 1)
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def clip_grad_norm_(grads: Sequence[Tensor], max_norm: float) -> float:
    """Scale `grads` in place so their global L2 norm is at most `max_norm` (as
    torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6), capped at 1); returns the norm before."""
    norm = grad_norm(grads)
    torch._foreach_mul_(list(grads), torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return float(norm)


def grad_norm(grads: Sequence[Tensor]) -> Tensor:
    """The global L2 norm of all gradients, as a 0-d tensor."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads))))
