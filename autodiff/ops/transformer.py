"""Ops the text language models need: sin and cos, RMSNorm and LayerNorm with a gain (fused forward
and backward), rotary position embedding, and cross-entropy over integer targets with an ignore index.

Each fused backward op runs one torch computation; `primitive` writes the same formula in primitive ops,
which its own gradient (second order) differentiates. Norms work over the last dim, with a
(D,) gain. RoPE's cos and sin tables are position constants, like a mask: they take no gradient.
FLOPs are a documented count per element of the op's main input, as in nn.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autodiff.graph import Node
from autodiff.ops.base import REQUIRED, NoGradient, OpBase, Unary, no_flops, per_element
from autodiff.ops.elementwise import (
    FusedBackward,
    add_by_const,
    local_vjp,
    mul,
    neg,
    ones_like,
    power,
    sub,
    sum_to_shape,
)
from autodiff.ops.nn import softmax, softmax_backward
from autodiff.ops.reductions import mean, sum_op


class SinOp(Unary):
    """sin(a)."""

    name, forward = "sin", staticmethod(torch.sin)

    def gradient(self, node, output_grad):
        return [mul(output_grad, cos(node.inputs[0]))]


class CosOp(Unary):
    """cos(a)."""

    name, forward = "cos", staticmethod(torch.cos)

    def gradient(self, node, output_grad):
        return [neg(mul(output_grad, sin(node.inputs[0])))]


# --- norms with a gain, over the last dim --------------------------------------------------------


def _rms_normalized(a: Node, eps: float) -> tuple[Node, Node]:
    """(a * r, r) with r = 1 / sqrt(mean(a^2) + eps), in primitive ops (for second order)."""
    r = power(add_by_const(mean(mul(a, a), -1, keepdim=True), eps), -0.5)
    return mul(a, r), r


def _layer_normalized(a: Node, eps: float) -> tuple[Node, Node]:
    """((a - mean) * r, r) with r = 1 / sqrt(var + eps), in primitive ops."""
    centered = sub(a, mean(a, -1, keepdim=True))
    r = power(add_by_const(mean(mul(centered, centered), -1, keepdim=True), eps), -0.5)
    return mul(centered, r), r


def _rms_forward(a, eps):
    return a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps)


class RMSNormOp(OpBase):
    """a / sqrt(mean(a^2) + eps) * gain over the last dim (Llama's RMSNorm)."""

    name, inputs, params = "rmsnorm", ("a", "gain"), {"eps": 1e-5}
    flops = per_element(4)  # square, sum, scale, times the gain
    forward = staticmethod(lambda a, gain, eps: F.rms_norm(a, (a.shape[-1],), gain, eps))

    def gradient(self, node, output_grad):
        a, gain = node.inputs
        return [
            rmsnorm_backward(output_grad, a, gain, node.eps),
            norm_gain_backward(output_grad, a, gain, "rms", node.eps),
        ]


class RMSNormBackwardOp(FusedBackward):
    """RMSNorm's input gradient from upstream g: r * (g gain - n * mean(g gain * n)), n = a r."""

    name, inputs, params = "rmsnorm_backward", ("g", "a", "gain"), {"eps": REQUIRED}
    flops = per_element(9)  # r (square, sum), n, g gain, gn * n, its mean, n * it, subtract, times r

    @staticmethod
    def forward(g, a, gain, eps):
        r = torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
        n, gn = a * r, g * gain
        return r * (gn - n * (gn * n).mean(-1, keepdim=True))

    def primitive(self, node):
        g, a, gain = node.inputs
        n, r = _rms_normalized(a, node.eps)
        gn = mul(g, gain)
        return mul(r, sub(gn, mul(n, mean(mul(gn, n), -1, keepdim=True))))


class NormGainBackwardOp(FusedBackward):
    """A norm's gain gradient: sum of g * normalized(a) over every dim but the last (`like` = the gain,
    for its shape). `kind` is "rms" or "layer"."""

    name, inputs, params = "norm_gain_backward", ("g", "a", "like"), {"kind": REQUIRED, "eps": REQUIRED}

    @staticmethod
    def forward(g, a, like, kind, eps):
        n = _rms_forward(a, eps) if kind == "rms" else F.layer_norm(a, (a.shape[-1],), eps=eps)
        return (g * n).reshape(-1, a.shape[-1]).sum(0).reshape(like.shape)

    def flops(self, node, input_shapes):
        normalize = 3 if node.kind == "rms" else 5  # as rmsnorm and layernorm without their gain
        return (normalize + 2) * math.prod(input_shapes[1])  # then g * n and the sum

    def primitive(self, node):
        g, a, like = node.inputs
        n, _ = (_rms_normalized if node.kind == "rms" else _layer_normalized)(a, node.eps)
        return sum_to_shape(mul(g, n), like)

    def gradient(self, node, output_grad):
        g, a, _ = node.inputs
        return [*local_vjp(self.primitive(node), [g, a], output_grad), None]  # `like` only gives a shape


def _layer_norm_statistics(a, gain, eps):
    """torch's native_layer_norm of `a` with its gain: (output, mean, rstd). The gain changes only the
    output, not the statistics (the same bits); given, it takes torch's faster kernel (at 768 x 128, one
    thread: 58 us, against 97 us for the statistics alone with no gain)."""
    return torch.ops.aten.native_layer_norm(a, [a.shape[-1]], gain, None, eps)


class LayerNormGainOp(OpBase):
    """(a - mean) / sqrt(var + eps) * gain over the last dim (GPT-2's LayerNorm, without bias)."""

    name, inputs, params = "layernorm_gain", ("a", "gain"), {"eps": 1e-5}
    flops = per_element(6)  # layernorm's 5, times the gain
    forward = staticmethod(lambda a, gain, eps: F.layer_norm(a, (a.shape[-1],), gain, None, eps))

    def gradient(self, node, output_grad):
        a, gain = node.inputs
        g = output_grad
        both = layernorm_gain_grads(g, a, gain, node.eps)  # one pass gives both (a pair, not a tensor)
        return [pick_grad(both, g, a, gain, 0, node.eps), pick_grad(both, g, a, gain, 1, node.eps)]


class LayerNormGainBackwardOp(FusedBackward):
    """LayerNorm's input gradient with a gain: r * (g gain - mean(g gain) - y * mean(g gain * y))."""

    name, inputs, params = "layernorm_gain_backward", ("g", "a", "gain"), {"eps": REQUIRED}
    flops = per_element(13)  # layernorm_backward's 12, and g * gain

    @staticmethod
    def forward(g, a, gain, eps):
        # torch's fused kernels: the statistics of a, then the formula above in one pass
        shape = [a.shape[-1]]
        _, mu, rstd = _layer_norm_statistics(a, gain, eps)
        return torch.ops.aten.native_layer_norm_backward(g, a, shape, mu, rstd, gain, None, [True, False, False])[0]

    def primitive(self, node):
        g, a, gain = node.inputs
        y, r = _layer_normalized(a, node.eps)
        gn = mul(g, gain)
        inner = sub(sub(gn, mean(gn, -1, keepdim=True)), mul(y, mean(mul(gn, y), -1, keepdim=True)))
        return mul(r, inner)


class LayerNormGainGradsOp(OpBase):
    """Both gradients of layernorm_gain in one pass of torch's kernel: the pair (input gradient, gain
    gradient), which `pick_grad` nodes take apart. (Two single-output backward ops compute the
    statistics of `a` twice more: three LayerNorm passes a norm instead of one, measured.) Internal:
    its value is a pair, so it is not a public op; it takes no gradient itself (see PickGradOp)."""

    name, inputs, params = "layernorm_gain_grads", ("g", "a", "gain"), {"eps": REQUIRED}
    flops = per_element(15)  # the input gradient's 13, then g * y and its sum for the gain's

    @staticmethod
    def forward(g, a, gain, eps):
        shape = [a.shape[-1]]
        _, mu, rstd = _layer_norm_statistics(a, gain, eps)
        dx, dgain, _ = torch.ops.aten.native_layer_norm_backward(g, a, shape, mu, rstd, gain, None, [True, True, False])
        return dx, dgain.reshape(gain.shape)

    def gradient(self, node, output_grad):
        raise RuntimeError("layernorm_gain_grads is differentiated through its pick_grad nodes")


class PickGradOp(FusedBackward):
    """Item `index` of a layernorm_gain_grads pair (0: the input gradient, 1: the gain gradient). It
    reads g, a and gain too, only so that its own gradient (second order) is the one of the
    single-output op it stands for: layernorm_gain_backward or norm_gain_backward."""

    name, inputs, params = "pick_grad", ("pair", "g", "a", "gain"), {"index": REQUIRED, "eps": REQUIRED}
    flops = no_flops
    forward = staticmethod(lambda pair, g, a, gain, index, eps: pair[index])

    def twin(self, node) -> Node:
        _, g, a, gain = node.inputs
        if node.index == 0:
            return layernorm_gain_backward(g, a, gain, node.eps)
        return norm_gain_backward(g, a, gain, "layer", node.eps)

    def primitive(self, node):
        twin = self.twin(node)
        return twin.op.primitive(twin)

    def gradient(self, node, output_grad):
        twin = self.twin(node)
        return [None, *twin.op.gradient(twin, output_grad)]


# --- rotary positions ----------------------------------------------------------------------------


class RopeOp(OpBase):
    """Rotary embedding: x (..., d) as (first half, second half) pairs, each turned by its angle:
    [x1 cos - x2 sin, x2 cos + x1 sin], cos and sin (..., d/2) broadcasting against the halves."""

    name, inputs = "rope", ("x", "cos", "sin")
    flops = per_element(3)  # two products and a sum per output element

    @staticmethod
    def forward(x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def gradient(self, node, output_grad):
        # A rotation's transpose is the rotation by minus the angle: dx = rope(g, cos, -sin).
        _, cos_table, sin_table = node.inputs
        return [rope(output_grad, cos_table, neg(sin_table)), None, None]


# --- cross-entropy over integer targets ------------------------------------------------------------


class CrossEntropyOp(OpBase):
    """Mean of -log softmax(logits)[n, targets[n]] over the rows whose target is not ignore_index;
    logits (N, V), targets (N,) integers. No one-hot is ever built: memory O(N) beyond the logits."""

    name, inputs, params = "cross_entropy", ("logits", "targets"), {"ignore_index": -100}
    flops = per_element(5)  # log-softmax's per logit (the pick and the mean are per row: not counted)
    forward = staticmethod(
        lambda logits, targets, ignore_index: F.cross_entropy(logits, targets, ignore_index=ignore_index)
    )

    def gradient(self, node, output_grad):
        logits, targets = node.inputs
        return [cross_entropy_backward(output_grad, logits, targets, node.ignore_index), None]


class CrossEntropyBackwardOp(OpBase):
    """Cross-entropy's logits gradient: g * w_n * (softmax(logits) - onehot(targets)), with w_n = 1 / count
    on kept rows and 0 on ignored ones (the one-hot is a subtraction at N positions, never a tensor)."""

    name, inputs, params = "cross_entropy_backward", ("g", "logits", "targets"), {"ignore_index": REQUIRED}
    flops = per_element(6, of=1)  # softmax's 5 per logit, times the row's weight

    @staticmethod
    def forward(g, logits, targets, ignore_index):
        weights = _row_weights(targets, ignore_index, logits.dtype)  # (N,)
        grad = torch.softmax(logits, -1)
        columns = (targets.clamp(min=0) * (targets != ignore_index))[:, None]  # ignored rows: 0, zeroed below
        grad.scatter_add_(1, columns, torch.full_like(columns, -1.0, dtype=grad.dtype))  # p - 1 at each target
        return grad.mul_((weights * g)[:, None])

    def gradient(self, node, output_grad):
        g, logits, targets = node.inputs
        # d/dg: the same gradient with g = 1, dotted with the upstream; d/dlogits: only softmax varies,
        # so it is softmax's backward of upstream * w * g (the one-hot part is constant).
        unit = cross_entropy_backward(ones_like(g), logits, targets, node.ignore_index)
        dg = sum_op(mul(output_grad, unit))
        weights = cross_entropy_weights(targets, logits, node.ignore_index)  # (N, 1)
        dlogits = softmax_backward(mul(mul(output_grad, weights), g), softmax(logits, -1), -1)
        return [dg, dlogits, None]


def _row_weights(targets, ignore_index, dtype):
    kept = (targets != ignore_index).to(dtype)
    return kept / kept.sum().clamp(min=1)


class CrossEntropyWeightsOp(NoGradient):
    """(N, 1) weight of each row in the mean: 1 / count where the target is kept, else 0
    (`like` gives the dtype)."""

    name, inputs, params = "cross_entropy_weights", ("targets", "like"), {"ignore_index": REQUIRED}
    flops = per_element(3)  # per target: compare, count, divide
    forward = staticmethod(lambda targets, like, ignore_index: _row_weights(targets, ignore_index, like.dtype)[:, None])


sin, cos = SinOp(), CosOp()
rmsnorm, rmsnorm_backward, norm_gain_backward = RMSNormOp(), RMSNormBackwardOp(), NormGainBackwardOp()
layernorm_gain, layernorm_gain_backward = LayerNormGainOp(), LayerNormGainBackwardOp()
layernorm_gain_grads, pick_grad = LayerNormGainGradsOp(), PickGradOp()  # internal: not in __all__
rope = RopeOp()
cross_entropy, cross_entropy_backward = CrossEntropyOp(), CrossEntropyBackwardOp()
cross_entropy_weights = CrossEntropyWeightsOp()

__all__ = [
    "sin", "cos", "rmsnorm", "rmsnorm_backward", "norm_gain_backward", "layernorm_gain",
    "layernorm_gain_backward", "rope", "cross_entropy", "cross_entropy_backward", "cross_entropy_weights",
]  # fmt: skip
