"""The memory timeline of a plan, known before it runs: the bytes alive after each step, by what they are.

A plan says when each value is made and freed (plan.py); one pass over `meta` tensors (no memory, no
arithmetic) gives each value's shape, dtype and storage, so a view (reshape, transpose, expand) is counted
with the storage it shares, never twice. Each storage alive is one of: parameters and inputs (fed, held by
the caller all along), outputs (kept to the end), activations (forward values a backward step will still
read) and temporaries (everything else: values waiting for their next reader, gradients flowing back). The
peak is the most bytes alive while a step runs: what it reads, what it makes, and what its op allocates
and frees inside (a fused op's scratch, measured in the same pass).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from autodiff.codegen import op_error
from autodiff.graph import Node, Tensor
from autodiff.plan import Plan

CATEGORIES = ("parameters", "inputs", "outputs", "activations", "temporaries")  # a shared storage takes the first


@dataclass(frozen=True)
class LiveValue:
    """One storage alive at some moment, named by the value that made it (a view of it is not listed)."""

    slot: int
    name: str
    op: str  # "placeholder" for a fed value
    shape: tuple[int, ...]
    dtype: str
    bytes: int  # of the whole storage
    category: str
    holders: int = 1  # values alive holding this storage (the one named, its views, other fed values viewing it)


@dataclass
class Timeline:
    """Bytes alive along a plan's steps (`plan.steps` order). `after[i]`: by category, once step i has
    run and freed what it read last; `during[i]`: all bytes while step i runs (its inputs, its output and
    its op's scratch, `scratch[i]`). The peak is the largest `during`."""

    names: list[str]  # each step's node
    after: list[dict[str, int]]
    during: list[int]
    scratch: list[int]  # bytes the op allocated and freed inside the step, at their most
    peak: int
    peak_step: int
    at_peak: dict[str, int]  # bytes by category while the peak step runs (its scratch in temporaries)
    alive_at_peak: list[LiveValue]  # largest first

    def total_after(self, i: int) -> int:
        return sum(self.after[i].values())

    def peak_of(self, *categories: str) -> int:
        """The most bytes of these categories alive together after any step (e.g. "activations")."""
        return max((sum(a[c] for c in categories) for a in self.after), default=0)


def memory_timeline(plan: Plan, feed: dict[Node, Tensor], parameters: Iterable[Node] = ()) -> Timeline:
    """The timeline of `plan` run on `feed` (only its values' shapes and dtypes are read: meta tensors
    will do). Fed nodes in `parameters` count as parameters, other fed nodes as inputs. Needs every op
    to be pure (it runs each on `meta` tensors)."""
    params = {id(n) for n in parameters}
    values, scratch = _meta_values(plan, feed)
    # Each slot's storages (a value may be a pair of tensors), as (identity, bytes, the tensor). Fed values
    # may share storage (targets a view of the ids): a fed tensor's own storage stands for its meta copy's.
    real = {}
    for slot, node in plan.fed:
        for (key, _, _), (real_key, nbytes, t) in zip(_storages(values[slot]), _storages(feed[node])):
            real[key] = (real_key, nbytes, t)
    storages = [[real.get(st[0], st) for st in _storages(v)] for v in values]
    steps, outputs, fed_slots = plan.steps, set(plan.outputs), {s for s, _ in plan.fed}
    last_backward_read: dict[int, int] = {}  # slot -> the position of the last backward step reading it
    for p, step in enumerate(steps):
        if step.slot not in plan.forward:
            for s in step.inputs:
                last_backward_read[s] = p

    def category(s: int, p: float) -> str:
        """What slot s's value is at position p (p + 0.5: once step p has run)."""
        if s in fed_slots:
            return "parameters" if id(plan.order[s]) in params else "inputs"
        if s in outputs:
            return "outputs"
        if s in plan.forward and last_backward_read.get(s, -1) >= p:
            return "activations"
        return "temporaries"

    made_by: dict[int, tuple[int, int, Tensor]] = {}  # storage identity -> (the slot that made it, bytes, its tensor)
    holders: dict[int, set[int]] = {}  # storage identity -> the slots alive holding it
    rank = {c: k for k, c in enumerate(CATEGORIES)}

    def hold(s: int) -> None:
        for key, nbytes, t in storages[s]:
            made_by.setdefault(key, (s, nbytes, t))
            holders.setdefault(key, set()).add(s)

    def release(s: int) -> None:
        for key, _, _ in storages[s]:
            holders[key].discard(s)
            if not holders[key]:
                del holders[key]

    def alive(p: float) -> dict[int, tuple[str, int]]:
        """storage identity -> (its category, how many values hold it), for every storage alive at position p."""
        return {
            key: (min((category(s, p) for s in slots), key=rank.__getitem__), len(slots))
            for key, slots in holders.items()
        }

    for s in fed_slots:
        hold(s)
    after, during, peak, peak_step, peak_alive = [], [], -1, 0, {}
    for p, step in enumerate(steps):
        hold(step.slot)
        now = alive(p)
        total = sum(made_by[key][1] for key in now) + scratch[p]
        during.append(total)
        if total > peak:
            peak, peak_step, peak_alive = total, p, now
        for s in step.free:
            if s not in fed_slots:  # the caller holds what it fed
                release(s)
        totals = dict.fromkeys(CATEGORIES, 0)
        for key, (c, _) in alive(p + 0.5).items():
            totals[c] += made_by[key][1]
        after.append(totals)

    at_peak = dict.fromkeys(CATEGORIES, 0)
    listed = []
    for key, (c, holding) in peak_alive.items():
        s, nbytes, t = made_by[key]
        at_peak[c] += nbytes
        node, dtype = plan.order[s], str(t.dtype).removeprefix("torch.")
        listed.append(LiveValue(s, node.name, node.op.name, tuple(t.shape), dtype, nbytes, c, holding))
    if steps:
        at_peak["temporaries"] += scratch[peak_step]
    listed.sort(key=lambda v: -v.bytes)
    names = [step.node.name for step in steps]
    return Timeline(names, after, during, scratch, max(peak, 0), peak_step, at_peak, listed)


def _storages(value) -> list[tuple[int, int, Tensor]]:
    """(an identity, bytes, the tensor) of each storage a value holds (a tensor, or a tuple of them);
    views of one tensor share it."""
    tensors = [t for t in tree_leaves(value) if isinstance(t, Tensor)]
    found = {}
    for t in tensors:
        untyped = t.untyped_storage()
        found.setdefault(untyped._cdata, (untyped._cdata, untyped.nbytes(), t))
    return list(found.values())


class _Scratch(TorchDispatchMode):
    """While an op runs on `meta` tensors: the bytes of the storages it makes that are alive together, at
    their most (torch ops below the op's own call, each seen as it returns). `known` storages (its inputs,
    and every value before it) are not new: a view of one makes nothing."""

    def __init__(self, known: set[int]):
        super().__init__()
        self.known = known
        self.made: dict[int, tuple[StorageWeakRef, int]] = {}
        self.most = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, nbytes, t in _storages(out):
            if key not in self.known and (key not in self.made or self.made[key][0].expired()):
                self.made[key] = (StorageWeakRef(t.untyped_storage()), nbytes)
        alive = sum(b for ref, b in self.made.values() if not ref.expired())
        self.most = max(self.most, alive)
        return out


def _meta_values(plan: Plan, feed: dict[Node, Tensor]) -> tuple[list, list[int]]:
    """Every slot's value on `meta` (all kept, so storages are told apart by identity) and each step's
    scratch: the most bytes its op had alive beyond its inputs and its output."""
    values: list = [None] * len(plan.order)
    known: set[int] = set()
    for slot, node in plan.fed:
        v = feed[node]
        values[slot] = torch.empty(v.shape, dtype=v.dtype, device="meta") if isinstance(v, Tensor) else v
        known.update(key for key, _, _ in _storages(values[slot]))
    scratch = []
    for step in plan.steps:
        args = [values[s] for s in step.inputs]
        mode = _Scratch(known)
        try:
            with mode:
                value = step.node.op.compute(step.node, args)
        except Exception as err:
            raise op_error(step.node, args, err) from err
        values[step.slot] = value
        made = [(key, nbytes) for key, nbytes, _ in _storages(value) if key not in known]
        scratch.append(max(mode.most - sum(nbytes for _, nbytes in made), 0))
        known.update(key for key, _ in made)
    return values, scratch
