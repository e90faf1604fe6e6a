"""Where a run of a graph spends its time, node by node, read from the profiled generated code.

`Evaluator(nodes, profile=True)` keeps each run's step times (`RunTimes`); `summarize(runs)` turns runs
of one plan into a `Profile`: a record per node with its op's FLOPs (`flops(node, input_shapes)` of the
ops, on shapes from one pass over `meta` tensors), and totals per op kind and per matmul shape with the
achieved GFLOP/s. `probe_matmuls` times plain `torch.matmul` at given shapes: this machine's peak.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from autodiff.evaluator import Evaluator, RunTimes, run_interpreted
from autodiff.graph import Node, Tensor
from autodiff.ops import matmul
from autodiff.plan import Plan

Shape = tuple[int, ...]


@dataclass(frozen=True)
class NodeRecord:
    """One step of the plan: its node, op and input shapes (None: not a tensor, or unknown), its FLOPs
    (None: no rule, or shapes unknown) and its mean time per run (its call, checks and frees). `passed`:
    at these shapes the op returns an input unchanged (an identity `sum_to_shape`), so the code made for
    them has an assignment there, not a call."""

    slot: int
    name: str
    op: str
    input_shapes: tuple[Shape | None, ...]
    flops: int | None
    ns: float
    passed: bool = False


@dataclass(frozen=True)
class OpKind:
    """Every node of one op, per run: how many call it (passed nodes not counted), their time, their share of
    the measured call, their FLOPs."""

    op: str
    calls: int
    ns: float
    share: float
    flops: int | None

    @property
    def gflops_per_s(self) -> float | None:
        return self.flops / self.ns if self.flops is not None and self.ns > 0 else None  # FLOP/ns = GFLOP/s


@dataclass(frozen=True)
class MatmulShape:
    """Every matmul of one pair of input shapes, per run."""

    a: Shape
    b: Shape
    calls: int
    ns: float
    flops: int

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.ns if self.ns > 0 else math.inf


@dataclass
class Profile:
    """Profiled runs of one plan: per node (times averaged over the runs), per op kind, per matmul shape."""

    runs: int
    call_ns: list[int]  # each run's call of the generated code, measured around it
    nodes: list[NodeRecord]

    @property
    def step_ns(self) -> float:
        """The mean measured call."""
        return statistics.fmean(self.call_ns)

    @property
    def node_ns(self) -> float:
        """The per-node times added up (the clock readings cover all of the call but its entry and return)."""
        return sum(n.ns for n in self.nodes)

    @property
    def flops(self) -> int | None:
        """FLOPs of one run; None when some node's are unknown."""
        counts = [n.flops for n in self.nodes]
        return None if None in counts else sum(counts)

    def by_op(self) -> list[OpKind]:
        """Op kinds, most time first."""
        groups: dict[str, list[NodeRecord]] = {}
        for n in self.nodes:
            groups.setdefault(n.op, []).append(n)
        step = self.step_ns
        kinds = []
        for op, nodes in groups.items():
            ns, counts = sum(n.ns for n in nodes), [n.flops for n in nodes]
            calls = sum(not n.passed for n in nodes)
            kinds.append(OpKind(op, calls, ns, ns / step, None if None in counts else sum(counts)))
        return sorted(kinds, key=lambda k: -k.ns)

    def matmuls(self) -> list[MatmulShape]:
        """Matmuls grouped by input shapes, most time first (empty when the shapes are unknown)."""
        groups: dict[tuple[Shape, Shape], list[NodeRecord]] = {}
        for n in self.nodes:
            if n.op == "matmul" and n.flops is not None:
                groups.setdefault(n.input_shapes, []).append(n)
        shapes = [
            MatmulShape(a, b, len(nodes), sum(n.ns for n in nodes), sum(n.flops for n in nodes))
            for (a, b), nodes in groups.items()
        ]
        return sorted(shapes, key=lambda s: -s.ns)


