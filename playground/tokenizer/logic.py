"""The Tokenizer page's logic (no st.* here): tokens as coloured chips with counts, BPE training on a
bounded corpus, the merge explorer (merge k, text tokenized with the first k merges, bytes per token
against merges: its chart is figures.py) and the trained tokenizer as a downloadable zip of GPT-2-format
files.

Bounds for what a visitor can send live here; the tokenizers' own errors are passed through as messages.
"""

from __future__ import annotations

import html
import io
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lm import files
from lm.tokenizers import BPETokenizer, BPETrainResult, TextTokenizer, TokenizerError, UnknownWordError
from lm.tokenizers.base import EOT
from lm.tokenizers.bpe import visible
from lm.tokenizers.gpt2_files import MANIFEST_FILE

GPT2 = "GPT-2 (byte-level BPE, 50,257 tokens)"
WORD = "Word-level (the default model's)"
STORY_SAMPLE = Path(__file__).resolve().parents[2] / "lm/data/tinystories-sample-a.txt"
MAX_TEXT_CHARS = 20_000  # text shown as chips: ~5,000 chips is as many as a browser draws smoothly
MAX_CORPUS_BYTES = 500_000  # a training corpus: trains to the largest vocabulary in about a second
MIN_VOCAB, MAX_VOCAB = 257, 2_000  # 256 bytes + <|endoftext|> at least; more than the page's corpora feed
CURVE_POINTS = 40  # points on the bytes-per-token curve
CURVE_SAMPLE_CHARS = 5_000  # ... measured on this much of the training text (40 encodings stay under 0.2 s)
# Pastel chip colours (cycling), dark text on each; adjacent tokens always differ.
PALETTE = ["#c6e0ff", "#ffd6a5", "#caffbf", "#ffc6ff", "#fdffb6", "#bdb2ff", "#ffadad", "#9bf6ff"]


class TokenizingError(ValueError):
    """A visitor's input the page cannot use; the message says what to change."""


@lru_cache(maxsize=1)
def gpt2() -> BPETokenizer:
    """GPT-2's tokenizer, loaded once per server (it is read-only, so sessions can share it)."""
    return BPETokenizer.gpt2()


@lru_cache(maxsize=1)
def word_tokenizer() -> TextTokenizer:
    """The default model's word-level tokenizer (its vocabulary is in the weights file)."""
    from lm import checkpoint

    return checkpoint.load(checkpoint.DEFAULT_WEIGHTS).model.tokenizer


def story_sample() -> str:
    return STORY_SAMPLE.read_text(encoding="utf-8")


def default_text() -> str:
    """The first story of the sample, as the text to tokenize at first."""
    return story_sample().split(EOT)[0].strip()


@dataclass
class Chip:
    token_id: int
    text: str  # the display string (whitespace made visible)
    raw: bytes  # the token's bytes (for the hover text)


@dataclass
class Tokenized:
    chips: list[Chip]
    chars: int
    n_bytes: int

    @property
    def tokens(self) -> int:
        return len(self.chips)

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.tokens if self.chips else 0.0


def _token_bytes(tokenizer: TextTokenizer, token_id: int) -> bytes:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.token_bytes(token_id)
    return tokenizer.token_str(token_id).encode("utf-8")


def tokenize(tokenizer: TextTokenizer, text: str) -> Tokenized:
    """The chips of `text`; a too-long text or a word the word-level tokenizer lacks is a TokenizingError."""
    if len(text) > MAX_TEXT_CHARS:
        raise TokenizingError(f"the text is {len(text):,} characters; the page shows at most {MAX_TEXT_CHARS:,}")
    try:
        ids = tokenizer.encode(text)
    except UnknownWordError as err:
        raise TokenizingError(f"{err} (the word-level tokenizer knows only its corpus; try GPT-2's)") from None
    except TokenizerError as err:
        raise TokenizingError(str(err)) from None
    chips = [Chip(i, tokenizer.token_str(i), _token_bytes(tokenizer, i)) for i in ids]
    return Tokenized(chips, chars=len(text), n_bytes=len(text.encode("utf-8")))


def chips_html(chips: list[Chip]) -> str:
    """Inline coloured spans, one per token, with the id and bytes on hover; all text escaped."""
    spans = []
    for position, chip in enumerate(chips):
        hover = f"id {chip.token_id} · bytes {chip.raw.hex(' ')}"
        spans.append(
            f'<span class="tok-chip" title="{html.escape(hover)}" style="background:{PALETTE[position % len(PALETTE)]};'
            "color:#111;border-radius:4px;padding:1px 3px;margin:1px;display:inline-block;"
            f'font-family:monospace;white-space:pre">{html.escape(chip.text)}</span>'
        )
    return f'<div class="tok-chips" style="line-height:1.9">{"".join(spans)}</div>'


