"""Where a training step's time goes: `python -m lm profile`'s logic, returned as data (no printing: the
command line formats it, a page can draw it).

The step is the one trainer's (`Trainer.train_step`: the nanoGPT recipe on the bundled Tiny Shakespeare
characters, at the sizes given): the graph's forward and backward, profiled node by node by its
generated code (autodiff/profile.py), then batch, clipping and AdamW outside the graph. Beside it: this
machine's matmul peak (plain `torch.matmul` at the step's shapes), the step's matmul floor, and, when a
peer is given (bench/bench_profile.py --vs-torch gives the plain-PyTorch reference: autograd belongs to
tests and benchmarks, never to lm), the same step under `torch.profiler`, grouped into ours kinds of work.

Toggles change the plan or how it runs, defaults as training runs it: `packed` attention (None: the
model's choice), `fused` backward nodes, `compiled` code (False: the interpreted loop) and `keep_freed`
memory (False: glibc's defaults, in a fresh process, since the setting cannot be undone in one), and
`remat` (activation checkpointing: each block's forward recomputed in the backward pass). The graph's
memory timeline comes from its plan (`step_memory`).
"""

from __future__ import annotations

import math
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from autodiff.memory import keep_freed_memory
from autodiff.profile import probe_matmuls, summarize
from autodiff.timeline import Timeline, memory_timeline
from lm.config import ModelConfig, preset_config
from lm.model import use_packed
from lm.train import TrainConfig, Trainer

WARMUP = 2  # unprofiled steps first, each side: planning, the checked code, the code made for the shapes
MAX_STEPS = 50
MAX_GFLOP = 600.0  # matmul work of a whole profile (both sides, warm-ups included): about 10 s here
CHAR_VOCAB = 128  # a bound on the characters of the text (Tiny Shakespeare: 65, and the end-of-text token)

# Kinds of work, the same for both sides: our op names and torch's aten op names map onto them.
KINDS = {
    "matmul": {"matmul", "mm", "bmm", "addmm", "linear"},
    "norms": {"layernorm", "layernorm_backward", "layernorm_gain", "layernorm_gain_backward", "layernorm_gain_grads",
              "pick_grad", "rmsnorm", "rmsnorm_backward", "norm_gain_backward", "native_layer_norm",
              "native_layer_norm_backward", "layer_norm", "rms_norm", "_fused_rms_norm", "_fused_rms_norm_backward"},
    "softmax": {"softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "_softmax",
                "_softmax_backward_data"},
    "cross-entropy": {"cross_entropy", "cross_entropy_backward", "cross_entropy_weights", "cross_entropy_loss",
                      "_log_softmax", "_log_softmax_backward_data", "nll_loss", "nll_loss_forward",
                      "nll_loss_backward", "nll_loss_nd"},
    "activations": {"relu", "gelu", "silu", "sigmoid", "tanh", "erf", "gelu_backward", "silu_backward",
                    "sigmoid_backward", "tanh_backward", "threshold_backward"},
    "embedding": {"embedding", "embedding_backward", "embedding_dense_backward", "index", "index_select",
                  "index_put_", "_index_put_impl_", "index_add_"},
    "reductions": {"sum", "mean", "max", "amax", "sum_to_shape", "expand_reduced"},
    "layout (views, copies)": {"reshape", "reshape_as", "transpose", "permute", "squeeze", "unsqueeze", "slice",
                               "slice_backward", "concat", "concat_part", "expand_as", "broadcast", "expand_as_3d",
                               "view", "_reshape_alias", "_unsafe_view", "t", "expand", "as_strided", "contiguous",
                               "clone", "copy_", "cat", "select", "narrow", "split", "detach", "alias", "to",
                               "_to_copy", "resolve_conj", "resolve_neg"},
    "allocation, fills": {"zeros_like", "ones_like", "empty", "empty_like", "empty_strided", "zeros", "ones", "full",
                          "fill_", "zero_", "new_empty", "new_zeros", "new_empty_strided", "resize_"},
}  # fmt: skip
KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}
OUTSIDE = "batch, clipping, AdamW"  # the work outside the graph (ours) or in their annotated parts (PyTorch's)
FRAMEWORK = "Python, framework"  # ours: calling the generated code; theirs: the autograd engine, Python, profiler
ELEMENTWISE = "elementwise"  # every other op (add, mul, rope, where...)