def value_shapes(plan: Plan, fed: list[Tensor]) -> list[Shape | None] | None:
    """The shape of every slot's value, from running the plan once on `meta` tensors (no memory, no
    arithmetic); None when an op may have side effects or has no meta kernel."""
    if not all(step.node.op.pure for step in plan.steps):
        return None
    try:
        meta = [torch.empty(v.shape, dtype=v.dtype, device="meta") for v in fed]
        values = run_interpreted(plan, meta, keep=True)
    except Exception:  # an op without a meta kernel: no shapes, nothing wrong
        return None
    return [tuple(v.shape) if isinstance(v, Tensor) else None for v in values]


def node_flops(node: Node, input_shapes: tuple[Shape | None, ...] | None) -> int | None:
    """The node's FLOPs by its op's rule; None without a rule or without the shapes it reads."""
    rule = getattr(node.op, "flops", None)
    if rule is None or input_shapes is None:
        return None
    try:
        return int(rule(node, list(input_shapes)))
    except (NotImplementedError, TypeError):  # no rule, or a rule reading a shape that is unknown (None)
        return None


def summarize(runs: list[RunTimes]) -> Profile:
    """Runs of one plan (with the same fed shapes) as a Profile: node times averaged over the runs."""
    if not runs:
        raise ValueError("no profiled runs to summarize: run an Evaluator with profile=True first")
    plan, signature = runs[0].plan, [v.shape for v in runs[0].fed]
    if any(r.plan is not plan or [v.shape for v in r.fed] != signature for r in runs):
        raise ValueError("the runs to summarize must be of one plan with the same fed shapes")
    shapes = value_shapes(plan, runs[0].fed)
    step_ns = [r.step_ns for r in runs]
    nodes = []
    for i, step in enumerate(plan.steps):
        node, inputs = step.node, tuple(shapes[s] for s in step.inputs) if shapes else None
        ns = statistics.fmean(times[i] for times in step_ns)
        passed = inputs is not None and node.op.passes_through(node, list(inputs)) is not None
        flops = node_flops(node, inputs)
        nodes.append(
            NodeRecord(step.slot, node.name, node.op.name, inputs or (None,) * len(step.inputs), flops, ns, passed)
        )
    return Profile(len(runs), [r.call_ns for r in runs], nodes)


def profile_runs(evaluator: Evaluator, feed: dict[Node, object], runs: int = 10, warmup: int = 2) -> Profile:
    """Run `evaluator` on `feed` `warmup` times, then `runs` times profiled (the Evaluator's own setting is
    restored after), and summarize them."""
    for _ in range(warmup):
        evaluator.run(feed)
    was, evaluator.profile = evaluator.profile, True
    try:
        times = []
        for _ in range(runs):
            evaluator.run(feed)
            times.append(evaluator.last_profile)
    finally:
        evaluator.profile = was
    return summarize(times)


# --------------------------------------------------------------------- this machine's matmul peak


@dataclass(frozen=True)
class MatmulProbe:
    """Plain `torch.matmul` on contiguous random inputs of these shapes: its best time per call."""

    a: Shape
    b: Shape
    flops: int
    ns: float

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.ns


def probe_matmuls(
    shapes: Iterable[tuple[Shape, Shape]], dtype: torch.dtype = torch.float32, device="cpu", seconds: float = 0.02
) -> list[MatmulProbe]:
    """Time `torch.matmul` at each distinct pair of shapes for about `seconds` (at least 3 calls) and keep
    the best call: what this machine can do at that size (the best of all is its peak)."""
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    probes = []
    for a_shape, b_shape in dict.fromkeys((tuple(a), tuple(b)) for a, b in shapes):
        a = torch.randn(a_shape, generator=generator, dtype=dtype).to(device)
        b = torch.randn(b_shape, generator=generator, dtype=dtype).to(device)
        torch.matmul(a, b)  # warm-up: the first call of a size may allocate or pick a kernel
        sync()
        best, calls, deadline = math.inf, 0, time.perf_counter_ns() + seconds * 1e9
        while calls < 3 or time.perf_counter_ns() < deadline:
            start = time.perf_counter_ns()
            torch.matmul(a, b)
            sync()
            best, calls = min(best, time.perf_counter_ns() - start), calls + 1
        probes.append(MatmulProbe(a_shape, b_shape, matmul.flops(None, [a_shape, b_shape]), best))  # the op's rule
    return probes