# ------------------------------------------------------------------------------------ training
def corpus_text(source: str, pasted: str = "", upload: bytes | None = None, upload_name: str = "") -> str:
    """The training text from the story sample, a pasted text or an uploaded file, checked and bounded."""
    if source == "story sample":
        return story_sample()
    if source == "pasted text":
        raw, name = pasted.encode("utf-8"), "the pasted text"
    elif source == "uploaded file":
        if upload is None:
            raise TokenizingError("upload a .txt file first")
        raw, name = upload, f"'{upload_name}'"
    else:
        raise TokenizingError(f"unknown corpus source {source!r}")
    if len(raw) > MAX_CORPUS_BYTES:
        raise TokenizingError(
            f"{name} is {len(raw):,} bytes; the page trains on at most {MAX_CORPUS_BYTES:,} (use "
            "`python -m lm tokenizer train` for larger files)"
        )
    return files.decode_text(raw, name, TokenizingError)


@dataclass
class Trained:
    """A tokenizer trained on this page, with what the explorer shows."""

    name: str
    tokenizer: BPETokenizer
    result: BPETrainResult
    sample: str = ""  # the start of the training text, for the bytes-per-token curve
    curve: tuple[list[int], list[float]] | None = None  # computed once (40 encodings), then reused on reruns


def train(text: str, vocab_size: int, special: bool, number: int, progress=None) -> Trained:
    """Train a BPE on `text`; `progress(fraction, label)` is called as it goes."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise TokenizingError(f"the vocabulary size must be {MIN_VOCAB}..{MAX_VOCAB:,}, not {vocab_size}")

    def report(done: int, total: int, stage: str) -> None:
        if progress is None:
            return
        if stage == "pretokenize":
            progress(0.1 * done / max(total, 1), "pre-tokenizing")
        else:
            progress(0.1 + 0.9 * done / max(total, 1), f"merge {done:,} of {total:,}")

    try:
        tokenizer, result = BPETokenizer.train(text, vocab_size, [EOT] if special else [], progress=report, workers=1)
    except TokenizerError as err:
        raise TokenizingError(str(err)) from None
    name = f"Trained #{number}: vocab {tokenizer.vocab_size:,}, {len(result.merges):,} merges"
    return Trained(name, tokenizer, result, sample=text[:CURVE_SAMPLE_CHARS])


def summary(trained: Trained) -> str:
    r = trained.result
    early = " (every pre-token is one token already: the corpus cannot feed more merges)" if r.stopped_early else ""
    return (
        f"{len(r.merges):,} merges{early} in {r.seconds:.2f} s on {r.text_bytes:,} bytes "
        f"({r.distinct_pretokens:,} distinct pre-tokens)"
    )


@dataclass
class MergeStep:
    k: int  # 1-based: the k-th merge
    left: str
    right: str
    merged: str
    token_id: int
    count: int


def merge_step(trained: Trained, k: int) -> MergeStep:
    """Merge k (1-based): its pair, the new token and how often the pair occurred when it was chosen."""
    merges = trained.result.merges
    if not 1 <= k <= len(merges):
        raise TokenizingError(f"merge k must be 1..{len(merges)}")
    a, b = merges[k - 1]
    return MergeStep(k, visible(a), visible(b), visible(a + b), 255 + k, trained.result.merge_counts[k - 1])


def bytes_per_token_curve(trained: Trained, points: int = CURVE_POINTS) -> tuple[list[int], list[float]]:
    """Bytes per token of the training text's start encoded with the first k merges, for ~`points` values of k."""
    if trained.curve is not None and points == CURVE_POINTS:
        return trained.curve
    text = trained.sample
    n = len(trained.result.merges)
    ks = sorted({round(i * n / max(points - 1, 1)) for i in range(points)})
    n_bytes = len(text.encode("utf-8"))
    values = [n_bytes / max(len(trained.tokenizer.with_merges(k).encode(text)), 1) for k in ks]
    if points == CURVE_POINTS:
        trained.curve = (ks, values)
    return ks, values


def tokenizer_zip(trained: Trained) -> bytes:
    """vocab.json, merges.txt (GPT-2's format) and the manifest that ties them together and declares the
    special tokens (`BPETokenizer.load` reads all three), zipped in memory."""
    with tempfile.TemporaryDirectory() as folder:
        trained.tokenizer.save(folder)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ("vocab.json", "merges.txt", MANIFEST_FILE):
                archive.write(Path(folder) / name, name)
    return buffer.getvalue()
