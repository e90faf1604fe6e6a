"""Fixtures shared by lm's tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded 2-core machine two OpenMP threads stall at random (slow, not wrong)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
