"""Elementwise ops (arithmetic, activations, comparisons) and the broadcasting pair sum_to_shape /
expand_as that every binary op's gradient uses. One class per op: its math, forward, gradient."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autodiff.graph import Node, walk_backward
from autodiff.ops.base import (
    REQUIRED,
    NoGradient,
    OpBase,
    Unary,
    WithConst,
    check_node,
    is_number,
    no_flops,
    per_element,
)


class Binary(OpBase):
    """a ∘ b, broadcasting like torch. `grads` gives the gradients before broadcasting is undone;
    `gradient` sums each back to its input's shape, the package's one broadcasting rule. A number b
    goes to `with_number(a, b)` (add -> add_by_const) when the op defines it."""

    inputs = ("a", "b")
    with_number = None  # (a, number) -> Node, for ops that take a number b

    def __call__(self, a, b) -> Node:
        if self.with_number and is_number(b):
            return self.with_number(check_node(a, self.name), b)
        check_node(b, self.name, "a Node or a number" if self.with_number else "a Node")
        return super().__call__(a, b)

    def grads(self, node: Node, g: Node) -> tuple[Node, Node]:
        raise NotImplementedError

    def flops(self, node, input_shapes):
        return math.prod(torch.broadcast_shapes(*input_shapes))  # one per output element

    def gradient(self, node, output_grad):
        a, b = node.inputs
        ga, gb = self.grads(node, output_grad)
        return [sum_to_shape(ga, a), sum_to_shape(gb, b)]


# --- arithmetic --------------------------------------------------------------------------------


class AddOp(Binary):
    """a + b."""

    name, symbol = "add", "+"
    forward = staticmethod(torch.add)

    with_number = staticmethod(lambda a, c: add_by_const(a, c))

    def grads(self, node, g):
        return g, g


class SubOp(Binary):
    """a - b."""

    name, symbol = "sub", "-"
    forward = staticmethod(torch.sub)

    with_number = staticmethod(lambda a, c: add_by_const(a, -c))

    def grads(self, node, g):
        return g, neg(g)


class MulOp(Binary):
    """a * b."""

    name, symbol = "mul", "*"
    forward = staticmethod(torch.mul)

    with_number = staticmethod(lambda a, c: mul_by_const(a, c))

    def grads(self, node, g):
        a, b = node.inputs
        return mul(g, b), mul(g, a)


class DivOp(Binary):
    """a / b."""

    name, symbol = "div", "/"
    forward = staticmethod(torch.div)

    with_number = staticmethod(lambda a, c: div_by_const(a, c))

    def grads(self, node, g):
        # db = -g * a / b^2 = -g * (a / b) / b
        b = node.inputs[1]
        return div(g, b), div(mul(neg(g), node), b)


class AddByConstOp(WithConst):
    """a + c for a number c."""

    name, symbol = "add_by_const", "+"
    forward = staticmethod(torch.add)

    def gradient(self, node, output_grad):
        return [output_grad]


class MulByConstOp(WithConst):
    """a * c for a number c."""

    name, symbol = "mul_by_const", "*"
    forward = staticmethod(torch.mul)

    def gradient(self, node, output_grad):
        return [mul_by_const(output_grad, node.constant)]


class DivByConstOp(WithConst):
    """a / c for a number c."""

    name, symbol = "div_by_const", "/"
    forward = staticmethod(torch.div)

    def gradient(self, node, output_grad):
        return [div_by_const(output_grad, node.constant)]


class RDivByConstOp(WithConst):
    """c / a for a number c."""

    name = "rdiv_by_const"

    forward = staticmethod(lambda a, constant: constant / a)

    def node_name(self, nodes, attrs):
        return "" if nodes[0].auto_named else f"({attrs['constant']!r}/{nodes[0].name})"

    def gradient(self, node, output_grad):
        # da = -g * c / a^2 = -g * (c / a) / a
        return [div(mul(neg(output_grad), node), node.inputs[0])]


class PowerOp(OpBase):
    """a ** p for a number p."""

    name, symbol, params = "power", "**", {"exponent": REQUIRED}
    forward = staticmethod(torch.pow)
    flops = per_element(1)

    def __call__(self, a, exponent) -> Node:
        if not is_number(exponent):
            raise TypeError(f"power: the exponent must be a number, got {type(exponent).__name__}")
        return super().__call__(a, exponent)

    def gradient(self, node, output_grad):
        p, a = node.exponent, node.inputs[0]
        # da = g * p * a^(p-1)
        return [zeros_like(a) if p == 0 else mul_by_const(mul(output_grad, power(a, p - 1)), p)]


# --- unary functions ---------------------------------------------------------------------------


class NegOp(Unary):
    """-a."""

    name, forward = "neg", staticmethod(torch.neg)

    def gradient(self, node, output_grad):
        return [neg(output_grad)]


class SqrtOp(Unary):
    """sqrt(a)."""

    name, forward = "sqrt", staticmethod(torch.sqrt)

    def gradient(self, node, output_grad):
        return [div(output_grad, mul_by_const(node, 2.0))]


class ExpOp(Unary):
    """exp(a)."""

    name, forward = "exp", staticmethod(torch.exp)

    def gradient(self, node, output_grad):
        return [mul(output_grad, node)]


class LogOp(Unary):
    """Natural log(a)."""

    name, forward = "log", staticmethod(torch.log)

    def gradient(self, node, output_grad):
        return [div(output_grad, node.inputs[0])]


class AbsOp(Unary):
    """|a| (gradient sign(a), 0 at 0 like torch)."""

    name, forward = "abs", staticmethod(torch.abs)

    def gradient(self, node, output_grad):
        return [mul(output_grad, sign(node.inputs[0]))]


class ReLUOp(Unary):
    """max(a, 0)."""

    name, forward = "relu", staticmethod(torch.relu)

    def gradient(self, node, output_grad):
        return [mul(output_grad, greater(node.inputs[0], 0.0))]


class SigmoidOp(Unary):
    """s = 1 / (1 + exp(-a))."""

    name, forward = "sigmoid", staticmethod(torch.sigmoid)

    def gradient(self, node, output_grad):
        return [sigmoid_backward(output_grad, node)]


class FusedBackward(OpBase):
    """A fused backward op: one torch kernel for a formula that `primitive` writes in primitive ops. Its own
    gradient (second order) differentiates that formula; `gradients(..., fused=False)` puts the formula in
    the op's place, to show what fusing saves."""

    def primitive(self, node: Node) -> Node:
        """The node's value as a graph of primitive ops over its inputs."""
        raise NotImplementedError

    def gradient(self, node, output_grad):
        return local_vjp(self.primitive(node), node.inputs, output_grad)


