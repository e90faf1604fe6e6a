"""Base classes that turn an op's declared signature into graph nodes, so an op is only its math.

An op class declares `inputs` (its node arguments), `params` (its constant attributes and their
defaults) and a `forward` on tensors; `OpBase.__call__` checks the arguments and builds the node,
and `compute` calls `forward(*input_values, *attrs)` (attrs in `params` order). `Unary`, `WithConst`,
`NoGradient` and `Reduction` are the common shapes (`Binary` needs `sum_to_shape`: elementwise.py).
Each op also counts its floating-point operations from its input shapes (`flops`): the common shapes
have a default (one per element, one per reduced element), and `per_element(n)` / `no_flops` state the
rest in one line beside the op's math.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autodiff.graph import Node, Op, Tensor

REQUIRED = object()  # a param default meaning "the caller must give it"


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_node(x, op_name: str, expected: str = "a Node") -> Node:
    if not isinstance(x, Node):
        raise TypeError(f"{op_name}: expected {expected}, got {type(x).__name__}")
    return x


def normalize_dims(dim, ndim: int) -> tuple[int, ...]:
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


def check_dim(dim: int, ndim: int) -> int:
    """`dim` itself when it names one of `ndim` dims (negative counts from the end), else IndexError
    worded like normalize_dims' (some torch kernels, e.g. softmax on `meta`, do not check)."""
    normalize_dims(dim, ndim)
    return dim


def per_element(count: int, of: int = 0):
    """A FLOP rule: `count` operations per element of input `of` (a fused op's documented count)."""

    def flops(self, node: Node, input_shapes: list[tuple[int, ...]]) -> int:
        return count * math.prod(input_shapes[of])

    return flops


def no_flops(self, node: Node, input_shapes: list[tuple[int, ...]]) -> int:
    """The FLOP rule of shape, indexing, copy and fill ops: they move or make values, no arithmetic."""
    return 0


def as_attr(value):
    """Attrs stay hashable (plan sharing keys on them): lists from users become tuples."""
    return tuple(value) if isinstance(value, list) else value


class OpBase(Op):
    """An op built from its declaration: `inputs` names the node arguments (a leading "*name" takes
    a list of nodes), `params` the constant attributes in call order with their defaults, `forward`
    computes on tensors and `gradient` returns one gradient node (or None) per input."""

    inputs: tuple[str, ...] = ("a",)
    params: dict[str, object] = {}
    pure = True  # every op of the package: torch functions of its inputs and attrs, nothing else
    symbol = ""  # infix symbol for the node's name, e.g. "+" names a node "(x+y)"

    def __call__(self, *args, **kwargs) -> Node:
        names = [n.lstrip("*") for n in (*self.inputs, *self.params)]
        if len(args) > len(names):
            raise TypeError(f"{self.name}() takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in bound:
                raise TypeError(f"{self.name}() got an unexpected or repeated argument '{key}'")
            bound[key] = value
        nodes: list[Node] = []
        for declared in self.inputs:
            name = declared.lstrip("*")
            if name not in bound:
                raise TypeError(f"{self.name}() is missing the node argument '{name}'")
            if declared.startswith("*"):  # a list of nodes (concat)
                if isinstance(bound[name], Node) or not bound[name]:
                    raise ValueError(f"{self.name}: needs a non-empty list of nodes")
                nodes += [check_node(n, self.name) for n in bound[name]]
            else:
                nodes.append(check_node(bound[name], self.name))
        attrs = {}
        for name, default in self.params.items():
            value = bound.get(name, default)
            if value is REQUIRED:
                raise TypeError(f"{self.name}() is missing the argument '{name}'")
            attrs[name] = as_attr(value)
        return Node(nodes, self, attrs, name=self.node_name(nodes, attrs))

    def node_name(self, nodes: Sequence[Node], attrs: dict) -> str:
        """A readable name: `(x+y)` for an infix op, else `name(inputs)`; "" (a numbered name) when
        an input has a numbered name, so no counter ends up inside a name."""
        if any(n.auto_named for n in nodes):
            return ""
        if self.symbol:
            right = nodes[1].name if len(nodes) > 1 else repr(next(iter(attrs.values())))
            return f"({nodes[0].name}{self.symbol}{right})"
        return f"{self.name}({', '.join(n.name for n in nodes)})"

    @staticmethod
    def forward(*values_then_attrs) -> Tensor:
        """The op on tensors: input values, then attrs in `params` order (generated code calls this)."""
        raise NotImplementedError

    def compute(self, node: Node, input_values: list[Tensor]) -> Tensor:
        return self.forward(*input_values, *node.attrs.values())

    def flops(self, node: Node, input_shapes: list[tuple[int, ...]]) -> int:
        """Floating-point operations of one call on inputs of these shapes (None for an input that is not
        a tensor). A transcendental (exp, erf) counts as one, like an add; a per-row scalar is not counted."""
        raise NotImplementedError(f"op '{self.name}' has no FLOP rule: give it a flops(node, input_shapes)")

    def tensor_call(self, node: Node):
        # Generated code calls `forward` itself, unless a subclass computes some other way.
        return (self.forward, tuple(node.attrs.values())) if type(self).compute is OpBase.compute else None


class Unary(OpBase):
    """One node input `a`; gradients are written as `gradient(node, g)` returning [ga]."""

    inputs = ("a",)
    flops = per_element(1)  # an elementwise function (shape ops say no_flops)


class WithConst(OpBase):
    """a ∘ c for a number c (attr `constant`)."""

    inputs = ("a",)
    params = {"constant": REQUIRED}
    flops = per_element(1)


class NoGradient(OpBase):
    """An op whose inputs take no gradient (comparisons, shape references): every input gets None."""

    def gradient(self, node: Node, output_grad: Node) -> list[Node | None]:
        return [None] * len(node.inputs)


class Reduction(OpBase):
    """A reduction of `a` over `dim` (an int, a tuple of ints, or None / () for all dims)."""

    inputs = ("a",)
    params = {"dim": None, "keepdim": False}
    flops = per_element(1)  # one per reduced element