def kind_of(op: str) -> str:
    """The kind of work of one of our ops (`layernorm_gain` -> norms)."""
    return KIND_OF.get(op, ELEMENTWISE)


def torch_kind_of(event: str) -> str:
    """The kind of work of a torch.profiler event: an aten op by its name (`aten::mm` -> matmul); anything
    else (`MmBackward0`, `autograd::engine::...`) is the framework's own work."""
    return KIND_OF.get(event[6:], ELEMENTWISE) if event.startswith("aten::") else FRAMEWORK


# ------------------------------------------------------------------------------ bounds, before any work


def estimate_step_flops(model: ModelConfig, batch: int, T: int, packed: bool | None = None) -> int:
    """Matmul FLOPs of one training step, from the sizes alone: per layer the four (D, D) projections, the
    feed-forward's two (SwiGLU: three) (D, F) products and attention's two (scores, weighted sum), then the
    head; the backward pass computes both products of each (3x the forward). `packed`: the attention
    layout (None: the model's choice)."""
    N, D, F, L, V = batch * T, model.d_model, model.d_ff, model.n_layers, model.vocab_size
    packed = use_packed(batch, T) if packed is None else packed
    keys = N if packed else T  # packed attention scores every row against every row
    ffn = 3 if model.ffn == "swiglu" else 2
    forward = L * (4 * 2 * N * D * D + ffn * 2 * N * D * F + 2 * 2 * N * keys * D) + 2 * N * D * V
    return 3 * forward


def profile_config(
    preset: str = "gpt", n_layers: int = 4, n_heads: int = 4, d_model: int = 128, context: int = 64, batch: int = 12,
    steps: int = 5, packed: bool | None = None,
) -> TrainConfig:  # fmt: skip
    """The run a profile trains (the nanoGPT recipe at these sizes), checked before any work: a ValueError
    says what to lower when the profile would take more than about 10 s on this machine."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"--steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    config = TrainConfig.recipe(
        "nanogpt", preset=preset, n_layers=n_layers, n_heads=n_heads, d_model=d_model, context=context,
        batch_size=batch, steps=10**7, eval_every=0,
    ).validate()  # fmt: skip
    sizes = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, dtype=config.dtype)
    model = preset_config(preset, CHAR_VOCAB, context, **sizes)
    per_step = estimate_step_flops(model, batch, context, packed) / 1e9
    n_steps = 2 * (WARMUP + 2 * steps)  # each side: warm-up, then `steps` plain and `steps` profiled
    if per_step * n_steps > MAX_GFLOP:
        raise ValueError(
            f"the profile would run {n_steps} training steps of about {per_step:.1f} GFLOP each "
            f"({per_step * n_steps:,.0f} GFLOP, ours and PyTorch's): more than about 10 s on this machine (at most "
            f"{MAX_GFLOP:,.0f} GFLOP); lower the batch, context, d_model, layers or steps (--batch, --context, "
            "--d-model, --layers, --steps)"
        )
    return config


# ------------------------------------------------------------------------------------------ the result


@dataclass
class OpRow:
    """One of our op kinds, per step."""

    op: str
    calls: int
    ms: float
    share: float  # of the step
    flops: int | None
    gflops_per_s: float | None


@dataclass
class MatmulRow:
    """Our matmuls of one pair of input shapes, per step, and plain torch.matmul's rate at those shapes."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    calls: int
    ms: float
    flops: int
    gflops_per_s: float
    probe_gflops_per_s: float


@dataclass
class SideRow:
    """One kind of work, per step: ours (profiled node times) next to PyTorch's (torch.profiler self time)."""

    kind: str
    ours_ms: float
    ours_calls: int
    torch_ms: float
    torch_calls: int


