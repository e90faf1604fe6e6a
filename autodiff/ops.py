"""Every op of the engine: one small class each, its forward (`compute`) beside its gradient rule.

Broadcasting policy: binary ops broadcast like torch, and their gradient rules sum the upstream
gradient back to each input's shape with `sum_to_shape`, so a gradient always has its input's shape.
Gradient rules build graph from other ops (never tensors), which is what makes second order work.
An input that takes no gradient (integer ids, masks, shape references) gets `None`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autodiff.graph import Node, Op, local_vjp, placeholder

__all__ = [  # every op instance, in the order of the sections below (the op test table uses this)
    "placeholder",
    "add", "add_by_const", "sub", "mul", "mul_by_const", "div", "div_by_const", "rdiv_by_const",
    "neg", "power", "sqrt", "exp", "log", "abs_op", "sign", "relu", "sigmoid", "tanh", "erf",
    "gelu", "silu", "greater", "equal", "zeros_like", "ones_like",
    "sum_op", "mean", "max_op", "expand_reduced", "sum_to_shape", "expand_as", "expand_as_3d",
    "broadcast",
    "reshape", "reshape_as", "unsqueeze", "squeeze", "transpose", "permute",
    "slice_op", "slice_backward", "concat", "concat_part", "embedding", "embedding_backward",
    "masked_fill", "where",
    "matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "layernorm",
    "layernorm_backward",
]  # fmt: skip


def _dims(dim, ndim: int) -> tuple[int, ...]:
    """Normalize an int, a sequence of ints or None to sorted non-negative dims, as torch reads them:
    None or an empty sequence means every dim, and a 0-d tensor takes dim 0 or -1 (and has none)."""
    if isinstance(dim, int):
        dim = (dim,)
    if not dim:
        return tuple(range(ndim))
    bound = max(ndim, 1)  # a 0-d tensor accepts the dims of a 1-d one
    for d in dim:
        if not -bound <= d < bound:
            raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dims (use -{bound} to {bound - 1})")
    return tuple(sorted(d % bound for d in dim)) if ndim else ()


def _as_dim_attr(dim):
    """Store dims as an int or a tuple (lists from users become tuples: attrs stay hashable)."""
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


NODE_OR_NUMBER = "a Node or a number"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_node(x, op_name: str, expected: str = "a Node"):
    if not isinstance(x, Node):
        raise TypeError(f"{op_name}: expected {expected}, got {type(x).__name__}")


class _Unary(Op):
    """Base for ops of one node input and optional constant attributes."""

    def __call__(self, node_a: Node, **attrs) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, attrs, name=f"{self.name}({node_a.name})")


def _binary_name(symbol: str, a: Node, b) -> str:
    b_name = b.name if isinstance(b, Node) else repr(b)
    return f"({a.name}{symbol}{b_name})"


# ---------------------------------------------------------------------------------------------
# Elementwise arithmetic
# ---------------------------------------------------------------------------------------------


class AddOp(Op):
    """a + b (broadcasting); a number b gives add_by_const."""

    name = "add"

    def __call__(self, node_a: Node, node_b) -> Node:
        if _is_number(node_b):
            return add_by_const(node_a, node_b)
        _check_node(node_a, self.name), _check_node(node_b, self.name, NODE_OR_NUMBER)
        return Node([node_a, node_b], self, name=_binary_name("+", node_a, node_b))

    def compute(self, node, input_values):
        return input_values[0] + input_values[1]

    def gradient(self, node, output_grad):
        a, b = node.inputs
        return [sum_to_shape(output_grad, a), sum_to_shape(output_grad, b)]


class AddByConstOp(Op):
    """a + c for a number c."""

    name = "add_by_const"

    def __call__(self, node_a: Node, const_val: float) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"constant": const_val}, name=_binary_name("+", node_a, const_val))

    def compute(self, node, input_values):
        return input_values[0] + node.constant

    def gradient(self, node, output_grad):
        return [output_grad]


class SubOp(Op):
    """a - b (broadcasting); a number b gives add_by_const(a, -b)."""

    name = "sub"

    def __call__(self, node_a: Node, node_b) -> Node:
        if _is_number(node_b):
            return add_by_const(node_a, -node_b)
        _check_node(node_a, self.name), _check_node(node_b, self.name, NODE_OR_NUMBER)
        return Node([node_a, node_b], self, name=_binary_name("-", node_a, node_b))

    def compute(self, node, input_values):
        return input_values[0] - input_values[1]

    def gradient(self, node, output_grad):
        a, b = node.inputs
        return [sum_to_shape(output_grad, a), sum_to_shape(neg(output_grad), b)]


class MulOp(Op):
    """a * b (broadcasting); a number b gives mul_by_const."""

    name = "mul"

    def __call__(self, node_a: Node, node_b) -> Node:
        if _is_number(node_b):
            return mul_by_const(node_a, node_b)
        _check_node(node_a, self.name), _check_node(node_b, self.name, NODE_OR_NUMBER)
        return Node([node_a, node_b], self, name=_binary_name("*", node_a, node_b))

    def compute(self, node, input_values):
        return input_values[0] * input_values[1]

    def gradient(self, node, output_grad):
        a, b = node.inputs
        return [sum_to_shape(mul(output_grad, b), a), sum_to_shape(mul(output_grad, a), b)]


class MulByConstOp(Op):
    """a * c for a number c."""

    name = "mul_by_const"

    def __call__(self, node_a: Node, const_val: float) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"constant": const_val}, name=_binary_name("*", node_a, const_val))

    def compute(self, node, input_values):
        return input_values[0] * node.constant

    def gradient(self, node, output_grad):
        return [mul_by_const(output_grad, node.constant)]


class DivOp(Op):
    """a / b (broadcasting); a number b gives div_by_const."""

    name = "div"

    def __call__(self, node_a: Node, node_b) -> Node:
        if _is_number(node_b):
            return div_by_const(node_a, node_b)
        _check_node(node_a, self.name), _check_node(node_b, self.name, NODE_OR_NUMBER)
        return Node([node_a, node_b], self, name=_binary_name("/", node_a, node_b))

    def compute(self, node, input_values):
        return input_values[0] / input_values[1]

    def gradient(self, node, output_grad):
        a, b = node.inputs
        # db = -g * a / b^2 = -g * (a / b) / b
        return [sum_to_shape(div(output_grad, b), a), sum_to_shape(div(mul(neg(output_grad), node), b), b)]


class DivByConstOp(Op):
    """a / c for a number c."""

    name = "div_by_const"

    def __call__(self, node_a: Node, const_val: float) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"constant": const_val}, name=_binary_name("/", node_a, const_val))

    def compute(self, node, input_values):
        return input_values[0] / node.constant

    def gradient(self, node, output_grad):
        return [div_by_const(output_grad, node.constant)]


class RDivByConstOp(Op):
    """c / a for a number c."""

    name = "rdiv_by_const"

    def __call__(self, node_a: Node, const_val: float) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"constant": const_val}, name=f"({const_val!r}/{node_a.name})")

    def compute(self, node, input_values):
        return node.constant / input_values[0]

    def gradient(self, node, output_grad):
        # da = -g * c / a^2 = -g * (c / a) / a
        return [div(mul(neg(output_grad), node), node.inputs[0])]


class NegOp(_Unary):
    """-a."""

    name = "neg"

    def compute(self, node, input_values):
        return -input_values[0]

    def gradient(self, node, output_grad):
        return [neg(output_grad)]


class PowerOp(Op):
    """a ** p for a number p."""

    name = "power"

    def __call__(self, node_a: Node, exponent: float) -> Node:
        _check_node(node_a, self.name)
        if not _is_number(exponent):
            raise TypeError(f"power: the exponent must be a number, got {type(exponent).__name__}")
        return Node([node_a], self, {"exponent": exponent}, name=f"({node_a.name}**{exponent!r})")

    def compute(self, node, input_values):
        return input_values[0] ** node.exponent

    def gradient(self, node, output_grad):
        p = node.exponent
        if p == 0:
            return [zeros_like(node.inputs[0])]
        # da = g * p * a^(p-1)
        return [mul_by_const(mul(output_grad, power(node.inputs[0], p - 1)), p)]


class SqrtOp(_Unary):
    """sqrt(a)."""

    name = "sqrt"

    def compute(self, node, input_values):
        return torch.sqrt(input_values[0])

    def gradient(self, node, output_grad):
        return [div(output_grad, mul_by_const(node, 2.0))]


class ExpOp(_Unary):
    """exp(a)."""

    name = "exp"

    def compute(self, node, input_values):
        return torch.exp(input_values[0])

    def gradient(self, node, output_grad):
        return [mul(output_grad, node)]


class LogOp(_Unary):
    """Natural log(a)."""

    name = "log"

    def compute(self, node, input_values):
        return torch.log(input_values[0])

    def gradient(self, node, output_grad):
        return [div(output_grad, node.inputs[0])]


class AbsOp(_Unary):
    """|a| (gradient sign(a), 0 at 0 like torch)."""

    name = "abs"

    def compute(self, node, input_values):
        return torch.abs(input_values[0])

    def gradient(self, node, output_grad):
        return [mul(output_grad, sign(node.inputs[0]))]


class SignOp(_Unary):
    """sign(a) in {-1, 0, 1}; its gradient is zero almost everywhere, so none."""

    name = "sign"

    def compute(self, node, input_values):
        return torch.sign(input_values[0])

    def gradient(self, node, output_grad):
        return [None]


class ReLUOp(_Unary):
    """max(a, 0)."""

    name = "relu"

    def compute(self, node, input_values):
        return torch.relu(input_values[0])

    def gradient(self, node, output_grad):
        return [mul(output_grad, greater(node.inputs[0], 0.0))]


class SigmoidOp(_Unary):
    """1 / (1 + exp(-a))."""

    name = "sigmoid"

    def compute(self, node, input_values):
        return torch.sigmoid(input_values[0])

    def gradient(self, node, output_grad):
        # da = g * s * (1 - s)
        return [mul(output_grad, mul(node, add_by_const(neg(node), 1.0)))]


class TanhOp(_Unary):
    """tanh(a)."""

    name = "tanh"

    def compute(self, node, input_values):
        return torch.tanh(input_values[0])

    def gradient(self, node, output_grad):
        # da = g * (1 - t^2)
        return [mul(output_grad, add_by_const(neg(mul(node, node)), 1.0))]


class ErfOp(_Unary):
    """The error function erf(a)."""

    name = "erf"

    def compute(self, node, input_values):
        return torch.erf(input_values[0])

    def gradient(self, node, output_grad):
        # da = g * 2/sqrt(pi) * exp(-a^2)
        a = node.inputs[0]
        return [mul(output_grad, mul_by_const(exp(neg(mul(a, a))), 2.0 / math.sqrt(math.pi)))]


class GeluOp(_Unary):
    """GELU, exact form: a * Phi(a) with Phi the standard normal CDF."""

    name = "gelu"

    def compute(self, node, input_values):
        return F.gelu(input_values[0])

    def gradient(self, node, output_grad):
        # da = g * (Phi(a) + a * phi(a)); Phi(a) = (1 + erf(a / sqrt 2)) / 2, phi(a) = exp(-a^2/2) / sqrt(2 pi)
        a = node.inputs[0]
        cdf = mul_by_const(add_by_const(erf(mul_by_const(a, 1.0 / math.sqrt(2.0))), 1.0), 0.5)
        pdf = mul_by_const(exp(mul_by_const(mul(a, a), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
        return [mul(output_grad, add(cdf, mul(a, pdf)))]


class SiLUOp(_Unary):
    """SiLU: a * sigmoid(a)."""

    name = "silu"

    def compute(self, node, input_values):
        return F.silu(input_values[0])

    def gradient(self, node, output_grad):
        # da = g * (s + a * s * (1 - s)) with s = sigmoid(a)
        a = node.inputs[0]
        s = sigmoid(a)
        return [mul(output_grad, add(s, mul(mul(a, s), add_by_const(neg(s), 1.0))))]


class GreaterOp(Op):
    """1 where a > b else 0, in a's dtype; b is a node or a number. Zero gradient."""

    name = "greater"

    def __call__(self, node_a: Node, node_b) -> Node:
        _check_node(node_a, self.name)
        if _is_number(node_b):
            return Node([node_a], self, {"constant": node_b}, name=_binary_name(">", node_a, node_b))
        _check_node(node_b, self.name)
        return Node([node_a, node_b], self, name=_binary_name(">", node_a, node_b))

    def compute(self, node, input_values):
        a = input_values[0]
        b = input_values[1] if len(input_values) == 2 else node.constant
        return (a > b).to(a.dtype)

    def gradient(self, node, output_grad):
        # As in the assignment: real zeros for every input.
        return [zeros_like(x) for x in node.inputs]


