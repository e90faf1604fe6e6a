"""Benchmark: activation checkpointing (remat), memory against time. The training step's graph (the loss
and every gradient) of a gpt model runs with its plain plan and with each block's forward recomputed in
the backward pass (`loss_graph(..., remat=True)`), in the same process, on the same weights and batch.

Memory comes from the plans' timelines (autodiff/timeline.py, which tests/autodiff/test_autodiff_timeline.py
checks against the live bytes of real steps): the peak of everything, and the most bytes of activations
kept for the backward pass alive at once. Time: each round runs `--runs` steps of each side, interleaved
(which goes first alternates) and takes the ratio of their medians; printed: min / median / max over the
rounds, so a busy moment on a shared machine shows as spread. Issue 20's goal: activation memory at most
0.5x for at most 1.4x the time. Both plans' gradients are checked to be bit-identical first.

    .venv/bin/python bench/bench_remat.py [--layers 4] [--d-model 256] [--context 256] [--batch 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from autodiff.memory import keep_freed_memory
from autodiff.timeline import memory_timeline
from lm.model import LanguageModel, preset_config

VOCAB = 65  # Tiny Shakespeare's characters


def step(model: LanguageModel, batch: int, context: int, remat: bool):
    """The loss graph's evaluator and the feed of one random batch (the same for both sides)."""
    graph = model.loss_graph(batch, context, remat=remat)
    ids = torch.randint(0, VOCAB, (batch, context), generator=torch.Generator().manual_seed(0))
    feed = {**model.param_feed(), **graph.forward.inputs(ids), graph.targets: ids.roll(-1, 1).reshape(-1)}
    return graph.evaluator, feed


def mb(n: int) -> str:
    return f"{n / 2**20:6.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--runs", type=int, default=5, help="timed steps of each side per round (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the trainer runs: freed memory is reused, not faulted in again each step
    sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, dtype="float32")  # as training runs
    config = preset_config("gpt", VOCAB, args.context, **sizes)
    model = LanguageModel(config)
    sides = {
        "plain": step(model, args.batch, args.context, False),
        "remat": step(model, args.batch, args.context, True),
    }
    outputs = {name: ev.run(feed) for name, (ev, feed) in sides.items()}
    assert all(torch.equal(a, b) for a, b in zip(outputs["plain"], outputs["remat"])), "gradients differ"
    for ev, feed in sides.values():
        ev.run(feed)  # the code made for these shapes

    print(
        f"gpt, {args.layers} layers, d_model {args.d_model}, {args.heads} heads, context {args.context}, "
        f"batch {args.batch}, {config.dtype}, {torch.get_num_threads()} threads; gradients bit-identical"
    )
    params = model.vars.by_name.values()
    timelines = {name: memory_timeline(ev.plan(feed), feed, params) for name, (ev, feed) in sides.items()}
    print(f"{'':28}{'plain':>11}{'remat':>11}{'ratio':>8}")
    rows = [
        ("peak, everything", lambda t: t.peak),
        ("peak activations kept", lambda t: t.peak_of("activations")),
        ("peak activations + temps", lambda t: t.peak_of("activations", "temporaries")),
    ]
    for label, value in rows:
        plain, remat = value(timelines["plain"]), value(timelines["remat"])
        print(f"{label:28}{mb(plain):>11}{mb(remat):>11}{remat / plain:8.2f}")
    steps = {name: len(ev.plan(feed).steps) for name, (ev, feed) in sides.items()}
    print(f"{'steps of the plan':28}{steps['plain']:>11}{steps['remat']:>11}")

    ratios, times = [], {"plain": [], "remat": []}
    for r in range(args.rounds):
        this = {"plain": [], "remat": []}
        for i in range(args.runs):
            for name in ("plain", "remat") if (r + i) % 2 == 0 else ("remat", "plain"):
                ev, feed = sides[name]
                start = time.perf_counter_ns()
                ev.run(feed)
                this[name].append((time.perf_counter_ns() - start) / 1e6)
        for name in this:
            times[name] += this[name]
        ratios.append(statistics.median(this["remat"]) / statistics.median(this["plain"]))
    for name, ms in times.items():
        print(f"step time {name:6} median {statistics.median(ms):7.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f})")
    print(
        f"remat / plain step time: median {statistics.median(ratios):.2f}  (min {min(ratios):.2f}, "
        f"max {max(ratios):.2f} over {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
