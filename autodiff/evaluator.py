"""The Evaluator: runs a graph's plan, by default as generated straight-line code.

`Evaluator(nodes).run(feed)` plans once per set of fed nodes (plan.py), generates and compiles
that plan's code once (codegen.py), then each run is one call of the compiled function. Gradient
shapes are checked on the first run with each set of fed shapes; later runs with the same shapes
call code without the checks (our ops' output shapes depend only on their inputs' shapes), made for
those shapes when every op is pure: a `sum_to_shape` that would return its input becomes `t9 = t8`. With
`compiled=False` it runs the same plan in a plain interpreted loop: the reference the compiled
code is tested against (bit-identical results). Either way, an op that fails raises `OpError`
naming the op, the node and the input shapes. With `profile=True` (an attribute: it can be turned on
and off) each run calls the profiled twin of the code it would call (interpreted: the loop reads the
clock after each step) and keeps its step times in `last_profile` (autodiff/profile.py reads them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from autodiff.codegen import Compiled, error_in_generated, generate, op_error
from autodiff.graph import Node, Tensor
from autodiff.plan import Plan, gradient_shape_error, make_plan

MAX_CHECKED_SIGNATURES = 1024  # sets of fed shapes remembered as checked, per set of fed nodes
MAX_SPECIALIZED = 4  # sets of fed shapes with code of their own, per set of fed nodes


class Evaluator:
    """Computes the values of `eval_nodes` from fed values; each node is computed once per run."""

    def __init__(
        self, eval_nodes: Sequence[Node], compiled: bool = True, profile: bool = False, remat: Sequence[Node] = ()
    ):
        self.eval_nodes = list(eval_nodes)
        self.remat = list(remat)  # checkpoint nodes: the forward values between them are recomputed (plan.py)
        for n in [*self.eval_nodes, *self.remat]:
            if not isinstance(n, Node):
                raise TypeError(f"Evaluator takes lists of Nodes, got {type(n).__name__}")
        self.compiled = compiled
        self.profile = profile  # time each step of the generated code (last_profile)
        self.last_profile: RunTimes | None = None
        self._plans: dict[frozenset[int], _Entry] = {}

    def plan(self, input_values: dict[Node, object]) -> Plan:
        """The plan for this set of fed nodes (made on first use, then cached)."""
        return self._entry(input_values).plan

    def source(self, input_values: dict[Node, object], names: dict[Node, str] | None = None) -> str:
        """The generated Python that `run` calls for this set of fed nodes; `names` may name its
        locals (e.g. like a drawing's ids) instead of t<slot>."""
        entry = self._entry(input_values)
        if names:
            return generate(entry.plan, names=names, compile_code=False).source
        entry.checked = entry.checked or generate(entry.plan)
        return entry.checked.source

    def _entry(self, input_values) -> _Entry:
        fed = frozenset(map(id, input_values))
        entry = self._plans.get(fed)
        if entry is None:
            for n in input_values:
                if not isinstance(n, Node):
                    raise TypeError(f"input_values keys must be Nodes, got {type(n).__name__}")
            entry = self._plans[fed] = _Entry(make_plan(self.eval_nodes, input_values, self.remat))
        return entry

    def run(self, input_values: dict[Node, object], ready: Callable[[int, Tensor], None] | None = None) -> list[Tensor]:
        """Values of `eval_nodes`, in their order, given values for the variables they depend on.
        `ready(k, value)`, when given, is called as soon as output k is computed, while the rest runs
        (data-parallel training starts sending the first gradients this way)."""
        entry = self._entry(input_values)
        plan = entry.plan
        if plan.unfed:
            raise ValueError(f"no value fed for variable '{plan.unfed[0].name}': add it to input_values")
        fed = []
        for _, node in plan.fed:
            value = input_values[node]
            fed.append(value if isinstance(value, Tensor) else torch.as_tensor(value))
        if self.profile and ready is not None:
            raise ValueError("a profiled run times the plan's steps alone: run it without a ready callback")
        if not self.compiled and self.profile:
            laps: list[int] = []
            start = time.perf_counter_ns()
            outputs = run_interpreted(plan, fed, laps=laps)
            self.last_profile = RunTimes(plan, laps, time.perf_counter_ns() - start, fed)
            return outputs
        if not self.compiled:
            return run_interpreted(plan, fed, ready=ready)
        if ready is not None:  # its own code, with the checks (the callback's calls are few)
            compiled = entry.hooked = entry.hooked or generate(plan, ready=True)
            return _call(compiled, [ready, *fed])
        if not entry.has_checks:  # a forward-only graph: one code, nothing to remember
            signature = None
            compiled = entry.checked = entry.checked or generate(plan)
        else:  # output shapes depend on input shapes only, not on dtype or device
            signature = tuple(v.shape for v in fed)
            if signature in entry.checked_signatures:
                compiled = entry.specialized.get(signature) or _specialize(entry, signature, fed)
            else:
                compiled = entry.checked = entry.checked or generate(plan)
        outputs = self._profiled_call(entry, compiled, fed) if self.profile else _call(compiled, fed)
        if signature is not None:
            if len(entry.checked_signatures) >= MAX_CHECKED_SIGNATURES:  # bounded: ever-new shapes
                entry.checked_signatures.clear()  # only cost a check again
            entry.checked_signatures.add(signature)
        return outputs

    def _profiled_call(self, entry: _Entry, compiled: Compiled, fed: list[Tensor]) -> list[Tensor]:
        """Call the profiled twin of `compiled` (the same code plus a clock reading after each step;
        with CUDA values, synchronized before each) and keep its times in `last_profile`."""
        sync = torch.cuda.synchronize if any(v.is_cuda for v in fed) else None
        key = (id(compiled), sync is not None)  # the code it twins lives as long as the entry
        twin = entry.profiled.get(key)
        if twin is None:
            twin = entry.profiled[key] = generate(entry.plan, **{**compiled.options, "profile": True}, synchronize=sync)
        if sync:
            sync()  # earlier device work is not this run's
        start = time.perf_counter_ns()
        outputs, laps = _call(twin, fed)
        self.last_profile = RunTimes(entry.plan, laps, time.perf_counter_ns() - start, fed)
        return outputs


@dataclass(frozen=True)
class RunTimes:
    """One profiled run of `plan`: the clock readings of its code (before the first step, after each),
    the time of the whole call measured around it, and the fed values (for their shapes)."""

    plan: Plan
    laps: list[int]  # ns
    call_ns: int
    fed: list[Tensor]

    @property
    def step_ns(self) -> list[int]:
        """The time of each step, in `plan.steps` order: its call, its checks and its frees."""
        return [b - a for a, b in zip(self.laps, self.laps[1:])]


def _call(compiled: Compiled, args: list) -> list[Tensor]:
    """Run generated code; an error inside it is raised as the OpError naming its node."""
    try:
        return compiled.function(*args)
    except Exception as err:
        mapped = error_in_generated(compiled, err, sys.exc_info()[2])
        if mapped is err:
            raise
        raise mapped from err


@dataclass
class _Entry:
    """What an Evaluator keeps per set of fed nodes: the plan, its code with and without the
    gradient-shape checks (each generated when first needed), and the fed shapes already checked."""

    plan: Plan
    checked: Compiled | None = None
    fast: Compiled | None = None
    hooked: Compiled | None = None  # with a `ready` callback (Evaluator.run(..., ready=...))
    checked_signatures: set = field(default_factory=set)
    specialized: dict[tuple, Compiled] = field(default_factory=dict)  # fed shapes -> code for them
    profiled: dict[tuple, Compiled] = field(default_factory=dict)  # (id(code), synchronized) -> its profiled twin

    def __post_init__(self):
        self.has_checks = any(step.checks for step in self.plan.steps)


def _specialize(entry: _Entry, signature: tuple, fed: list[Tensor]) -> Compiled:
    """Code without checks for these fed shapes: a step whose op would pass an input through
    unchanged at these shapes (an identity `sum_to_shape`) becomes an assignment. The shapes come
    from running the plan once on `meta` tensors (no memory, no arithmetic), when every op is pure.
    If that fails or finds nothing, or past a few sets of shapes, the code without checks serves."""
    entry.fast = entry.fast or generate(entry.plan, checks=False)
    if len(entry.specialized) >= MAX_SPECIALIZED or not all(step.node.op.pure for step in entry.plan.steps):
        return entry.fast  # (an op that may have side effects never runs an extra time)
    passing = {}
    try:
        meta = [torch.empty(v.shape, dtype=v.dtype, device="meta") for v in fed]
        values = run_interpreted(entry.plan, meta, keep=True)
        for step in entry.plan.steps:
            shapes = [tuple(values[s].shape) if isinstance(values[s], Tensor) else None for s in step.inputs]
            index = step.node.op.passes_through(step.node, shapes)
            if index is not None:
                passing[step.slot] = step.inputs[index]
    except Exception:  # an op without a meta kernel: no specialization, nothing wrong
        passing = {}
    entry.specialized[signature] = generate(entry.plan, checks=False, passing=passing) if passing else entry.fast
    return entry.specialized[signature]


def run_interpreted(
    plan: Plan, fed: list[Tensor], keep: bool = False, ready=None, laps: list[int] | None = None
) -> list[Tensor]:
    """The reference runner: the plan's steps in a plain loop over a list of slots. `laps`, when given,
    receives a clock reading (ns) before the first step and after each (a profiled run)."""
    if laps is not None:
        laps.append(time.perf_counter_ns())
    values: list = [None] * len(plan.order)
    shapes: dict[int, tuple] = {}  # of the values checks compare gradients with (a check keeps no value)
    ready_at = plan.output_positions() if ready else {}
    for (slot, _), value in zip(plan.fed, fed):
        values[slot], shapes[slot] = value, getattr(value, "shape", None)
        for k in ready_at.get(slot, ()):
            ready(k, value)
    for step in plan.steps:
        args = [values[s] for s in step.inputs]
        try:
            values[step.slot] = step.node.op.compute(step.node, args)
        except Exception as err:
            raise op_error(step.node, args, err) from err
        shapes[step.slot] = getattr(values[step.slot], "shape", None)
        for check in step.checks:
            grad = values[check.grad]
            if grad.shape != shapes[check.wrt]:
                raise gradient_shape_error(plan, check, grad.shape, shapes[check.wrt])
        for k in ready_at.get(step.slot, ()):
            ready(k, values[step.slot])
        if not keep:
            for s in step.free:
                values[s] = None
        if laps is not None:
            laps.append(time.perf_counter_ns())
    return values if keep else [values[s] for s in plan.outputs]