class EqualOp(Op):
    """1 where a == b else 0, in a's dtype (used to route max's gradient). No gradient."""

    name = "equal"

    def __call__(self, node_a: Node, node_b: Node) -> Node:
        _check_node(node_a, self.name), _check_node(node_b, self.name)
        return Node([node_a, node_b], self, name=_binary_name("==", node_a, node_b))

    def compute(self, node, input_values):
        return (input_values[0] == input_values[1]).to(input_values[0].dtype)

    def gradient(self, node, output_grad):
        return [None, None]


class ZerosLikeOp(_Unary):
    """Zeros of a's shape, dtype and device."""

    name = "zeros_like"

    def compute(self, node, input_values):
        return torch.zeros_like(input_values[0])

    def gradient(self, node, output_grad):
        return [None]


class OnesLikeOp(_Unary):
    """Ones of a's shape, dtype and device."""

    name = "ones_like"

    def compute(self, node, input_values):
        return torch.ones_like(input_values[0])

    def gradient(self, node, output_grad):
        return [None]


# ---------------------------------------------------------------------------------------------
# Reductions and broadcasting
# ---------------------------------------------------------------------------------------------


class SumOp(Op):
    """Sum of a over `dim` (an int, a tuple of ints, or None for all)."""

    name = "sum"

    def __call__(self, node_a: Node, dim=None, keepdim: bool = False) -> Node:
        _check_node(node_a, self.name)
        attrs = {"dim": _as_dim_attr(dim), "keepdim": keepdim}
        return Node([node_a], self, attrs, name=f"sum({node_a.name})")

    def compute(self, node, input_values):
        a = input_values[0]
        return a.sum(dim=_dims(node.dim, a.ndim), keepdim=node.keepdim)

    def gradient(self, node, output_grad):
        return [expand_reduced(output_grad, node.inputs[0], node.dim, node.keepdim)]


