"""Every op of the engine against torch.autograd in float64: one table of cases, one test.

Each case builds a node from variables, and the test compares its value, the gradient of every
input under a *random* upstream gradient, and (where the case asks) second-order gradients, with
the same expression written in torch. `test_every_op_has_a_case` fails when an op has no row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

import autodiff as ad
from autodiff import ops


@dataclass
class In:
    """An input of a case: its shape and what kind of values it takes."""

    shape: tuple
    kind: str = "float"  # float | pos | nonzero | big | ids | mask | ref | ties
    high: int = 5  # upper bound for ids

    @property
    def differentiable(self) -> bool:
        return self.kind in ("float", "pos", "nonzero", "big", "ties")


@dataclass
class Case:
    id: str
    op: ad.Op
    build: Callable[..., ad.Node]  # our graph from Variables
    ref: Callable[..., torch.Tensor]  # the same in torch
    inputs: list[In] = field(default_factory=list)
    second: bool = False  # check second-order gradients too


def make_value(spec: In, gen: torch.Generator) -> torch.Tensor:
    if spec.kind == "ids":
        return torch.randint(0, spec.high, spec.shape, generator=gen)
    if spec.kind == "mask":
        return torch.rand(spec.shape, generator=gen, dtype=torch.float64) > 0.5
    x = torch.randn(spec.shape, generator=gen, dtype=torch.float64)
    if spec.kind == "pos":
        return x.abs() + 0.5
    if spec.kind == "nonzero":
        return x.sign() * (x.abs() + 0.5) + (x == 0).double()
    if spec.kind == "big":  # stability: logits of magnitude ~1000
        return 1000 * x
    if spec.kind == "ties":  # repeated maxima: the gradient must be shared like torch.amax
        return torch.round(x)
    return x


def sum_to(a: torch.Tensor, shape) -> torch.Tensor:
    """Torch reference for sum_to_shape."""
    while a.ndim > len(shape):
        a = a.sum(0)
    dims = [i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1]
    return a.sum(dims, keepdim=True) if dims else a


def layernorm_vjp(g: torch.Tensor, a: torch.Tensor, shape, eps) -> torch.Tensor:
    """Torch reference for layernorm_backward, written out in torch ops. (Not torch's own layer_norm
    double backward: its third derivative disagrees with finite differences, ours does not.)"""
    dims = tuple(range(-len(shape), 0))
    centered = a - a.mean(dims, keepdim=True)
    rstd = ((centered * centered).mean(dims, keepdim=True) + eps) ** -0.5
    y = centered * rstd
    return rstd * (g - g.mean(dims, keepdim=True) - y * (g * y).mean(dims, keepdim=True))


def rms(a: torch.Tensor, eps: float) -> torch.Tensor:
    """Torch reference for RMSNorm without gain, written out."""
    return a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps)


def ce_weights(t: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Each row's weight in a mean cross-entropy that skips ignore_index: (N, 1)."""
    kept = (t != ignore_index).double()
    return (kept / kept.sum())[:, None]


causal = In((3, 3), "mask")
F64 = dict(dtype=torch.float64)

