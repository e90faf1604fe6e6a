"""The command line of the text models: `python -m lm train --data ...` and `python -m lm generate
--weights runs/NAME "PROMPT"` (lm/__main__.py hands these over; `python -m lm.textcli` works too).

train: every model, data and optimizer setting as an option; a progress bar with tokens/s, the
training and validation loss; a checkpoint in the run folder at every validation and at the end;
`--resume` continues a run exactly. generate: the continuation of a free-text prompt.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from lm import checkpoint, distributed
from lm.checkpoint import CheckpointError
from lm.data import DataError
from lm.model import LanguageModel
from lm.textgen import generate_text
from lm.textrun import TextTrainConfig, TextTrainer

TEXT_TRAIN_FLAGS = ("--data", "--resume", "--preset", "--tokenizer")  # any of these makes `train` a text run


def wants_text(argv: list[str]) -> bool:
    """True when argv is a text-model command: `train` with a text flag, or `generate` from a run."""
    if not argv:
        return False
    if argv[0] == "train":
        return any(a.split("=")[0] in TEXT_TRAIN_FLAGS for a in argv[1:])
    if argv[0] == "generate":
        for i, a in enumerate(argv[1:], start=1):
            if a == "--weights" and i + 1 < len(argv):
                return is_checkpoint(argv[i + 1])
            if a.startswith("--weights="):
                return is_checkpoint(a.split("=", 1)[1])
    return False


def is_checkpoint(path: str) -> bool:
    """Whether `path` is a run folder or a checkpoint file (a quick look at the header's format)."""
    file = checkpoint.resolve(path)
    try:
        with open(file, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > checkpoint.MAX_HEADER:
                return False
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        return meta.get("format") == checkpoint.FORMAT
    except (OSError, ValueError, struct.error, AttributeError):
        return Path(path).is_dir()  # a run folder without a checkpoint: let load() say so


def _bar(event, width: int = 24) -> str:
    filled = int(width * event.step / event.total)
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] step {event.step}/{event.total}  loss {event.loss:.4f}  "
        f"lr {event.lr:.2e}  {event.tokens_per_s:,.0f} tok/s  {event.elapsed:.0f}s"
    )