@dataclass
class TrainingProfile:
    """A profiled training step. Times are ms per step; lists hold one value per measured step."""

    settings: dict  # preset, sizes, dtype, steps, threads, torch version
    parameters: int
    step_ms: list[float]  # our train_step, profile off
    profiled_step_ms: list[float]  # our train_step, profile on
    graph_ms: list[float]  # the graph's call within each profiled step
    node_ms: float  # the graph's per-node times added up (mean)
    outside_ms: float  # batch, clipping and AdamW: a profiled step minus its graph call (mean)
    adamw_ms: float  # of which AdamW's update (mean)
    page_faults: float | None  # minor page faults per step, profile off (None: not measurable here)
    nodes: int  # steps of the graph's plan
    ops: list[OpRow]  # op kinds, most time first
    matmuls: list[MatmulRow]  # most time first
    flops: int | None  # the graph's, per step
    matmul_flops: int
    peak_gflops_per_s: float  # the best plain torch.matmul rate at the step's shapes
    floor_ms: float  # the step's matmul FLOPs at that peak
    probe_ms: float  # the step's matmuls as plain torch.matmul calls at their own shapes' rates
    torch_step_ms: list[float]  # the PyTorch step, profiler off (empty without a peer)
    torch_profiled_ms: float | None  # the PyTorch step under torch.profiler (mean); None without a peer
    side_by_side: list[SideRow]
    memory: Timeline | None = None  # the graph's bytes alive along its plan (step_memory)

    @property
    def step(self) -> float:
        return statistics.median(self.step_ms)

    @property
    def floor_ratio(self) -> float:
        """The step's time over its matmul floor: 1.0 would be a step doing nothing but matmuls at peak."""
        return self.step / self.floor_ms

    @property
    def overhead(self) -> float:
        """The profiled step's median over the plain one's, minus 1."""
        return statistics.median(self.profiled_step_ms) / self.step - 1

    def to_dict(self) -> dict:
        return {**asdict(self), "step": self.step, "floor_ratio": self.floor_ratio, "overhead": self.overhead}


# ------------------------------------------------------------------------------------------ the profile


