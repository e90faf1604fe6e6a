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
from dataclasses import dataclass

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


@dataclass
class FlatGroup:
    """A parameter group's values, moments and a gradient buffer, each one flat buffer (the group's
    parameters in order), so that a step of the whole group is one kernel per operation."""

    params: Tensor
    m: Tensor
    v: Tensor
    grads: Tensor


def flatten_(tensors: Sequence[Tensor]) -> Tensor | None:
    """Move `tensors` into one new flat buffer and return it: each tensor object stays itself, its values now
    a view of the buffer (Tensor.set_), so whoever holds it sees every update made to the buffer. None (and
    nothing moved) when they differ in dtype or device."""
    if not tensors or len({(t.dtype, t.device) for t in tensors}) > 1:
        return None
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    offset = 0
    for t in tensors:
        t.set_(flat.untyped_storage(), offset, t.shape)  # contiguous, at its place in the buffer
        offset += t.numel()
    return flat


def views(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """`flat` cut into views shaped like each of `like`, in order."""
    return [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in like]), like)]


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it.

    `groups` ([{"params": [names], "weight_decay": wd}, ...]) give each parameter its weight decay; without
    them every parameter decays by `weight_decay`. State, by name: the steps taken and both moments.

    Each group's parameters are moved into one flat buffer (`flatten_`: the caller's tensors stay the same
    objects, now views of it) beside flat moments, so a step of the whole group is 8 kernels over 4 buffers,
    not 8 per parameter (on the CPU torch's multi-tensor ops loop over the tensors: a nanoGPT step's AdamW
    took 1.8 ms in ~280 small kernels). A group whose parameters are not all at the same step (one had no
    gradient) is updated per parameter through the views: the same formula, element by element."""

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
        self.m: dict[str, Tensor] = {}  # first moments (views of the group's flat moments)
        self.v: dict[str, Tensor] = {}  # second moments
        self.flat: list[FlatGroup | None] = []  # per group; None: its parameters differ in dtype or device
        for group in self.groups:
            tensors = [self.params[n] for n in group["params"]]
            flat = flatten_(tensors)
            if flat is None:
                self.m.update({n: torch.zeros_like(p) for n, p in zip(group["params"], tensors)})
                self.v.update({n: torch.zeros_like(p) for n, p in zip(group["params"], tensors)})
                self.flat.append(None)
                continue
            m, v, grads = torch.zeros_like(flat), torch.zeros_like(flat), torch.empty_like(flat)
            self.m.update(zip(group["params"], views(m, tensors)))
            self.v.update(zip(group["params"], views(v, tensors)))
            self.flat.append(FlatGroup(flat, m, v, grads))

    def step(self, grads: Mapping[str, Tensor | None]) -> None:
        for group, flat in zip(self.groups, self.flat):
            names = [n for n in group["params"] if grads.get(n) is not None]
            for n in names:
                self.steps[n] = self.steps.get(n, 0) + 1
            # parameters at the same step share their bias corrections: one update per step count
            for t in sorted({self.steps[n] for n in names}):
                same = [n for n in names if self.steps[n] == t]
                if flat is not None and len(same) == len(group["params"]):  # the whole group: its flat buffers
                    torch.cat([grads[n].reshape(-1) for n in same], out=flat.grads)
                    self._update([flat.params], [flat.grads], [flat.m], [flat.v], t, group["weight_decay"])
                else:
                    params, m, v = ([d[n] for n in same] for d in (self.params, self.m, self.v))
                    self._update(params, [grads[n] for n in same], m, v, t, group["weight_decay"])

    def _update(self, params: list[Tensor], grads: list[Tensor], m: list[Tensor], v: list[Tensor], t: int,
                weight_decay: float) -> None:  # fmt: skip
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
        """Steps and moments (copies) by parameter name, for the parameters that have taken a step (what a
        checkpoint needs to continue exactly)."""
        return {
            "steps": dict(self.steps),
            "m": {n: self.m[n].clone() for n in self.steps},
            "v": {n: self.v[n].clone() for n in self.steps},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`'s values (copied into this optimizer's moments, on its device)."""
        unknown = set(state["m"]) - set(self.params)
        if unknown:
            raise ValueError(f"the optimizer state names unknown parameters: {sorted(unknown)[:5]}")
        self.steps = {n: int(t) for n, t in state["steps"].items()}
        for moments, saved in ((self.m, state["m"]), (self.v, state["v"])):
            for n, x in moments.items():
                if n in saved:
                    x.copy_(saved[n])
                else:  # no step taken yet: a fresh moment
                    x.zero_()


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
