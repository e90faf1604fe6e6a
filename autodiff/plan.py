"""The planner: everything about running a graph that does not depend on the values, decided once.

For a list of output nodes and a set of fed nodes, `make_plan` fixes the order (inputs before
users, stopping at fed nodes), shares common subexpressions (same op, same inputs, same attrs),
decides after which step each value can be freed, and schedules each gradient-shape check as soon
as both values exist. Running a plan is then a plain loop (evaluator.py) or straight-line code
(codegen.py); neither makes a decision of its own.

Two choices shape the memory a run needs. The forward pass runs in a depth-first walk's order from
the outputs, and each backward step as soon as the gradients it reads exist (a weight's gradient right
after the gradient it reads, as torch's autograd does), so what it reads is freed early. And `remat`
(activation checkpointing, a plan transformation): given checkpoint nodes (e.g. each transformer
block's input), the forward values between two checkpoints are not kept for the backward pass; each
is computed again, from the checkpoint before it, just before a backward step first reads it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autodiff.graph import GradientShapeError, Node, order_with_feeds, placeholder


@dataclass(frozen=True)
class Check:
    """After a step: the value in slot `grad` is a gradient of the value in slot `wrt` (same shape).
    `via` is the node whose gradient rule made it (None: an accumulation of several gradients).
    A check needs only `wrt`'s shape, so it never keeps `wrt` alive."""

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
    """A graph ready to run: `order[slot]` is the node whose value lives in that slot; `steps` run in
    their list's order (a recomputed value has a slot of its own, holding the same node again)."""

    order: list[Node]
    fed: list[tuple[int, Node]]  # (slot, node) of each fed node the outputs need, in order
    unfed: list[Node]  # placeholders the outputs need but nobody fed (running is an error)
    steps: list[Step]
    outputs: list[int]  # the slot of each requested output
    shared: dict[int, int]  # slot of a duplicate node -> slot of the first node computing the same
    forward: frozenset[int]  # slots of the forward pass's values (those some gradient is taken through)
    recomputed: dict[int, int]  # slot of a recomputation (remat) -> slot of the value it computes again

    def output_positions(self) -> dict[int, list[int]]:
        """Slot -> the indices of the outputs that slot's value is (an output may be requested twice)."""
        positions: dict[int, list[int]] = {}
        for k, slot in enumerate(self.outputs):
            positions.setdefault(slot, []).append(k)
        return positions


def make_plan(outputs: Sequence[Node], fed_nodes: Iterable[Node], remat: Sequence[Node] = ()) -> Plan:
    """The plan computing `outputs` when the values of `fed_nodes` are given. `remat`: checkpoint nodes
    (in any order); the forward values between two of them are recomputed for the backward pass
    instead of kept (checkpoints the plan does not compute are ignored)."""
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
    computed = [i for i, n in enumerate(order) if id(n) not in fed and i not in shared]
    forward = _forward_slots(order, reads, shared)

    recomputed: dict[int, int] = {}
    if remat:
        points = {shared.get(slot[id(n)], slot[id(n)]) for n in remat if id(n) in slot}
        recomputed = _rematerialize(order, reads, computed, forward, sorted(points), set(output_slots))
        forward |= set(recomputed)
    sequence = _schedule(reads, computed, set(recomputed), forward)
    position = {s: p for p, s in enumerate(sequence)}

    # Gradient-shape checks run as soon as both the gradient and its input exist (a fed value exists
    # from the start). A recomputed value is not checked again.
    checks: list[list[Check]] = [[] for _ in sequence]
    for i, node in enumerate(order[: len(order) - len(recomputed)]):
        for wrt, via in node.gradient_of:
            if id(wrt) in slot:
                grad, other = shared.get(i, i), shared.get(slot[id(wrt)], slot[id(wrt)])
                at = max(position.get(grad, -1), position.get(other, -1))
                if at >= 0:
                    checks[at].append(Check(grad, other, via))

    # A value is freed after its last reader (a check reads only its input's shape, recorded when
    # that input was computed), unless it is a requested output.
    last_use: dict[int, int] = {}
    for p, s in enumerate(sequence):
        for r in reads[s]:
            last_use[r] = p
        for c in checks[p]:
            last_use[c.grad] = p
    free: list[list[int]] = [[] for _ in sequence]
    keep = set(output_slots)
    for s, p in last_use.items():
        if s not in keep:
            free[p].append(s)

    steps = [
        Step(s, order[s], tuple(reads[s]), tuple(sorted(free[p])), tuple(checks[p])) for p, s in enumerate(sequence)
    ]
    return Plan(
        order=order,
        fed=[(i, n) for i, n in enumerate(order) if id(n) in fed],
        unfed=[n for n in order if id(n) not in fed and n.op is placeholder],
        steps=steps,
        outputs=output_slots,
        shared=shared,
        forward=frozenset(forward),
        recomputed=recomputed,
    )


def _forward_slots(order: list[Node], reads: list[list[int]], shared: dict[int, int]) -> set[int]:
    """Slots of the forward pass: every node some gradient in the graph is of (or was made by the rule
    of), and everything these depend on. The rest (gradients and what only they need) is backward."""
    roots = set()
    for node in order:
        for wrt, via in node.gradient_of:
            roots.add(id(wrt))
            if via is not None:
                roots.add(id(via))
    forward: set[int] = set()
    for i in reversed(range(len(order))):  # users come after their inputs: ancestors are met later
        if i in forward or id(order[i]) in roots:
            forward.add(shared.get(i, i))
            forward.update(reads[i])
    return forward