CASES = [
    # --- elementwise arithmetic (broadcasting shapes, numbers) ---
    Case("add_broadcast", ops.add, lambda a, b: ops.add(a, b), lambda a, b: a + b, [In((2, 3, 4)), In((3, 1))], True),
    Case("add_scalar_tensor", ops.add, lambda a, b: a + b, lambda a, b: a + b, [In((2, 3)), In(())]),
    Case("add_by_const", ops.add_by_const, lambda a: ops.add_by_const(a, 2.5), lambda a: a + 2.5, [In((2, 3))], True),
    Case("sub_broadcast", ops.sub, lambda a, b: a - b, lambda a, b: a - b, [In((2, 1, 4)), In((3, 1))], True),
    Case("mul_broadcast", ops.mul, lambda a, b: a * b, lambda a, b: a * b, [In((2, 3, 4)), In((4,))], True),
    Case("mul_by_const", ops.mul_by_const, lambda a: 3 * a, lambda a: 3 * a, [In((2, 3))], True),
    Case("div_broadcast", ops.div, lambda a, b: a / b, lambda a, b: a / b, [In((2, 3)), In((1, 3), "nonzero")], True),
    Case("div_by_const", ops.div_by_const, lambda a: a / 4, lambda a: a / 4, [In((2, 3))]),
    Case("rdiv_by_const", ops.rdiv_by_const, lambda a: 3 / a, lambda a: 3 / a, [In((2, 3), "nonzero")], True),
    Case("rsub_number", ops.add_by_const, lambda a: 1 - a, lambda a: 1 - a, [In((4,))]),
    Case("neg", ops.neg, lambda a: -a, lambda a: -a, [In((2, 3))]),
    Case("power_3", ops.power, lambda a: a**3, lambda a: a**3, [In((2, 3))], True),
    Case("power_half", ops.power, lambda a: ops.power(a, 0.5), lambda a: a**0.5, [In((2, 3), "pos")], True),
    Case("power_0", ops.power, lambda a: a**0, lambda a: a**0, [In((3,))]),
    Case("rpow_number", ops.exp, lambda a: 2**a, lambda a: 2**a, [In((3,))], True),
    Case("sqrt", ops.sqrt, ops.sqrt, torch.sqrt, [In((2, 3), "pos")], True),
    Case("exp", ops.exp, ops.exp, torch.exp, [In((2, 3))], True),
    Case("exp_shifted", ops.exp, lambda a: ops.exp(a + 100), lambda a: torch.exp(a + 100), [In((3,))]),
    Case("log", ops.log, ops.log, torch.log, [In((2, 3), "pos")], True),
    Case("abs", ops.abs_op, ops.abs_op, torch.abs, [In((2, 3), "nonzero")], True),
    Case("sign", ops.sign, ops.sign, torch.sign, [In((2, 3))]),
    Case("relu", ops.relu, ops.relu, torch.relu, [In((2, 3), "nonzero")], True),
    Case("sigmoid", ops.sigmoid, ops.sigmoid, torch.sigmoid, [In((2, 3))], True),
    Case("tanh", ops.tanh, ops.tanh, torch.tanh, [In((2, 3))], True),
    Case(
        "tanh_backward",
        ops.tanh_backward,
        ops.tanh_backward,
        lambda g, t: g * (1 - t * t),
        [In((2, 3)), In((2, 3))],
        True,
    ),
    Case(
        "sigmoid_backward",
        ops.sigmoid_backward,
        ops.sigmoid_backward,
        lambda g, s: g * s * (1 - s),
        [In((2, 3)), In((2, 3))],
        True,
    ),
    Case("erf", ops.erf, ops.erf, torch.erf, [In((2, 3))], True),
    Case("gelu", ops.gelu, ops.gelu, F.gelu, [In((2, 3))], True),
    Case("silu", ops.silu, ops.silu, F.silu, [In((2, 3))], True),
    Case(
        "gelu_backward",
        ops.gelu_backward,
        ops.gelu_backward,
        lambda g, a: torch.autograd.grad(F.gelu(a), a, g, create_graph=True)[0],
        [In((2, 3)), In((2, 3))],
        True,
    ),
    Case(
        "silu_backward",
        ops.silu_backward,
        ops.silu_backward,
        lambda g, a: torch.autograd.grad(F.silu(a), a, g, create_graph=True)[0],
        [In((2, 3)), In((2, 3))],
        True,
    ),
    Case("greater", ops.greater, ops.greater, lambda a, b: (a > b).double(), [In((2, 3)), In((3,))]),
    Case("greater_const", ops.greater, lambda a: ops.greater(a, 0.1), lambda a: (a > 0.1).double(), [In((4,))]),
    Case("equal", ops.equal, ops.equal, lambda a, b: (a == b).double(), [In((2, 3), "ties"), In((3,), "ties")]),
    Case("zeros_like", ops.zeros_like, ops.zeros_like, torch.zeros_like, [In((2, 3))]),
    Case("ones_like", ops.ones_like, ops.ones_like, torch.ones_like, [In((2, 3))]),
    # --- reductions and broadcasting (negative dims, keepdim, sets of dims) ---
    Case("sum_dim1", ops.sum_op, lambda a: ops.sum_op(a, 1), lambda a: a.sum(1), [In((2, 3, 4))], True),
    Case(
        "sum_dims_keepdim",
        ops.sum_op,
        lambda a: ops.sum_op(a, (0, -1), keepdim=True),
        lambda a: a.sum((0, -1), keepdim=True),
        [In((2, 3, 4))],
        True,
    ),
    Case("sum_all", ops.sum_op, ops.sum_op, lambda a: a.sum(), [In((2, 3))]),
    Case("mean_neg_dim", ops.mean, lambda a: ops.mean(a, -1), lambda a: a.mean(-1), [In((2, 3, 4))], True),
    Case(
        "mean_dims_keepdim",
        ops.mean,
        lambda a: ops.mean(a, [0, 2], keepdim=True),
        lambda a: a.mean((0, 2), keepdim=True),
        [In((2, 3, 4))],
        True,
    ),
    Case("mean_empty_dims", ops.mean, lambda a: ops.mean(a, []), lambda a: a.mean(dim=[]), [In((2, 3))], True),
    Case("sum_0d_dim", ops.sum_op, lambda a: ops.sum_op(a, -1, True), lambda a: a.sum(-1, True), [In(())], True),
    Case("max_dim", ops.max_op, lambda a: ops.max_op(a, -1), lambda a: a.amax(-1), [In((2, 3, 4))], True),
    Case(
        "max_ties_keepdim",
        ops.max_op,
        lambda a: ops.max_op(a, (0, 1), keepdim=True),
        lambda a: a.amax((0, 1), keepdim=True),
        [In((3, 4, 2), "ties")],
    ),
    Case(
        "expand_reduced",
        ops.expand_reduced,
        lambda g, like: ops.expand_reduced(g, like, 1),
        lambda g, like: g.unsqueeze(1).expand(2, 3, 4),
        [In((2, 4)), In((2, 3, 4), "ref")],
        True,
    ),
    Case(
        "expand_reduced_mean",
        ops.expand_reduced,
        lambda g, like: ops.expand_reduced(g, like, (0, -1), keepdim=True, mean=True),
        lambda g, like: g.expand(2, 3, 4) / 8,
        [In((1, 3, 1)), In((2, 3, 4), "ref")],
    ),
    Case(
        "sum_to_shape",
        ops.sum_to_shape,
        ops.sum_to_shape,
        lambda a, like: sum_to(a, like.shape),
        [In((2, 3, 4)), In((3, 1), "ref")],
        True,
    ),
    Case(
        "expand_as",
        ops.expand_as,
        ops.expand_as,
        lambda a, b: a.expand_as(b),
        [In((3, 1)), In((2, 3, 4), "ref")],
        True,
    ),
    Case(
        "expand_as_3d",
        ops.expand_as_3d,
        ops.expand_as_3d,
        lambda a, b: a.unsqueeze(1).expand_as(b),
        [In((2, 4)), In((2, 3, 4), "ref")],
    ),
    Case(
        "broadcast",
        ops.broadcast,
        lambda a: ops.broadcast(a, (3, 1), (2, 3, 4)),
        lambda a: a.expand(2, 3, 4),
        [In((3, 1))],
    ),
    # --- shape and indexing ---
    Case("reshape", ops.reshape, lambda a: ops.reshape(a, (6, -1)), lambda a: a.reshape(6, -1), [In((2, 3, 4))], True),
    Case(
        "reshape_as",
        ops.reshape_as,
        ops.reshape_as,
        lambda a, like: a.reshape(like.shape),
        [In((2, 6)), In((3, 4), "ref")],
    ),
    Case("unsqueeze", ops.unsqueeze, lambda a: ops.unsqueeze(a, -1), lambda a: a.unsqueeze(-1), [In((2, 3))]),
    Case("squeeze", ops.squeeze, lambda a: ops.squeeze(a, 1), lambda a: a.squeeze(1), [In((2, 1, 3))]),
    Case("transpose", ops.transpose, lambda a: ops.transpose(a, 0, 2), lambda a: a.transpose(0, 2), [In((2, 3, 4))]),
    Case(
        "transpose_neg",
        ops.transpose,
        lambda a: ops.transpose(a, -1, -3),
        lambda a: a.transpose(-1, -3),
        [In((2, 3, 4))],
        True,
    ),
    Case("permute", ops.permute, lambda a: ops.permute(a, (2, 0, 1)), lambda a: a.permute(2, 0, 1), [In((2, 3, 4))]),
    Case("slice", ops.slice_op, lambda a: ops.slice_op(a, 1, 1), lambda a: a[:, 1:], [In((2, 3, 4))], True),
    Case("slice_neg", ops.slice_op, lambda a: ops.slice_op(a, -1, -3, -1), lambda a: a[..., -3:-1], [In((2, 5))]),
    Case(
        "slice_backward",
        ops.slice_backward,
        lambda g, like: ops.slice_backward(g, like, 1, 1, 3),
        lambda g, like: torch.zeros(2, 4, 3, **F64).slice_scatter(g, 1, 1, 3),
        [In((2, 2, 3)), In((2, 4, 3), "ref")],
        True,
    ),
    Case(
        "concat",
        ops.concat,
        lambda a, b, c: ops.concat([a, b, c], 1),
        lambda a, b, c: torch.cat([a, b, c], 1),
        [In((2, 1, 3)), In((2, 2, 3)), In((2, 3, 3))],
        True,
    ),
    Case(
        "concat_part",
        ops.concat_part,
        lambda g, p, q: ops.concat_part(g, [p, q], 1, -1),
        lambda g, p, q: g[:, 3:],
        [In((2, 7)), In((2, 3), "ref"), In((2, 4), "ref")],
        True,
    ),
    Case(
        "embedding",
        ops.embedding,
        ops.embedding,
        lambda table, ids: table[ids],
        [In((5, 3)), In((2, 4), "ids")],
        True,
    ),
    Case(
        "embedding_backward",
        ops.embedding_backward,
        ops.embedding_backward,
        lambda g, ids, like: torch.zeros(5, 3, **F64).index_add(0, ids.reshape(-1), g.reshape(-1, 3)),
        [In((2, 4, 3)), In((2, 4), "ids"), In((5, 3), "ref")],
        True,
    ),
    Case(
        "masked_fill",
        ops.masked_fill,
        lambda a, m: ops.masked_fill(a, m, -1e9),
        lambda a, m: a.masked_fill(m, -1e9),
        [In((2, 3, 3)), causal],
        True,
    ),
    Case(
        "where",
        ops.where,
        ops.where,
        lambda c, a, b: torch.where(c, a, b),
        [In((2, 3), "mask"), In((2, 3)), In((3,))],
        True,
    ),
    # --- linear algebra and normalization (batched, broadcast weights, stability) ---
    Case("matmul", ops.matmul, lambda a, b: a @ b, lambda a, b: a @ b, [In((2, 3)), In((3, 4))], True),
    Case(
        "matmul_batched_weight",
        ops.matmul,
        ops.matmul,
        torch.matmul,
        [In((2, 5, 3, 4)), In((4, 2))],
        True,
    ),
    Case("matmul_broadcast_batch", ops.matmul, ops.matmul, torch.matmul, [In((5, 1, 2, 3)), In((4, 3, 2))], True),
    Case("softmax", ops.softmax, ops.softmax, lambda a: torch.softmax(a, -1), [In((2, 3, 4))], True),
    Case("softmax_dim0", ops.softmax, lambda a: ops.softmax(a, 0), lambda a: torch.softmax(a, 0), [In((3, 4))], True),
    Case("softmax_big", ops.softmax, ops.softmax, lambda a: torch.softmax(a, -1), [In((2, 5), "big")]),
    Case(
        "softmax_backward",
        ops.softmax_backward,
        lambda g, y: ops.softmax_backward(g, y, -1),
        lambda g, y: y * (g - (g * y).sum(-1, keepdim=True)),
        [In((2, 3, 4)), In((2, 3, 4))],
        True,
    ),
    Case("log_softmax", ops.log_softmax, ops.log_softmax, lambda a: torch.log_softmax(a, -1), [In((2, 4))], True),
    Case(
        "log_softmax_big",
        ops.log_softmax,
        lambda a: ops.log_softmax(a, 0),
        lambda a: torch.log_softmax(a, 0),
        [In((5, 2), "big")],
    ),
    Case(
        "log_softmax_backward",
        ops.log_softmax_backward,
        lambda g, y: ops.log_softmax_backward(g, y, 0),
        lambda g, y: g - torch.exp(y) * g.sum(0, keepdim=True),
        [In((3, 4)), In((3, 4))],
        True,
    ),
    Case(
        "layernorm",
        ops.layernorm,
        lambda a: ops.layernorm(a, [4]),
        lambda a: F.layer_norm(a, [4]),
        [In((2, 3, 4))],
        True,
    ),
    Case(
        "layernorm_2d_eps",
        ops.layernorm,
        lambda a: ops.layernorm(a, (3, 4), eps=1e-3),
        lambda a: F.layer_norm(a, (3, 4), eps=1e-3),
        [In((2, 3, 4))],
        True,
    ),
    Case(
        "layernorm_backward",
        ops.layernorm_backward,
        lambda g, a: ops.layernorm_backward(g, a, (4,), 1e-5),
        lambda g, a: layernorm_vjp(g, a, (4,), 1e-5),
        [In((2, 3, 4)), In((2, 3, 4))],
        True,
    ),
    # --- what the text models add (autodiff/ops/transformer.py) ---
    Case("sin", ops.sin, ops.sin, torch.sin, [In((2, 3))], True),
    Case("cos", ops.cos, ops.cos, torch.cos, [In((2, 3))], True),
    Case("rmsnorm", ops.rmsnorm, ops.rmsnorm, lambda a, w: rms(a, 1e-5) * w, [In((2, 3, 4)), In((4,))], True),
    Case(
        "rmsnorm_big_eps",
        ops.rmsnorm,
        lambda a, w: ops.rmsnorm(a, w, eps=0.1),
        lambda a, w: rms(a, 0.1) * w,
        [In((5, 4), "big"), In((4,))],
    ),
    Case(
        "rmsnorm_backward",
        ops.rmsnorm_backward,
        lambda g, a, w: ops.rmsnorm_backward(g, a, w, 1e-5),
        lambda g, a, w: torch.autograd.grad(rms(a, 1e-5) * w, a, g, create_graph=True)[0],
        [In((2, 3, 4)), In((2, 3, 4)), In((4,))],
        True,
    ),
    Case(
        "norm_gain_backward_rms",
        ops.norm_gain_backward,
        lambda g, a, like: ops.norm_gain_backward(g, a, like, "rms", 1e-5),
        lambda g, a, like: (g * rms(a, 1e-5)).sum((0, 1)),
        [In((2, 3, 4)), In((2, 3, 4)), In((4,), "ref")],
        True,
    ),
    Case(
        "norm_gain_backward_layer",
        ops.norm_gain_backward,
        lambda g, a, like: ops.norm_gain_backward(g, a, like, "layer", 1e-5),
        lambda g, a, like: (g * F.layer_norm(a, (4,))).sum(0),
        [In((3, 4)), In((3, 4)), In((4,), "ref")],
        True,
    ),
    Case(
        "layernorm_gain",
        ops.layernorm_gain,
        ops.layernorm_gain,
        lambda a, w: F.layer_norm(a, (4,), w),
        [In((2, 3, 4)), In((4,))],
        True,
    ),
    Case(
        "layernorm_gain_backward",
        ops.layernorm_gain_backward,
        lambda g, a, w: ops.layernorm_gain_backward(g, a, w, 1e-5),
        lambda g, a, w: layernorm_vjp(g * w, a, (4,), 1e-5),
        [In((2, 3, 4)), In((2, 3, 4)), In((4,))],
        True,
    ),
    Case(
        "rope",
        ops.rope,
        ops.rope,
        lambda x, c, s: torch.cat([x[..., :2] * c - x[..., 2:] * s, x[..., 2:] * c + x[..., :2] * s], -1),
        [In((2, 3, 4)), In((3, 2), "ref"), In((3, 2), "ref")],
        True,
    ),
    Case(
        "cross_entropy_ignore",
        ops.cross_entropy,
        lambda a, t: ops.cross_entropy(a, t, ignore_index=2),
        lambda a, t: F.cross_entropy(a, t, ignore_index=2),
        [In((8, 5)), In((8,), "ids")],
        True,
    ),
    Case(
        "cross_entropy_big", ops.cross_entropy, ops.cross_entropy, F.cross_entropy, [In((4, 5), "big"), In((4,), "ids")]
    ),
    Case(
        "cross_entropy_backward",
        ops.cross_entropy_backward,
        lambda g, a, t: ops.cross_entropy_backward(g, a, t, 2),
        lambda g, a, t: g * (torch.softmax(a, -1) - F.one_hot(t, 5)) * ce_weights(t, 2),
        [In(()), In((8, 5)), In((8,), "ids")],
        True,
    ),
    Case(
        "cross_entropy_weights",
        ops.cross_entropy_weights,
        lambda t, like: ops.cross_entropy_weights(t, like, 2),
        lambda t, like: ce_weights(t, 2),
        [In((8,), "ids"), In((8, 5), "ref")],
    ),
]


