"""The command line: `python -m lm train` and `python -m lm generate --weights PATH "PROMPT"`.

train: every model and optimizer setting as an option, a progress bar with the live loss, a summary
with the memorization score and the time, and the weights saved atomically. generate: the
continuation of a prompt and, per step, the three most likely tokens with their probabilities.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from lm.corpus import DEFAULT_CORPUS, CorpusError, load_corpus
from lm.generate import STOP_REASONS, generate
from lm.tokenizer import UnknownWordError
from lm.train import TrainConfig, Trainer, default_model_config, memorization
from lm.weights import DEFAULT_WEIGHTS, WeightsError, load, save


def _progress(event, width: int = 30) -> str:
    filled = int(width * event.epoch / event.epochs)
    memo = f"  memorized {event.memorization}/{event.n_sentences}" if event.memorization is not None else ""
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] epoch {event.epoch}/{event.epochs}  "
        f"loss {event.loss:.4f}  {event.elapsed_s:.1f}s{memo}"
    )


def check_out_path(out: str) -> Path:
    """Where `train --out` will write, or ValueError saying why it cannot: checked before training, so a
    typo does not cost a whole run."""
    if not out.strip():
        raise ValueError("--out is empty: give a file name such as model.safetensors")
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out '{out}' is a folder: give a file name, e.g. '{path / 'model.safetensors'}'")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"--out '{out}': '{parent}' is a file, not a folder, so nothing can be saved under it")
    if not parent.exists():
        raise ValueError(f"--out '{out}': the folder '{parent}' does not exist: create it first (mkdir -p '{parent}')")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out '{out}': the folder '{parent}' is not writable")
    return path


def cmd_train(args: argparse.Namespace) -> int:
    out = check_out_path(args.out)
    corpus = load_corpus(args.corpus) if args.corpus else DEFAULT_CORPUS
    overrides = {
        "d_model": args.d_model, "d_ff": args.d_ff, "n_layers": args.layers, "n_heads": args.heads,
        "dtype": args.dtype,
    }  # fmt: skip
    if args.context is not None:
        overrides["context"] = args.context
    model_config = default_model_config(corpus, overrides)
    train_config = TrainConfig(
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else (0.05 if args.optimizer == "sgd" else 1e-3),
        epochs=args.epochs,
        seed=args.seed,
        eval_every=args.eval_every,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        clip_grad_norm=args.clip,
    )
    trainer = Trainer(corpus, model_config, train_config)
    model = trainer.model
    print(
        f"model: {model.num_parameters():,} parameters, {model.config.n_layers} layer(s), {model.config.n_heads} "
        f"head(s), d_model {model.config.d_model}, vocabulary {len(model.tokenizer)}, context {model.config.context}",
        file=sys.stderr,
    )
    start, event = time.perf_counter(), None
    for event in trainer.events():
        if not args.quiet and (event.epoch % max(1, event.epochs // 100) == 0 or event.done):
            print(_progress(event), end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if event.stop_reason != "finished":
        print(f"training stopped: {event.stop_reason}", file=sys.stderr)
        return 1
    rows = memorization(model, trainer.sentences)
    score = sum(r.correct for r in rows)
    for row in rows:
        print(f"  {'ok  ' if row.correct else 'MISS'} {row.prompt!r} -> {row.generated!r}")
    save(model, out)
    print(
        f"done: {event.epoch} epochs in {time.perf_counter() - start:.2f}s (training {event.elapsed_s:.2f}s), "
        f"final loss {event.loss:.4f}, memorized {score}/{len(rows)} sentences; weights saved to {args.out}"
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = load(args.weights)
    trace = generate(
        model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed, use_cache=not args.no_cache
    )
    print(trace.text)
    for i, step in enumerate(trace.steps, start=1):
        top = torch.topk(step.probs, min(3, step.probs.numel()))
        ranked = "  ".join(
            f"{model.tokenizer.vocab[j]} {p:.3f}" for p, j in zip(top.values.tolist(), top.indices.tolist())
        )
        print(f"  step {i}: {step.token!r:14} top-3: {ranked}")
    print(f"  stopped: {STOP_REASONS.get(trace.stop_reason, trace.stop_reason)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a corpus and save its weights")
    t.add_argument("--corpus", help="text file, one sentence a line (default: the built-in ten sentences)")
    t.add_argument("--out", default="model.safetensors", help="where to save the weights (default: %(default)s)")
    t.add_argument("--epochs", type=int, default=500, help="full-batch epochs (default: %(default)s)")
    t.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="(default: %(default)s)")
    t.add_argument("--lr", type=float, help="learning rate (default: 0.05 for sgd, 0.001 for adamw)")
    t.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="(default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: %(default)s)")
    t.add_argument("--clip", type=float, help="clip the global gradient norm to this (default: no clipping)")
    t.add_argument("--seed", type=int, default=0, help="initialization seed (default: %(default)s)")
    t.add_argument("--eval-every", type=int, default=50, help="epochs between memorization scores (default: 50)")
    t.add_argument("--d-model", type=int, default=64, help="model width (default: %(default)s)")
    t.add_argument("--d-ff", type=int, default=128, help="feed-forward width (default: %(default)s)")
    t.add_argument("--layers", type=int, default=1, help="decoder layers (default: %(default)s)")
    t.add_argument("--heads", type=int, default=1, help="attention heads, dividing d-model (default: %(default)s)")
    t.add_argument("--context", type=int, help="positions the model reads (default: longest sentence - 1)")
    t.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="(default: %(default)s)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("generate", help="continue a prompt and show the top-3 tokens of each step")
    g.add_argument("prompt", help="the words to continue (words of the training corpus)")
    g.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="weights file (default: the bundled model)")
    g.add_argument("--max-new-tokens", type=int, default=20, help="(default: %(default)s)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)")
    g.add_argument("--top-k", type=int, help="sample among the k most likely tokens (default: all)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="recompute every position each step (no KV cache)")
    g.set_defaults(func=cmd_generate)

    from lm.tokenizers.cli import add_parser as add_tokenizer_parser  # `python -m lm tokenizer ...`

    add_tokenizer_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lm import textcli  # noqa: PLC0415  (text models: `train --data ...`, `generate --weights RUN`)

    if textcli.wants_text(sys.argv[1:] if argv is None else argv):
        return textcli.main(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CorpusError, UnknownWordError, WeightsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the disk filled up while saving
        print(f"error: {err.strerror or err}{f' ({err.filename})' if err.filename else ''}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
