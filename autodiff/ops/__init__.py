"""Every op of the engine, one small class each: its math in the docstring, `forward` on tensors
beside `gradient` (gradient *nodes*, built from other ops, so second order comes free).

Sections: `elementwise` (arithmetic, activations, comparisons, sum_to_shape), `shape` (reshape,
slice, concat, embedding, where...), `reductions` (sum, mean, max and their expansions) and `nn`
(matmul, softmax, log_softmax, layernorm and their fused backward ops), `transformer` (sin, cos,
rmsnorm, layernorm_gain, rope, cross_entropy: what the text models add); `base` holds the base
classes that build a node from an op's declared `inputs` and `params`.

Policies, written once:
- Broadcasting: binary ops broadcast like torch; `Binary.gradient` sums each input's gradient back
  to its shape with `sum_to_shape`. A gradient always has its input's shape (the planner checks it).
- No gradient: an input that takes none (integer ids, masks, comparisons such as `greater` and
  `equal`, shape references like `like`) gets `None`, never a zeros node; `gradients()` turns a
  variable that received nothing into a real zero tensor.
- Attrs are constants (numbers, tuples) stored on the node in `params` order; lists become tuples.

Adding an op (see README "Adding an op"): in the right section write
    class CubeOp(Unary):
        \"\"\"a ** 3.\"\"\"
        name, forward = "cube", staticmethod(lambda a: a**3)
        def gradient(self, node, output_grad):
            return [mul_by_const(mul(output_grad, mul(node.inputs[0], node.inputs[0])), 3.0)]
make the instance at the bottom of that module (`cube = CubeOp()`), add its name to that module's
`__all__`, and add a row to `CASES` in tests/autodiff/test_autodiff_ops.py (a test fails until you do).
"""

from __future__ import annotations

import math

from autodiff.graph import Node, placeholder
from autodiff.ops import elementwise, nn, reductions, shape, transformer
from autodiff.ops.elementwise import *  # noqa: F403
from autodiff.ops.nn import *  # noqa: F403
from autodiff.ops.reductions import *  # noqa: F403
from autodiff.ops.shape import *  # noqa: F403
from autodiff.ops.transformer import *  # noqa: F403

# Every op instance, section by section (the op test table checks that each has a row).
__all__ = [
    "placeholder", *elementwise.__all__, *reductions.__all__, *shape.__all__, *nn.__all__, *transformer.__all__
]  # fmt: skip


# Python operators on nodes (`x + y`, `2 * x`, `x @ w`) are these ops. They are attached here, not
# written in graph.py, so the graph machinery never imports the ops (the ops import it).
def _number(value, operator: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = type(value).__name__
        raise TypeError(f"unsupported operand for '{operator}': expected a Node or a number, got {kind}")
    return value


def _rpow(node: Node, base) -> Node:
    # c ** x = exp(x * ln c), defined for a positive number base c.
    base = _number(base, "**")
    if base <= 0:
        raise ValueError(f"{base} ** node: the base must be a positive number")
    return elementwise.exp(elementwise.mul_by_const(node, math.log(base)))


_ew = elementwise
Node.__add__ = Node.__radd__ = lambda self, other: _ew.add(self, other)
Node.__sub__ = lambda self, other: _ew.sub(self, other)
Node.__rsub__ = lambda self, other: _ew.add_by_const(_ew.neg(self), _number(other, "-"))
Node.__mul__ = Node.__rmul__ = lambda self, other: _ew.mul(self, other)
Node.__truediv__ = lambda self, other: _ew.div(self, other)
Node.__rtruediv__ = lambda self, other: _ew.rdiv_by_const(self, _number(other, "/"))
Node.__neg__ = lambda self: _ew.neg(self)
Node.__matmul__ = lambda self, other: nn.matmul(self, other)
Node.__pow__ = lambda self, exponent: _ew.power(self, _number(exponent, "**"))
Node.__rpow__ = _rpow
