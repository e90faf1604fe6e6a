"""autodiff.memory: glibc keeps the memory the evaluator frees, so training steps stop faulting pages in."""

from __future__ import annotations

import subprocess
import sys

import pytest

import autodiff.memory as memory

STEPS = """
import resource, sys, torch
torch.set_num_threads(1)
import autodiff.memory
if sys.argv[1] == "default":
    autodiff.memory.keep_freed_memory(keep=False)  # glibc's defaults stay: the trainer's call does nothing
from lm.train import TrainConfig, Trainer
t = Trainer(TrainConfig(steps=100, eval_every=0, eval_batches=1))
for _ in range(3):
    t.train_step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    t.train_step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_training_steps_reuse_their_pages():
    """The nanoGPT recipe's step on glibc's defaults faults thousands of pages in (measured ~3,000); with
    the trainer's settings, a step reuses the last one's (measured ~40)."""
    kept, default = faults_per_step("kept"), faults_per_step("default")
    assert kept < 500 < default, (kept, default)


def test_the_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert memory.keep_freed_memory() is False


def test_the_first_call_decides(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    assert memory.keep_freed_memory(keep=False) is False
    assert memory.keep_freed_memory() is False  # the trainer's later call leaves glibc's defaults
