"""Neural-network ops: matmul, softmax, log_softmax, layernorm, and the fused backward ops their
gradients use. A fused backward op runs torch's one-pass kernel; `primitive` writes the same formula in
primitive ops, which its own gradient (second order) differentiates. FLOPs: matmul's
2 m n k per batch element; the others a documented count per element (a per-row sqrt is not counted)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autodiff.graph import Node
from autodiff.ops.base import REQUIRED, Unary, check_dim, per_element
from autodiff.ops.elementwise import Binary, FusedBackward, add_by_const, exp, mul, power, sub
from autodiff.ops.reductions import mean, sum_op
from autodiff.ops.shape import transpose


class MatMulOp(Binary):
    """a @ b, batched, batch dims broadcasting like torch (both inputs at least 2-D)."""

    name, symbol = "matmul", "@"

    @staticmethod
    def forward(a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("matmul needs inputs of at least 2 dims; reshape a vector to (1, n) or (n, 1)")
        return a @ b

    def flops(self, node, input_shapes):
        (*batch_a, m, k), (*batch_b, _, n) = input_shapes
        return 2 * m * n * k * math.prod(torch.broadcast_shapes(tuple(batch_a), tuple(batch_b)))

    def grads(self, node, g):
        a, b = node.inputs
        # da = g b^T, db = a^T g (Binary sums each over the batch dims it was broadcast along)
        return matmul(g, transpose(b, -1, -2)), matmul(transpose(a, -1, -2), g)


class SoftmaxOp(Unary):
    """y = exp(a) / sum(exp(a)) along dim (stable: torch subtracts the max)."""

    name, params = "softmax", {"dim": -1}
    forward = staticmethod(lambda a, dim: torch.softmax(a, check_dim(dim, a.ndim)))
    flops = per_element(5)  # max, subtract, exp, sum, divide

    def gradient(self, node, output_grad):
        return [softmax_backward(output_grad, node, node.dim)]


class SoftmaxBackwardOp(FusedBackward):
    """Softmax's input gradient from upstream g and its output y: y * (g - sum(g * y, dim))."""

    name, inputs, params = "softmax_backward", ("g", "y"), {"dim": REQUIRED}
    flops = per_element(4)  # g * y, sum, subtract, times y

    @staticmethod
    def forward(g, y, dim):
        return torch._softmax_backward_data(g, y, dim, y.dtype)  # torch's one-pass kernel

    def primitive(self, node):
        g, y = node.inputs
        return mul(y, sub(g, sum_op(mul(g, y), node.dim, keepdim=True)))


class LogSoftmaxOp(Unary):
    """a - log(sum(exp(a))) along dim, computed stably."""

    name, params = "log_softmax", {"dim": -1}
    forward = staticmethod(lambda a, dim: torch.log_softmax(a, check_dim(dim, a.ndim)))
    flops = per_element(5)  # max, subtract, exp, sum, subtract the log

    def gradient(self, node, output_grad):
        return [log_softmax_backward(output_grad, node, node.dim)]


class LogSoftmaxBackwardOp(FusedBackward):
    """Log-softmax's input gradient from upstream g and its output y: g - exp(y) * sum(g, dim)."""

    name, inputs, params = "log_softmax_backward", ("g", "y"), {"dim": REQUIRED}

    forward = staticmethod(lambda g, y, dim: torch._log_softmax_backward_data(g, y, dim, y.dtype))
    flops = per_element(4)  # exp(y), sum(g), multiply, subtract

    def primitive(self, node):
        g, y = node.inputs
        return sub(g, mul(exp(y), sum_op(g, node.dim, keepdim=True)))


class LayerNormOp(Unary):
    """(a - mean) / sqrt(var + eps) over the last len(normalized_shape) dims; no affine parameters."""

    name, params = "layernorm", {"normalized_shape": REQUIRED, "eps": 1e-5}
    flops = per_element(5)  # sum, subtract the mean, square, sum, scale

    def __call__(self, a, normalized_shape, eps: float = 1e-5) -> Node:
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        return super().__call__(a, shape, eps)

    forward = staticmethod(lambda a, normalized_shape, eps: F.layer_norm(a, normalized_shape, eps=eps))

    def gradient(self, node, output_grad):
        return [layernorm_backward(output_grad, node.inputs[0], node.normalized_shape, node.eps)]


class LayerNormBackwardOp(FusedBackward):
    """Layernorm's input gradient from g and its input a: rstd * (g - mean(g) - y * mean(g * y))."""

    name, inputs, params = "layernorm_backward", ("g", "a"), {"normalized_shape": REQUIRED, "eps": REQUIRED}
    flops = per_element(12)  # a's statistics again (4), y (1), mean(g), g * y, its mean, y * it (4), 2 subtracts, scale

    @staticmethod
    def forward(g, a, normalized_shape, eps):
        # torch's fused kernels: the statistics of a, then exactly the formula above in one pass
        shape = list(normalized_shape)
        _, mu, rstd = torch.ops.aten.native_layer_norm(a, shape, None, None, eps)
        return torch.ops.aten.native_layer_norm_backward(g, a, shape, mu, rstd, None, None, [True, False, False])[0]

    def primitive(self, node):
        g, a = node.inputs
        dims = tuple(range(-len(node.normalized_shape), 0))
        centered = sub(a, mean(a, dims, keepdim=True))
        rstd = power(add_by_const(mean(mul(centered, centered), dims, keepdim=True), node.eps), -0.5)
        y = mul(centered, rstd)
        inner = sub(sub(g, mean(g, dims, keepdim=True)), mul(y, mean(mul(g, y), dims, keepdim=True)))
        return mul(rstd, inner)


matmul, softmax, softmax_backward = MatMulOp(), SoftmaxOp(), SoftmaxBackwardOp()
log_softmax, log_softmax_backward = LogSoftmaxOp(), LogSoftmaxBackwardOp()
layernorm, layernorm_backward = LayerNormOp(), LayerNormBackwardOp()

__all__ = [
    "matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "layernorm",
    "layernorm_backward",
]  # fmt: skip
