"""Data-parallel scaling of text-model training (lm.distributed on gloo): training tokens per second with
1 and with 2 processes (one thread each, the same batch per rank), their ratio (goal: >= 1.7x), and the
share of a step spent in the gradient all-reduce. Rounds alternate which side runs first; the ratio is
printed with its spread (min / median / max). A shared machine's load shows in these figures: say so.

    .venv/bin/python bench/bench_ddp.py [--rounds 5] [--steps 20] [--layers 4 --d-model 128 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def worker(args: argparse.Namespace) -> None:
    """One rank: warm up, time `steps` training steps, rank 0 prints a JSON line."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    from lm import distributed  # noqa: PLC0415
    from lm.textrun import TextTrainConfig, TextTrainer  # noqa: PLC0415

    parallel, device = distributed.setup("cpu", 120.0)
    config = TextTrainConfig(
        data="shakespeare", tokenizer="char", preset=args.preset, n_layers=args.layers, n_heads=args.heads,
        d_model=args.d_model, context=args.context, batch_size=args.batch, grad_accum=args.grad_accum,
        steps=args.warmup + args.steps,
        eval_batches=1,
    )  # fmt: skip
    trainer = TextTrainer(config, args.cache_dir, device=device, parallel=parallel)
    for _ in range(args.warmup):
        trainer.train_step()
    comm0 = parallel.comm_seconds if parallel else 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        trainer.train_step()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    world = trainer.world_size
    if parallel is None or parallel.is_main:
        comm = (parallel.comm_seconds - comm0) if parallel else 0.0
        tokens = args.steps * args.batch * args.grad_accum * args.context * world
        result = {
            "world": world, "tokens_per_s": tokens / elapsed, "step_ms": 1000 * elapsed / args.steps,
            "cpu_ms": 1000 * cpu / args.steps,
            "allreduce_share": comm / elapsed, "params": trainer.model.num_parameters(),
            "buckets": len(parallel.buckets) if parallel and parallel.buckets else 0,
        }  # fmt: skip
        print(json.dumps(result), flush=True)
    distributed.teardown(parallel)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, args: argparse.Namespace, cache_dir: str) -> dict:
    """Run `world` ranks (the environment torchrun would give them; world 1 is a plain single process)."""
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--worker", "--cache-dir", cache_dir, *forwarded(args)]
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(base)
        if world > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
            env["MASTER_PORT"] = port
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise SystemExit(f"a rank failed (exit {p.returncode}):\n{err[-3000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def forwarded(args: argparse.Namespace) -> list[str]:
    names = ("preset", "layers", "heads", "d_model", "context", "batch", "grad_accum", "steps", "warmup")
    return [x for n in names for x in (f"--{n.replace('_', '-')}", str(getattr(args, n)))]


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="1-process and 2-process runs each (default: 5)")
    parser.add_argument("--preset", default="gpt")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12, help="windows per step and rank (default: 12)")
    parser.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per step: more work per all-reduce (default: 1)"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    cache_dir = tempfile.mkdtemp(prefix="bench-ddp-")
    print(
        f"{args.preset}, {args.layers} layers, {args.heads} heads, d_model {args.d_model}, context {args.context}, "
        f"batch {args.batch} x {args.grad_accum} micro-batches per rank and step, float32, one thread per process, "
        f"gloo; {args.steps} timed steps per run; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    launch(1, argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0}), cache_dir)  # tokenize once
    one, two, ratios = [], [], []
    for r in range(args.rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)  # alternate which side runs first
        results = {world: launch(world, args, cache_dir) for world in order}
        one.append(results[1])
        two.append(results[2])
        ratios.append(results[2]["tokens_per_s"] / results[1]["tokens_per_s"])
        print(
            f"round {r + 1}: 1 process {results[1]['tokens_per_s']:,.0f} tok/s ({results[1]['step_ms']:.0f} ms/step), "
            f"2 processes {results[2]['tokens_per_s']:,.0f} tok/s ({results[2]['step_ms']:.0f} ms/step, "
            f"CPU {results[1]['cpu_ms']:.0f} vs {results[2]['cpu_ms']:.0f} ms/step, "
            f"all-reduce {100 * results[2]['allreduce_share']:.1f}%), ratio {ratios[-1]:.2f}x",
            flush=True,
        )
    print(f"\nparameters {one[0]['params']:,}; gradients all-reduced in {two[0]['buckets']} flat bucket(s) per step")
    print(f"tokens/s, 1 process   (min / median / max): {spread([x['tokens_per_s'] for x in one], '{:,.0f}')}")
    print(f"tokens/s, 2 processes (min / median / max): {spread([x['tokens_per_s'] for x in two], '{:,.0f}')}")
    print(f"scaling 2 vs 1        (min / median / max): {spread(ratios)}x   (goal >= 1.7x)")
    print(f"all-reduce share of a 2-process step      : {spread([100 * x['allreduce_share'] for x in two], '{:.1f}')}%")
    cpu_one, cpu_two = statistics.median(x["cpu_ms"] for x in one), statistics.median(x["cpu_ms"] for x in two)
    print(
        f"CPU time per step and rank (median)       : {cpu_one:.0f} ms alone, {cpu_two:.0f} ms with 2 ranks "
        f"({100 * (cpu_two / cpu_one - 1):+.0f}%: packing, all-reduce, unpacking)"
    )
    print(
        f"scaling if each rank had a free core      : {2 * cpu_one / cpu_two:.2f}x "
        "(from CPU time, not measured: wall-clock scaling needs an idle core per rank)"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f} (other work on this machine slows both sides unevenly)")


if __name__ == "__main__":
    main()
