"""Keeping freed memory in the process, which the evaluator's early frees make matter.

The evaluator frees each intermediate value after its last reader: a lower peak than PyTorch's autograd,
which holds what the backward pass needs. But glibc's malloc hands large freed blocks back to the
operating system (munmap, or trimming the top of the heap), so the next training step's tensors of the
same sizes fault their pages in again, each page zeroed by the kernel. On the nanoGPT CPU recipe that was
4,000-6,000 minor page faults per step and 17% of the step's time (bench/bench_text.py --recipe, run
with and without these settings). `keep_freed_memory()` raises glibc's two thresholds so blocks up to
32 MiB come from the heap and up to 512 MiB of free memory at its top is kept: a step reuses the pages of
the step before. The peak is unchanged; a process that has trained keeps up to that much memory
reserved until it exits, as PyTorch's own caching allocators do on GPUs.

Process-wide, so it is called where training starts (lm.train.Trainer), not on import. glibc only:
elsewhere, or when the user has set malloc's tunables in the environment, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 512 * 2**20
_applied: bool | None = None


def keep_freed_memory(keep: bool = True) -> bool:
    """Set glibc's malloc to keep freed memory for reuse; True when it applies. The first call of a process
    decides (glibc's dynamic thresholds cannot be restored): `keep=False` decides against, in a process
    that measures what keeping saves (lm.profile runs that side in a fresh process)."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds() if keep else False
    return _applied


def _set_thresholds() -> bool:
    if "malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(k.startswith("MALLOC_") for k in os.environ):
        return False  # the user's own settings win
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
