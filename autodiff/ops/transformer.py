"""Ops the text language models need: sin and cos, RMSNorm and LayerNorm with a gain (fused forward
and backward), rotary position embedding, cross-entropy over integer targets with an ignore index, and
attention as one fused node over torch's scaled-dot-product kernels.

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
    add,
    add_by_const,
    local_vjp,
    mul,
    mul_by_const,
    neg,
    ones_like,
    power,
    sub,
    sum_to_shape,
)
from autodiff.ops.nn import matmul, softmax, softmax_backward
from autodiff.ops.reductions import mean, sum_op
from autodiff.ops.shape import transpose


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


# --- attention: one fused node over torch's scaled-dot-product kernels --------------------------------
# `attention(q, k, v, mask, scale)` is item 0 of an `attention_forward` pair (the output and each score
# row's log-sum-exp, which the backward kernel reads instead of keeping the (Tq, Tk) weights); its
# gradient is one `attention_grads` triple (dq, dk, dv) taken apart by `attention_grad` nodes, as
# layernorm_gain's is. On the CPU (and `meta`) both run torch's flash-attention kernels; elsewhere the
# same math in plain torch calls. The mask is additive, a constant like RoPE's tables: no gradient.


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    """(..., T, d) of 2 to 4 dims as (B, H, T, d), the kernels' layout: a view with leading 1s."""
    if not 2 <= x.ndim <= 4:
        raise ValueError(f"attention takes q, k, v of 2 to 4 dims (..., T, d_head), got shape {tuple(x.shape)}")
    return x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))


def _fused_kernels(q: torch.Tensor) -> bool:
    return q.device.type in ("cpu", "meta")


def _attention_forward(q, k, v, mask, scale):
    """(softmax(q k^T scale + mask) v, the log-sum-exp of each row of q k^T scale + mask)."""
    if _fused_kernels(q):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            _as_4d(q), _as_4d(k), _as_4d(v), 0.0, False, attn_mask=mask, scale=scale
        )
        return out.reshape(*q.shape[:-1], v.shape[-1]), lse
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).add_(mask)  # (..., Tq, Tk)
    lse = torch.logsumexp(scores, -1)
    return torch.matmul(scores.sub_(lse[..., None]).exp_(), v), lse


def _attention_backward(g, pair, q, k, v, mask, scale):
    """(dq, dk, dv) from upstream g, the forward's output and log-sum-exp (pair)."""
    out, lse = pair
    if _fused_kernels(q):
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            _as_4d(g), _as_4d(q), _as_4d(k), _as_4d(v), _as_4d(out), lse, 0.0, False, attn_mask=mask, scale=scale
        )
        return tuple(d.reshape(x.shape) for d, x in zip(grads, (q, k, v)))
    p = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).add_(mask).sub_(lse[..., None]).exp_()  # the weights
    dv = torch.matmul(p.transpose(-1, -2), g)
    # softmax's backward: dS = P * (dP - sum(dP * P)), and sum(dP * P) over a row = sum(g * out)
    ds = p.mul_(torch.matmul(g, v.transpose(-1, -2)).sub_((g * out).sum(-1, keepdim=True)))
    return torch.matmul(ds, k).mul_(scale), torch.matmul(ds.transpose(-1, -2), q).mul_(scale), dv


def _attention_flops(products: int, per_score: int):
    """A FLOP rule: `products` matmuls of 2 Tq Tk dh each and `per_score` operations per score."""

    def flops(self, node, input_shapes):
        (*batch, tq, dh), (*_, tk, _) = input_shapes[-4:-2]
        return (products * 2 * dh + per_score) * tq * tk * math.prod(batch)

    return flops


def _attention_products(input_shapes, backward: bool) -> list[tuple[tuple[int, ...], ...]]:
    """The matrix products of the composed attention a fused node stands for (a matmul floor counts these):
    forward q k^T and P v; backward dP = g v^T, dV = P^T g, dQ = dS k, dK = dS^T q."""
    (*batch, tq, dh), (*_, tk, _) = input_shapes[-4:-2]
    scores = ((*batch, tq, dh), (*batch, dh, tk))
    weighted = ((*batch, tq, tk), (*batch, tk, dh))
    transposed = ((*batch, tk, tq), (*batch, tq, dh))
    return [scores, transposed, weighted, transposed] if backward else [scores, weighted]


class AttentionForwardOp(OpBase):
    """The pair (softmax(q k^T scale + mask) v, each score row's log-sum-exp). Internal: its value is a
    pair, read by `attention` and `attention_grads` nodes; it takes no gradient itself."""

    name, inputs, params = "attention_forward", ("q", "k", "v", "mask"), {"scale": REQUIRED}
    flops = _attention_flops(2, 5)  # q k^T and weights @ v; softmax's 5 per score
    forward = staticmethod(_attention_forward)

    def products(self, node, input_shapes):
        return _attention_products(input_shapes, backward=False)

    def gradient(self, node, output_grad):
        raise RuntimeError("attention_forward is differentiated through its attention node")