def test_every_op_has_a_case():
    covered = {id(case.op) for case in CASES}
    missing = [name for name in ad.OP_NAMES if name != "placeholder" and id(getattr(ops, name)) not in covered]
    assert not missing, f"ops with no row in the op table: {missing}"


def assert_close(ours, theirs, what):
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7, msg=lambda m: f"{what}: {m}")


def _torch_grads(out, wrt, **kw):
    grads = torch.autograd.grad(out, wrt, allow_unused=True, **kw)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_against_torch(case: Case):
    gen = torch.Generator().manual_seed(sum(map(ord, case.id)))
    values = [make_value(spec, gen) for spec in case.inputs]
    variables = [ad.Variable(f"x{i}") for i in range(len(values))]
    feed = dict(zip(variables, values))
    diff = [i for i, spec in enumerate(case.inputs) if spec.differentiable]

    # Forward.
    node = case.build(*variables)
    assert node.op is case.op, f"case {case.id} builds {node.op.name}, not {case.op.name}"
    (ours,) = ad.Evaluator([node]).run(feed)
    t_inputs = [v.clone().requires_grad_(i in diff) for i, v in enumerate(values)]
    theirs = case.ref(*t_inputs)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    assert_close(ours, theirs.detach(), "value")

    # First order, under a random upstream gradient (a sum of ones would hide bugs).
    upstream = torch.randn(theirs.shape, generator=gen, dtype=torch.float64)
    g = ad.Variable("upstream")
    feed[g] = upstream
    loss = ops.sum_op(ops.mul(node, g))
    wrt = [variables[i] for i in diff]
    grad_nodes = ad.gradients(loss, wrt)
    our_grads = ad.Evaluator(grad_nodes).run(feed)
    t_wrt = [t_inputs[i] for i in diff]
    if theirs.requires_grad:
        their_grads = _torch_grads((theirs * upstream).sum(), t_wrt, create_graph=True)
    else:  # a piecewise-constant op (comparisons): zero gradient everywhere
        their_grads = [torch.zeros_like(x) for x in t_wrt]
    for i, ours_g, theirs_g in zip(diff, our_grads, their_grads):
        assert ours_g.shape == values[i].shape, "a gradient must have its input's shape"
        assert_close(ours_g, theirs_g.detach(), f"gradient of input {i}")

    # Second order: differentiate sum(grad_i * h_i) again.
    if case.second:
        directions = [torch.randn(values[i].shape, generator=gen, dtype=torch.float64) for i in diff]
        h_vars = [ad.Variable(f"h{i}") for i in diff]
        feed.update(zip(h_vars, directions))
        inner = None
        for gn, h in zip(grad_nodes, h_vars):
            term = ops.sum_op(ops.mul(gn, h))
            inner = term if inner is None else inner + term
        our_second = ad.Evaluator(ad.gradients(inner, wrt)).run(feed)
        t_inner = sum((tg * h).sum() for tg, h in zip(their_grads, directions))
        their_second = _torch_grads(t_inner, t_wrt) if t_inner.requires_grad else [torch.zeros_like(x) for x in t_wrt]
        for i, ours_h, theirs_h in zip(diff, our_second, their_second):
            assert_close(ours_h, theirs_h, f"second-order gradient of input {i}")