class MeanOp(Op):
    """Mean of a over `dim` (an int, a tuple of ints, or None for all)."""

    name = "mean"

    def __call__(self, node_a: Node, dim=None, keepdim: bool = False) -> Node:
        _check_node(node_a, self.name)
        attrs = {"dim": _as_dim_attr(dim), "keepdim": keepdim}
        return Node([node_a], self, attrs, name=f"mean({node_a.name})")

    def compute(self, node, input_values):
        a = input_values[0]
        return a.mean(dim=_dims(node.dim, a.ndim), keepdim=node.keepdim)

    def gradient(self, node, output_grad):
        return [expand_reduced(output_grad, node.inputs[0], node.dim, node.keepdim, mean=True)]


class MaxOp(Op):
    """Max values of a over `dim`; the gradient is shared equally among tied maxima (like amax)."""

    name = "max"

    def __call__(self, node_a: Node, dim=None, keepdim: bool = False) -> Node:
        _check_node(node_a, self.name)
        attrs = {"dim": _as_dim_attr(dim), "keepdim": keepdim}
        return Node([node_a], self, attrs, name=f"max({node_a.name})")

    def compute(self, node, input_values):
        a = input_values[0]
        return a.amax(dim=_dims(node.dim, a.ndim), keepdim=node.keepdim)

    def gradient(self, node, output_grad):
        a = node.inputs[0]
        is_max = equal(a, expand_reduced(node, a, node.dim, node.keepdim))
        count = expand_reduced(sum_op(is_max, node.dim, keepdim=True), a, node.dim, keepdim=True)
        return [div(mul(expand_reduced(output_grad, a, node.dim, node.keepdim), is_max), count)]


