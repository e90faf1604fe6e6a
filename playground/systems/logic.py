"""The Systems page's logic (no st.* here): the settings a learner picks, one profiled run of the one trainer's
step (lm.profile, which owns the size bound and every check), and what the charts and the delta view read
from it: time per kind of work, the step split against its matmul floor, each matmul shape's arithmetic
intensity, the memory timeline of the step's plan, and what changed between the previous profile and this one.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, fields

from autodiff.timeline import Timeline
from lm.config import PRESETS
from lm.profile import (
    FRAMEWORK,
    KINDS,
    OUTSIDE,
    MatmulRow,
    TrainingProfile,
    kind_of,
    profile_config,
    profile_training,
)

PRESET_NAMES = list(PRESETS)
LAYOUTS = {"auto": None, "packed": True, "batched": False}  # attention layout -> profile_training's `packed`
TOP_OPS = 12  # ops drawn one bar each; the rest is one "other" bar
OTHER = "other ops"
_ONE_AT_A_TIME = threading.Lock()  # two sessions profiling at once would each time the other's work


class ProfileError(ValueError):
    """A profile that cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """What the page's widgets pick: the model and batch, and the toggles that change the plan or how it runs
    (defaults: as training runs it). A few steps keep a profile short."""

    preset: str = "gpt"
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    context: int = 64
    batch: int = 8
    steps: int = 3
    layout: str = "auto"  # attention: the model's choice, packed (all rows in one matrix) or batched
    fused: bool = True  # fused backward nodes (one torch kernel for a norm's or softmax's gradient)
    compiled: bool = True  # generated straight-line code; False: the plan's interpreted loop
    keep_freed: bool = True  # malloc keeps freed memory for the next step; False: a fresh process
    remat: bool = False  # activation checkpointing: each block's forward recomputed in the backward pass

    def describe(self) -> str:
        """One line naming the model and every toggle, for a chart's legend."""
        toggles = [
            f"{self.layout} attention",
            "fused" if self.fused else "unfused",
            "compiled" if self.compiled else "interpreted",
            "memory kept" if self.keep_freed else "memory returned",
            "checkpointed blocks" if self.remat else "activations kept",
        ]
        sizes = f"{self.preset}, {self.n_layers}L, {self.n_heads}H, d {self.d_model}, T {self.context}, B {self.batch}"
        return f"{sizes} · {' · '.join(toggles)}"


@dataclass
class Run:
    """One profile and the settings it ran with."""

    settings: Settings
    profile: TrainingProfile


def check(settings: Settings) -> None:
    """Raise ProfileError with lm's message when lm would refuse these sizes (nothing runs)."""
    try:
        profile_config(**_sizes(settings), packed=LAYOUTS[settings.layout])
    except ValueError as err:
        raise ProfileError(str(err)) from err


def run(settings: Settings, cache_dir=None) -> Run:
    """Profile the training step at these settings (a few seconds; checked first), one profile per server
    at a time (another session's waits)."""
    check(settings)
    try:
        with _ONE_AT_A_TIME:
            profile = profile_training(
                **_sizes(settings), cache_dir=cache_dir, packed=LAYOUTS[settings.layout], fused=settings.fused,
                compiled=settings.compiled, keep_freed=settings.keep_freed, remat=settings.remat,
            )  # fmt: skip
    except (ValueError, RuntimeError) as err:
        raise ProfileError(str(err)) from err
    return Run(settings, profile)


def _sizes(s: Settings) -> dict:
    return dict(preset=s.preset, n_layers=s.n_layers, n_heads=s.n_heads, d_model=s.d_model, context=s.context,
                batch=s.batch, steps=s.steps)  # fmt: skip


# ------------------------------------------------------------------------------ what the charts read


def op_times(profile: TrainingProfile, top: int = TOP_OPS) -> list[tuple[str, float, int]]:
    """(op, ms per step, calls) for the `top` ops with the most time, then the rest as one row."""
    rows = [(r.op, r.ms, r.calls) for r in profile.ops]  # most time first
    if len(rows) <= top + 1:
        return rows
    rest = rows[top:]
    return [*rows[:top], (OTHER, sum(r[1] for r in rest), sum(r[2] for r in rest))]


def op_table(profile: TrainingProfile) -> list[dict]:
    """Every op, most time first, as the rows of a profiler's table."""
    return [
        {"op": r.op, "kind": kind_of(r.op), "calls": r.calls, "ms per step": round(r.ms, 3),
         "share of the step": f"{r.share:.1%}", "MFLOP": None if r.flops is None else round(r.flops / 1e6, 2),
         "GFLOP/s": None if not r.flops or r.gflops_per_s is None else round(r.gflops_per_s, 1)}
        for r in profile.ops
    ]  # fmt: skip


def op_flops(profile: TrainingProfile) -> list[tuple[str, float]]:
    """(op, MFLOP per step) of every op that does arithmetic, most first."""
    rows = [(r.op, r.flops / 1e6) for r in profile.ops if r.flops]
    return sorted(rows, key=lambda row: -row[1])


def kind_times(profile: TrainingProfile) -> dict[str, float]:
    """ms per step of each kind of work (lm.profile's kinds: matmul, norms, softmax...), then calling the
    generated code (the framework) and the work outside the graph (batch, clipping, AdamW)."""
    times = dict.fromkeys([*KINDS, "elementwise"], 0.0)
    for r in profile.ops:
        times[kind_of(r.op)] += r.ms
    graph = sum(profile.graph_ms) / len(profile.graph_ms)
    times[FRAMEWORK] = max(graph - profile.node_ms, 0.0)
    times[OUTSIDE] = profile.outside_ms
    return {kind: ms for kind, ms in times.items() if ms > 0 or kind in (FRAMEWORK, OUTSIDE)}