def profile_training(
    preset: str = "gpt", n_layers: int = 4, n_heads: int = 4, d_model: int = 128, context: int = 64, batch: int = 12,
    steps: int = 5, cache_dir=None, probe_seconds: float = 0.02, peer: Callable[[Trainer], Callable] | None = None,
    packed: bool | None = None, fused: bool = True, compiled: bool = True, keep_freed: bool = True,
    remat: bool = False,
) -> TrainingProfile:  # fmt: skip
    """Profile `steps` training steps after a warm-up: ours with the profile off and on, and the peer's when
    given, alternated (so a busy moment on a shared machine hits all of them), then the peer's under
    torch.profiler, then the matmul probe at the step's shapes. `peer(trainer)` returns the same step in
    plain PyTorch (bench/nanogpt_style.py's TorchSide: lm itself never runs torch's autograd). The toggles
    (module docstring) default to how training runs."""
    config = profile_config(preset, n_layers, n_heads, d_model, context, batch, steps, packed)
    if keep_freed_memory() and not keep_freed:  # this process keeps freed memory for good: ask a fresh one
        return _in_fresh_process(dict(
            preset=preset, n_layers=n_layers, n_heads=n_heads, d_model=d_model, context=context, batch=batch,
            steps=steps, cache_dir=cache_dir, probe_seconds=probe_seconds, peer=peer, packed=packed, fused=fused,
            compiled=compiled, keep_freed=False, remat=remat,
        ))  # fmt: skip
    trainer = Trainer(config, cache_dir=cache_dir)
    B, T = trainer.source.batch_shape(config.batch_size, trainer.context)
    trainer.graph = trainer.model.loss_graph(B, T, packed, fused, remat)  # the trainer's own unless a toggle says
    trainer.graph.evaluator.compiled = compiled
    evaluator, optimizer = trainer.graph.evaluator, trainer.optimizer
    torch_step = None if peer is None else peer(trainer)  # from the trainer's initial weights
    plain, profiled, graph, adamw, theirs, runs = [], [], [], [], [], []
    update = optimizer.step

    def timed_update(grads) -> None:
        start = time.perf_counter_ns()
        update(grads)
        adamw.append(time.perf_counter_ns() - start)

    def ours_profiled() -> int:
        evaluator.profile, optimizer.step = True, timed_update  # this trainer's own optimizer, for this step
        try:
            ns = _timed(trainer.train_step)
        finally:
            evaluator.profile = False
            del optimizer.step
        runs.append(evaluator.last_profile)
        graph.append(evaluator.last_profile.call_ns)
        return ns

    for _ in range(WARMUP):
        trainer.train_step()
        if torch_step is not None:
            torch_step()
    ours_profiled()  # the profiled twin of the step's code is made on its first call: not timed
    for times in (graph, adamw, runs):
        times.clear()
    faults = []

    def ours_plain() -> int:
        before = _minor_faults()
        ns = _timed(trainer.train_step)
        after = _minor_faults()
        faults.append(None if before is None else after - before)
        return ns

    sides = [(plain, ours_plain), (profiled, ours_profiled)]
    if torch_step is not None:
        sides.append((theirs, lambda: _timed(torch_step)))
    for i in range(steps):
        for times, run in sides[i % len(sides) :] + sides[: i % len(sides)]:
            times.append(run())

    result = summarize(runs)
    probes = probe_matmuls([(m.a, m.b) for m in result.matmuls()], trainer.model.config.torch_dtype,
                           trainer.device, probe_seconds)  # fmt: skip
    probe_of = {(p.a, p.b): p for p in probes}
    matmuls = [
        MatmulRow(m.a, m.b, m.calls, m.ns / 1e6, m.flops, m.gflops_per_s, probe_of[m.a, m.b].gflops_per_s)
        for m in result.matmuls()
    ]
    matmul_flops = sum(m.flops for m in matmuls)
    probe_ns = sum(m.calls * probe_of[m.a, m.b].ns for m in result.matmuls())
    peak = max((p.gflops_per_s for p in probes), default=math.nan)
    step_ns = statistics.median(plain)
    ops = [OpRow(k.op, k.calls, k.ns / 1e6, k.ns / step_ns, k.flops, k.gflops_per_s) for k in result.by_op()]
    outside = statistics.fmean(p - g for p, g in zip(profiled, graph))
    side, torch_profiled_ns = [], None
    if torch_step is not None:
        torch_kinds, torch_calls, torch_profiled_ns = _torch_profile(torch_step, steps)
        side = _side_by_side(result, outside, torch_kinds, torch_calls, torch_profiled_ns)
    return TrainingProfile(
        settings=dict(
            preset=preset, n_layers=n_layers, n_heads=n_heads, d_model=d_model, context=context, batch=batch,
            steps=steps, warmup=WARMUP, dtype=config.dtype, threads=torch.get_num_threads(), torch=torch.__version__,
            packed=trainer.graph.forward.packed, fused=fused, compiled=compiled, keep_freed=keep_freed_memory(),
            remat=remat,
        ),
        parameters=trainer.model.num_parameters(),
        step_ms=[t / 1e6 for t in plain], profiled_step_ms=[t / 1e6 for t in profiled],
        graph_ms=[t / 1e6 for t in graph], node_ms=result.node_ns / 1e6, outside_ms=outside / 1e6,
        adamw_ms=statistics.fmean(adamw) / 1e6, nodes=len(result.nodes), ops=ops, matmuls=matmuls,
        page_faults=None if None in faults else statistics.fmean(faults),
        flops=result.flops, matmul_flops=matmul_flops, peak_gflops_per_s=peak,
        floor_ms=matmul_flops / peak / 1e6, probe_ms=probe_ns / 1e6,  # FLOP / (GFLOP/s) = ns
        torch_step_ms=[t / 1e6 for t in theirs], side_by_side=side,
        torch_profiled_ms=None if torch_profiled_ns is None else torch_profiled_ns / 1e6,
        memory=step_memory(trainer),
    )  # fmt: skip


def step_memory(trainer: Trainer) -> Timeline:
    """The memory timeline of the trainer's step graph (its loss and gradients, forward and backward; not
    AdamW's state), read from its plan and the shapes of one batch before anything runs (autodiff/timeline.py):
    bytes alive after each step by parameters, inputs, outputs (the gradients), activations kept for the
    backward pass and temporaries; the peak and the values alive there."""
    graph = trainer.graph
    B, T = trainer.source.batch_shape(trainer.config.batch_size, trainer.context)
    ids, targets = torch.zeros(B, T, dtype=torch.long), torch.zeros(B * T, dtype=torch.long)
    feed = {**trainer.model.param_feed(), **graph.forward.inputs(ids), graph.targets: targets}
    return memory_timeline(graph.evaluator.plan(feed), feed, trainer.model.vars.by_name.values())