class ExpandReducedOp(Op):
    """Spread g (a reduction of `like` over `dim`) back to like's shape; with mean=True divide by
    the number of reduced elements. The gradient of sum and mean."""

    name = "expand_reduced"

    def __call__(self, node_g: Node, like: Node, dim=None, keepdim: bool = False, mean: bool = False) -> Node:
        _check_node(node_g, self.name), _check_node(like, self.name)
        attrs = {"dim": _as_dim_attr(dim), "keepdim": keepdim, "mean": mean}
        return Node([node_g, like], self, attrs, name=f"expand_reduced({node_g.name})")

    def compute(self, node, input_values):
        g, like = input_values
        dims = _dims(node.dim, like.ndim)
        if not node.keepdim:
            for d in dims:  # ascending, so each index is already right after the earlier inserts
                g = g.unsqueeze(d)
        out = g.expand(like.shape)
        if node.mean:
            out = out / math.prod(like.shape[d] for d in dims)
        return out

    def gradient(self, node, output_grad):
        reduce = mean if node.mean else sum_op
        return [reduce(output_grad, node.dim, node.keepdim), None]


class SumToShapeOp(Op):
    """Sum a down to like's shape, undoing torch broadcasting (the gradient of every binary op)."""

    name = "sum_to_shape"

    def __call__(self, node_a: Node, like: Node) -> Node:
        _check_node(node_a, self.name), _check_node(like, self.name)
        return Node([node_a, like], self, name=f"sum_to_shape({node_a.name}, {like.name})")

    def compute(self, node, input_values):
        a, like = input_values
        if a.shape == like.shape:
            return a
        extra = a.ndim - like.ndim
        dims = list(range(extra)) + [extra + i for i, n in enumerate(like.shape) if n == 1 and a.shape[extra + i] != 1]
        out = a.sum(dim=dims, keepdim=True) if dims else a
        return out.reshape(like.shape)

    def gradient(self, node, output_grad):
        return [expand_as(output_grad, node.inputs[0]), None]