def step_parts(profile: TrainingProfile) -> dict[str, float]:
    """A profiled step split into matmuls, the graph's other ops, calling the code and the rest (ms)."""
    kinds = kind_times(profile)
    matmul = kinds.get("matmul", 0.0)
    return {
        "matmuls": matmul,
        "other ops of the graph": sum(ms for k, ms in kinds.items() if k not in ("matmul", FRAMEWORK, OUTSIDE)),
        "calling the code": kinds[FRAMEWORK],
        OUTSIDE: kinds[OUTSIDE],
    }


def intensity(row: MatmulRow, bytes_per_value: int) -> float:
    """A matmul shape's arithmetic intensity: FLOPs per byte it must at least read and write (both inputs and
    the output, once each). Low: bound by memory traffic; high: by arithmetic."""
    flops = row.flops / row.calls  # one call: 2 m n k per output matrix
    outputs = flops / (2 * row.a[-1])  # m n per output matrix
    values = math.prod(row.a) + math.prod(row.b) + outputs
    return flops / (values * bytes_per_value)


def bytes_per_value(profile: TrainingProfile) -> int:
    return 8 if profile.settings["dtype"] == "float64" else 4


# ------------------------------------------------------------------------------ the memory timeline

MIB = 2**20
MEMORY_KINDS = ("parameters", "inputs", "activations", "temporaries", "outputs")  # stacked bottom to top
TOP_ALIVE = 15  # values listed as alive at the peak


def memory_series(timeline: Timeline) -> dict[str, list[float]]:
    """MiB alive after each step of the plan, by category (the stacked areas of the timeline chart)."""
    return {kind: [after[kind] / MIB for after in timeline.after] for kind in MEMORY_KINDS}


def memory_peak(timeline: Timeline) -> dict[str, float]:
    """MiB by category while the peak step runs (its op's scratch counted in temporaries)."""
    return {kind: timeline.at_peak[kind] / MIB for kind in MEMORY_KINDS}


def alive_table(timeline: Timeline, top: int = TOP_ALIVE) -> list[dict]:
    """The largest values alive at the peak, as table rows (each storage once: a view is not listed)."""
    return [
        {"value": v.name, "op": v.op, "shape": " × ".join(map(str, v.shape)) or "scalar", "dtype": v.dtype,
         "KiB": round(v.bytes / 1024, 1), "what it is": v.category}
        for v in timeline.alive_at_peak[:top]
    ]  # fmt: skip


def memory_summary(run: Run) -> str:
    """A sentence on the step's peak: how large, where in the plan, and what fills it."""
    t = run.profile.memory
    peak = memory_peak(t)
    largest = max(peak, key=peak.get)
    return (
        f"The step's graph holds at most **{t.peak / MIB:.2f} MiB**, while step {t.peak_step + 1:,} of "
        f"{len(t.names):,} (`{t.names[t.peak_step]}`) runs; the largest part is {largest} "
        f"({peak[largest]:.2f} MiB). Activations kept for the backward pass peak at "
        f"{t.peak_of('activations') / MIB:.2f} MiB."
    )


# ------------------------------------------------------------------------------ the delta view


def changes(before: Settings, after: Settings) -> list[str]:
    """What differs between two settings, as 'field: old → new'."""
    return [
        f"{f.name}: {getattr(before, f.name)} → {getattr(after, f.name)}"
        for f in fields(Settings)
        if getattr(before, f.name) != getattr(after, f.name)
    ]


@dataclass(frozen=True)
class Delta:
    """The previous profile against this one: each kind of work's ms per step, and the step."""

    kinds: list[tuple[str, float, float]]  # (kind, before ms, after ms), the largest change first
    step_before: float
    step_after: float
    peak_before: float  # MiB: the timeline's peak
    peak_after: float
    activations_before: float  # MiB: activations kept for the backward pass, at their most
    activations_after: float
    changed: list[str]

    @property
    def step_ratio(self) -> float:
        return self.step_after / self.step_before


def delta(before: Run, after: Run) -> Delta:
    old, new = kind_times(before.profile), kind_times(after.profile)
    kinds = [(k, old.get(k, 0.0), new.get(k, 0.0)) for k in dict.fromkeys([*old, *new])]
    kinds.sort(key=lambda row: -abs(row[2] - row[1]))
    old_memory, new_memory = before.profile.memory, after.profile.memory
    return Delta(
        kinds, before.profile.step, after.profile.step, old_memory.peak / MIB, new_memory.peak / MIB,
        old_memory.peak_of("activations") / MIB, new_memory.peak_of("activations") / MIB,
        changes(before.settings, after.settings),
    )  # fmt: skip


def summary(run: Run) -> str:
    """A sentence on where this step stands against its matmul floor."""
    p, parts = run.profile, step_parts(run.profile)
    share = parts["matmuls"] / sum(parts.values())
    return (
        f"One training step took **{p.step:.1f} ms** (median of {len(p.step_ms)}); its matrix products are "
        f"{p.matmul_flops / 1e9:.3f} GFLOP, which at this machine's best measured matmul rate "
        f"({p.peak_gflops_per_s:.0f} GFLOP/s) would take {p.floor_ms:.2f} ms: the step is **{p.floor_ratio:.1f}×** "
        f"its matmul floor. With the profile on, the graph's matmuls took {share:.0%} of the step."
    )
