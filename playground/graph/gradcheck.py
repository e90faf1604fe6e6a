"""The Graph page's gradient check: the same parsed expression run in plain torch (float64, autograd)
as an oracle, compared with the engine's gradients. Display only: the engine never uses autograd.

The parsed tree is walked with `autodiff.expr.interpret`, mapping each function name to its torch
counterpart (no `eval`), so the oracle sees exactly the expression the engine saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autodiff.expr import interpret
from playground.graph.logic import Exploration

Tensor = torch.Tensor


def _reduce(fn):
    def reduce(a: Tensor, dim=None, keepdim: bool = False) -> Tensor:
        dims = tuple(range(a.ndim)) if dim is None else dim
        return fn(a, dim=dims, keepdim=keepdim)

    return reduce


def _slice(a: Tensor, dim: int, start=None, end=None) -> Tensor:
    index = [slice(None)] * a.ndim
    index[dim] = slice(start, end)
    return a[tuple(index)]


TORCH = {  # language function name -> torch function taking (tensor args..., **attrs)
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "gelu": F.gelu,
    "silu": F.silu,
    "abs": torch.abs,
    "sum": _reduce(torch.sum),
    "mean": _reduce(torch.mean),
    "max": _reduce(torch.amax),
    "softmax": lambda a, dim: torch.softmax(a, dim=dim),
    "log_softmax": lambda a, dim: torch.log_softmax(a, dim=dim),
    "layernorm": lambda a, normalized_shape, eps: F.layer_norm(a, normalized_shape, eps=eps),
    "transpose": lambda a, dim0, dim1: a.transpose(dim0, dim1),
    "permute": lambda a, dims: a.permute(dims),
    "reshape": lambda a, shape: a.reshape(shape),
    "unsqueeze": lambda a, dim: a.unsqueeze(dim),
    "squeeze": lambda a, dim: a.squeeze(dim),
    "slice": _slice,
    "concat": lambda tensors, dim: torch.cat(tensors, dim=dim),
}


@dataclass
class CheckRow:
    """One gradient compared with torch.autograd."""

    gradient: str  # e.g. "∂out/∂x"
    shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_torch: float
    ok: bool  # same shape and values as torch's (matching infinities and NaNs count as equal)
    finite: bool = True  # every value of both is finite

    @property
    def status(self) -> str:
        """What the page shows: agreement alone is no pass when the values are not numbers."""
        if not self.ok:
            return "✗ MISMATCH"
        return "✓" if self.finite else "✗ not finite (inf or NaN, like torch)"


def torch_reference(ex: Exploration) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Output value, first gradients and (if asked) second-order gradients, from torch.autograd."""
    program = ex.program
    leaves = {name: v.detach().clone().double().requires_grad_(True) for name, v in program.values.items()}
    out = interpret(program.tree, leaves, lambda name, args, attrs: TORCH[name](*args, **attrs))
    names = list(leaves)
    # The engine seeds the backward pass with ones, i.e. it differentiates sum(out).
    firsts = torch.autograd.grad(
        out, list(leaves.values()), torch.ones_like(out), create_graph=ex.second_of is not None, allow_unused=True
    )
    first = {n: g if g is not None else torch.zeros_like(leaves[n]) for n, g in zip(names, firsts)}
    second: dict[str, Tensor] = {}
    if ex.second_of is not None:
        g = first[ex.second_of]
        if g.requires_grad:
            seconds = torch.autograd.grad(g, list(leaves.values()), torch.ones_like(g), allow_unused=True)
        else:  # the first gradient is constant: all second derivatives are zero
            seconds = [None] * len(names)
        second = {n: s if s is not None else torch.zeros_like(leaves[n]) for n, s in zip(names, seconds)}
    return out.detach(), {n: g.detach() for n, g in first.items()}, {n: s.detach() for n, s in second.items()}


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest |a - b|, counting matching infinities and NaNs as equal and a lone NaN as infinite."""
    a, b = a.double(), b.double()
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    diff = torch.where(same, torch.zeros_like(a), (a - b).abs().nan_to_num(nan=float("inf")))
    return diff.max().item() if diff.numel() else 0.0


def check(ex: Exploration, rtol: float = 1e-7, atol: float = 1e-9) -> list[CheckRow]:
    """Each engine gradient (and the output) against torch; needs an evaluated Exploration."""
    value, first, second = torch_reference(ex)
    pairs = [("out", ex.program.output, value)]
    pairs += [(f"∂out/∂{n}", ex.grads[n], first[n]) for n in ex.grads]
    pairs += [(f"∂²out/∂{ex.second_of}∂{n}", ex.second[n], second[n]) for n in ex.second]
    rows = []
    for label, node, expected in pairs:
        got = ex.values[node]
        diff = max_abs_diff(got, expected)
        finite = expected[torch.isfinite(expected)]
        scale = finite.abs().max().item() if finite.numel() else 0.0
        ok = tuple(got.shape) == tuple(expected.shape) and diff <= atol + rtol * scale
        finite = bool(torch.isfinite(got).all() and torch.isfinite(expected).all())
        rows.append(CheckRow(label, tuple(expected.shape), diff, scale, ok, finite))
    return rows