class SigmoidBackwardOp(FusedBackward):
    """Sigmoid's input gradient from upstream g and its output s, in one node: g * s * (1 - s)."""

    name, inputs = "sigmoid_backward", ("g", "s")
    forward = staticmethod(torch.ops.aten.sigmoid_backward.default)  # torch's one-pass kernel
    flops = per_element(3)  # g * s * (1 - s)

    def primitive(self, node):
        g, s = node.inputs
        return mul(g, mul(s, add_by_const(neg(s), 1.0)))


class TanhOp(Unary):
    """t = tanh(a)."""

    name, forward = "tanh", staticmethod(torch.tanh)

    def gradient(self, node, output_grad):
        return [tanh_backward(output_grad, node)]


class TanhBackwardOp(FusedBackward):
    """Tanh's input gradient from upstream g and its output t, in one node: g * (1 - t^2)."""

    name, inputs = "tanh_backward", ("g", "t")
    forward = staticmethod(torch.ops.aten.tanh_backward.default)  # torch's one-pass kernel
    flops = per_element(3)  # g * (1 - t * t)

    def primitive(self, node):
        g, t = node.inputs
        return mul(g, add_by_const(neg(mul(t, t)), 1.0))


class ErfOp(Unary):
    """The error function erf(a)."""

    name, forward = "erf", staticmethod(torch.erf)

    def gradient(self, node, output_grad):
        # da = g * 2/sqrt(pi) * exp(-a^2)
        a = node.inputs[0]
        return [mul(output_grad, mul_by_const(exp(neg(mul(a, a))), 2.0 / math.sqrt(math.pi)))]


class GeluOp(Unary):
    """GELU, exact form: a * Phi(a) with Phi the standard normal CDF."""

    name, forward = "gelu", staticmethod(F.gelu)

    def gradient(self, node, output_grad):
        return [gelu_backward(output_grad, node.inputs[0])]


