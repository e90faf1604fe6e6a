"""Benchmark: train the classic recipe (500 full-batch SGD epochs) with our engine and with plain PyTorch.

Both sides start from the same corpus, initial weights and batch in this process. The PyTorch side is
the reference transformer of bench/reference_model.py (the one the golden tests check us against)
with autograd and torch.optim.SGD. Rounds alternate which side goes first; printed: each side's
time and the ratio as min / median / max over the rounds, and both final losses.

    .venv/bin/python bench/bench_train.py [--epochs 500] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.reference_model import reference_loss  # noqa: E402
from lm.nn import IGNORE_INDEX  # noqa: E402
from lm.train import TrainConfig, Trainer  # noqa: E402


def run_ours(epochs: int) -> tuple[float, float, Trainer]:
    trainer = Trainer(TrainConfig.recipe("classic", steps=epochs, eval_every=0))
    ids, targets = trainer.source.batch(0, 0, trainer.batches)  # the one padded full batch
    for _ in range(3):  # warm-up, not timed (no update): plan and checked code, then code specialized to the shapes
        trainer._loss_and_grads(ids, targets)
    start = time.perf_counter()
    # The same work as the PyTorch side: forward, backward, SGD (train_step adds the gradient norm and the
    # divergence check, events() the memorization score).
    for _ in range(epochs):
        loss, grads = trainer._loss_and_grads(ids, targets)
        trainer.optimizer.step(dict(zip(trainer.names, grads)))
    return time.perf_counter() - start, float(loss), trainer


def run_torch(epochs: int) -> tuple[float, float]:
    trainer = Trainer(TrainConfig.recipe("classic", steps=epochs, eval_every=0))  # same init and batch
    params = {n: p.clone().requires_grad_(True) for n, p in trainer.model.params.items()}
    opt = torch.optim.SGD(params.values(), lr=trainer.config.lr)
    cfg, ids, targets = trainer.model.config, trainer.source.ids, trainer.source.targets
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = reference_loss(params, cfg, ids, targets, ignore_index=IGNORE_INDEX)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, loss.item()


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{min(values):{fmt}} / {statistics.median(values):{fmt}} / {max(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, 0 = torch's choice (default: 1, see below)"
    )
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5: the spread of fewer says little")
    # One thread by default: on a busy shared 2-core machine, two OpenMP threads stall at every
    # parallel region whenever a neighbour holds a core (measured: 2 ms steps taking 100-600 ms).
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, {args.rounds} rounds")
    ours, theirs, ratios = [], [], []
    for r in range(args.rounds):  # alternating, so a busy moment on a shared machine hits both
        for side in ("ours", "torch") if r % 2 == 0 else ("torch", "ours"):
            if side == "ours":
                t, our_loss, trainer = run_ours(args.epochs)
                ours.append(t)
            else:
                t, torch_loss_value = run_torch(args.epochs)
                theirs.append(t)
        ratios.append(ours[-1] / theirs[-1])
    print(f"parameters: {trainer.model.num_parameters():,}; min / median / max over {args.rounds} rounds:")
    print(f"autodiff (ours): {spread(ours)} s   final loss {our_loss:.6f}")
    print(f"plain PyTorch:   {spread(theirs)} s   final loss {torch_loss_value:.6f}")
    print(f"ratio ours / PyTorch: {spread(ratios, '.2f')} x")


if __name__ == "__main__":
    main()
