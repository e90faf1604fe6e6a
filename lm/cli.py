"""The command line, one parser: `python -m lm train`, `python -m lm generate`, `python -m lm profile`,
`python -m lm tokenizer`.

train: a recipe (classic: the ten sentences, SGD; nanogpt: Tiny Shakespeare characters, AdamW) whose
settings any option overrides; a progress bar, evaluations as they come, a checkpoint in --out at every
evaluation and at the end; `--resume` continues a run exactly. generate: the continuation of a prompt
by any saved model (the bundled classic model by default), optionally with each step's top tokens.
profile: where a training step's time goes, op by op, against the matmul peak and PyTorch (lm/profile.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from lm import checkpoint, data, distributed, files
from lm.generate import STOP_REASONS, generate
from lm.train import RECIPES, TrainConfig, Trainer

# option -> TrainConfig field (options left out keep the recipe's value)
TRAIN_FIELDS = {
    "data": "data", "tokenizer": "tokenizer", "preset": "preset", "layers": "n_layers", "heads": "n_heads",
    "d_model": "d_model", "d_ff": "d_ff", "context": "context", "batch": "batch_size", "grad_accum": "grad_accum",
    "steps": "steps", "optimizer": "optimizer", "lr": "lr", "min_lr": "min_lr", "warmup": "warmup",
    "schedule": "schedule", "weight_decay": "weight_decay", "clip": "clip", "eval_every": "eval_every",
    "eval_batches": "eval_batches", "seed": "seed", "dtype": "dtype", "n_stories": "n_stories", "remat": "remat",
}  # fmt: skip


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe (by default: classic for sentences, nanogpt for text) with the options given."""
    sentences = args.data is None or args.data == "sentences" or args.data.startswith("sentences:")
    recipe = args.recipe or ("classic" if sentences else "nanogpt")
    given = {field: getattr(args, opt) for opt, field in TRAIN_FIELDS.items() if getattr(args, opt) is not None}
    return TrainConfig.recipe(recipe, **given).validate()


_open_line = False  # a progress bar holds stderr's last line: the next message starts a new line


def _status(text: str, end: str = "\n") -> None:
    """Print a progress line to stderr, remembering whether it was left open (a bar redrawn with \\r)."""
    global _open_line
    print(text, end=end, file=sys.stderr, flush=True)
    _open_line = not end


def _error(text: str) -> None:
    """An error on a line of its own (after an open progress bar, on the next one)."""
    _status(("\n" if _open_line else "") + f"error: {text}")


def _bar(event, first_step: int, width: int = 24) -> str:
    """The progress bar, with the time a step takes and the time left from the first step on (a run of
    67M-token steps says at once how long it will take)."""
    filled = int(width * event.step / event.total)
    per_step = event.elapsed / max(1, event.step - first_step)
    left = per_step * (event.total - event.step)
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] step {event.step}/{event.total}  loss {event.loss:.4f}  "
        f"lr {event.lr:.2e}  {event.tokens_per_s:,.0f} tok/s  {per_step:.2f} s/step  {event.elapsed:.0f}s, "
        f"{_duration(left)} left"
    )


def _duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _evaluation(event) -> str:
    m = event.metrics
    shown = [f"step {event.step:>6}  train loss {event.loss:.4f}"]
    if "val_loss" in m:
        shown.append(f"val loss {m['val_loss']:.4f} (perplexity {m['val_perplexity']:.2f})")
    if "memorized" in m:
        shown.append(f"memorized {m['memorized']}/{m['n_sentences']}")
    return "\r" + "  ".join(shown) + f"  {event.tokens_per_s:,.0f} tok/s" + " " * 20