# --- fused backward ops written out (gradients(..., fused=False)) ------------------------------------

FUSED_CASES = [case for case in CASES if isinstance(case.op, ops.elementwise.FusedBackward)]


def test_every_fused_backward_op_has_a_case():
    """(pick_grad, internal, is checked through layernorm_gain's unfused gradients below.)"""
    fused = [name for name in ad.OP_NAMES if isinstance(getattr(ops, name), ops.elementwise.FusedBackward)]
    assert len(fused) >= 9 and {case.op.name for case in FUSED_CASES} == set(fused)


@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: c.id)
def test_fused_backward_op_equals_its_primitive_formula(case: Case):
    """`primitive` (the formula gradients(fused=False) puts in the op's place) has the fused kernel's value."""
    gen = torch.Generator().manual_seed(sum(map(ord, case.id)))
    values = [make_value(spec, gen) for spec in case.inputs]
    variables = [ad.Variable(f"x{i}") for i in range(len(values))]
    node = case.build(*variables)
    written_out = node.op.primitive(node)
    assert not any(isinstance(n.op, ops.elementwise.FusedBackward) for n in ad.topological_sort(written_out))
    fused, primitive = ad.Evaluator([node, written_out]).run(dict(zip(variables, values)))
    assert_close(primitive, fused, "the written-out formula")


