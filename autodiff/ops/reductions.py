"""Reductions (sum, mean, max) and the ops that spread a reduced gradient back out (expand_reduced,
broadcast, expand_as_3d). Dims are read like torch: an int, a tuple, or None / () for all dims."""

from __future__ import annotations

import math

from autodiff.ops.base import REQUIRED, OpBase, Reduction, no_flops, normalize_dims
from autodiff.ops.elementwise import div, equal, mul, sum_to_shape
from autodiff.ops.shape import squeeze, unsqueeze


class SumOp(Reduction):
    """sum(a) over dim."""

    name = "sum"

    forward = staticmethod(lambda a, dim, keepdim: a.sum(dim=normalize_dims(dim, a.ndim), keepdim=keepdim))

    def gradient(self, node, output_grad):
        return [expand_reduced(output_grad, node.inputs[0], node.dim, node.keepdim)]


class MeanOp(Reduction):
    """mean(a) over dim."""

    name = "mean"

    forward = staticmethod(lambda a, dim, keepdim: a.mean(dim=normalize_dims(dim, a.ndim), keepdim=keepdim))

    def gradient(self, node, output_grad):
        return [expand_reduced(output_grad, node.inputs[0], node.dim, node.keepdim, mean=True)]


class MaxOp(Reduction):
    """max(a) over dim; the gradient is shared equally among tied maxima (like torch.amax)."""

    name = "max"

    forward = staticmethod(lambda a, dim, keepdim: a.amax(dim=normalize_dims(dim, a.ndim), keepdim=keepdim))

    def gradient(self, node, output_grad):
        a, dim, keepdim = node.inputs[0], node.dim, node.keepdim
        is_max = equal(a, expand_reduced(node, a, dim, keepdim))
        count = expand_reduced(sum_op(is_max, dim, keepdim=True), a, dim, keepdim=True)
        return [div(mul(expand_reduced(output_grad, a, dim, keepdim), is_max), count)]


class ExpandReducedOp(OpBase):
    """g (a reduction of `like` over dim) spread back to like's shape, / the count if mean."""

    name, inputs, params = "expand_reduced", ("g", "like"), {"dim": None, "keepdim": False, "mean": False}

    @staticmethod
    def forward(g, like, dim, keepdim, mean):
        dims = normalize_dims(dim, like.ndim)
        if not keepdim:
            for d in dims:  # ascending, so each index is already right after the earlier inserts
                g = g.unsqueeze(d)
        out = g.expand(like.shape)
        return out / math.prod(like.shape[d] for d in dims) if mean else out

    def flops(self, node, input_shapes):
        return math.prod(input_shapes[1]) if node.mean else 0  # a view, divided for a mean

    def gradient(self, node, output_grad):
        reduce = mean if node.mean else sum_op
        return [reduce(output_grad, node.dim, node.keepdim), None]


class BroadcastOp(OpBase):
    """a (of input_shape, checked) expanded to target_shape."""

    name, params = "broadcast", {"input_shape": REQUIRED, "target_shape": REQUIRED}
    flops = no_flops  # a view

    @staticmethod
    def forward(a, input_shape, target_shape):
        if tuple(a.shape) != tuple(input_shape):
            raise ValueError(f"broadcast: the input has shape {tuple(a.shape)}, declared {tuple(input_shape)}")
        return a.expand(target_shape)

    def gradient(self, node, output_grad):
        return [sum_to_shape(output_grad, node.inputs[0])]


class ExpandAs3dOp(OpBase):
    """a (B, D) with a new dim 1, expanded to b's shape (B, T, D)."""

    name, inputs = "expand_as_3d", ("a", "b")

    forward, flops = staticmethod(lambda a, b: a.unsqueeze(1).expand_as(b)), no_flops

    def gradient(self, node, output_grad):
        return [squeeze(sum_to_shape(output_grad, unsqueeze(node.inputs[0], 1)), 1), None]


sum_op, mean, max_op, expand_reduced = SumOp(), MeanOp(), MaxOp(), ExpandReducedOp()
broadcast, expand_as_3d = BroadcastOp(), ExpandAs3dOp()

__all__ = ["sum_op", "mean", "max_op", "expand_reduced", "broadcast", "expand_as_3d"]
