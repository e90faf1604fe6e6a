"""`python -m lm tokenizer ...`: train a BPE on a text file, encode or decode with a saved tokenizer or GPT-2's.

train: a progress bar on stderr, then a summary (merges, time, bytes per token on the training text)
and the tokenizer saved as GPT-2's vocab.json + merges.txt. encode: the tokens and their ids. Every bad
input is a TokenizerError that `python -m lm`'s main prints as a message, with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lm import files
from lm.tokenizers.base import TextTokenizer, TokenizerError
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.bpe_train import read_training_text
from lm.tokenizers.char import FILE_NAME as CHAR_FILE
from lm.tokenizers.char import CharTokenizer

MAX_TEXT_CHARS = 1_000_000  # text typed on the command line; files go through `train --data`
SUMMARY_SAMPLE_BYTES = 10_000_000  # bytes per token is measured on at most this much of the training text


def load_tokenizer(spec: str) -> TextTokenizer:
    """`gpt2` (the shipped GPT-2 files) or a directory holding a saved BPE or character tokenizer."""
    if spec == "gpt2":
        return BPETokenizer.gpt2()
    path = Path(spec)
    if (path / CHAR_FILE).is_file():
        return CharTokenizer.load(path)
    if path.is_dir():
        return BPETokenizer.load(path)
    raise TokenizerError(f"no tokenizer at {spec!r}: give `gpt2` or a directory written by `tokenizer train`")


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most 20 times a second."""

    def __init__(self, quiet: bool, width: int = 30):
        self.quiet, self.width, self.last = quiet, width, 0.0

    def __call__(self, done: int, total: int, stage: str) -> None:
        now = time.perf_counter()
        if self.quiet or (done < total and now - self.last < 0.05):
            return
        self.last = now
        filled = self.width * done // max(total, 1)
        label = "pre-tokenizing (chunks)" if stage == "pretokenize" else "merging"
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}]"
        print(f"\r{bar} {label} {done:,}/{total:,}   ", end="" if done < total else "\n", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    out = files.check_out_path(args.out, "--out")  # before any training: /dev/full, a FIFO, /proc, "" refused
    if out.exists() and not out.is_dir():
        raise TokenizerError(
            f"--out '{out}' is a file: a tokenizer is a folder (vocab.json, merges.txt); give a folder"
        )
    text = read_training_text(args.data)
    tokenizer, result = BPETokenizer.train(
        text, args.vocab_size, args.special or [], progress=ProgressBar(args.quiet), workers=args.workers
    )
    out = tokenizer.save(out)
    sample = text.encode("utf-8")[:SUMMARY_SAMPLE_BYTES].decode("utf-8", errors="ignore")
    n_tokens = len(tokenizer.encode(sample))
    note = " (every pre-token became one token: the text is too small for more)" if result.stopped_early else ""
    print(
        f"done: {len(result.merges):,} merges{note}, vocabulary {tokenizer.vocab_size:,} "
        f"({len(result.special_tokens)} special), {result.seconds:.2f} s on {result.text_bytes:,} bytes "
        f"({result.distinct_pretokens:,} distinct pre-tokens); {len(sample.encode()) / max(n_tokens, 1):.2f} bytes "
        f"per token on {'the' if len(sample) == len(text) else 'the first 10 MB of the'} training text; saved to {out}"
    )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    text = sys.stdin.read() if args.text == "-" else args.text
    if len(text) > MAX_TEXT_CHARS:
        raise TokenizerError(f"the text is {len(text):,} characters, over {MAX_TEXT_CHARS:,}; encode a file in parts")
    ids = tokenizer.encode(text)
    if not args.ids_only:
        print(" ".join(f"[{tokenizer.token_str(i)}]" for i in ids))
    print(" ".join(map(str, ids)), flush=True)  # before the count on stderr, so a terminal shows them in order
    if not args.ids_only:
        n_bytes = len(args.text.encode("utf-8")) if args.text != "-" else None
        per = f", {n_bytes / len(ids):.2f} bytes per token" if n_bytes and ids else ""
        print(f"{len(ids)} tokens{per}", file=sys.stderr)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    ids = []
    for word in args.ids:
        try:
            ids.append(int(word))
        except ValueError:
            raise TokenizerError(f"{word!r} is not an id: give integers separated by spaces") from None
    sys.stdout.write(tokenizer.decode(ids) + "\n")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `tokenizer` command (train, encode, decode) to `python -m lm`'s subcommands; its main turns a
    TokenizerError (a ValueError) or an OSError into a message and exit code 2."""
    p = subparsers.add_parser("tokenizer", help="train a byte-level BPE, or encode/decode text with one")
    sub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = sub.add_parser("train", help="train a BPE on a UTF-8 text file and save vocab.json + merges.txt")
    t.add_argument("--data", required=True, type=Path, help="UTF-8 text file to learn from")
    t.add_argument("--vocab-size", required=True, type=int, help="ids in all: 256 bytes + merges + specials")
    t.add_argument("--special", action="append", metavar="TOKEN", help="a special token such as '<|endoftext|>'")
    t.add_argument("--out", required=True, help="directory to write the tokenizer into")  # str: "" is not "."
    t.add_argument("--workers", type=int, help="processes for pre-tokenizing (default: the CPUs, for 4M+ chars)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("encode", help="print the tokens and ids of a text")
    e.add_argument("--ids-only", action="store_true", help="print only the ids")
    e.add_argument("text", help="the text to encode (`-` reads standard input)")
    d = sub.add_parser("decode", help="print the text of ids")
    d.add_argument("ids", nargs="+", help="token ids")
    for command, func in ((e, cmd_encode), (d, cmd_decode)):
        command.add_argument("--tokenizer", default="gpt2", help="`gpt2` (the default) or a saved tokenizer's folder")
        command.set_defaults(func=func)
    return p
