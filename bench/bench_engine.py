"""Benchmark: the evaluator's own overhead per node, against plain PyTorch eager autograd.

A chain of N small elementwise ops (tensors of 16 elements, so the arithmetic is negligible and
what is measured is bookkeeping) runs forward + backward in our engine and in torch eager with
autograd, in the same process. Each round times our run and torch's back to back (which one goes
first alternates), takes the median of each, and their ratio; printed: min / median / max of the
ratio over the rounds, so a busy moment on a shared machine shows as spread, not as a result.

    .venv/bin/python bench/bench_engine.py [--ops 1000] [--rounds 7] [--repeats 15] [--interpreted]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import autodiff as ad
from autodiff import ops


def build_chain(n_ops: int):
    """x -> (tanh, *c, +x) repeated -> sum; returns (x, loss, gradient of x)."""
    x = ad.Variable("x")
    y = x
    for i in range(n_ops):
        kind = i % 3
        if kind == 0:
            y = ops.tanh(y)
        elif kind == 1:
            y = y * 1.01
        else:
            y = y + x  # fan-out: x feeds many nodes, so its gradient accumulates
    loss = ops.sum_op(y)
    (grad,) = ad.gradients(loss, [x])
    return x, loss, grad


def torch_chain(x: torch.Tensor, n_ops: int) -> torch.Tensor:
    y = x
    for i in range(n_ops):
        kind = i % 3
        if kind == 0:
            y = torch.tanh(y)
        elif kind == 1:
            y = y * 1.01
        else:
            y = y + x
    return y.sum()


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="length of the op chain")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (at least 5)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each side per round (median)")
    parser.add_argument("--interpreted", action="store_true", help="time the interpreted loop, not generated code")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5: the spread of fewer says little")
    torch.set_num_threads(1)  # small tensors: threads only add noise

    start = time.perf_counter()
    x, loss, grad = build_chain(args.ops)
    build_s = time.perf_counter() - start
    evaluator = ad.Evaluator([loss, grad], compiled=not args.interpreted)
    value = torch.randn(16, dtype=torch.float64)
    n_nodes = len(evaluator.plan({x: value}).steps)

    def ours():
        return evaluator.run({x: value})

    def plain():
        xt = value.clone().requires_grad_()
        torch_chain(xt, args.ops).backward()
        return xt.grad

    # Same numbers from both (a benchmark of wrong results would be worthless); also the warm-up.
    start = time.perf_counter()
    our_grad = ours()[1]
    first_s = time.perf_counter() - start
    torch.testing.assert_close(our_grad, plain())

    ratios, our_times, torch_times = [], [], []
    for r in range(args.rounds):
        sides = [("ours", ours), ("torch", plain)]
        for name, fn in sides if r % 2 == 0 else reversed(sides):
            t = median_seconds(fn, args.repeats)
            (our_times if name == "ours" else torch_times).append(t)
        ratios.append(our_times[-1] / torch_times[-1])

    mode = "interpreted loop" if args.interpreted else "generated code"
    print(f"chain of {args.ops} elementwise ops on 16 float64 values, forward + backward, torch {torch.__version__}")
    print(f"  graph: {n_nodes} computed nodes (forward + backward), built in {build_s * 1e3:.0f} ms;")
    print(f"         first run (plan + code generation + checked run) {first_s * 1e3:.0f} ms")
    print(f"  {args.rounds} alternating rounds, median of {args.repeats} runs each; min / median / max:")
    print(f"  autodiff Evaluator.run ({mode}) : {spread([t * 1e3 for t in our_times])} ms", end="")
    print(f"  ({statistics.median(our_times) / n_nodes * 1e6:.2f} us per node)")
    print(f"  torch eager + autograd          : {spread([t * 1e3 for t in torch_times])} ms")
    print(f"  ratio ours / torch              : {spread(ratios)} x")


if __name__ == "__main__":
    main()