def test_unfused_gradients_have_no_fused_node_and_equal_torch():
    """A block-like graph (layernorm with a gain, softmax attention, GELU, cross-entropy): with fused=False
    the backward pass has none of the fused ops, more nodes, and the same gradients as torch.autograd."""
    gen = torch.Generator().manual_seed(0)
    x, gain, w, targets = ad.Variable("x"), ad.Variable("gain"), ad.Variable("w"), ad.Variable("targets")
    h = ops.layernorm_gain(x, gain)  # (6, 4)
    h = ops.matmul(ops.softmax(ops.matmul(h, ops.transpose(h, 0, 1)), -1), h)  # (6, 4)
    loss = ops.cross_entropy(ops.matmul(ops.gelu(h), w), targets)
    values = {
        x: torch.randn(6, 4, generator=gen, dtype=torch.float64),
        gain: torch.randn(4, generator=gen, dtype=torch.float64),
        w: torch.randn(4, 5, generator=gen, dtype=torch.float64),
        targets: torch.randint(0, 5, (6,), generator=gen),
    }
    fused, unfused = ad.gradients(loss, [x, gain, w]), ad.gradients(loss, [x, gain, w], fused=False)
    fused_ops = {n.op.name for n in ad.topological_sort(fused)}
    unfused_ops = {n.op.name for n in ad.topological_sort(unfused)}
    assert {"softmax_backward", "pick_grad", "gelu_backward"} <= fused_ops
    assert not unfused_ops & {"softmax_backward", "pick_grad", "layernorm_gain_grads", "gelu_backward"}
    assert len(ad.topological_sort(unfused)) > len(ad.topological_sort(fused))
    ours = ad.Evaluator(unfused).run(values)
    t = {k: v.clone().requires_grad_(k is not targets) for k, v in values.items()}
    th = F.layer_norm(t[x], (4,), t[gain])
    th = torch.softmax(th @ th.T, -1) @ th
    theirs = torch.autograd.grad(F.cross_entropy(F.gelu(th) @ t[w], t[targets]), [t[x], t[gain], t[w]])
    for name, a, b in zip("x gain w".split(), ours, theirs):
        assert_close(a, b, f"unfused gradient of {name}")
