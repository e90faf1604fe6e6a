"""Data-parallel scaling of text-model training (lm.distributed on gloo): training tokens per second with
1 and with 2 processes (one thread each, the same batch per rank), their ratio (goal: >= 1.7x), and the
share of a step spent in the gradient all-reduce. The control, in the same rounds: the same model in
plain PyTorch under torch's own DistributedDataParallel. Rounds alternate which run goes first; ratios
are printed with their spread (min / median / max). A shared machine's load shows in these figures.

    .venv/bin/python bench/bench_ddp.py [--rounds 5] [--steps 20] [--layers 4 --d-model 128 ...]
"""

from __future__ import annotations

import argparse
import contextlib
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
    from lm.train import TrainConfig, Trainer  # noqa: PLC0415

    parallel, device = distributed.setup("cpu", 120.0)
    config = TrainConfig(
        data="shakespeare", tokenizer="char", preset=args.preset, n_layers=args.layers, n_heads=args.heads,
        d_model=args.d_model, context=args.context, batch_size=args.batch, grad_accum=args.grad_accum,
        steps=args.warmup + args.steps,
        eval_batches=1,
    )  # fmt: skip
    ours = args.side == "ours"
    trainer = Trainer(config, cache_dir=args.cache_dir, device=device, parallel=parallel if ours else None)
    step = trainer.train_step if ours else torch_ddp_step(trainer, parallel)
    for _ in range(args.warmup):
        step()
    comm0 = parallel.comm_seconds if parallel else 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    world = parallel.world_size if parallel else 1
    if parallel is None or parallel.is_main:
        comm = (parallel.comm_seconds - comm0) if parallel and ours else 0.0  # torch's DDP overlaps it: not timed
        tokens = args.steps * args.batch * args.grad_accum * args.context * world
        result = {
            "world": world, "tokens_per_s": tokens / elapsed, "step_ms": 1000 * elapsed / args.steps,
            "cpu_ms": 1000 * cpu / args.steps,
            "allreduce_share": comm / elapsed, "params": trainer.model.num_parameters(),
            "buckets": len(parallel.buckets) if parallel and parallel.buckets else 0,
        }  # fmt: skip
        print(json.dumps(result), flush=True)
    distributed.teardown(parallel)


def torch_ddp_step(trainer, parallel):
    """The peer: the same model in plain PyTorch (bench/reference_model.py, autograd, torch.optim.AdamW),
    wrapped in torch's own DistributedDataParallel, on the same rank batches; returns its step function."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

    from bench.reference_model import reference_loss  # noqa: PLC0415
    from lm.data import get_batch  # noqa: PLC0415

    cfg, model_config = trainer.config, trainer.model.config

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.names = list(trainer.model.params)
            self.weights = nn.ParameterList(nn.Parameter(p.detach().clone()) for p in trainer.model.params.values())

        def forward(self, x, y):
            return reference_loss(dict(zip(self.names, self.weights)), model_config, x, y, ignore_index=-100)

    module = Reference()
    model = DistributedDataParallel(module) if parallel else module
    matrices, gains = [p for p in module.weights if p.dim() >= 2], [p for p in module.weights if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": gains, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    draw = get_batch if parallel is None else parallel.batch
    generator = torch.Generator().manual_seed(cfg.seed)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for i in range(cfg.grad_accum):
            x, y = draw(trainer.source.train, cfg.batch_size, cfg.context, generator)
            last = i == cfg.grad_accum - 1
            with model.no_sync() if parallel and not last else contextlib.nullcontext():  # one all-reduce a step
                (model(x, y) / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
        opt.step()

    return step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, args: argparse.Namespace, cache_dir: str, side: str = "ours") -> dict:
    """Run `world` ranks (the environment torchrun would give them; world 1 is a plain single process)."""
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--worker", "--side", side, "--cache-dir", cache_dir, *forwarded(args)]
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
    parser.add_argument("--rounds", type=int, default=5, help="1- and 2-process runs of each side (default: 5)")
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
    parser.add_argument("--side", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--no-torch", action="store_true", help="skip the plain-PyTorch DDP runs (half the time)")
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
    sides = ["ours"] if args.no_torch else ["ours", "torch"]
    runs = {side: {1: [], 2: []} for side in sides}
    for r in range(args.rounds):
        order = [(side, world) for side in sides for world in (1, 2)]
        for side, world in order if r % 2 == 0 else order[::-1]:  # alternate which runs first
            runs[side][world].append(launch(world, args, cache_dir, side))
        line = []
        for side in sides:
            a, b = runs[side][1][-1], runs[side][2][-1]
            line.append(
                f"{side}: {a['tokens_per_s']:,.0f} -> {b['tokens_per_s']:,.0f} tok/s "
                f"({a['step_ms']:.0f} -> {b['step_ms']:.0f} ms/step), {b['tokens_per_s'] / a['tokens_per_s']:.2f}x"
            )
        print(f"round {r + 1}: " + "; ".join(line), flush=True)

    one, two = runs["ours"][1], runs["ours"][2]
    print(f"\nparameters {one[0]['params']:,}; gradients all-reduced in {two[0]['buckets']} flat bucket(s) per step")
    for side in sides:
        name = "ours (lm.distributed)" if side == "ours" else "plain PyTorch + torch DDP"
        a, b = runs[side][1], runs[side][2]
        ratios = [y["tokens_per_s"] / x["tokens_per_s"] for x, y in zip(a, b)]
        print(f"{name}:")
        print(f"  tokens/s, 1 process   (min / median / max): {spread([x['tokens_per_s'] for x in a], '{:,.0f}')}")
        print(f"  tokens/s, 2 processes (min / median / max): {spread([x['tokens_per_s'] for x in b], '{:,.0f}')}")
        print(f"  scaling 2 vs 1        (min / median / max): {spread(ratios)}x   (goal >= 1.7x)")
        cpu_a, cpu_b = statistics.median(x["cpu_ms"] for x in a), statistics.median(x["cpu_ms"] for x in b)
        print(
            f"  CPU time per step and rank (median)       : {cpu_a:.0f} ms alone, {cpu_b:.0f} ms with 2 ranks "
            f"({100 * (cpu_b / cpu_a - 1):+.0f}%); with a free core per rank that would be "
            f"{2 * cpu_a / cpu_b:.2f}x (an estimate from CPU time, not measured)"
        )
    shares = [100 * x["allreduce_share"] for x in two]
    print(f"ours: all-reduce share of a 2-process step (incl. waiting for the other rank): {spread(shares, '{:.1f}')}%")
    print(f"load average at end: {os.getloadavg()[0]:.1f} (other work on this machine slows both sides unevenly)")


if __name__ == "__main__":
    main()
