"""Benchmark: what the Train page's default Language model run reaches in a given time (one torch thread,
as in the app): the validation loss against the unigram baseline at each validation, and the samples. It
drives the page's own `TrainingSession` (playground/train/logic.py) with the page's default settings,
the way the page's ticks do, without Streamlit.

    .venv/bin/python bench/bench_train_page.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

import torch

from playground.train.logic import TrainingSession
from playground.train.modes import LanguageModelSettings


def measure_default_run(seconds: float = 60.0) -> None:
    """Print what the page's default run reaches in `seconds` of training."""
    torch.set_num_threads(1)
    session = TrainingSession()
    session.start(LanguageModelSettings())
    wall = time.perf_counter()
    while session.running and time.perf_counter() - wall < seconds:
        session.advance(0.5)
    run = session.run
    print(f"unigram baseline {run.unigram:.3f}; {run.steps[-1]} steps in {time.perf_counter() - wall:.1f} s wall")
    for step, val in zip(run.val_steps, run.val_losses):
        print(f"step {step:>4}  validation loss {val:.3f}")
    for step, text in run.samples:
        print(f"sample at step {step}: {text!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time (default 60)")
    measure_default_run(parser.parse_args().seconds)