def _timed(fn) -> int:
    start = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - start


def _minor_faults() -> int | None:
    """This process's minor page faults so far (pages the kernel mapped in, zeroed); None off Unix."""
    try:
        import resource  # noqa: PLC0415  (Unix only)
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _in_fresh_process(args: dict) -> TrainingProfile:
    """profile_training(**args) in a new Python process whose malloc keeps glibc's defaults (keep_freed=False),
    on as many torch threads as this one; its arguments and result travel as pickles in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "args.pickle").write_bytes(pickle.dumps((args, torch.get_num_threads())))
        code = "import sys; from lm.profile import _fresh_process_main; _fresh_process_main(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"the profile in a fresh process (freed memory not kept) failed: {last}")
        return pickle.loads((Path(folder) / "result.pickle").read_bytes())


def _fresh_process_main(folder: str) -> None:
    keep_freed_memory(keep=False)  # first: the trainer's own call then leaves glibc's defaults
    args, threads = pickle.loads((Path(folder) / "args.pickle").read_bytes())
    torch.set_num_threads(threads)
    (Path(folder) / "result.pickle").write_bytes(pickle.dumps(profile_training(**args)))


def _torch_profile(step, steps: int) -> tuple[dict[str, float], dict[str, int], float]:
    """PyTorch's step `steps` times under torch.profiler (CPU): self time (ns) and calls per kind of work,
    per step, and the profiled step's wall time. An op inside the optimizer, the clipping or the batch
    counts as theirs; a call is an op whose parent is of another kind (aten::matmul -> aten::mm is one)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter_ns()
        for _ in range(steps):
            step()
        wall = (time.perf_counter_ns() - start) / steps
    kinds: dict[str, float] = {}
    calls: dict[str, int] = {}
    kind_memo: dict[int, str] = {}

    def kind(event) -> str:
        if id(event) not in kind_memo:
            name, parent = event.name, event.cpu_parent
            if name.startswith(("Optimizer.", "lm.profile: ")):
                kind_memo[id(event)] = OUTSIDE
            elif parent is not None and kind(parent) == OUTSIDE:
                kind_memo[id(event)] = OUTSIDE
            else:
                kind_memo[id(event)] = torch_kind_of(name)
        return kind_memo[id(event)]

    for event in prof.events():
        k = kind(event)
        kinds[k] = kinds.get(k, 0.0) + event.self_cpu_time_total * 1e3 / steps  # us -> ns
        if event.cpu_parent is None or kind(event.cpu_parent) != k:
            calls[k] = calls.get(k, 0) + 1
    framework = wall - sum(ns for k, ns in kinds.items() if k != FRAMEWORK)  # the rest of the wall time
    kinds[FRAMEWORK] = max(framework, 0.0)
    return kinds, {k: math.ceil(c / steps) for k, c in calls.items()}, wall


def _side_by_side(result, outside_ns: float, theirs: dict[str, float], their_calls: dict[str, int], their_wall):
    ours: dict[str, float] = {OUTSIDE: outside_ns, FRAMEWORK: result.step_ns - result.node_ns}
    calls: dict[str, int] = {}
    for k in result.by_op():
        kind = kind_of(k.op)
        ours[kind] = ours.get(kind, 0.0) + k.ns
        calls[kind] = calls.get(kind, 0) + k.calls

    def row(k: str) -> SideRow:
        return SideRow(k, ours.get(k, 0.0) / 1e6, calls.get(k, 0), theirs.get(k, 0.0) / 1e6, their_calls.get(k, 0))

    ops = [row(k) for k in [*KINDS, ELEMENTWISE] if k in ours or k in theirs]
    return [*sorted(ops, key=lambda r: -(r.ours_ms + r.torch_ms)), row(OUTSIDE), row(FRAMEWORK)]
