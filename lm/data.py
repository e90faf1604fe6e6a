"""Data for the language models: the two batch sources the trainer draws from, and what feeds them.

*Sentences* (the classic recipe): a corpus of sentences, one per line (the default ten, or a file), as one
padded full batch, scored by how many sentences greedy decoding reproduces (`reproduced`, `memorization`).
*Windows*: random windows of a token stream with fixed held-out windows. Its text is a local file
(checked for size and encoding before it is read whole), `shakespeare` (bundled), `stories` (bundled
TinyStories samples) or `tinystories` (downloaded with the `datasets` library, only when online), encoded
once into a `.npy` token file in a cache folder and split into train and validation.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lm import files
from lm.nn import IGNORE_INDEX
from lm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, to_json
from lm.tokenizers.base import EOT

Tensor = torch.Tensor

DATA_DIR = Path(__file__).parent / "data"
SOURCES = {  # the offline sources bundled with the project
    "shakespeare": [DATA_DIR / "tinyshakespeare.txt"],
    "stories": [DATA_DIR / "tinystories-sample-a.txt", DATA_DIR / "tinystories-sample-b.txt"],
}
MAX_TEXT_BYTES = 200_000_000  # a text is read whole: 200 MB is far past anything trained here on a CPU
MAX_STORIES = 1_000_000  # TinyStories has 2.1M; a CPU run never needs more than a fraction
VAL_FRACTION = 0.1


class DataError(ValueError):
    """A source, tokenizer name or token file that cannot be used; the message says how to fix it."""


# ------------------------------------------------------------------------------ sentences

# Ten sentences of five words, our own. No two share their first two words, so each sentence is
# determined by its first two words: a model that memorized the corpus completes every one exactly.
DEFAULT_CORPUS: list[str] = [
    "the red fox jumps high",
    "a small bird sings softly",
    "my old cat sleeps often",
    "the blue whale swims slowly",
    "a green frog hops away",
    "our young dog runs fast",
    "the tall tree grows quietly",
    "a bright star shines above",
    "his new boat sails north",
    "the cold wind blows hard",
]

MAX_SENTENCES = 500  # lm's bound (a caller such as the Train page may pass a lower one)
MAX_WORDS = 64  # words per sentence; the context grows with the longest sentence
MIN_WORDS = 3  # two prompt words for the memorization score, and at least one word to predict
MAX_CHARS = 100_000  # a bound on the text read before any parsing


def parse_corpus(text: str, max_sentences: int = MAX_SENTENCES) -> list[str]:
    """Sentences from text, one per line: blank lines dropped, words re-joined by single spaces.
    `max_sentences` (at most MAX_SENTENCES) is the limit the message names: one limit, one message."""
    max_sentences = min(max_sentences, MAX_SENTENCES)
    if len(text) > MAX_CHARS:
        raise DataError(f"the corpus has {len(text):,} characters; the limit is {MAX_CHARS:,}: use a shorter text")
    sentences = [" ".join(line.split()) for line in text.splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise DataError("the corpus is empty: write one sentence per line (for example 'the red fox jumps high')")
    if len(sentences) > max_sentences:
        raise DataError(f"the corpus has {len(sentences):,} sentences; the limit is {max_sentences}: remove some lines")
    for number, sentence in enumerate(sentences, start=1):
        n_words = len(sentence.split())
        if n_words < MIN_WORDS:
            raise DataError(
                f"sentence {number} ('{sentence}') has {n_words} word(s); each sentence needs at least {MIN_WORDS} "
                "(two prompt words and one to predict): lengthen it or remove the line"
            )
        if n_words > MAX_WORDS:
            raise DataError(
                f"sentence {number} has {n_words} words; the limit is {MAX_WORDS}: split it into shorter lines"
            )
    return sentences


def load_corpus(path: str | Path) -> list[str]:
    """Sentences of a UTF-8 text file, one per line (see `parse_corpus`). Only a regular file is read,
    and never more than the bound allows (`/dev/zero` or a huge file fails at once, not after reading)."""
    return parse_corpus(read_text_file(path, 4 * MAX_CHARS, "corpus file"))  # UTF-8: 4 bytes a character at most


def default_cache_dir() -> Path:
    """Where token files and downloads go: $LM_CACHE_DIR, else $XDG_CACHE_HOME (~/.cache)/autodiff-playground."""
    if os.environ.get("LM_CACHE_DIR"):
        return Path(os.environ["LM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autodiff-playground"


# ----------------------------------------------------------------------------------- sources


def read_text_file(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES, what: str = "text file") -> str:
    """A UTF-8 text file's content, read through lm.files (a regular file of at most `max_bytes`, checked
    before it is opened), not empty and not binary; every failure is a DataError naming the file."""
    hint = f"check the path, or use one of {', '.join([*SOURCES, 'tinystories'])}"
    raw = files.read_regular_file(path, max_bytes, what, hint, error=DataError, too_big="use a smaller part of it")
    return files.decode_text(raw, f"'{path}'", DataError)


def load_source(
    source: str, cache_dir: str | os.PathLike | None = None, n_stories: int = 20_000, progress: Callable | None = None
) -> str:
    """The text of a source: `shakespeare`, `stories`, `tinystories` (downloads the first
    `n_stories` once, then reads the cached copy) or a path to a text file."""
    if source in SOURCES:
        return f"\n{EOT}\n".join(read_text_file(p) for p in SOURCES[source])
    if source == "tinystories":
        return read_text_file(download_tinystories(n_stories, cache_dir, progress=progress))
    return read_text_file(source)


def _load_tinystories_rows(n_stories: int):
    """The first stories of the real TinyStories, streamed with the `datasets` library."""
    import datasets  # noqa: PLC0415 (optional: only this source needs it)

    return datasets.load_dataset("roneneldan/TinyStories", split="train", streaming=True).take(n_stories)


def _online(host: str = "huggingface.co", timeout: float = 0.8) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def download_tinystories(
    n_stories: int, cache_dir: str | os.PathLike | None = None, progress: Callable | None = None, loader=None
) -> Path:
    """The first `n_stories` TinyStories as one text file in the cache (separated by <|endoftext|>
    lines), downloaded on first use. Offline, or without `datasets`, a DataError says so at once.
    `progress(done, total)` is called as stories arrive; `loader` replaces the download (tests)."""
    if isinstance(n_stories, bool) or not isinstance(n_stories, int) or not 1 <= n_stories <= MAX_STORIES:
        raise DataError(f"the number of stories must be 1 to {MAX_STORIES:,}, got {n_stories!r}")
    path = Path(cache_dir or default_cache_dir()) / f"tinystories-{n_stories}.txt"
    if path.is_file():
        return path
    # words for a command line and a page alike (no flags): the sources by their names
    offline_help = "use the bundled TinyStories sample (the source 'stories') or a local text file instead"
    if loader is None:
        if not _online():  # first: a second at most, before importing the heavy library
            raise DataError(f"cannot reach huggingface.co to download TinyStories (offline?): {offline_help}")
        try:
            import datasets  # noqa: F401, PLC0415
        except ImportError:
            raise DataError(f"downloading TinyStories needs `pip install datasets`; or {offline_help}") from None
        loader = _load_tinystories_rows
    stories = []
    try:
        for row in loader(n_stories):
            stories.append(row["text"].strip())
            if progress:
                progress(len(stories), n_stories)
    except DataError:
        raise
    except Exception as err:  # any network or library failure: say what happened and what to do
        raise DataError(f"downloading TinyStories failed ({type(err).__name__}: {err}); {offline_help}") from None
    return files.atomic_write(path, f"\n{EOT}\n".join(stories).encode("utf-8"))


# -------------------------------------------------------------------------------- tokenizers


def make_tokenizer(spec: str, text: str):
    """A tokenizer by name, trained on `text` where it needs training: char, word, bpe:N (N the
    vocabulary size, trained here), gpt2 (GPT-2's files). Each knows <|endoftext|>."""
    if spec == "char":
        return CharTokenizer.from_text(text, [EOT])
    if spec == "word":
        return WordTokenizer.from_text(text)
    if spec == "gpt2" or spec.startswith("bpe:"):
        if spec == "gpt2":
            return BPETokenizer.gpt2()  # <|endoftext|> is its id 50256
        try:
            size = int(spec[4:])
        except ValueError:
            raise DataError(f"bpe:N needs a whole vocabulary size, e.g. bpe:1000, got {spec!r}") from None
        if not 257 <= size <= 100_000:
            raise DataError(
                f"a BPE vocabulary holds the 256 bytes, <|endoftext|> and merges: 257 to 100,000, got {size}"
            )
        return BPETokenizer.train(text, size, [EOT])[0]  # (tokenizer, training details)
    raise DataError(f"unknown tokenizer {spec!r}: use char, word, bpe:N (e.g. bpe:1000) or gpt2")


def eot_id(tokenizer) -> int | None:
    """The id of <|endoftext|> (None when the tokenizer has none)."""
    return tokenizer.encode(EOT)[0] if EOT in tokenizer.special_tokens else None


# ------------------------------------------------------------------------------- token files


@dataclass
class TokenData:
    """A source's tokens (a read-only memmap of the cached .npy file) split into train and val."""

    tokens: np.ndarray  # (n,) uint16 or int32
    train: np.ndarray  # views of tokens
    val: np.ndarray
    path: Path  # the .npy file
    reused: bool  # True when the cache already held it


def encode_to_file(text: str, tokenizer, cache_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Encode `text` once into `<cache>/tokens/<text hash>-<tokenizer hash>.npy`; reuse it while the text
    and the tokenizer are unchanged. Returns the path and whether it was reused."""
    text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    tok_hash = hashlib.sha256(to_json(tokenizer).encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "tokens" / f"{text_hash}-{tok_hash}.npy"
    if path.is_file():
        try:
            np.load(path, mmap_mode="r")
            return path, True
        except (ValueError, OSError):
            pass  # a damaged cache file is rebuilt
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(tokenizer.encode(text), dtype=np.uint16 if len(tokenizer) <= 2**16 else np.int32))
    return files.atomic_write(path, buffer.getvalue()), False


def split_tokens(
    tokens: np.ndarray, eot: int | None, val_fraction: float = VAL_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation views: with documents (eot tokens), whole documents go to validation, cut at
    the document boundary nearest to the last `val_fraction`; else simply the last `val_fraction`."""
    n = len(tokens)
    cut = int(n * (1 - val_fraction))
    if eot is not None:
        ends = np.flatnonzero(np.asarray(tokens) == eot)  # positions of the separators
        inner = ends[(ends > 0) & (ends < n - 1)]
        if len(inner):
            cut = int(inner[np.argmin(np.abs(inner - cut))]) + 1  # validation starts after a separator
    return tokens[:cut], tokens[cut:]


def load_tokens(text: str, tokenizer, context: int, cache_dir: str | os.PathLike | None = None) -> TokenData:
    """Encode (or reuse) the text's token file and split it; both parts must hold a window of `context`."""
    path, reused = encode_to_file(text, tokenizer, cache_dir)
    tokens = np.load(path, mmap_mode="r")
    train, val = split_tokens(tokens, eot_id(tokenizer))
    for name, part in (("training", train), ("validation", val)):
        if len(part) <= context:
            raise DataError(
                f"the {name} part has {len(part):,} tokens, not more than the context of {context}: "
                "use more text or a shorter --context"
            )
    return TokenData(tokens, train, val, path, reused)


def get_batch(tokens: np.ndarray, batch_size: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`batch_size` random windows of `context` tokens: inputs (B, T) and targets shifted by one, int64."""
    starts = torch.randint(len(tokens) - context, (batch_size,), generator=generator).tolist()
    rows = np.stack([np.asarray(tokens[s : s + context + 1], dtype=np.int64) for s in starts])  # (B, T + 1)
    rows = torch.from_numpy(rows)
    return rows[:, :-1], rows[:, 1:]


# ------------------------------------------------------------------------------- batch sources
# A batch source gives the trainer its batches: `batch(batch_size, context, generator)` -> inputs and
# targets (B, T) int64, `batch_shape`, fixed held-out `validation` batches, its `tokenizer`, and a
# `data_id` that a checkpoint records so a resumed run knows its data did not change.


class Sentences:
    """Every sentence one row of one padded full batch, the same every step: each sentence's words
    predict the next, and its last word predicts the end token; padded targets are IGNORE_INDEX."""

    def __init__(self, sentences: list[str], tokenizer=None):
        from lm.tokenizers import WordTokenizer  # noqa: PLC0415

        self.sentences = list(sentences)
        self.tokenizer = WordTokenizer.from_sentences(self.sentences) if tokenizer is None else tokenizer
        if getattr(self.tokenizer, "end_id", None) is None:
            raise DataError("the sentences source needs a word tokenizer with an end token (<eos>)")
        encoded = [self.tokenizer.encode(s) + [self.tokenizer.end_id] for s in self.sentences]  # words + <eos>
        T = max(len(e) for e in encoded) - 1  # the longest sentence's words: each is read to predict the next
        self.ids = torch.full((len(encoded), T), self.tokenizer.pad_id or 0, dtype=torch.long)  # (B, T)
        self.targets = torch.full((len(encoded), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for row, e in enumerate(encoded):
            self.ids[row, : len(e) - 1] = torch.tensor(e[:-1])
            self.targets[row, : len(e) - 1] = torch.tensor(e[1:])
        self.context = self.min_context = T
        self.train = None  # no token stream to split over ranks
        self.data_id = "sentences-" + hashlib.sha256("\n".join(self.sentences).encode()).hexdigest()[:16]

    def batch_shape(self, batch_size: int, context: int) -> tuple[int, int]:
        return tuple(self.ids.shape)

    def batch(self, batch_size: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.ids, self.targets

    def validation(self, batch_size: int, context: int, n: int, seed: int) -> list:
        return []  # sentences are scored by memorization, not by held-out text


class Windows:
    """Random windows of a token stream's training part; held-out windows from its validation part."""

    def __init__(self, tokens: TokenData, tokenizer):
        self.tokens, self.tokenizer = tokens, tokenizer
        self.train = tokens.train
        self.context, self.min_context = None, 1
        self.data_id = tokens.path.stem  # hashes of the text and the tokenizer

    def batch_shape(self, batch_size: int, context: int) -> tuple[int, int]:
        return batch_size, context

    def batch(self, batch_size: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return get_batch(self.train, batch_size, context, generator)

    def validation(self, batch_size: int, context: int, n: int, seed: int) -> list[tuple[Tensor, Tensor]]:
        """`n` fixed held-out batches: every validation sees the same."""
        held_out = torch.Generator().manual_seed(seed)
        return [get_batch(self.tokens.val, batch_size, context, held_out) for _ in range(n)]


def make_source(config, cache_dir=None, tokenizer=None, progress: Callable | None = None) -> Sentences | Windows:
    """The batch source of a training config (lm.train.TrainConfig): `sentences` (the default ten),
    `sentences:FILE`, or a text source for windows; `tokenizer` reuses a trained one (a resumed run's)."""
    if config.data == "sentences" or config.data.startswith("sentences:"):
        path = config.data[len("sentences:") :]
        return Sentences(load_corpus(path) if path else DEFAULT_CORPUS, tokenizer)
    text = load_source(config.data, cache_dir, config.n_stories, progress)
    if tokenizer is None:
        tokenizer = make_tokenizer(config.tokenizer, text)
    return Windows(load_tokens(text, tokenizer, config.context, cache_dir), tokenizer)


@dataclass
class MemorizationRow:
    sentence: str
    prompt: str  # the first two words
    generated: str  # prompt + greedy continuation, as long as the sentence at most
    correct: bool


def reproduced(model, source: Sentences, prompt_words: int = 2) -> list[bool]:
    """Which sentences greedy decoding reproduces from their first words, in ONE forward pass.

    Greedy decoding reproduces a sentence exactly when, fed the sentence's own words, the model's argmax
    at every position after the prompt is the next word: then each greedy step sees the true prefix, and
    at the first miss it does not. So this equals `memorization` (a test checks it), which decodes step
    by step: one forward over the training batch instead of one per generated word."""
    predicted = model.forward(source.ids)["logits"].argmax(-1)  # (B, T); position t predicts word t + 1
    T = source.targets.shape[1]
    checked = (source.targets != IGNORE_INDEX) & (torch.arange(T) >= prompt_words - 1)  # (B, T)
    return ((predicted == source.targets) | ~checked).all(1).tolist()


def memorization(model, sentences: list[str], prompt_words: int = 2) -> list[MemorizationRow]:
    """Greedy-decode each sentence from its first words (all sentences in one batch) and compare, the
    end included: a sentence is reproduced when its words come back and then the end token. Decoding goes
    one token past each sentence's end, so a model that runs on shows the word it adds."""
    tok = model.tokenizer
    encoded = [tok.encode(s) + [tok.end_id] for s in sentences]  # words + <eos>
    longest = max(len(e) for e in encoded)
    seqs = torch.tensor([e[:prompt_words] for e in encoded])  # (B, prompt_words)
    for _ in range(longest - prompt_words):
        if seqs.shape[1] > model.config.context:
            break
        logits = model.forward(seqs)["logits"][:, -1]  # (B, V) at the last position
        seqs = torch.cat([seqs, logits.argmax(-1, keepdim=True)], 1)  # (B, t + 1)
    rows = []
    for sentence, e, seq in zip(sentences, encoded, seqs.tolist()):
        generated = seq[: len(e)]
        ends = [i for i, t in enumerate(generated) if t in (tok.pad_id, tok.end_id)]
        if ends:  # decoding stops at the end (or <pad>)
            generated = generated[: ends[0] + 1]
        words = " ".join(tok.token_str(t) for t in generated if t not in (tok.pad_id, tok.end_id))
        rows.append(MemorizationRow(sentence, tok.decode(e[:prompt_words]), words, generated == e))
    return rows


def unigram_loss(tokens, vocab_size: int, train) -> float:
    """Cross-entropy of a model that ignores context: each token's training frequency (add-one smoothed)
    scored on `tokens`. The baseline a language model must beat to have learned anything from order."""
    counts = torch.bincount(torch.as_tensor(train.astype("int64")), minlength=vocab_size).double() + 1
    logp = torch.log(counts / counts.sum())
    return float(-logp[torch.as_tensor(tokens.astype("int64"))].mean())
