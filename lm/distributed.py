"""Data-parallel training through torch.distributed, launched by torchrun: each rank computes its
gradients with our engine on its share of the global batch, the gradients are averaged with all_reduce
over a few flat buffers, and every rank applies the same AdamW step. Without torchrun nothing here runs.

Also: the device a run lives on (`pick_device`), and the clear errors of a bad launch or a dead rank.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

Tensor = torch.Tensor

DEFAULT_TIMEOUT_S = 300.0  # a collective waiting longer than this means a rank is gone (rank 0 validates meanwhile)
BUCKET_BYTES = 4 * 2**20  # gradients per all_reduce: a few calls for our models, not one per parameter
FIRST_BUCKET_BYTES = 2**20  # the first gradients computed go out early, in a smaller bucket (as torch's DDP)
LAUNCH_HINT = "launch with `torchrun --nproc_per_node N -m lm train ...` (it sets RANK, WORLD_SIZE, MASTER_*...)"


class LaunchError(ValueError):
    """A distributed launch that cannot work (bad environment, device, rendezvous); says what to do."""


class RankFailure(RuntimeError):
    """A collective failed or timed out: another rank died or hangs. This rank stops."""


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun tells each worker through its environment."""

    rank: int  # global rank, 0 .. world_size - 1
    world_size: int
    local_rank: int  # rank on this node: picks the GPU
    master_addr: str
    master_port: int


def launch_env(environ: dict | None = None) -> LaunchEnv | None:
    """The torchrun environment of this process, or None when it was not launched by torchrun."""
    env = os.environ if environ is None else environ
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if not any(k in env for k in keys):
        return None
    missing = [k for k in keys if not env.get(k)]
    if missing:
        what = "no rendezvous address" if {"MASTER_ADDR", "MASTER_PORT"} & set(missing) else "an incomplete launch"
        raise LaunchError(f"{what}: {', '.join(missing)} not set; {LAUNCH_HINT}")
    values = {}
    for key, low in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0), ("MASTER_PORT", 1)):
        try:
            values[key] = int(env[key])
        except ValueError:
            values[key] = None
        if values[key] is None or values[key] < low:
            raise LaunchError(f"{key} must be a whole number of at least {low}, got {env[key]!r}; {LAUNCH_HINT}")
    if values["MASTER_PORT"] > 65535:
        raise LaunchError(f"MASTER_PORT must be a port from 1 to 65535, got {env['MASTER_PORT']!r}")
    if values["RANK"] >= values["WORLD_SIZE"]:
        raise LaunchError(f"RANK {values['RANK']} is not below WORLD_SIZE {values['WORLD_SIZE']}; {LAUNCH_HINT}")
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    return LaunchEnv(rank, world, local, env["MASTER_ADDR"], values["MASTER_PORT"])