def _download_progress(done: int, total: int) -> None:
    if done == total or done % max(1, total // 100) == 0:
        end = "\n" if done == total else ""
        _status(f"\rdownloading TinyStories: {done:,}/{total:,} stories", end=end)


def cmd_train(args: argparse.Namespace) -> int:
    """Under torchrun (lm.distributed): every rank trains its share of each batch, rank 0 alone prints and saves."""
    out = files.check_out_path(args.out, "--out")  # before any work: a typo costs no run
    target = checkpoint.resolve(out)
    if not args.resume and target.exists() and not args.overwrite:
        raise ValueError(f"--out '{out}' already holds a run: add --resume to continue it, --overwrite to replace it")
    config = None if args.resume else train_config(args)
    parallel, device = distributed.setup(args.device, args.dist_timeout)  # checked before any rank writes
    try:
        with nullcontext() if parallel is None else parallel.main_output():
            return _train(args, out, config, device, parallel)
    finally:
        distributed.teardown(parallel)


def _train(args: argparse.Namespace, out: Path, config: TrainConfig | None, device, parallel) -> int:
    if device.type == "mps" and (config.dtype if config else "float32") == "float64":
        raise ValueError("the mps device has no float64: use --dtype float32 (or --device cpu)")
    kwargs = dict(cache_dir=args.cache_dir, device=device, parallel=parallel, progress=_download_progress)
    if config is None:
        trainer = Trainer.resume(out, steps=args.steps, batch_size=args.batch, **kwargs)
        print(f"resuming {out} at step {trainer.step} of {trainer.config.steps}", file=sys.stderr)
    else:
        trainer = Trainer(config, **kwargs)
        try:  # before any training: the folder is writable, and a run killed early can still be resumed
            trainer.save(out)
        except OSError as err:
            raise ValueError(f"cannot write the run to --out '{out}' ({err.strerror or err}): pick another") from None
    model, cfg, source = trainer.model, trainer.config, trainer.source
    size = f"{len(source.sentences)} sentences" if isinstance(source, data.Sentences) else (
        f"{len(source.tokens.train):,} train / {len(source.tokens.val):,} validation tokens"
        f"{', cached' if source.tokens.reused else ''}"
    )  # fmt: skip
    print(
        f"model: {cfg.preset}, {model.num_parameters():,} parameters, {cfg.n_layers} layers, {cfg.n_heads} heads, "
        f"d_model {cfg.d_model}, context {trainer.context}; data: {cfg.data}, {cfg.tokenizer} tokens (vocabulary "
        f"{len(trainer.tokenizer):,}, {size}); {cfg.optimizer}, {device}"
        f"{f', {trainer.world_size} ranks ({parallel.backend})' if parallel else ''}",
        file=sys.stderr,
    )
    start, event, first_step = time.perf_counter(), None, trainer.step
    for event in trainer.events():
        if event.kind == "eval":
            trainer.save(out)
            _status(_evaluation(event))
        elif not args.quiet:
            _status(_bar(event, first_step), end="")
    if event is None:
        print(f"nothing to do: the run is at step {trainer.step} of {cfg.steps} (raise --steps)", file=sys.stderr)
        return 0
    if not (trainer.stop_reason or "").startswith("diverged"):  # keep the last good checkpoint, not a diverged one
        trainer.save(out)
    if parallel is not None and not parallel.is_main:
        return 0
    _status("")
    if trainer.stop_reason != "finished":
        print(f"training stopped: {trainer.stop_reason}; the last checkpoint is in {out}", file=sys.stderr)
        return 1
    if isinstance(source, data.Sentences):
        rows = data.memorization(model, source.sentences)
        for row in rows:
            print(f"  {'ok  ' if row.correct else 'MISS'} {row.prompt!r} -> {row.generated!r}")
        result = f"memorized {sum(r.correct for r in rows)}/{len(rows)} sentences"
    else:
        result = f"validation loss {trainer.evaluate():.4f}"
    print(f"done: step {trainer.step} in {time.perf_counter() - start:.1f}s, {result}; saved {out}")
    if not isinstance(source, data.Sentences):
        sample = generate(trainer.cpu_model(), "", min(200, 10 * trainer.context), 0.8, top_k=40, seed=cfg.seed)
        print(f"sample:\n{sample.text}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = checkpoint.load(args.weights).model
    if model.tokenizer is None:
        raise ValueError(f"'{args.weights}' holds no tokenizer: it cannot read or write text")
    trace = generate(
        model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
        use_cache=not args.no_cache,
    )  # fmt: skip
    print(trace.text)
    for i, step in enumerate(trace.steps if args.show_top else [], start=1):
        top = torch.topk(step.probs, min(args.show_top, step.probs.numel()))
        ranked = "  ".join(
            f"{model.tokenizer.token_str(j)!r} {p:.3f}" for p, j in zip(top.values.tolist(), top.indices.tolist())
        )
        print(f"  step {i}: {step.token!r:14} top-{args.show_top}: {ranked}")
    why = STOP_REASONS.get(trace.stop_reason, trace.stop_reason)
    print(f"[{len(trace.new_ids)} tokens in {trace.seconds:.2f}s; stopped: {why}]", file=sys.stderr)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from lm import profile  # noqa: PLC0415  (torch.profiler and the reference model: only for this command)

    sizes = dict(preset=args.preset, n_layers=args.layers, n_heads=args.heads, d_model=args.d_model,
                 context=args.context, batch=args.batch, steps=args.steps)  # fmt: skip
    packed = {"auto": None, "packed": True, "batched": False}[args.attention]
    profile.profile_config(**sizes, packed=packed)  # before any work: sizes a profile can run in about 10 s
    for option, value in (("--threads", args.threads), ("--top", args.top)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    toggles = dict(packed=packed, fused=not args.unfused, compiled=not args.interpreted,
                   keep_freed=not args.no_keep_freed, remat=args.remat)  # fmt: skip
    result = profile.profile_training(**sizes, **toggles)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print_profile(result, args.top)
    print("\nbeside PyTorch's same step under torch.profiler: python bench/bench_profile.py --vs-torch (a checkout)")
    return 0


def print_profile(result, top: int | None = None) -> None:
    """A TrainingProfile (lm.profile) as the tables `python -m lm profile` prints; the PyTorch table when the
    profile has a peer's side (bench/bench_profile.py --vs-torch)."""
    from lm import profile  # noqa: PLC0415

    s = result.settings
    print(
        f"profile: {s['preset']}, {s['n_layers']} layers, {s['n_heads']} heads, d_model {s['d_model']}, context "
        f"{s['context']}, batch {s['batch']} ({result.parameters:,} parameters, {s['dtype']}, {s['threads']} threads, "
        f"torch {s['torch']}); {s['steps']} steps of each side after {s['warmup']} warm-up"
    )
    print(
        f"plan: {'packed' if s['packed'] else 'batched'} attention, fused backward nodes "
        f"{'on' if s['fused'] else 'off'}, {'generated code' if s['compiled'] else 'the interpreted loop'}, freed "
        f"memory {'kept' if s['keep_freed'] else 'returned to the system'}"
        + ("" if result.page_faults is None else f"; {result.page_faults:,.0f} minor page faults per step")
    )
    print(
        f"step: {_ms(result.step_ms)}; with the profile on {_ms(result.profiled_step_ms)} "
        f"({result.overhead:+.1%})\n  the graph (forward and backward) {_ms(result.graph_ms)}: its {result.nodes} "
        f"nodes add up to {result.node_ms:.2f} ms of its mean {statistics.fmean(result.graph_ms):.2f} ms; outside "
        f"it (means): batch, clipping and AdamW {result.outside_ms:.2f} ms, of which AdamW {result.adamw_ms:.2f} ms"
    )
    print(f"\n{'op kind':<26}{'calls':>6}{'ms/step':>10}{'share':>8}{'MFLOP':>10}{'GFLOP/s':>9}")
    for row in result.ops[:top]:
        flops = "" if row.flops is None else f"{row.flops / 1e6:,.1f}"
        rate = "" if row.gflops_per_s is None or not row.flops else f"{row.gflops_per_s:.1f}"
        print(f"{row.op:<26}{row.calls:>6}{row.ms:>10.2f}{row.share:>8.1%}{flops:>10}{rate:>9}")
    rest = result.ops[top:] if top else []
    if rest:
        print(f"({len(rest)} more op kinds: {sum(r.ms for r in rest):.2f} ms)")
    print(f"\n{'matmul shapes':<36}{'calls':>6}{'ms/step':>10}{'GFLOP/s':>9}{'plain torch.matmul':>20}")
    for m in result.matmuls:
        shapes = f"{tuple(m.a)} @ {tuple(m.b)}"
        print(f"{shapes:<36}{m.calls:>6}{m.ms:>10.2f}{m.gflops_per_s:>9.1f}{m.probe_gflops_per_s:>20.1f}")
    print(
        f"\nmatmul peak: {result.peak_gflops_per_s:.1f} GFLOP/s (plain torch.matmul at the step's shapes, best "
        f"call)\nmatmul floor: {result.matmul_flops / 1e9:.2f} GFLOP at the peak = {result.floor_ms:.2f} ms; the "
        f"step is {result.floor_ratio:.2f}x its matmul floor (its matmuls as plain torch.matmul calls: "
        f"{result.probe_ms:.2f} ms)"
    )
    if result.memory is not None:
        print_memory(result.memory, bool(s.get("remat")), top or 8)
    if not result.side_by_side:
        return
    print(
        f"\nours next to PyTorch (bench/reference_model.py, autograd, torch.optim.AdamW): step "
        f"{_ms(result.torch_step_ms)}; under torch.profiler {result.torch_profiled_ms:.2f} ms, its self time per kind"
    )
    print(f"{'kind of work':<26}{'ours ms':>9}{'calls':>7}{'torch ms':>10}{'calls':>7}")
    for row in result.side_by_side:
        ops = row.kind not in (profile.OUTSIDE, profile.FRAMEWORK)  # the last two rows are not op calls
        ours, theirs = (row.ours_calls, row.torch_calls) if ops else ("", "")
        print(f"{row.kind:<26}{row.ours_ms:>9.2f}{ours:>7}{row.torch_ms:>10.2f}{theirs:>7}")


def print_memory(timeline, remat: bool, top: int) -> None:
    """The step graph's memory timeline (autodiff/timeline.py): its peak by category, the largest values there."""
    mb = 2**20
    print(
        f"\nmemory of the graph (from its plan, before it runs; not AdamW's state), activation checkpointing "
        f"{'on' if remat else 'off'}: peak {timeline.peak / mb:.1f} MiB\n  while step {timeline.peak_step + 1} of "
        f"{len(timeline.names)} runs ({timeline.names[timeline.peak_step][:40]}); activations kept for the "
        f"backward pass at their most {timeline.peak_of('activations') / mb:.1f} MiB"
    )
    print("  at the peak: " + ", ".join(f"{c} {b / mb:.1f} MiB" for c, b in timeline.at_peak.items()))
    print(f"{'largest values alive at the peak':<42}{'op':<22}{'shape':<18}{'MiB':>8}  what")
    for v in timeline.alive_at_peak[:top]:
        shared = f" ({v.holders} values share its storage)" if v.holders > 1 else ""
        print(f"{v.name[:40]:<42}{v.op[:20]:<22}{str(tuple(v.shape)):<18}{v.bytes / mb:>8.2f}  {v.category}{shared}")


def _ms(values: list[float]) -> str:
    """Median and range of per-step times: 41.20 ms (39.02-47.31)."""
    return f"{statistics.median(values):.2f} ms ({min(values):.2f}-{max(values):.2f})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    nano = TrainConfig()
    t = sub.add_parser("train", help="train a model (the classic recipe by default; --data shakespeare: nanoGPT's)")
    t.add_argument("--recipe", choices=list(RECIPES), help="the defaults (classic for sentences, else nanogpt)")
    t.add_argument(
        "--data", help="sentences (default: the ten built-in), sentences:FILE (one a line), shakespeare, stories, "
        "tinystories (download, online only) or a text file",
    )  # fmt: skip
    t.add_argument("--tokenizer", help="char, word, bpe:N (trained here) or gpt2 (sentences: word)")
    t.add_argument("--preset", choices=["classic", "gpt", "llama"], help="the block's parts")
    t.add_argument("--layers", type=int, help=f"decoder layers (classic 1, nanogpt {nano.n_layers})")
    t.add_argument("--heads", type=int, help=f"attention heads, dividing d-model (classic 1, nanogpt {nano.n_heads})")
    t.add_argument("--d-model", type=int, help=f"model width (classic 64, nanogpt {nano.d_model})")
    t.add_argument("--d-ff", type=int, help="feed-forward width (classic 128; gpt 4·d, llama ≈8/3·d)")
    t.add_argument("--context", type=int, help=f"tokens per window (nanogpt {nano.context}; sentences: the longest)")
    t.add_argument("--batch", type=int, help=f"windows per step and rank (nanogpt {nano.batch_size}; --resume: kept)")
    t.add_argument("--grad-accum", type=int, help="micro-batches per step (default: 1)")
    t.add_argument("--steps", "--epochs", dest="steps", type=int, help="optimizer steps (classic 500, nanogpt 2000)")
    t.add_argument("--optimizer", choices=["sgd", "adamw"], help="(classic sgd, nanogpt adamw)")
    t.add_argument("--lr", type=float, help=f"peak learning rate (classic 0.05, nanogpt {nano.lr})")
    t.add_argument("--min-lr", type=float, help=f"floor of the cosine (nanogpt {nano.min_lr})")
    t.add_argument("--warmup", type=int, help=f"linear warmup steps (classic 0, nanogpt {nano.warmup})")
    t.add_argument("--schedule", choices=["cosine", "constant"], help="(classic constant, nanogpt cosine)")
    t.add_argument("--weight-decay", type=float, help="AdamW, matrices only (classic 0.01, nanogpt 0.1)")
    t.add_argument("--clip", type=float, help="global gradient norm, 0 = off (classic 0, nanogpt 1.0)")
    t.add_argument("--eval-every", type=int, help="steps between evaluations (classic 50, nanogpt 250)")
    t.add_argument("--eval-batches", type=int, help=f"held-out batches (nanogpt {nano.eval_batches})")
    t.add_argument("--seed", type=int, help=f"initialization and batches (classic 0, nanogpt {nano.seed})")
    t.add_argument("--dtype", choices=["float32", "float64"], help="(classic float64, nanogpt float32)")
    t.add_argument("--n-stories", type=int, help=f"stories for --data tinystories (default: {nano.n_stories})")
    t.add_argument("--remat", action="store_true", default=None, help="recompute blocks in the backward: less memory")
    t.add_argument("--out", default="runs/run", help="a run folder or a .safetensors file (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    t.add_argument("--cache-dir", help="token files and downloads (default: ~/.cache/autodiff-playground)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (evaluations are still printed)")
    t.add_argument(
        "--device", choices=["cpu", "cuda", "mps"], help="where parameters, AdamW state and batches live "
        "(default: cuda, else mps, else cpu; under torchrun each rank takes GPU LOCAL_RANK)",
    )  # fmt: skip
    t.add_argument(
        "--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S,
        help="under torchrun: seconds a rank waits for the others (rendezvous, all-reduce) before it stops "
        "with an error (default: %(default)g)",
    )  # fmt: skip
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("generate", help="continue a prompt with a saved model")
    g.add_argument("prompt", nargs="?", default="", help="text to continue (default: empty, a new document)")
    g.add_argument(
        "--weights", default=str(checkpoint.DEFAULT_WEIGHTS), help="a run folder or .safetensors file "
        "(default: the bundled classic model, which knows the ten sentences' words)",
    )  # fmt: skip
    g.add_argument("--max-new-tokens", type=int, default=100, help="(default: %(default)s)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)")
    g.add_argument("--top-k", type=int, help="sample among the k most likely tokens (default: all)")
    g.add_argument("--top-p", type=float, help="sample from the smallest set with this probability (default: 1)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="recompute every position each step (no KV cache)")
    g.add_argument("--show-top", type=int, default=0, metavar="K", help="print each step's K most likely tokens")
    g.set_defaults(func=cmd_generate)

    p = sub.add_parser("profile", help="where a training step's time goes, op by op, next to PyTorch's")
    p.add_argument("--preset", choices=["classic", "gpt", "llama"], default=nano.preset, help="(default: %(default)s)")
    p.add_argument("--layers", type=int, default=nano.n_layers, help="decoder layers (default: %(default)s)")
    p.add_argument("--heads", type=int, default=nano.n_heads, help="attention heads (default: %(default)s)")
    p.add_argument("--d-model", type=int, default=nano.d_model, help="model width (default: %(default)s)")
    p.add_argument("--context", type=int, default=nano.context, help="tokens per window (default: %(default)s)")
    p.add_argument("--batch", type=int, default=nano.batch_size, help="windows per step (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="profiled steps after a warm-up (default: %(default)s)")
    p.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's choice; on a busy machine 1 is steadier)"
    )
    p.add_argument("--top", type=int, default=12, help="op kinds shown, most time first (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the whole profile as JSON")
    p.add_argument(
        "--attention", choices=["auto", "packed", "batched"], default="auto",
        help="attention layout: the model's choice, all rows in one matrix, or one per sequence (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--unfused", action="store_true", help="fused backward nodes written out in primitive ops")
    p.add_argument("--interpreted", action="store_true", help="the plan's interpreted loop, not generated code")
    p.add_argument("--remat", action="store_true", help="activation checkpointing: blocks recomputed for the backward")
    p.add_argument(
        "--no-keep-freed", action="store_true",
        help="glibc's malloc defaults (freed memory returned to the system), in a fresh process",
    )  # fmt: skip
    p.set_defaults(func=cmd_profile)

    from lm.tokenizers.cli import add_parser as add_tokenizer_parser  # noqa: PLC0415

    add_tokenizer_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except distributed.RankFailure as err:
        _error(str(err))
        if distributed.launch_env() is not None:  # a launched rank whose process group broke: leave at once,
            sys.stdout.flush(), sys.stderr.flush()  # as a normal exit would wait for, or abort on, the group's
            os._exit(2)  # threads still talking to the dead rank ("terminate called without an active exception")
        return 2
    except ValueError as err:  # every lm error type is a ValueError
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is in the run folder; continue with --resume", file=sys.stderr)
        return 130
    except OSError as err:  # e.g. the disk filled up while saving
        where = f" ({err.filename})" if err.filename else ""
        _error(f"{err.strerror or err}{where}")
        return 2
