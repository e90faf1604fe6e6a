"""The graph machinery: Node, Op, Variable, topological order and the reverse-mode walk.

A graph is built first (nodes hold an op, their inputs and constant attributes) and values are fed
later. The backward walk does not compute numbers: it asks each op for gradient *nodes*, so the
backward pass is more graph, run by the same Evaluator, and can itself be differentiated. This
module imports no op (the ops import it); planning and running live in plan.py and evaluator.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import torch

Tensor = torch.Tensor

_name_counter = itertools.count()


class OpError(RuntimeError):
    """An op failed on its inputs; the message names the op, the node and the input shapes."""


class GradientShapeError(RuntimeError):
    """A gradient rule returned a gradient whose shape differs from its input's shape."""


class GradientCountError(RuntimeError):
    """A gradient rule returned a list whose length is not the number of its node's inputs."""


class Node:
    """A node of the computation graph: an op applied to input nodes, with constant attributes."""

    def __init__(self, inputs: Sequence[Node], op: Op, attrs: dict | None = None, name: str = ""):
        self.inputs = list(inputs)
        self.op = op
        self.attrs = dict(attrs) if attrs else {}
        # Generated names read like the expression (`(x1*x2)`); past a few dozen characters they
        # stop helping, so a long or missing name becomes the op name and a counter (`matmul_12`).
        # Such a counter means nothing to a reader: drawings show a per-graph number instead.
        self.auto_named = not name or len(name) > 48
        self.name = f"{op.name}_{next(_name_counter)}" if self.auto_named else name
        # Filled by `gradients()`: (input node, node whose rule made this) pairs saying that this
        # node is (a part of) the gradient of that input, so it must have that input's shape.
        self.gradient_of: list[tuple[Node, Node | None]] = []

    def __getattr__(self, attr_name: str):
        # Only called when normal lookup fails: expose attrs as attributes (`node.dim`).
        attrs = self.__dict__.get("attrs")
        if attrs is not None and attr_name in attrs:
            return attrs[attr_name]
        raise AttributeError(f"node '{self.__dict__.get('name', '?')}' has no attribute '{attr_name}'")

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op.name})"

    def __str__(self) -> str:
        return self.name

    # Python operators (`x + y`, `x @ w` ...) are attached by `autodiff.ops`, which imports this module.


class Op:
    """An operation: `__call__` makes a node, `compute` its value, `gradient` its input gradients."""

    name = "op"
    pure = False  # True: compute only computes (no side effects) and works on `meta` tensors too

    def tensor_call(self, node: Node):
        """(function, constant args) such that `function(*input_values, *args)` is `compute(node, ...)`,
        for generated code to call directly; None (the default) makes it call `compute` instead."""
        return None

    def passes_through(self, node: Node, input_shapes: list[tuple[int, ...]]) -> int | None:
        """The index of the input that `compute` returns unchanged (the same tensor) for inputs of
        these shapes, or None (the default). Code generated for known shapes skips such a call."""
        return None

    def __call__(self, *args, **kwargs) -> Node:
        raise NotImplementedError

    def compute(self, node: Node, input_values: list[Tensor]) -> Tensor:
        """The value of `node` given the values of its inputs."""
        raise NotImplementedError

    def gradient(self, node: Node, output_grad: Node) -> list[Node | None]:
        """One gradient node per input (None for an input that takes no gradient, e.g. integer ids)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<op {self.name}>"


class PlaceholderOp(Op):
    """A leaf whose value is fed at run time."""

    name = "placeholder"

    def __call__(self, name: str) -> Node:
        return Node([], self, name=name)

    def compute(self, node: Node, input_values: list[Tensor]) -> Tensor:
        raise ValueError(f"variable '{node.name}' has no value: feed it in input_values")

    def gradient(self, node: Node, output_grad: Node) -> list[Node | None]:
        return []


placeholder = PlaceholderOp()


def Variable(name: str) -> Node:
    """A named input of the graph (TensorFlow's placeholder)."""
    return placeholder(name)


def topological_sort(nodes: Node | Iterable[Node]) -> list[Node]:
    """All nodes the given ones depend on, inputs before users (iterative DFS: deep graphs are fine)."""
    return order_with_feeds([nodes] if isinstance(nodes, Node) else list(nodes), frozenset())


def order_with_feeds(eval_nodes: list[Node], fed: frozenset[int]) -> list[Node]:
    """Topological order (iterative DFS) that stops at fed nodes: their inputs need not be computed."""
    order: list[Node] = []
    visited: set[int] = set()
    for root in eval_nodes:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack = [(root, iter(() if id(root) in fed else root.inputs))]
        while stack:
            node, inputs = stack[-1]
            for child in inputs:
                if id(child) not in visited:
                    visited.add(id(child))
                    stack.append((child, iter(() if id(child) in fed else child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def walk_backward(
    output_node: Node, seed: Node, nodes: Sequence[Node], add: Callable[[Node, Node], Node], stop_at_nodes: bool = False
) -> list[Node | None]:
    """Gradient nodes of `output_node` (seeded with `seed`) w.r.t. each of `nodes`, None where it does
    not depend on one. Walks the graph in reverse topological order, asks each op for its input
    gradients (as nodes) and sums with `add` the contributions a node receives from all its users.
    With `stop_at_nodes`, `nodes` are taken as independent leaves (paths between them not followed).
    The ops are passed in (`add`), so this module never imports them."""
    order = topological_sort([output_node])
    wanted = {id(n) for n in nodes}
    # Only propagate into nodes that lead to a requested one.
    leads_to_wanted: set[int] = set()
    for node in order:
        if id(node) in wanted or any(id(i) in leads_to_wanted for i in node.inputs):
            leads_to_wanted.add(id(node))

    contributions: dict[int, list[Node]] = {id(output_node): [seed]}
    grad_of: dict[int, Node] = {}
    for node in reversed(order):
        parts = contributions.pop(id(node), None)
        if parts is None or id(node) not in leads_to_wanted:
            continue
        grad = parts[0]
        for part in parts[1:]:
            grad = add(grad, part)
        if len(parts) > 1:
            grad.gradient_of.append((node, None))
        grad_of[id(node)] = grad
        if not node.inputs or (stop_at_nodes and id(node) in wanted):
            continue
        input_grads = node.op.gradient(node, grad)
        if len(input_grads) != len(node.inputs):
            raise GradientCountError(
                f"the gradient rule of op '{node.op.name}' (node '{node.name}') returned "
                f"{len(input_grads)} gradients for {len(node.inputs)} inputs: return one per input (None for none)"
            )
        for inp, g in zip(node.inputs, input_grads):
            if g is None or id(inp) not in leads_to_wanted:
                continue
            g.gradient_of.append((inp, node))
            contributions.setdefault(id(inp), []).append(g)
    return [grad_of.get(id(n)) for n in nodes]