class ExpandAsOp(Op):
    """a expanded (broadcast) to b's shape."""

    name = "expand_as"

    def __call__(self, node_a: Node, node_b: Node) -> Node:
        _check_node(node_a, self.name), _check_node(node_b, self.name)
        return Node([node_a, node_b], self, name=f"expand_as({node_a.name}, {node_b.name})")

    def compute(self, node, input_values):
        return input_values[0].expand_as(input_values[1])

    def gradient(self, node, output_grad):
        return [sum_to_shape(output_grad, node.inputs[0]), None]


class ExpandAs3dOp(Op):
    """a with a new dim 1 inserted, expanded to b's shape ((B, D) -> (B, T, D))."""

    name = "expand_as_3d"

    def __call__(self, node_a: Node, node_b: Node) -> Node:
        _check_node(node_a, self.name), _check_node(node_b, self.name)
        return Node([node_a, node_b], self, name=f"expand_as_3d({node_a.name}, {node_b.name})")

    def compute(self, node, input_values):
        return input_values[0].unsqueeze(1).expand_as(input_values[1])

    def gradient(self, node, output_grad):
        a = node.inputs[0]
        return [squeeze(sum_to_shape(output_grad, unsqueeze(a, 1)), 1), None]


class BroadcastOp(Op):
    """a (of input_shape) expanded to target_shape."""

    name = "broadcast"

    def __call__(self, node_a: Node, input_shape: Sequence[int], target_shape: Sequence[int]) -> Node:
        _check_node(node_a, self.name)
        attrs = {"input_shape": tuple(input_shape), "target_shape": tuple(target_shape)}
        return Node([node_a], self, attrs, name=f"broadcast({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].expand(node.target_shape)

    def gradient(self, node, output_grad):
        return [sum_to_shape(output_grad, node.inputs[0])]


# ---------------------------------------------------------------------------------------------
# Shape and indexing
# ---------------------------------------------------------------------------------------------


class ReshapeOp(Op):
    """a reshaped to `shape` (one entry may be -1)."""

    name = "reshape"

    def __call__(self, node_a: Node, shape: Sequence[int]) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"shape": tuple(shape)}, name=f"reshape({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].reshape(node.shape)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class ReshapeAsOp(Op):
    """a reshaped to like's shape."""

    name = "reshape_as"

    def __call__(self, node_a: Node, like: Node) -> Node:
        _check_node(node_a, self.name), _check_node(like, self.name)
        return Node([node_a, like], self, name=f"reshape_as({node_a.name}, {like.name})")

    def compute(self, node, input_values):
        return input_values[0].reshape(input_values[1].shape)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0]), None]