def _download_progress(done: int, total: int) -> None:
    if done == total or done % max(1, total // 100) == 0:
        end = "\n" if done == total else ""
        print(f"\rdownloading TinyStories: {done:,}/{total:,} stories", end=end, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    """Under torchrun (lm.distributed): every rank trains its share of each batch, rank 0 alone prints and saves."""
    out = Path(args.out)
    fresh_out_used = not args.resume and ((out / checkpoint.FILE_NAME).exists() or (out.exists() and not out.is_dir()))
    parallel, device = distributed.setup(args.device, args.dist_timeout)  # checked before any rank writes
    try:
        with nullcontext() if parallel is None else parallel.main_output():
            return _train(args, out, fresh_out_used, device, parallel)
    finally:
        distributed.teardown(parallel)


def _train(args: argparse.Namespace, out: Path, fresh_out_used: bool, device, parallel) -> int:
    if device.type == "mps" and args.dtype == "float64":
        raise ValueError("the mps device has no float64: use --dtype float32 (or --device cpu)")
    if args.resume:
        trainer = TextTrainer.resume(
            out,
            args.cache_dir,
            steps=args.steps,
            batch_size=args.batch,
            device=device,
            parallel=parallel,
            progress=_download_progress,
        )
        print(f"resuming {out} at step {trainer.step} of {trainer.config.steps}", file=sys.stderr)
    else:
        if fresh_out_used:
            raise ValueError(f"--out '{out}' already holds a run (or is a file): add --resume, or pick another --out")
        settings = {
            "data": args.data or "shakespeare", "tokenizer": args.tokenizer, "preset": args.preset,
            "n_layers": args.layers, "n_heads": args.heads, "d_model": args.d_model, "d_ff": args.d_ff,
            "context": args.context, "grad_accum": args.grad_accum,
            "batch_size": TextTrainConfig.batch_size if args.batch is None else args.batch,
            "steps": 2000 if args.steps is None else args.steps, "lr": args.lr, "min_lr": args.min_lr,
            "warmup": args.warmup, "weight_decay": args.weight_decay,
            "clip": args.clip, "eval_every": args.eval_every, "eval_batches": args.eval_batches, "seed": args.seed,
            "dtype": args.dtype, "n_stories": args.n_stories,
        }  # fmt: skip
        trainer = TextTrainer(
            TextTrainConfig(**settings), args.cache_dir, device=device, parallel=parallel, progress=_download_progress
        )
        try:  # before any training: the folder is writable, and a run killed early can still be resumed
            trainer.save(out)
        except OSError as err:
            raise ValueError(
                f"cannot write the run to --out '{out}' ({err.strerror or err}): pick a folder you can write to"
            ) from None
    model, cfg = trainer.model, trainer.config
    print(
        f"model: {cfg.preset}, {model.num_parameters():,} parameters, {cfg.n_layers} layers, {cfg.n_heads} heads, "
        f"d_model {cfg.d_model}, context {cfg.context}; data: {cfg.data}, {cfg.tokenizer} tokens "
        f"(vocabulary {len(trainer.tokenizer):,}, {len(trainer.data.train):,} train / {len(trainer.data.val):,} "
        f"validation{', cached' if trainer.data.reused else ''}); {device}"
        f"{f', {trainer.world_size} ranks ({parallel.backend})' if parallel else ''}",
        file=sys.stderr,
    )
    start, event = time.perf_counter(), None
    for event in trainer.events():
        if event.kind == "eval":
            trainer.save(out)
            print(
                f"\rstep {event.step:>6}  train loss {event.loss:.4f}  val loss {event.val_loss:.4f}  "
                f"(perplexity {event.val_perplexity:.2f})  {event.tokens_per_s:,.0f} tok/s{' ' * 20}",
                file=sys.stderr,
            )
        elif not args.quiet:
            print(_bar(event), end="", file=sys.stderr, flush=True)
    if event is None:
        print(f"nothing to do: the run is at step {trainer.step} of {cfg.steps} (raise --steps)", file=sys.stderr)
        return 0
    trainer.save(out)
    if parallel is not None and not parallel.is_main:
        return 0
    val = trainer.evaluate()
    print(f"done: step {trainer.step} in {time.perf_counter() - start:.1f}s, validation loss {val:.4f}; saved {out}")
    if device.type != "cpu":  # generation feeds CPU tensors: sample from a CPU copy
        model = LanguageModel(model.config, model.tokenizer, {n: p.cpu() for n, p in model.params.items()})
    sample = generate_text(model, "", min(200, 10 * cfg.context), temperature=0.8, top_k=40, seed=args.seed)
    print(f"sample:\n{sample.text}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    saved = checkpoint.load(args.weights)
    result = generate_text(
        saved.model(), args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
        use_cache=not args.no_cache,
    )  # fmt: skip
    print(result.text)
    reason = "the end-of-text token" if result.stop_reason == "end_of_text" else f"{args.max_new_tokens} tokens"
    print(f"[{len(result.new_ids)} tokens in {result.seconds:.2f}s; stopped at {reason}]", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm", description="Text language models on the autodiff engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = TextTrainConfig()
    t = sub.add_parser("train", help="train a text model (nanoGPT's Shakespeare recipe by default)")
    t.add_argument("--data", help="shakespeare (default), stories, tinystories (download, online only) or a text file")
    t.add_argument("--tokenizer", default=d.tokenizer, help="char, word, bpe:N (trained here) or gpt2 (default: char)")
    t.add_argument("--preset", default=d.preset, choices=["classic", "gpt", "llama"], help="(default: gpt)")
    t.add_argument("--layers", type=int, default=d.n_layers, help="(default: %(default)s)")
    t.add_argument("--heads", type=int, default=d.n_heads, help="(default: %(default)s)")
    t.add_argument("--d-model", type=int, default=d.d_model, help="(default: %(default)s)")
    t.add_argument("--d-ff", type=int, help="feed-forward width (default: the preset's: gpt 4·d, llama ≈8/3·d)")
    t.add_argument("--context", type=int, default=d.context, help="tokens per window (default: %(default)s)")
    t.add_argument("--batch", type=int, help=f"windows per step and rank (default: {d.batch_size}; --resume: kept)")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default: 1)")
    t.add_argument("--steps", type=int, help="total steps (default: 2000; with --resume: the run's)")
    t.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    t.add_argument("--min-lr", type=float, default=d.min_lr, help="floor of the cosine (default: %(default)s)")
    t.add_argument("--warmup", type=int, default=d.warmup, help="linear warmup steps (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW, matrices only (default: 0.1)")
    t.add_argument("--clip", type=float, default=d.clip, help="global gradient norm, 0 = off (default: 1.0)")
    t.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between validations (default: 250)")
    t.add_argument("--eval-batches", type=int, default=d.eval_batches, help="held-out batches (default: 20)")
    t.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    t.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype, help="(default: %(default)s)")
    t.add_argument("--n-stories", type=int, default=d.n_stories, help="stories for --data tinystories (default: 20000)")
    t.add_argument("--out", default="runs/run", help="run folder: checkpoint.safetensors (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--cache-dir", help="token files and downloads (default: ~/.cache/autodiff-playground)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (validations are still printed)")
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

    g = sub.add_parser("generate", help="continue a prompt with a text model (a run folder or checkpoint)")
    g.add_argument("prompt", nargs="?", default="", help="free text (default: empty, a new document)")
    g.add_argument("--weights", required=True, help="a run folder (--out of train) or its checkpoint.safetensors")
    g.add_argument("--max-new-tokens", type=int, default=200, help="(default: %(default)s)")
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: %(default)s)")
    g.add_argument("--top-k", type=int, help="sample among the k most likely tokens (default: all)")
    g.add_argument("--top-p", type=float, help="sample from the smallest set with this probability (default: 1)")
    g.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="recompute every position each step (no KV cache)")
    g.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (CheckpointError, DataError, ValueError, distributed.RankFailure) as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is in the run folder; continue with --resume", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"\nerror: {err.strerror or err}{f' ({err.filename})' if err.filename else ''}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
