"""Benchmark: what profiling costs. The same model step (the loss and every gradient of a recipe's model,
one Evaluator) runs with its plain generated code and with its profiled twin (a clock reading after
each node), in the same process. Each round times `--runs` pairs of runs, a plain and a profiled one back
to back (which goes first alternates), and takes the ratio of their medians; printed: min / median / max
over the rounds, so a busy moment on a shared machine shows as spread, not as a result. Also: how close
the per-node times of the profiled runs come to the call measured around them, and to the plain run.

    .venv/bin/python bench/bench_profile.py [--recipe classic|nanogpt] [--rounds 7] [--runs 30] [--threads 1]
    .venv/bin/python bench/bench_profile.py --floor --threads 2 [--rounds 7] [--runs 10]

With `--floor`: how far a training step of nanoGPT's CPU recipe (the one trainer's `train_step`: batch,
loss and gradients, clipping, AdamW) is from its matmul floor, the same step's matrix products alone as
plain `torch.matmul` calls at the step's shapes, in the plan's order, each on its own contiguous inputs.
Each round times `--runs` steps and `--runs` floors interleaved (alternating which goes first); printed:
the ratio of their medians, min / median / max over the rounds (issue 20's goal: at most 1.3), and the
same for each round's fastest runs (a loaded machine stalls two-thread runs: see the comment there).

With `--vs-torch`: `python -m lm profile`'s tables for the nanoGPT recipe's step, with the same step of the
plain-PyTorch reference (bench/nanogpt_style.py's TorchSide: autograd, torch.optim.AdamW) beside ours under
torch.profiler. lm itself never runs torch's autograd, so this side lives here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from autodiff.ops import matmul
from autodiff.profile import profile_runs
from bench.nanogpt_style import TorchSide  # noqa: E402
from lm import profile  # noqa: E402
from lm.cli import print_profile  # noqa: E402
from lm.train import TrainConfig, Trainer  # noqa: E402


def model_step(recipe: str):
    """The trainer's loss-and-gradients Evaluator and the feed of one batch."""
    trainer = Trainer(TrainConfig.recipe(recipe, eval_every=0))
    x, y = trainer.source.batch(trainer.config.batch_size, trainer.context, trainer.batches)
    feed = {**trainer.model.param_feed(), **trainer.graph.forward.inputs(x), trainer.graph.targets: y.reshape(-1)}
    return trainer, trainer.graph.evaluator, feed


def timed_pairs(evaluator, feed, n: int) -> tuple[list[int], list[int], list]:
    """n plain and n profiled runs, interleaved (alternating which goes first): their times and the
    profiled runs' records."""
    plain, profiled, runs = [], [], []
    for i in range(n):
        for on in (False, True) if i % 2 == 0 else (True, False):
            evaluator.profile = on
            start = time.perf_counter_ns()
            evaluator.run(feed)
            (profiled if on else plain).append(time.perf_counter_ns() - start)
            evaluator.profile = False
            if on:
                runs.append(evaluator.last_profile)
    return plain, profiled, runs


def matmul_floor(trainer: Trainer):
    """A function running the trainer step's matrix products as plain torch.matmul calls (plan order, one
    pair of contiguous random inputs per call, made once), and their shapes."""
    x, y = trainer.source.batch(trainer.config.batch_size, trainer.context, trainer.batches)
    feed = {**trainer.model.param_feed(), **trainer.graph.forward.inputs(x), trainer.graph.targets: y.reshape(-1)}
    nodes = profile_runs(trainer.graph.evaluator, feed, runs=1).nodes
    shapes = [node.input_shapes for node in nodes if node.op == "matmul"]
    dtype = trainer.model.config.torch_dtype
    pairs = [(torch.randn(a, dtype=dtype), torch.randn(b, dtype=dtype)) for a, b in shapes]

    def floor() -> None:
        for a, b in pairs:
            torch.matmul(a, b)

    return floor, shapes


