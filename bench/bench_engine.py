"""Benchmark: the evaluator's own overhead per node, against plain PyTorch eager autograd.

A chain of N small elementwise ops (tensors of 16 elements, so the arithmetic is negligible and
what is measured is bookkeeping) runs forward + backward in our engine and in torch eager with
autograd, in the same process. Prints the median times, the time per evaluated node and the ratio.

    .venv/bin/python bench/bench_engine.py [--ops 1000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import autodiff as ad
from autodiff import ops


def build_chain(n_ops: int):
    """x -> (tanh, *c, +c) repeated -> sum; returns (x, loss, gradient of x)."""
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
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="length of the op chain")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs (the median is reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: threads only add noise

    start = time.perf_counter()
    x, loss, grad = build_chain(args.ops)
    build_s = time.perf_counter() - start
    evaluator = ad.Evaluator([loss, grad])
    value = torch.randn(16, dtype=torch.float64)
    n_nodes = len(ad.topological_sort([loss, grad]))

    ours = median_seconds(lambda: evaluator.run({x: value}), args.repeats)

    def plain():
        xt = value.clone().requires_grad_()
        torch_chain(xt, args.ops).backward()
        return xt.grad

    theirs = median_seconds(plain, args.repeats)

    # Same numbers from both (a benchmark of wrong results would be worthless).
    our_loss, our_grad = evaluator.run({x: value})
    torch.testing.assert_close(our_grad, plain())

    print(f"chain of {args.ops} elementwise ops on 16 float64 values, forward + backward")
    print(f"  graph: {n_nodes} nodes (forward + backward), built once in {build_s * 1e3:.1f} ms")
    print(f"  autodiff Evaluator.run : {ours * 1e3:8.2f} ms  ({ours / n_nodes * 1e6:.2f} us per node)")
    print(f"  torch eager + autograd : {theirs * 1e3:8.2f} ms")
    print(f"  ratio ours / torch     : {ours / theirs:8.2f}x")


if __name__ == "__main__":
    main()