def _rematerialize(
    order: list[Node], reads: list[list[int]], computed: list[int], forward: set[int], points: list[int],
    outputs: set[int],
) -> dict[int, int]:  # fmt: skip
    """Activation checkpointing: the forward values between checkpoint k and k + 1 (descendants of
    checkpoint k that checkpoint k + 1 depends on) get a recomputing copy, with a slot of its own
    appended to `order`, and every backward step reads the copies instead (`reads` is rewritten).
    Returns {copy's slot: original slot}. Values after the last checkpoint are kept, as are outputs."""
    index = {s: k for k, s in enumerate(points)}
    segment = dict(index)  # slot -> the last checkpoint it descends from
    for i in computed:  # in order: inputs first
        if i not in index and i in forward:
            below = [segment[r] for r in reads[i] if r in segment]
            if below:
                segment[i] = max(below)
    between: set[int] = set()  # values recomputed
    for k in range(len(points) - 1):
        stack = [points[k + 1]]
        while stack:
            for r in reads[stack.pop()]:
                if segment.get(r) == k and r not in index and r not in between:
                    between.add(r)
                    stack.append(r)
    between -= outputs
    copy_of: dict[int, int] = {}

    def copy(s: int) -> int:
        if s not in copy_of:
            inputs = [copy(r) if r in between else r for r in reads[s]]
            copy_of[s] = len(order)
            order.append(order[s])
            reads.append(inputs)
        return copy_of[s]

    for i in computed:
        if i not in forward:  # a backward step reads the recomputed copies
            reads[i] = [copy(r) if r in between else r for r in reads[i]]
    return {c: s for s, c in copy_of.items()}


def _schedule(reads: list[list[int]], computed: list[int], copies: set[int], forward: set[int]) -> list[int]:
    """The order steps run in. The forward pass in `computed`'s (depth-first) order; then each backward
    step as soon as the gradients it reads exist, as torch's autograd does: a weight's gradient right after
    the gradient it reads, which frees that and the activation it reads early (the depth-first order made
    every weight's gradient wait for the last layer's). A recomputed copy, and a backward step that needs
    no gradient (`transpose(x)`, `transpose(copy)`), runs when a step first needs it: a checkpointed block
    is computed again just before its backward pass."""
    readers: dict[int, list[int]] = {}
    for s in [*computed, *copies]:
        for r in dict.fromkeys(reads[s]):
            readers.setdefault(r, []).append(s)
    steps = set(computed) | copies
    # `lazy`: backward steps that need no gradient, made from forward (and fed) values alone (`transpose(x)`,
    # the seed `ones_like(loss)`) or from recomputed copies through other such steps (`1 - copy ** 2`).
    lazy: set[int] = set()
    from_copies: set[int] = set()
    for s in computed:
        made_from = [r for r in reads[s] if r in steps]
        if s in forward or not all(r in forward or r in from_copies for r in made_from):
            continue
        if any(r in copies or r in from_copies for r in made_from):
            from_copies.add(s)
        lazy.add(s)
    # `height`: the longest path from a step to a step no other reads. Of the backward steps ready at once,
    # the lowest runs first: a weight's gradient (a product and a sum, then an output) before the long
    # chain of gradients flowing on to the layers below.
    height: dict[int, int] = {}
    waiting = {s: len(readers.get(s, ())) for s in steps}
    last = [s for s in steps if not waiting[s]]
    while last:
        s = last.pop()
        height[s] = 1 + max((height[r] for r in readers.get(s, ())), default=-1)
        for r in dict.fromkeys(reads[s]):
            if r in steps:
                waiting[r] -= 1
                if not waiting[r]:
                    last.append(r)
    rank = {s: k for k, s in enumerate(computed)}
    done: set[int] = set()
    sequence: list[int] = []
    ready: list[tuple[int, int, int]] = []  # a heap of (height, rank, step) of gradient steps that can run

    def can_pull(s: int) -> bool:
        """A value that exists, or can be made now without waiting for a gradient."""
        return s in done or s not in steps or s in forward or s in lazy

    def run(s: int) -> None:
        stack = [(s, False)]  # iterative: a recomputed block may be a long chain
        while stack:
            s, inputs_done = stack.pop()
            if s in done:
                continue
            if not inputs_done:
                stack.append((s, True))
                stack.extend((r, False) for r in reversed(reads[s]) if r in steps and r not in done)
                continue
            done.add(s)
            sequence.append(s)
            if s not in forward and s not in lazy:  # a gradient: the backward steps waiting for it may run
                for t in readers.get(s, ()):
                    if t not in forward and t not in lazy and t not in done and all(map(can_pull, reads[t])):
                        heapq.heappush(ready, (height[t], rank[t], t))

    for s in computed:
        if s not in lazy:
            run(s)
        while ready:
            run(heapq.heappop(ready)[2])
    for s in computed:  # made from copies and read by no step (an output)
        run(s)
    return sequence


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


def gradient_shape_error(plan: Plan, check: Check, grad_shape, wrt_shape) -> GradientShapeError:
    """The error for a failed check, naming the rule's op and node and both shapes."""
    via = check.via
    where = f"the gradient rule of op '{via.op.name}' (node '{via.name}')" if via else "gradient accumulation"
    return GradientShapeError(
        f"{where} returned a gradient of shape {tuple(grad_shape)} (node '{plan.order[check.grad].name}') "
        f"for input '{plan.order[check.wrt].name}' of shape {tuple(wrt_shape)}"
    )
