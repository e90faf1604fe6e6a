"""Shape and indexing ops: reshape, (un)squeeze, transpose, permute, slice, concat, embedding lookup,
masked_fill and where. Index, mask and shape-reference inputs take no gradient (None). They move or
pick values: no FLOPs (`no_flops`), except embedding's gradient, which adds rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autodiff.graph import Node
from autodiff.ops.base import REQUIRED, OpBase, Unary, check_node, no_flops, per_element
from autodiff.ops.elementwise import sum_to_shape, zeros_like


class ReshapeOp(Unary):
    """a reshaped to `shape` (one entry may be -1)."""

    name, params = "reshape", {"shape": REQUIRED}
    flops = no_flops
    forward = staticmethod(torch.reshape)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class ReshapeAsOp(OpBase):
    """a reshaped to like's shape."""

    name, inputs = "reshape_as", ("a", "like")
    flops = no_flops

    forward = staticmethod(lambda a, like: a.reshape(like.shape))

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0]), None]


class UnsqueezeOp(Unary):
    """a with a new size-1 dim at `dim`."""

    name, params = "unsqueeze", {"dim": REQUIRED}
    flops = no_flops
    forward = staticmethod(torch.unsqueeze)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class SqueezeOp(Unary):
    """a without its size-1 dim `dim`."""

    name, params = "squeeze", {"dim": REQUIRED}
    flops = no_flops
    forward = staticmethod(torch.squeeze)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class TransposeOp(Unary):
    """a with dims dim0 and dim1 swapped."""

    name, params = "transpose", {"dim0": -2, "dim1": -1}
    flops = no_flops
    forward = staticmethod(torch.transpose)

    def gradient(self, node, output_grad):
        return [transpose(output_grad, node.dim0, node.dim1)]


class PermuteOp(Unary):
    """a with its dims reordered to `dims`."""

    name, params = "permute", {"dims": REQUIRED}
    flops = no_flops
    forward = staticmethod(torch.permute)

    def __call__(self, a, dims) -> Node:
        return super().__call__(a, tuple(dims))

    def gradient(self, node, output_grad):
        n = len(node.dims)
        inverse = [0] * n
        for i, d in enumerate(node.dims):
            inverse[d % n] = i
        return [permute(output_grad, inverse)]


def _index(ndim: int, dim: int, start: int | None, end: int | None) -> tuple:
    index = [slice(None)] * ndim
    index[dim] = slice(start, end)
    return tuple(index)


class SliceOp(Unary):
    """a[start:end] along `dim` (Python slice rules: negative and None bounds allowed)."""

    name, params = "slice", {"dim": REQUIRED, "start": None, "end": None}
    flops = no_flops

    forward = staticmethod(lambda a, dim, start, end: a[_index(a.ndim, dim, start, end)])

    def gradient(self, node, output_grad):
        return [slice_backward(output_grad, node.inputs[0], node.dim, node.start, node.end)]


class SliceBackwardOp(OpBase):
    """Zeros of like's shape with g written at [start:end] along `dim` (slice's gradient)."""

    name, inputs, params = "slice_backward", ("g", "like"), {"dim": REQUIRED, "start": None, "end": None}
    flops = no_flops

    @staticmethod
    def forward(g, like, dim, start, end):
        out = g.new_zeros(like.shape)
        out[_index(like.ndim, dim, start, end)] = g
        return out

    def gradient(self, node, output_grad):
        return [slice_op(output_grad, node.dim, node.start, node.end), None]


class ConcatOp(OpBase):
    """The nodes joined along `dim`."""

    name, inputs, params = "concat", ("*nodes",), {"dim": 0}
    flops = no_flops

    def compute(self, node, input_values):
        return torch.cat(input_values, dim=node.dim)

    def gradient(self, node, output_grad):
        return [concat_part(output_grad, node.inputs, i, node.dim) for i in range(len(node.inputs))]


class ConcatPartOp(OpBase):
    """The part of g (a concat of `parts` along `dim`) that came from parts[index]."""

    name, inputs, params = "concat_part", ("g",), {"index": REQUIRED, "dim": REQUIRED}
    flops = no_flops

    def __call__(self, g: Node, parts, index: int, dim: int) -> Node:
        node = super().__call__(g, index, dim)
        node.inputs += [check_node(p, self.name) for p in parts]
        return node

    def compute(self, node, input_values):
        g, parts = input_values[0], input_values[1:]
        start = sum(p.shape[node.dim] for p in parts[: node.index])
        return g.narrow(node.dim, start, parts[node.index].shape[node.dim])

    def gradient(self, node, output_grad):
        # Only g takes a gradient: output_grad put back among zeros.
        parts = node.inputs[1:]
        pieces = [output_grad if i == node.index else zeros_like(p) for i, p in enumerate(parts)]
        return [concat(pieces, node.dim)] + [None] * len(parts)


class EmbeddingOp(OpBase):
    """Rows of `table` (V, D) picked by integer `ids` (any shape): shape ids.shape + (D,)."""

    name, inputs = "embedding", ("table", "ids")
    flops = no_flops

    forward = staticmethod(lambda table, ids: F.embedding(ids, table))

    def gradient(self, node, output_grad):
        table, ids = node.inputs
        return [embedding_backward(output_grad, ids, table), None]


class EmbeddingBackwardOp(OpBase):
    """g's rows scatter-added into zeros of like's (V, D) shape at `ids` (embedding's gradient)."""

    name, inputs = "embedding_backward", ("g", "ids", "like")
    flops = per_element(1)  # one add per element of g

    @staticmethod
    def forward(g, ids, like):
        return g.new_zeros(like.shape).index_add_(0, ids.reshape(-1), g.reshape(-1, like.shape[-1]))

    def gradient(self, node, output_grad):
        return [embedding(output_grad, node.inputs[1]), None, None]


class MaskedFillOp(OpBase):
    """a with `value` where mask (bool or 0/1, broadcastable to a) is true."""

    name, inputs, params = "masked_fill", ("a", "mask"), {"value": REQUIRED}
    flops = no_flops

    forward = staticmethod(lambda a, mask, value: a.masked_fill(mask.bool(), value))

    def gradient(self, node, output_grad):
        return [sum_to_shape(masked_fill(output_grad, node.inputs[1], 0.0), node.inputs[0]), None]


class WhereOp(OpBase):
    """a where cond is true, else b (broadcasting like torch.where)."""

    name, inputs = "where", ("cond", "a", "b")
    flops = no_flops

    forward = staticmethod(lambda cond, a, b: torch.where(cond.bool(), a, b))

    def gradient(self, node, output_grad):
        cond, a, b = node.inputs
        zeros = zeros_like(output_grad)
        ga, gb = where(cond, output_grad, zeros), where(cond, zeros, output_grad)
        return [None, sum_to_shape(ga, a), sum_to_shape(gb, b)]


reshape, reshape_as, unsqueeze, squeeze = ReshapeOp(), ReshapeAsOp(), UnsqueezeOp(), SqueezeOp()
transpose, permute, slice_op, slice_backward = TransposeOp(), PermuteOp(), SliceOp(), SliceBackwardOp()
concat, concat_part, embedding, embedding_backward = ConcatOp(), ConcatPartOp(), EmbeddingOp(), EmbeddingBackwardOp()
masked_fill, where = MaskedFillOp(), WhereOp()

__all__ = [
    "reshape", "reshape_as", "unsqueeze", "squeeze", "transpose", "permute", "slice_op", "slice_backward",
    "concat", "concat_part", "embedding", "embedding_backward", "masked_fill", "where",
]  # fmt: skip
