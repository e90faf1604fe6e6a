"""Benchmark: training speed of the text models on our engine against plain PyTorch, in one process.

Per preset, tokens/s of a full training step (forward, backward, clipping, AdamW) of our Trainer
and of the same model in plain PyTorch eager (bench/reference_model.py, autograd, torch.optim.AdamW
with the same param groups), from the same weights and batches, rounds alternating the two sides;
prints the ratio's min/median/max. `--memory` measures each side's peak RSS in a child process.
For the `gpt` preset a third side is the same model written as nanoGPT writes it (bench/nanogpt_style.py:
nn modules, torch's fused attention). `--recipe` runs nanoGPT's CPU quickstart (Tiny Shakespeare
characters, 2000 steps) on the three sides, steps alternating, and prints validation loss, time and a
sample (`--svg` draws the curves).
A script, not a test: `python bench/bench_text.py --help`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.nanogpt_style import NanoGPTSide, TorchSide  # noqa: E402
from lm.train import TrainConfig, Trainer  # noqa: E402


def make_trainer(args, preset: str) -> Trainer:
    cfg = TrainConfig(
        data=args.data, preset=preset, n_layers=args.layers, n_heads=args.heads, d_model=args.d_model,
        context=args.context, batch_size=args.batch, steps=10_000, eval_every=0, eval_batches=2, dtype="float32",
    )  # fmt: skip
    return Trainer(cfg)


def timed_steps(side, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        side.train_step()
    return (time.perf_counter() - start) / n


def speed(args) -> None:
    print(
        f"model: d {args.d_model}, {args.layers} layers, {args.heads} heads, context {args.context}, batch {args.batch}"
    )
    tokens = args.batch * args.context
    for preset in args.presets:
        ours = make_trainer(args, preset)
        sides = {"ours": ours, "PyTorch": TorchSide(ours)}
        if preset == "gpt":  # nanoGPT's way of writing the same model: nn modules, fused attention
            sides["nanoGPT-style"] = NanoGPTSide(ours)
        for side in sides.values():  # warm-up: graph building, code generation, allocator
            timed_steps(side, 2)
        seconds = {name: [] for name in sides}
        for r in range(args.rounds):  # rotating order, so a busy moment of the shared machine hits every side
            names = list(sides)[r % len(sides) :] + list(sides)[: r % len(sides)]
            for name in names:
                seconds[name].append(timed_steps(sides[name], args.steps))
        best = tokens / min(seconds["ours"])
        line = f"{preset:8s} {ours.model.num_parameters():>10,} params  ours {best:>8,.0f} tok/s"
        for name in list(sides)[1:]:
            ratios = [b / a for a, b in zip(seconds["ours"], seconds[name])]
            line += (
                f"\n{'':8s} {name:>13s} {tokens / min(seconds[name]):>8,.0f} tok/s  speed ratio ours/{name} "
                f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f} "
                f"(min/median/max of {args.rounds})"
            )
        print(line, flush=True)


def memory_child(args) -> None:
    side = make_trainer(args, args.preset)
    if args.side == "torch":
        side = TorchSide(side)
    timed_steps(side, 3)


def memory(args) -> None:
    sizes = {"--d-model": args.d_model, "--layers": args.layers, "--heads": args.heads, "--context": args.context,
             "--batch": args.batch, "--data": args.data, "--threads": args.threads}  # fmt: skip
    base = [sys.executable, __file__, *[str(x) for item in sizes.items() for x in item]]
    for preset in args.presets:
        peaks = {}
        for side in ("ours", "torch"):
            proc = subprocess.Popen([*base, "--child", side, "--preset", preset])
            _, status, usage = os.wait4(proc.pid, 0)
            if status:
                raise SystemExit(f"the {side} child failed")
            peaks[side] = usage.ru_maxrss / 1024  # KiB -> MiB (Linux)
        print(
            f"{preset:8s} peak RSS (whole process, data and torch included): ours {peaks['ours']:.0f} MiB, "
            f"PyTorch {peaks['torch']:.0f} MiB, ratio {peaks['ours'] / peaks['torch']:.2f}"
        )


def recipe(args) -> None:
    """nanoGPT's CPU quickstart on three sides from the same weights and batches: ours, the plain-PyTorch
    reference and the nanoGPT-style model; steps alternate (a busy moment of the shared machine hits all);
    validation every 250 steps (not timed)."""
    cfg = TrainConfig(steps=args.recipe_steps, eval_every=max(1, min(250, args.recipe_steps // 8)))
    ours = Trainer(cfg)
    sides = {"ours": ours, "torch": TorchSide(ours), "nanogpt": NanoGPTSide(ours)}
    labels = {"ours": "ours", "torch": "PyTorch", "nanogpt": "nanoGPT-style"}
    start = {name: side.evaluate() for name, side in sides.items()}
    print(f"recipe: gpt, {ours.model.num_parameters():,} params, {cfg.steps} steps, batch 12 x 64 characters, "
          f"{torch.get_num_threads()} thread(s); validation loss at start: "
          + ", ".join(f"{labels[n]} {v:.6f}" for n, v in start.items()))  # fmt: skip
    seconds = dict.fromkeys(sides, 0.0)
    curves = {name: [] for name in sides}  # (step, validation loss)
    for step in range(1, cfg.steps + 1):
        for name, side in sides.items():
            begin = time.perf_counter()
            loss = side.train_step()
            seconds[name] += time.perf_counter() - begin
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vals = {name: side.evaluate() for name, side in sides.items()}
            for name in curves:
                curves[name].append((step, vals[name]))
            print(f"  step {step:5d}  val " + "  ".join(f"{labels[n]} {v:.4f}" for n, v in vals.items())
                  + f"  (train {loss:.4f})  time " + "  ".join(f"{labels[n]} {s:6.1f}s" for n, s in seconds.items()),
                  flush=True)  # fmt: skip
    for name in sides:
        print(f"{labels[name]}: val loss {curves[name][-1][1]:.4f} in {seconds[name]:.1f} s of training steps "
              f"({1000 * seconds[name] / cfg.steps:.1f} ms per step)")  # fmt: skip
    print(f"time ratio ours / PyTorch: {seconds['ours'] / seconds['torch']:.2f}; ours / nanoGPT-style: "
          f"{seconds['ours'] / seconds['nanogpt']:.2f} (nanoGPT, elsewhere: 1.886 in 79 s)")  # fmt: skip
    from lm.generate import generate  # noqa: PLC0415

    sample = generate(ours.model, "ROMEO:", 300, temperature=0.8, top_k=40, seed=0)
    print(f"sample (temperature 0.8, top-k 40):\n{sample.text}")
    if args.svg:
        Path(args.svg).write_text(loss_svg({name: curves[name] for name in ("ours", "torch")}))
        print(f"loss curves written to {args.svg}")


def loss_svg(curves: dict[str, list[tuple[int, float]]], width: int = 640, height: int = 360) -> str:
    """The validation curves as a small SVG line chart (no plotting library needed)."""
    points = [p for c in curves.values() for p in c]
    max_step = max(s for s, _ in points)
    low, high = min(v for _, v in points) - 0.05, max(v for _, v in points) + 0.05
    pad = 50

    def xy(step, value):
        x = pad + (width - 2 * pad) * step / max_step
        return f"{x:.1f},{height - pad - (height - 2 * pad) * (value - low) / (high - low):.1f}"

    colors = {"ours": "#d62728", "torch": "#1f77b4"}
    labels = {"ours": "autodiff engine", "torch": "plain PyTorch"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for i in range(5):  # horizontal grid with loss labels
        value = low + (high - low) * i / 4
        y = xy(0, value).split(",")[1]
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad - 6}" y="{y}" text-anchor="end" dy="4">{value:.2f}</text>')
    for step in range(0, max_step + 1, max(1, max_step // 4)):  # step ticks
        x = xy(step, low).split(",")[0]
        parts.append(f'<text x="{x}" y="{height - pad + 16}" text-anchor="middle">{step}</text>')
    style = {"ours": 'stroke-width="5" stroke-opacity="0.6"', "torch": 'stroke-width="2" stroke-dasharray="6 4"'}
    for i, (name, curve) in enumerate(curves.items()):  # ours wide, PyTorch dashed on top: equal curves show
        path = " ".join(xy(s, v) for s, v in curve)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colors[name]}" {style[name]}/>')
        parts.append(f'<text x="{width - pad}" y="{pad + 16 * i}" text-anchor="end" fill="{colors[name]}">'
                     f"{labels[name]}</text>")  # fmt: skip
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">step</text>')
    parts.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
                 "validation loss (nats per character)</text></svg>")  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["gpt", "llama", "classic"])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--data", default="shakespeare")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (0 = torch's choice)")
    parser.add_argument("--memory", action="store_true", help="peak memory of each side, in child processes")
    parser.add_argument("--recipe", action="store_true", help="nanoGPT's CPU quickstart on both sides")
    parser.add_argument("--recipe-steps", type=int, default=2000)
    parser.add_argument("--svg", help="with --recipe: write the validation curves to this SVG file")
    parser.add_argument("--child", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="gpt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.side = args.child
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return memory_child(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32")
    if args.recipe:
        return recipe(args)
    if args.memory:
        return memory(args)
    speed(args)


if __name__ == "__main__":
    main()
