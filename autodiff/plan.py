"""The planner: everything about running a graph that does not depend on the values, decided once.

For a list of output nodes and a set of fed nodes, `make_plan` fixes the order (inputs before
users, stopping at fed nodes), shares common subexpressions (same op, same inputs, same attrs),
decides after which step each value can be freed, and schedules each gradient-shape check as soon
as both values exist. Running a plan is then a plain loop (evaluator.py) or straight-line code
(codegen.py); neither makes a decision of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autodiff.graph import GradientShapeError, Node, Tensor, order_with_feeds, placeholder


@dataclass(frozen=True)
class Check:
    """After a step: the value in slot `grad` is a gradient of the value in slot `wrt` (same shape).
    `via` is the node whose gradient rule made it (None: an accumulation of several gradients)."""

    grad: int
    wrt: int
    via: Node | None


@dataclass(frozen=True)
class Step:
    """Compute `node` into `slot` from the values in `inputs`; then run `checks`, free `free`."""

    slot: int
    node: Node
    inputs: tuple[int, ...]
    free: tuple[int, ...]
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Plan:
    """A graph ready to run: `order[slot]` is the node whose value lives in that slot."""

    order: list[Node]
    fed: list[tuple[int, Node]]  # (slot, node) of each fed node the outputs need, in order
    unfed: list[Node]  # placeholders the outputs need but nobody fed (running is an error)
    steps: list[Step]
    outputs: list[int]  # the slot of each requested output
    shared: dict[int, int]  # slot of a duplicate node -> slot of the first node computing the same

    def output_positions(self) -> dict[int, list[int]]:
        """Slot -> the indices of the outputs that slot's value is (an output may be requested twice)."""
        positions: dict[int, list[int]] = {}
        for k, slot in enumerate(self.outputs):
            positions.setdefault(slot, []).append(k)
        return positions


def make_plan(outputs: Sequence[Node], fed_nodes: Iterable[Node]) -> Plan:
    """The plan computing `outputs` when the values of `fed_nodes` are given."""
    fed = frozenset(id(n) for n in fed_nodes)
    order = order_with_feeds(list(outputs), fed)
    slot = {id(n): i for i, n in enumerate(order)}
    # A fed node reads nothing: its value comes from the feed.
    reads = [[] if id(n) in fed else [slot[id(i)] for i in n.inputs] for n in order]

    # Common subexpressions: a node with the same op, inputs and attrs as an earlier one (gradient
    # rules often rebuild `transpose(w)` for several weights) reads the earlier one's slot instead.
    shared: dict[int, int] = {}
    first_of: dict[tuple, int] = {}
    for i, n in enumerate(order):
        if id(n) in fed or not n.inputs:
            continue
        reads[i] = [shared.get(s, s) for s in reads[i]]
        attrs = attrs_key(n.attrs)
        if attrs is not None:
            key = (n.op, tuple(reads[i]), attrs)
            if key in first_of:
                shared[i] = first_of[key]
            else:
                first_of[key] = i
    output_slots = [shared.get(slot[id(n)], slot[id(n)]) for n in outputs]

    # Gradient-shape checks run as soon as both the gradient and its input exist.
    checks: list[list[Check]] = [[] for _ in order]
    for i, node in enumerate(order):
        for wrt, via in node.gradient_of:
            if id(wrt) in slot:
                grad, other = shared.get(i, i), shared.get(slot[id(wrt)], slot[id(wrt)])
                checks[max(grad, other)].append(Check(grad, other, via))

    # A value is freed after its last reader (or check), unless it is a requested output.
    last_use: dict[int, int] = {}
    for step in range(len(order)):
        if step in shared:  # a duplicate is never run: its reads are not uses
            continue
        for s in reads[step]:
            last_use[s] = step
        for c in checks[step]:
            last_use[c.grad] = last_use[c.wrt] = step
    free: list[list[int]] = [[] for _ in order]
    keep = set(output_slots)
    for s, step in last_use.items():
        if s not in keep:
            free[step].append(s)

    steps = [
        Step(i, n, tuple(reads[i]), tuple(sorted(free[i])), tuple(checks[i]))
        for i, n in enumerate(order)
        if id(n) not in fed and i not in shared
    ]
    return Plan(
        order=order,
        fed=[(i, n) for i, n in enumerate(order) if id(n) in fed],
        unfed=[n for n in order if id(n) not in fed and n.op is placeholder],
        steps=steps,
        outputs=output_slots,
        shared=shared,
    )


def attrs_key(attrs: dict) -> tuple | None:
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


def gradient_shape_error(plan: Plan, check: Check, grad: Tensor, wrt: Tensor) -> GradientShapeError:
    """The error for a failed check, naming the rule's op and node and both shapes."""
    via = check.via
    where = f"the gradient rule of op '{via.op.name}' (node '{via.name}')" if via else "gradient accumulation"
    return GradientShapeError(
        f"{where} returned a gradient of shape {tuple(grad.shape)} (node '{plan.order[check.grad].name}') "
        f"for input '{plan.order[check.wrt].name}' of shape {tuple(wrt.shape)}"
    )