class GeluBackwardOp(FusedBackward):
    """GELU's input gradient from upstream g and its input a, in one node: g * (Phi(a) + a * phi(a))."""

    name, inputs = "gelu_backward", ("g", "a")
    forward = staticmethod(torch.ops.aten.gelu_backward.default)  # torch's one-pass kernel
    flops = per_element(11)  # Phi(a): 4 (scale, erf, add, halve), phi(a): 4 (square, scale, exp, scale), 3 more

    def primitive(self, node):
        # Phi(a) = (1 + erf(a / sqrt 2)) / 2, phi(a) = exp(-a^2/2) / sqrt(2 pi)
        g, a = node.inputs
        cdf = mul_by_const(add_by_const(erf(mul_by_const(a, 1.0 / math.sqrt(2.0))), 1.0), 0.5)
        pdf = mul_by_const(exp(mul_by_const(mul(a, a), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
        return mul(g, add(cdf, mul(a, pdf)))


class SiLUOp(Unary):
    """SiLU: a * sigmoid(a)."""

    name, forward = "silu", staticmethod(F.silu)

    def gradient(self, node, output_grad):
        return [silu_backward(output_grad, node.inputs[0])]


class SiLUBackwardOp(FusedBackward):
    """SiLU's input gradient from upstream g and its input a, in one node: g * (s + a s (1 - s)), s = sigmoid(a)."""

    name, inputs = "silu_backward", ("g", "a")
    forward = staticmethod(torch.ops.aten.silu_backward.default)  # torch's one-pass kernel
    flops = per_element(6)  # s, a s, 1 - s, their product, the sum, times g

    def primitive(self, node):
        g, a = node.inputs
        s = sigmoid(a)
        return mul(g, add(s, mul(mul(a, s), add_by_const(neg(s), 1.0))))


def local_vjp(expr: Node, inputs: Sequence[Node], upstream: Node) -> list[Node]:
    """The vector-Jacobian product of `expr` with `upstream` w.r.t. `inputs` taken as independent
    leaves. A fused op (one torch kernel for a formula) returns this from its gradient rule, with
    the formula written in primitive ops, so its second order needs no derivation by hand."""
    grads = walk_backward(expr, upstream, inputs, add, stop_at_nodes=True)
    return [zeros_like(n) if g is None else g for n, g in zip(inputs, grads)]


# --- no gradient: piecewise constant, or values that only give a shape -------------------------


class SignOp(NoGradient):
    """sign(a) in {-1, 0, 1}."""

    name, forward = "sign", staticmethod(torch.sign)
    flops = per_element(1)


class GreaterOp(NoGradient):
    """1 where a > b else 0, in a's dtype; b is a node or a number (attr `constant`)."""

    name, symbol, inputs = "greater", ">", ("a", "b")

    def __call__(self, a, b) -> Node:
        if is_number(b):
            check_node(a, self.name)
            return Node([a], self, {"constant": b}, name=self.node_name([a], {"constant": b}))
        return super().__call__(a, b)

    @staticmethod
    def forward(a, b):  # b: a tensor, or the constant
        return (a > b).to(a.dtype)

    def flops(self, node, input_shapes):
        return math.prod(torch.broadcast_shapes(*input_shapes))  # one comparison per output element


class EqualOp(NoGradient):
    """1 where a == b else 0, in a's dtype (routes max's gradient)."""

    name, symbol, inputs = "equal", "==", ("a", "b")

    forward = staticmethod(lambda a, b: (a == b).to(a.dtype))
    flops = GreaterOp.flops


class ZerosLikeOp(NoGradient):
    """Zeros of a's shape, dtype and device."""

    name, forward, flops = "zeros_like", staticmethod(torch.zeros_like), no_flops


class OnesLikeOp(NoGradient):
    """Ones of a's shape, dtype and device."""

    name, forward, flops = "ones_like", staticmethod(torch.ones_like), no_flops


# --- broadcasting: the gradient of every binary op ---------------------------------------------


class SumToShapeOp(OpBase):
    """a summed down to like's shape, undoing torch broadcasting."""

    name, inputs = "sum_to_shape", ("a", "like")

    @staticmethod
    def forward(a, like):
        if a.shape == like.shape:
            return a
        extra = a.ndim - like.ndim
        dims = list(range(extra)) + [extra + i for i, n in enumerate(like.shape) if n == 1 and a.shape[extra + i] != 1]
        return (a.sum(dim=dims, keepdim=True) if dims else a).reshape(like.shape)

    def node_name(self, nodes, attrs):
        return "" if nodes[0].auto_named else nodes[0].name  # usually a no-op: named like what it passes on

    def passes_through(self, node, input_shapes):
        return 0 if input_shapes[0] == input_shapes[1] else None  # forward returns `a` itself then

    def flops(self, node, input_shapes):
        return 0 if input_shapes[0] == input_shapes[1] else math.prod(input_shapes[0])  # a sum, or nothing

    def gradient(self, node, output_grad):
        return [expand_as(output_grad, node.inputs[0]), None]


class ExpandAsOp(OpBase):
    """a expanded (broadcast) to b's shape."""

    name, inputs = "expand_as", ("a", "b")
    forward, flops = staticmethod(torch.Tensor.expand_as), no_flops  # a view

    def gradient(self, node, output_grad):
        return [sum_to_shape(output_grad, node.inputs[0]), None]


add, sub, mul, div = AddOp(), SubOp(), MulOp(), DivOp()
add_by_const, mul_by_const, div_by_const = AddByConstOp(), MulByConstOp(), DivByConstOp()
rdiv_by_const = RDivByConstOp()
neg, power, sqrt, exp, log, abs_op = NegOp(), PowerOp(), SqrtOp(), ExpOp(), LogOp(), AbsOp()
relu, sigmoid, tanh, erf, gelu, silu = ReLUOp(), SigmoidOp(), TanhOp(), ErfOp(), GeluOp(), SiLUOp()
gelu_backward, silu_backward = GeluBackwardOp(), SiLUBackwardOp()
sigmoid_backward, tanh_backward = SigmoidBackwardOp(), TanhBackwardOp()
sign, greater, equal, zeros_like, ones_like = SignOp(), GreaterOp(), EqualOp(), ZerosLikeOp(), OnesLikeOp()
sum_to_shape, expand_as = SumToShapeOp(), ExpandAsOp()

__all__ = [
    "add", "add_by_const", "sub", "mul", "mul_by_const", "div", "div_by_const", "rdiv_by_const", "neg", "power",
    "sqrt", "exp", "log", "abs_op", "sign", "relu", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "erf", "gelu", "gelu_backward", "silu", "silu_backward", "greater", "equal",
    "zeros_like", "ones_like", "sum_to_shape", "expand_as",
]  # fmt: skip