def floor_ratio(args) -> None:
    """--floor: training steps of nanoGPT's CPU recipe against their matmul floor, alternated."""
    trainer = Trainer(TrainConfig.recipe("nanogpt", steps=10**7, eval_every=0))
    floor, shapes = matmul_floor(trainer)
    for _ in range(3):  # planning, the checked code, the code made for the shapes; the floor's first calls
        trainer.train_step()
        floor()
    sides = {"step": trainer.train_step, "floor": floor}
    gflop = sum(matmul.flops(None, list(s)) for s in shapes) / 1e9
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; nanoGPT's CPU recipe, one train_step "
        f"(batch, loss and gradients, clipping, AdamW) against its {len(shapes)} matmuls ({gflop:.2f} GFLOP) as "
        f"plain torch.matmul; {args.rounds} rounds of {args.runs} runs each"
    )
    medians: dict[str, list[float]] = {name: [] for name in sides}
    best: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        times: dict[str, list[int]] = {name: [] for name in sides}
        for i in range(args.runs):
            for name in sides if i % 2 == 0 else reversed(sides):
                start = time.perf_counter_ns()
                sides[name]()
                times[name].append(time.perf_counter_ns() - start)
        for name in sides:
            medians[name].append(statistics.median(times[name]) / 1e6)
            best[name].append(min(times[name]) / 1e6)
    print("min / median / max over the rounds (each a median of its runs):")
    print(f"training step:   {spread(medians['step'], '.2f')} ms")
    print(f"matmul floor:    {spread(medians['floor'], '.2f')} ms")
    ratios = [s / f for s, f in zip(medians["step"], medians["floor"])]
    print(f"step / floor:    {spread(ratios)} x   (issue 20: at most 1.3)")
    # On a loaded 2-core machine a run whose second thread was descheduled waits for it at every parallel
    # region; a round's fastest runs are the ones that were not: their ratio, as a second view.
    best_ratios = [s / f for s, f in zip(best["step"], best["floor"])]
    print(f"the same, each round's fastest runs: step {spread(best['step'], '.2f')} ms, floor "
          f"{spread(best['floor'], '.2f')} ms, step / floor {spread(best_ratios)} x")  # fmt: skip


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{min(values):{fmt}} / {statistics.median(values):{fmt}} / {max(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=["classic", "nanogpt"], default="classic")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (at least 5)")
    parser.add_argument("--runs", type=int, default=30, help="runs of each kind per round")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, 0 = torch's choice")
    parser.add_argument("--floor", action="store_true", help="nanoGPT's step against its matmul floor")
    parser.add_argument("--vs-torch", action="store_true", help="the recipe step's profile beside PyTorch's")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5: the spread of fewer says little")
    # One thread by default: on a busy shared 2-core machine two OpenMP threads stall at every parallel
    # region whenever a neighbour holds a core (bench_train.py measured 2 ms steps taking 100-600 ms).
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.floor:
        floor_ratio(args)
        return
    if args.vs_torch:  # nanoGPT's CPU recipe: gpt, 4 layers, d_model 128, context 64, batch 12
        print_profile(profile.profile_training(steps=5, peer=lambda trainer: TorchSide(trainer).train_step), 12)
        return
    trainer, evaluator, feed = model_step(args.recipe)
    timed_pairs(evaluator, feed, 2)  # plan, checked code, code for the shapes, its profiled twin
    n_nodes = len(evaluator.plan(feed).steps)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; the {args.recipe} recipe's model step "
        f"({trainer.model.num_parameters():,} parameters, {n_nodes} nodes); {args.rounds} rounds of {args.runs} runs"
    )
    plain_ms, profiled_ms, ratios, adds, versus_plain = [], [], [], [], []
    for _ in range(args.rounds):
        plain, profiled, runs = timed_pairs(evaluator, feed, args.runs)
        plain_ms.append(statistics.median(plain) / 1e6)
        profiled_ms.append(statistics.median(profiled) / 1e6)
        ratios.append(profiled_ms[-1] / plain_ms[-1])
        node_sums = [sum(run.step_ns) for run in runs]
        adds.append(statistics.median(s / run.call_ns for s, run in zip(node_sums, runs)))
        versus_plain.append(statistics.median(node_sums) / statistics.median(plain))
    print("min / median / max over the rounds (each a median of its runs):")
    print(f"plain run:              {spread(plain_ms)} ms")
    print(f"profiled run:           {spread(profiled_ms)} ms")
    print(f"profiled / plain:       {spread(ratios)} x   (issue 20: at most 1.10)")
    print(f"node times / its call:  {spread(adds, '.4f')}")
    print(f"node times / plain run: {spread(versus_plain)}   (issue 20: within 5%)")


if __name__ == "__main__":
    main()