class UnsqueezeOp(Op):
    """a with a new size-1 dim at `dim`."""

    name = "unsqueeze"

    def __call__(self, node_a: Node, dim: int) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dim": dim}, name=f"unsqueeze({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].unsqueeze(node.dim)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class SqueezeOp(Op):
    """a without its size-1 dim `dim`."""

    name = "squeeze"

    def __call__(self, node_a: Node, dim: int) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dim": dim}, name=f"squeeze({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].squeeze(node.dim)

    def gradient(self, node, output_grad):
        return [reshape_as(output_grad, node.inputs[0])]


class TransposeOp(Op):
    """a with dims dim0 and dim1 swapped."""

    name = "transpose"

    def __call__(self, node_a: Node, dim0: int = -2, dim1: int = -1) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dim0": dim0, "dim1": dim1}, name=f"transpose({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].transpose(node.dim0, node.dim1)

    def gradient(self, node, output_grad):
        return [transpose(output_grad, node.dim0, node.dim1)]


class PermuteOp(Op):
    """a with its dims reordered to `dims`."""

    name = "permute"

    def __call__(self, node_a: Node, dims: Sequence[int]) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dims": tuple(dims)}, name=f"permute({node_a.name})")

    def compute(self, node, input_values):
        return input_values[0].permute(node.dims)

    def gradient(self, node, output_grad):
        n = len(node.dims)
        inverse = [0] * n
        for i, d in enumerate(node.dims):
            inverse[d % n] = i
        return [permute(output_grad, inverse)]


class SliceOp(Op):
    """a[start:end] along `dim` (Python slice rules: negative and None bounds allowed)."""

    name = "slice"

    def __call__(self, node_a: Node, dim: int, start: int | None = None, end: int | None = None) -> Node:
        _check_node(node_a, self.name)
        attrs = {"dim": dim, "start": start, "end": end}
        return Node([node_a], self, attrs, name=f"slice({node_a.name})")

    def compute(self, node, input_values):
        a = input_values[0]
        index = [slice(None)] * a.ndim
        index[node.dim] = slice(node.start, node.end)
        return a[tuple(index)]

    def gradient(self, node, output_grad):
        return [slice_backward(output_grad, node.inputs[0], node.dim, node.start, node.end)]


class SliceBackwardOp(Op):
    """Zeros of like's shape with g written at [start:end] along `dim` (the gradient of slice)."""

    name = "slice_backward"

    def __call__(self, node_g: Node, like: Node, dim: int, start: int | None, end: int | None) -> Node:
        _check_node(node_g, self.name), _check_node(like, self.name)
        attrs = {"dim": dim, "start": start, "end": end}
        return Node([node_g, like], self, attrs, name=f"slice_backward({node_g.name})")

    def compute(self, node, input_values):
        g, like = input_values
        out = g.new_zeros(like.shape)
        index = [slice(None)] * like.ndim
        index[node.dim] = slice(node.start, node.end)
        out[tuple(index)] = g
        return out

    def gradient(self, node, output_grad):
        return [slice_op(output_grad, node.dim, node.start, node.end), None]


class ConcatOp(Op):
    """The inputs joined along `dim`."""

    name = "concat"

    def __call__(self, nodes: Sequence[Node], dim: int = 0) -> Node:
        if not nodes:
            raise ValueError("concat: needs at least one node")
        for n in nodes:
            _check_node(n, self.name)
        names = ", ".join(n.name for n in nodes)
        return Node(list(nodes), self, {"dim": dim}, name=f"concat({names})")

    def compute(self, node, input_values):
        return torch.cat(input_values, dim=node.dim)

    def gradient(self, node, output_grad):
        return [concat_part(output_grad, node.inputs, i, node.dim) for i in range(len(node.inputs))]


class ConcatPartOp(Op):
    """The part of g (a concat of `parts` along `dim`) that came from parts[index]."""

    name = "concat_part"

    def __call__(self, node_g: Node, parts: Sequence[Node], index: int, dim: int) -> Node:
        _check_node(node_g, self.name)
        attrs = {"index": index, "dim": dim}
        return Node([node_g, *parts], self, attrs, name=f"concat_part({node_g.name}, {index})")

    def compute(self, node, input_values):
        g, parts = input_values[0], input_values[1:]
        start = sum(p.shape[node.dim] for p in parts[: node.index])
        return g.narrow(node.dim, start, parts[node.index].shape[node.dim])

    def gradient(self, node, output_grad):
        # Only g is differentiable: its gradient is output_grad put back among zeros.
        parts = node.inputs[1:]
        pieces = [output_grad if i == node.index else zeros_like(p) for i, p in enumerate(parts)]
        return [concat(pieces, node.dim)] + [None] * len(parts)


class EmbeddingOp(Op):
    """Rows of `table` (V, D) picked by integer `ids` (any shape): output ids.shape + (D,)."""

    name = "embedding"

    def __call__(self, table: Node, ids: Node) -> Node:
        _check_node(table, self.name), _check_node(ids, self.name)
        return Node([table, ids], self, name=f"embedding({table.name}, {ids.name})")

    def compute(self, node, input_values):
        table, ids = input_values
        return F.embedding(ids, table)

    def gradient(self, node, output_grad):
        table, ids = node.inputs
        return [embedding_backward(output_grad, ids, table), None]


class EmbeddingBackwardOp(Op):
    """g's rows scatter-added into zeros of like's (V, D) shape at `ids` (the gradient of embedding)."""

    name = "embedding_backward"

    def __call__(self, node_g: Node, ids: Node, like: Node) -> Node:
        for n in (node_g, ids, like):
            _check_node(n, self.name)
        return Node([node_g, ids, like], self, name=f"embedding_backward({node_g.name})")

    def compute(self, node, input_values):
        g, ids, like = input_values
        out = g.new_zeros(like.shape)
        return out.index_add_(0, ids.reshape(-1), g.reshape(-1, like.shape[-1]))

    def gradient(self, node, output_grad):
        return [embedding(output_grad, node.inputs[1]), None, None]


class MaskedFillOp(Op):
    """a with `value` where mask is true (mask: a bool or 0/1 tensor broadcastable to a)."""

    name = "masked_fill"

    def __call__(self, node_a: Node, mask: Node, value: float) -> Node:
        _check_node(node_a, self.name), _check_node(mask, self.name, "a Node for the mask")
        return Node([node_a, mask], self, {"value": value}, name=f"masked_fill({node_a.name}, {mask.name})")

    def compute(self, node, input_values):
        a, mask = input_values
        return a.masked_fill(mask.bool(), node.value)

    def gradient(self, node, output_grad):
        return [sum_to_shape(masked_fill(output_grad, node.inputs[1], 0.0), node.inputs[0]), None]


class WhereOp(Op):
    """a where cond is true, else b (broadcasting like torch.where)."""

    name = "where"

    def __call__(self, cond: Node, node_a: Node, node_b: Node) -> Node:
        for n in (cond, node_a, node_b):
            _check_node(n, self.name)
        return Node([cond, node_a, node_b], self, name=f"where({cond.name}, {node_a.name}, {node_b.name})")

    def compute(self, node, input_values):
        cond, a, b = input_values
        return torch.where(cond.bool(), a, b)

    def gradient(self, node, output_grad):
        cond, a, b = node.inputs
        zeros = zeros_like(output_grad)
        return [
            None,
            sum_to_shape(where(cond, output_grad, zeros), a),
            sum_to_shape(where(cond, zeros, output_grad), b),
        ]


# ---------------------------------------------------------------------------------------------
# Linear algebra and normalization
# ---------------------------------------------------------------------------------------------


class MatMulOp(Op):
    """a @ b, batched, with batch dims broadcasting like torch (both inputs at least 2-D)."""

    name = "matmul"

    def __call__(self, node_a: Node, node_b: Node) -> Node:
        _check_node(node_a, self.name), _check_node(node_b, self.name)
        return Node([node_a, node_b], self, name=_binary_name("@", node_a, node_b))

    def compute(self, node, input_values):
        a, b = input_values
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("matmul needs inputs of at least 2 dims; reshape a vector to (1, n) or (n, 1)")
        return a @ b

    def gradient(self, node, output_grad):
        a, b = node.inputs
        # da = g b^T, db = a^T g, each summed over the batch dims it was broadcast along
        return [
            sum_to_shape(matmul(output_grad, transpose(b, -1, -2)), a),
            sum_to_shape(matmul(transpose(a, -1, -2), output_grad), b),
        ]


class SoftmaxOp(Op):
    """exp(a) / sum(exp(a)) along `dim` (stable: torch subtracts the max)."""

    name = "softmax"

    def __call__(self, node_a: Node, dim: int = -1) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dim": dim}, name=f"softmax({node_a.name})")

    def compute(self, node, input_values):
        return torch.softmax(input_values[0], dim=node.dim)

    def gradient(self, node, output_grad):
        return [softmax_backward(output_grad, node, node.dim)]


class SoftmaxBackwardOp(Op):
    """softmax's input gradient from upstream g and its output y, in one node: y * (g - sum(g * y))."""

    name = "softmax_backward"

    def __call__(self, node_g: Node, node_y: Node, dim: int) -> Node:
        _check_node(node_g, self.name), _check_node(node_y, self.name)
        return Node([node_g, node_y], self, {"dim": dim}, name=f"softmax_backward({node_g.name})")

    def compute(self, node, input_values):
        g, y = input_values
        # torch's fused kernel for exactly y * (g - sum(g * y, dim)): one pass instead of four
        return torch._softmax_backward_data(g, y, node.dim, y.dtype)

    def gradient(self, node, output_grad):
        # Second order: the same formula in primitive ops, differentiated by the engine.
        g, y = node.inputs
        formula = mul(y, sub(g, sum_op(mul(g, y), node.dim, keepdim=True)))
        return local_vjp(formula, [g, y], output_grad)


class LogSoftmaxOp(Op):
    """a - log(sum(exp(a))) along `dim`, computed stably."""

    name = "log_softmax"

    def __call__(self, node_a: Node, dim: int = -1) -> Node:
        _check_node(node_a, self.name)
        return Node([node_a], self, {"dim": dim}, name=f"log_softmax({node_a.name})")

    def compute(self, node, input_values):
        return torch.log_softmax(input_values[0], dim=node.dim)

    def gradient(self, node, output_grad):
        return [log_softmax_backward(output_grad, node, node.dim)]


class LogSoftmaxBackwardOp(Op):
    """log_softmax's input gradient from upstream g and its output y, in one node:
    g - exp(y) * sum(g) (exp(y) is the softmax)."""

    name = "log_softmax_backward"

    def __call__(self, node_g: Node, node_y: Node, dim: int) -> Node:
        _check_node(node_g, self.name), _check_node(node_y, self.name)
        return Node([node_g, node_y], self, {"dim": dim}, name=f"log_softmax_backward({node_g.name})")

    def compute(self, node, input_values):
        g, y = input_values
        # torch's fused kernel for exactly g - exp(y) * sum(g, dim)
        return torch._log_softmax_backward_data(g, y, node.dim, y.dtype)

    def gradient(self, node, output_grad):
        g, y = node.inputs
        formula = sub(g, mul(exp(y), sum_op(g, node.dim, keepdim=True)))
        return local_vjp(formula, [g, y], output_grad)


class LayerNormOp(Op):
    """(a - mean) / sqrt(var + eps) over the last len(normalized_shape) dims; no affine parameters."""

    name = "layernorm"

    def __call__(self, node_a: Node, normalized_shape: Sequence[int], eps: float = 1e-5) -> Node:
        _check_node(node_a, self.name)
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        attrs = {"normalized_shape": tuple(normalized_shape), "eps": eps}
        return Node([node_a], self, attrs, name=f"layernorm({node_a.name})")

    def compute(self, node, input_values):
        return F.layer_norm(input_values[0], node.normalized_shape, eps=node.eps)

    def gradient(self, node, output_grad):
        return [layernorm_backward(output_grad, node.inputs[0], node.normalized_shape, node.eps)]


class LayerNormBackwardOp(Op):
    """layernorm's input gradient from upstream g and its input a, in one node:
    rstd * (g - mean(g) - y * mean(g * y)), with y = layernorm(a) and means over the normalized dims."""

    name = "layernorm_backward"

    def __call__(self, node_g: Node, node_a: Node, normalized_shape: Sequence[int], eps: float) -> Node:
        _check_node(node_g, self.name), _check_node(node_a, self.name)
        attrs = {"normalized_shape": tuple(normalized_shape), "eps": eps}
        return Node([node_g, node_a], self, attrs, name=f"layernorm_backward({node_g.name})")

    def compute(self, node, input_values):
        g, a = input_values
        # torch's fused kernels: the statistics of a, then exactly the formula above in one pass
        shape = list(node.normalized_shape)
        _, mu, rstd = torch.ops.aten.native_layer_norm(a, shape, None, None, node.eps)
        return torch.ops.aten.native_layer_norm_backward(g, a, shape, mu, rstd, None, None, [True, False, False])[0]

    def gradient(self, node, output_grad):
        # Second order: the same formula in primitive ops, differentiated by the engine.
        g, a = node.inputs
        dims = tuple(range(-len(node.normalized_shape), 0))
        centered = sub(a, mean(a, dims, keepdim=True))
        rstd = power(add_by_const(mean(mul(centered, centered), dims, keepdim=True), node.eps), -0.5)
        y = mul(centered, rstd)
        inner = sub(sub(g, mean(g, dims, keepdim=True)), mul(y, mean(mul(g, y), dims, keepdim=True)))
        return local_vjp(mul(rstd, inner), [g, a], output_grad)


# ---------------------------------------------------------------------------------------------
# The op instances: call these as functions.
# ---------------------------------------------------------------------------------------------

add = AddOp()
add_by_const = AddByConstOp()
sub = SubOp()
mul = MulOp()
mul_by_const = MulByConstOp()
div = DivOp()
div_by_const = DivByConstOp()
rdiv_by_const = RDivByConstOp()
neg = NegOp()
power = PowerOp()
sqrt = SqrtOp()
exp = ExpOp()
log = LogOp()
abs_op = AbsOp()
sign = SignOp()
relu = ReLUOp()
sigmoid = SigmoidOp()
tanh = TanhOp()
erf = ErfOp()
gelu = GeluOp()
silu = SiLUOp()
greater = GreaterOp()
equal = EqualOp()
zeros_like = ZerosLikeOp()
ones_like = OnesLikeOp()
sum_op = SumOp()
mean = MeanOp()
max_op = MaxOp()
expand_reduced = ExpandReducedOp()
sum_to_shape = SumToShapeOp()
expand_as = ExpandAsOp()
expand_as_3d = ExpandAs3dOp()
broadcast = BroadcastOp()
reshape = ReshapeOp()
reshape_as = ReshapeAsOp()
unsqueeze = UnsqueezeOp()
squeeze = SqueezeOp()
transpose = TransposeOp()
permute = PermuteOp()
slice_op = SliceOp()
slice_backward = SliceBackwardOp()
concat = ConcatOp()
concat_part = ConcatPartOp()
embedding = EmbeddingOp()
embedding_backward = EmbeddingBackwardOp()
masked_fill = MaskedFillOp()
where = WhereOp()
matmul = MatMulOp()
softmax = SoftmaxOp()
softmax_backward = SoftmaxBackwardOp()
log_softmax = LogSoftmaxOp()
log_softmax_backward = LogSoftmaxBackwardOp()
layernorm = LayerNormOp()
layernorm_backward = LayerNormBackwardOp()
