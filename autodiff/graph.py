"""The graph machinery: Node, Op, topological sort, the Evaluator and reverse-mode `gradients`.

A graph is built first (nodes hold an op, their inputs and constant attributes) and values are fed
later. `gradients()` does not compute numbers: it asks each op for gradient *nodes*, so the backward
pass is more graph, evaluated by the same Evaluator, and can itself be differentiated.
"""

from __future__ import annotations

import itertools
import math
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
        if not name or len(name) > 48:
            name = f"{op.name}_{next(_name_counter)}"
        self.name = name
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
    return _order_with_feeds([nodes] if isinstance(nodes, Node) else list(nodes), frozenset())


def _shape(t) -> tuple:
    return tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__


class _Schedule:
    """A precomputed plan for one set of fed nodes: which nodes to compute, in what order, reading
    which slots, when each value can be freed, and which gradient shapes to check after which step.
    Everything that does not depend on the values is decided here once, so `run` is a tight loop."""

    def __init__(self, eval_nodes: list[Node], fed: frozenset[int]):
        order = _order_with_feeds(eval_nodes, fed)
        slot = {id(n): i for i, n in enumerate(order)}
        self.order = order
        self.fed = [(i, n) for i, n in enumerate(order) if id(n) in fed]
        self.unfed_placeholders = [n for n in order if id(n) not in fed and n.op is placeholder]
        # A fed node reads nothing: its value comes from the feed.
        input_slots = [[] if id(n) in fed else [slot[id(i)] for i in n.inputs] for n in order]

        # Common subexpressions: a node with the same op, inputs and attrs as an earlier one (gradient
        # rules often rebuild `transpose(x)` for several weights) reads the earlier one's slot instead.
        same_as: dict[int, int] = {}
        first_of: dict[tuple, int] = {}
        for i, n in enumerate(order):
            if id(n) in fed or not n.inputs:
                continue
            input_slots[i] = [same_as.get(s, s) for s in input_slots[i]]
            attrs = _attrs_key(n.attrs)
            if attrs is not None:
                key = (n.op, tuple(input_slots[i]), attrs)
                if key in first_of:
                    same_as[i] = first_of[key]
                else:
                    first_of[key] = i
        self.output_slots = [same_as.get(slot[id(n)], slot[id(n)]) for n in eval_nodes]

        # Gradient shape checks run as soon as both the gradient and its input have been computed.
        checks_after: list[list[tuple[int, int, Node | None]]] = [[] for _ in order]
        for i, node in enumerate(order):
            for wrt, via in node.gradient_of:
                if id(wrt) in slot:
                    step, other = same_as.get(i, i), same_as.get(slot[id(wrt)], slot[id(wrt)])
                    checks_after[max(step, other)].append((step, other, via))

        # A value is freed after its last reader (or shape check), unless it is a requested output.
        last_use: dict[int, int] = {}
        for step in range(len(order)):
            for s in input_slots[step]:
                last_use[s] = step
            for grad_slot, wrt_slot, _ in checks_after[step]:
                last_use[grad_slot] = last_use[wrt_slot] = step
        free_after: list[list[int]] = [[] for _ in order]
        keep = set(self.output_slots)
        for s, step in last_use.items():
            if s not in keep:
                free_after[step].append(s)

        # One tuple per node to compute: (slot, node, compute function, input slots, frees, checks).
        self.steps = [
            (i, n, n.op.compute, input_slots[i], free_after[i], checks_after[i])
            for i, n in enumerate(order)
            if id(n) not in fed and i not in same_as
        ]


def _attrs_key(attrs: dict) -> tuple | None:
    """A hashable form of a node's attrs, or None if some value is not hashable (then no sharing).
    Types and the sign of zero are part of the key: `x + 1` and `x + 1.0` differ on integer tensors."""
    key = tuple(sorted((name, _value_key(value)) for name, value in attrs.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _value_key(value):
    if isinstance(value, float):
        return (float, value, math.copysign(1.0, value))
    if isinstance(value, tuple):
        return (tuple, tuple(_value_key(v) for v in value))
    return (type(value), value)


def _order_with_feeds(eval_nodes: list[Node], fed: frozenset[int]) -> list[Node]:
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


class Evaluator:
    """Computes the values of `eval_nodes` from fed values; each node is computed once per run."""

    def __init__(self, eval_nodes: Sequence[Node]):
        self.eval_nodes = list(eval_nodes)
        for n in self.eval_nodes:
            if not isinstance(n, Node):
                raise TypeError(f"Evaluator takes a list of Nodes, got {type(n).__name__}")
        self._schedules: dict[frozenset[int], _Schedule] = {}

    def run(self, input_values: dict[Node, Tensor]) -> list[Tensor]:
        """Values of `eval_nodes`, in their order, given values for the variables they depend on."""
        fed = frozenset(id(n) for n in input_values)
        plan = self._schedules.get(fed)
        if plan is None:
            for n in input_values:
                if not isinstance(n, Node):
                    raise TypeError(f"input_values keys must be Nodes, got {type(n).__name__}")
            plan = self._schedules[fed] = _Schedule(self.eval_nodes, fed)
        if plan.unfed_placeholders:
            missing = plan.unfed_placeholders[0]
            raise ValueError(f"no value fed for variable '{missing.name}': add it to input_values")

        values: list = [None] * len(plan.order)
        for slot, node in plan.fed:
            value = input_values[node]
            values[slot] = value if isinstance(value, Tensor) else torch.as_tensor(value)
        for slot, node, compute, input_slots, free, checks in plan.steps:
            args = [values[s] for s in input_slots]
            try:
                values[slot] = compute(node, args)
            except Exception as err:
                shapes_text = ", ".join(str(_shape(a)) for a in args)
                raise OpError(
                    f"{node.op.name} failed at node '{node.name}' on inputs of shapes {shapes_text}: {err}"
                ) from err
            for grad_slot, wrt_slot, via in checks:
                if values[grad_slot].shape != values[wrt_slot].shape:
                    raise _gradient_shape_error(
                        plan.order[grad_slot], values[grad_slot], plan.order[wrt_slot], values[wrt_slot], via
                    )
            for s in free:
                values[s] = None
        return [values[s] for s in plan.output_slots]


def _gradient_shape_error(grad: Node, grad_value: Tensor, wrt: Node, wrt_value: Tensor, via) -> GradientShapeError:
    where = f"the gradient rule of op '{via.op.name}' (node '{via.name}')" if via else "gradient accumulation"
    return GradientShapeError(
        f"{where} returned a gradient of shape {tuple(grad_value.shape)} (node '{grad.name}') "
        f"for input '{wrt.name}' of shape {tuple(wrt_value.shape)}"
    )


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