def pick_device(name: str | None = None, local_rank: int = 0) -> torch.device:
    """The device of a run: `name` (cpu, cuda, mps) or, when None, the best available (cuda, mps, cpu).
    Under torchrun each rank on a node takes GPU `local_rank`."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LaunchError("--device cuda: no CUDA GPU is available here (use --device cpu)")
        if local_rank >= count:
            raise LaunchError(
                f"local rank {local_rank} needs GPU {local_rank}, but this node has {count}: "
                f"use --nproc_per_node {count} or fewer"
            )
        return torch.device("cuda", local_rank)
    if name == "mps":
        if not _mps_available():
            raise LaunchError("--device mps: Apple's Metal backend is not available here (use --device cpu)")
        return torch.device("mps")
    raise LaunchError(f"unknown device {name!r}: use cpu, cuda or mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


class DataParallel:
    """One rank of a data-parallel run (the process group is initialized by `setup`)."""

    def __init__(self, env: LaunchEnv, device: torch.device, timeout_s: float, bucket_bytes: int = BUCKET_BYTES):
        self.env, self.device, self.timeout_s, self.bucket_bytes = env, device, timeout_s, bucket_bytes
        self.rank, self.world_size = env.rank, env.world_size
        self.is_main = env.rank == 0
        # gloo reduces CPU tensors only: other devices (mps) stage their buckets through the CPU
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        self.comm_device = device if self.backend == "nccl" else torch.device("cpu")
        # overlapped_mean's plan, from the first step: tensor indices per flat buffer, in the order a step
        # computes them
        self.buckets: list[list[int]] | None = None
        self.comm_seconds = 0.0  # time spent in all_reduce (a benchmark reads it)
        self.failed = False  # a collective failed: another rank is dead or frozen

    # -- batches ------------------------------------------------------------------------------------
    def batch(self, tokens: np.ndarray, batch_size: int, context: int, generator: torch.Generator):
        """This rank's `batch_size` windows of a global batch of batch_size x world_size, drawn from the
        generator every rank holds in the same state: ranks see different windows, the generator stays
        the same on all of them (so a checkpoint holds no per-rank state), and the windows of all ranks
        together are exactly those one process with the global batch would draw (lm.data.get_batch)."""
        starts = torch.randint(len(tokens) - context, (batch_size * self.world_size,), generator=generator)
        mine = starts[self.rank * batch_size : (self.rank + 1) * batch_size].tolist()
        rows = np.stack([np.asarray(tokens[s : s + context + 1], dtype=np.int64) for s in mine])  # (B, T + 1)
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]

    # -- collectives --------------------------------------------------------------------------------
    def _plan_buckets(self, tensors: list[Tensor], order: list[int] | None = None, first: int | None = None):
        """Tensor indices per flat buffer, taking the tensors in `order` (default: as given); the first
        buffer holds about `first` bytes (default: bucket_bytes), the others about bucket_bytes."""
        buckets, current, size = [], [], 0
        for i in range(len(tensors)) if order is None else order:
            current.append(i)
            size += tensors[i].numel() * tensors[i].element_size()
            if size >= (first if first and not buckets else self.bucket_bytes):
                buckets.append(current)
                current, size = [], 0
        return buckets + ([current] if current else [])

    def overlapped_mean(self, base: list[Tensor | float] | None = None) -> OverlappedMean:
        """The mean over ranks of a step's tensors, each sent as soon as it is computed: pass the result's
        `ready` to Evaluator.run, then `wait()`. `base` (the sums of earlier micro-batches) is added to
        each tensor first. The first step only records the order the tensors come in (and sends them all
        at the end, as all_reduce_mean); later steps send a bucket the moment its last tensor is ready."""
        return OverlappedMean(self, base)

    def all_reduce_mean(self, tensors: list[Tensor]) -> list[Tensor]:
        """Each tensor's mean over the ranks: the tensors (one dtype) are packed into a few flat buffers of
        about `bucket_bytes`, each all-reduced by one call (all in flight at once); the results are views
        into those buffers, in order and shape (no copy back)."""
        if self.world_size == 1:
            return list(tensors)
        start = time.perf_counter()
        buckets = self._plan_buckets(tensors)
        flats = [torch.cat([tensors[i].reshape(-1) for i in b]).to(self.comm_device) for b in buckets]
        works = [self._collective(dist.all_reduce, flat, async_op=True) for flat in flats]
        means: list[Tensor] = [None] * len(tensors)  # type: ignore[list-item]
        for bucket, flat, work in zip(buckets, flats, works):
            self._wait(work)
            self._unpack_mean(flat, bucket, tensors, means)
        self.comm_seconds += time.perf_counter() - start
        return means

    def _unpack_mean(self, flat: Tensor, bucket: list[int], like: list[Tensor], means: list[Tensor]) -> None:
        """A reduced flat buffer's sums -> means, as views shaped like `like[i]`, into means[i]."""
        flat = flat.to(self.device).div_(self.world_size)
        for i, view in zip(bucket, flat.split([like[i].numel() for i in bucket])):
            means[i] = view.view(like[i].shape)

    def broadcast_(self, tensors: list[Tensor]) -> None:
        """Make every rank hold rank 0's values, in place (a start from identical parameters): one
        broadcast per flat buffer, as for the gradients."""
        for bucket in self._plan_buckets(tensors):
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in bucket]).to(self.comm_device)
            self._wait(self._collective(dist.broadcast, flat, src=0, async_op=True))
            for i, view in zip(bucket, flat.split([tensors[i].numel() for i in bucket])):
                tensors[i].copy_(view.view(tensors[i].shape))

    def _collective(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as err:
            raise self._failure(err) from None

    def _wait(self, work) -> None:
        try:
            work.wait()
        except RuntimeError as err:
            raise self._failure(err) from None

    def _failure(self, err: Exception) -> RankFailure:
        self.failed = True  # teardown must not wait for the other collectives still in flight
        text = re.sub(r"^\[[^\]]*\.(cc|cpp):\d+\]\s*", "", str(err).strip())  # gloo's source location
        first = text.splitlines()[0][:300] if text else type(err).__name__
        return RankFailure(
            f"rank {self.rank} of {self.world_size}: a collective failed ({first}). Another rank has died or "
            f"stopped answering (this rank waits at most {self.timeout_s:g} s, --dist-timeout); see its output. "
            "The last checkpoint is intact: continue with --resume (any number of ranks)"
        )

    @contextmanager
    def main_output(self):
        """Rank 0 prints; the others are silent (their errors still reach stderr: the block restores it)."""
        if self.is_main:
            yield
            return
        saved = sys.stdout, sys.stderr
        with open(os.devnull, "w") as null:
            sys.stdout = sys.stderr = null
            try:
                yield
            finally:
                sys.stdout, sys.stderr = saved


class OverlappedMean:
    """One step's tensors (a loss and the gradients) averaged over the ranks while the backward pass goes
    on: tensor k arrives through `ready(k, value)`, is added to base[k] and copied into its bucket's flat
    buffer, and a complete bucket's all_reduce starts at once (asynchronously), as torch's DDP overlaps
    communication with its backward. `wait(count)` returns the means, views into the buffers, in order.
    Without a plan yet (the first step), it records the order the tensors come in, plans the buckets from
    it, and reduces everything at the end."""

    def __init__(self, parallel: DataParallel, base: list | None):
        self.parallel, self.base = parallel, base
        self.values: dict[int, Tensor] = {}
        self.order: list[int] = []
        self.buckets = parallel.buckets  # None: this step records
        self.bucket_of = {i: b for b, bucket in enumerate(self.buckets or []) for i in bucket}
        self.missing = [len(bucket) for bucket in self.buckets or []]  # tensors each bucket still waits for
        self.flats: list[Tensor | None] = [None] * len(self.missing)
        self.works: list[object] = [None] * len(self.missing)
        self.comm = 0.0

    def ready(self, k: int, value: Tensor) -> None:
        self.values[k] = value if self.base is None else value + self.base[k]
        self.order.append(k)
        if self.buckets is None or k not in self.bucket_of:
            return
        b = self.bucket_of[k]
        self.missing[b] -= 1
        if self.missing[b] == 0:  # complete: one flat buffer, sent now
            begin = time.perf_counter()
            bucket = self.buckets[b]
            self.flats[b] = torch.cat([self.values[i].reshape(-1) for i in bucket]).to(self.parallel.comm_device)
            self.works[b] = self.parallel._collective(dist.all_reduce, self.flats[b], async_op=True)
            self.comm += time.perf_counter() - begin

    def wait(self, count: int) -> list[Tensor]:
        """The means of this step's `count` tensors, in index order."""
        p = self.parallel
        complete = sorted(self.order) == list(range(count))
        if self.buckets is None or not complete or any(w is None for w in self.works):
            for work in self.works:  # (every rank takes this branch at the same step: the same graph)
                if work is not None:
                    p._wait(work)
            tensors = [self.values[i] for i in range(count)]  # the recording step
            first = min(FIRST_BUCKET_BYTES, p.bucket_bytes)
            p.buckets = p._plan_buckets(tensors, self.order, first) if complete else None
            return p.all_reduce_mean(tensors)
        begin = time.perf_counter()
        tensors = [self.values[i] for i in range(count)]
        means: list[Tensor] = [None] * count  # type: ignore[list-item]
        for bucket, flat, work in zip(self.buckets, self.flats, self.works):
            p._wait(work)
            p._unpack_mean(flat, bucket, tensors, means)
        p.comm_seconds += self.comm + time.perf_counter() - begin
        return means


def setup(device: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, environ: dict | None = None):
    """(DataParallel or None, device): joins the process group when launched by torchrun (gloo on CPU,
    NCCL on CUDA), else None and the device alone: today's single process."""
    if not 0 < timeout_s <= 86_400:
        raise LaunchError(f"--dist-timeout must be from 0 to 86400 seconds, got {timeout_s!r}")
    env = launch_env(environ)
    if env is None:
        return None, pick_device(device)
    dev = pick_device(device, env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if environ is None else 1
    if dev.type == "cpu" and env.local_rank == 0 and local_world > (os.cpu_count() or 1):
        print(
            f"warning: {local_world} ranks on this node share {os.cpu_count()} CPU cores: each step waits for the "
            f"slowest; --nproc_per_node {os.cpu_count()} or fewer trains faster",
            file=sys.stderr,
        )
    parallel = DataParallel(env, dev, timeout_s)
    try:
        # env:// (the default) reads MASTER_ADDR/PORT, RANK, WORLD_SIZE, and under torchrun connects to the
        # store its agent already serves (TORCHELASTIC_USE_AGENT_STORE) instead of opening a second one
        dist.init_process_group(parallel.backend, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError, OSError) as err:  # DistStoreError etc. are RuntimeErrors
        raise LaunchError(
            f"rank {env.rank} of {env.world_size}: the rendezvous at {env.master_addr}:{env.master_port} failed "
            f"within {timeout_s:g} s ({str(err).strip().splitlines()[0][:200] if str(err).strip() else err!r}): "
            "are all ranks started, with the same --nnodes/--nproc_per_node and a reachable --rdzv-endpoint?"
        ) from None
    _stop_on_sigterm(parallel)
    return parallel, dev


def _stop_on_sigterm(parallel: DataParallel) -> None:
    """torchrun stops the other workers with SIGTERM when one fails: say so, as a collective failure does,
    instead of vanishing without a word (the handler raises where the main thread next runs Python)."""

    def stop(signum, frame):
        parallel.failed = True  # another rank is gone: leaving the group cleanly would wait for it (teardown)
        raise RankFailure(
            f"rank {parallel.rank} of {parallel.world_size}: stopped by the launcher (SIGTERM), which happens when "
            "another rank has failed (see torchrun's summary). The last checkpoint is intact: continue with --resume"
        )

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: keep the default
        pass


def teardown(parallel: DataParallel | None) -> None:
    """Leave the process group (a no-op for a single process). After a failed collective it is not left
    cleanly: that would wait for each bucket still in flight to time out in turn, one --dist-timeout after
    another, before the survivor could stop."""
    if parallel is not None and not parallel.failed and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except RuntimeError:
            pass


__all__ = ["DataParallel", "LaunchEnv", "LaunchError", "RankFailure", "launch_env", "pick_device", "setup", "teardown"]