class AttentionOp(OpBase):
    """softmax(q k^T * scale + mask) v over the last two dims: q (..., Tq, dh), k and v (..., Tk, dh) of 2
    to 4 dims, an additive mask broadcasting to (..., Tq, Tk); one fused node forward and one backward.
    Built as `attention(q, k, v, mask, scale)`: item 0 of its attention_forward pair."""

    name, inputs, params = "attention", ("pair", "q", "k", "v", "mask"), {"scale": REQUIRED}
    flops = no_flops  # counted by the pair's node
    forward = staticmethod(lambda pair, q, k, v, mask, scale: pair[0])

    def __call__(self, q: Node, k: Node, v: Node, mask: Node, scale: float) -> Node:
        return super().__call__(attention_forward(q, k, v, mask, scale), q, k, v, mask, scale)

    def gradient(self, node, output_grad):
        pair, q, k, v, mask = node.inputs
        grads = attention_grads(output_grad, pair, q, k, v, mask, node.scale)
        return [None, *(attention_grad(grads, output_grad, q, k, v, mask, i, node.scale) for i in range(3)), None]


class AttentionGradsOp(OpBase):
    """The triple (dq, dk, dv) of attention under upstream g, in one backward kernel that recomputes the
    weights from the pair's log-sum-exp. Internal: `attention_grad` nodes take it apart."""

    name, inputs, params = "attention_grads", ("g", "pair", "q", "k", "v", "mask"), {"scale": REQUIRED}
    flops = _attention_flops(5, 4)  # the scores again, then dv, dP, dq, dk; exp, subtract, times P per score
    forward = staticmethod(_attention_backward)

    def products(self, node, input_shapes):
        return _attention_products(input_shapes, backward=True)  # the kernel's recomputed scores not counted

    def gradient(self, node, output_grad):
        raise RuntimeError("attention_grads is differentiated through its attention_grad nodes")


class AttentionGradOp(FusedBackward):
    """Item `index` of an attention_grads triple (0: dq, 1: dk, 2: dv). It reads g, q, k, v and the mask
    too: `primitive` writes that gradient out in primitive ops, which its own gradient differentiates."""

    name, inputs = "attention_grad", ("grads", "g", "q", "k", "v", "mask")
    params = {"index": REQUIRED, "scale": REQUIRED}
    flops = no_flops
    forward = staticmethod(lambda grads, g, q, k, v, mask, index, scale: grads[index])

    def primitive(self, node):
        _, g, q, k, v, mask = node.inputs
        q_scaled = mul_by_const(q, node.scale)
        p = softmax(add(matmul(q_scaled, transpose(k, -1, -2)), mask), -1)  # the weights (..., Tq, Tk)
        if node.index == 2:
            return matmul(transpose(p, -1, -2), g)  # dv = P^T g
        dp = matmul(g, transpose(v, -1, -2))
        ds = mul(p, sub(dp, sum_op(mul(dp, p), -1, keepdim=True)))  # softmax's backward, written out
        if node.index == 0:
            return mul_by_const(matmul(ds, k), node.scale)  # dq = dS k scale
        return matmul(transpose(ds, -1, -2), q_scaled)  # dk = dS^T (q scale)

    def gradient(self, node, output_grad):
        _, g, q, k, v, _ = node.inputs
        return [None, *local_vjp(self.primitive(node), [g, q, k, v], output_grad), None]


sin, cos = SinOp(), CosOp()
rmsnorm, rmsnorm_backward, norm_gain_backward = RMSNormOp(), RMSNormBackwardOp(), NormGainBackwardOp()
layernorm_gain, layernorm_gain_backward = LayerNormGainOp(), LayerNormGainBackwardOp()
layernorm_gain_grads, pick_grad = LayerNormGainGradsOp(), PickGradOp()  # internal: not in __all__
rope = RopeOp()
cross_entropy, cross_entropy_backward = CrossEntropyOp(), CrossEntropyBackwardOp()
cross_entropy_weights = CrossEntropyWeightsOp()
attention, attention_forward = AttentionOp(), AttentionForwardOp()
attention_grads, attention_grad = AttentionGradsOp(), AttentionGradOp()  # internal: not in __all__

__all__ = [
    "sin", "cos", "rmsnorm", "rmsnorm_backward", "norm_gain_backward", "layernorm_gain",
    "layernorm_gain_backward", "rope", "cross_entropy", "cross_entropy_backward", "cross_entropy_weights",
    "attention",
]  # fmt: skip
