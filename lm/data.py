"""Text data for the language models: sources, tokenizers by name, token files on disk, batches.

A source is a local text file (checked for size and encoding before it is read whole), `shakespeare`
(Tiny Shakespeare, bundled), `stories` (the bundled TinyStories samples) or `tinystories` (the real
data set through the `datasets` library, only when online). Its text is encoded once into a `.npy`
token file in a cache folder, reused while the text and the tokenizer are unchanged, split into
train and validation (by document on `<|endoftext|>`, else the last 10%), and read by `get_batch`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lm.tokenizers import BPETokenizer, CharTokenizer
from lm.tokenizers.base import EOT
from lm.tokenizers.word_text import WordTextTokenizer

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


def default_cache_dir() -> Path:
    """Where token files and downloads go: $LM_CACHE_DIR, else $XDG_CACHE_HOME (~/.cache)/autodiff-playground."""
    if os.environ.get("LM_CACHE_DIR"):
        return Path(os.environ["LM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autodiff-playground"


# ----------------------------------------------------------------------------------- sources


def read_text_file(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file's content, after checking that it exists, is a file, is not empty, fits
    `max_bytes`, is not binary and decodes; every failure is a DataError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no file {path}: give a text file, or one of {', '.join([*SOURCES, 'tinystories'])}")
    if not path.is_file():
        raise DataError(f"{path} is not a file: give a text file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path} is empty: give a file with some text")
    if size > max_bytes:
        raise DataError(f"{path} is {size:,} bytes, over the limit of {max_bytes:,}: use a smaller part of it")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} holds NUL bytes: it looks binary, not text; give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text (byte {err.start} is {raw[err.start : err.start + 1]!r}): "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


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
    offline_help = "use --data stories (the bundled samples) or --data FILE with a local text file"
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
    atomic_write_bytes(path, f"\n{EOT}\n".join(stories).encode("utf-8"))
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------- tokenizers


def make_tokenizer(spec: str, text: str):
    """A tokenizer by name, trained on `text` where it needs training: char, word, bpe:N (N the
    vocabulary size, trained here), gpt2 (GPT-2's files). Each knows <|endoftext|>."""
    if spec == "char":
        return CharTokenizer.from_text(text, [EOT])
    if spec == "word":
        return WordTextTokenizer.from_text(text)
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


def tokenizer_to_json(tokenizer) -> str:
    """A tokenizer as JSON text (what a checkpoint stores and the token cache keys on)."""
    if isinstance(tokenizer, WordTextTokenizer):
        # "lines": a line break ends a sentence (the token cache keys on this text, so files encoded by the
        # earlier rule, without it, are not reused)
        return json.dumps({"type": "word-text", "lines": True, "vocab": tokenizer.vocab}, ensure_ascii=False)
    if hasattr(tokenizer, "to_json"):
        return tokenizer.to_json()
    raise DataError(f"cannot save a {type(tokenizer).__name__}")


def tokenizer_from_json(text: str):
    """The tokenizer of `tokenizer_to_json`'s text; a DataError (or TokenizerError) for bad text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"the tokenizer is not valid JSON: {err}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "word-text":
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise DataError("the word tokenizer's vocab must be a list of strings")
        return WordTextTokenizer(vocab)
    if kind == "char":
        return CharTokenizer.from_json(text)
    if kind == "bpe":
        return BPETokenizer.from_json(text)
    raise DataError(f"unknown tokenizer type {kind!r} (expected char, word-text or bpe)")


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
    tok_hash = hashlib.sha256(tokenizer_to_json(tokenizer).encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "tokens" / f"{text_hash}-{tok_hash}.npy"
    if path.is_file():
        try:
            np.load(path, mmap_mode="r")
            return path, True
        except (ValueError, OSError):
            pass  # a damaged cache file is rebuilt
    ids = tokenizer.encode(text)
    dtype = np.uint16 if len(tokenizer) <= 2**16 else np.int32
    fd, tmp = tempfile.mkstemp(dir=_mkdir(path.parent), prefix=".tokens-", suffix=".npy")
    os.close(fd)
    try:
        np.save(tmp, np.asarray(ids, dtype=dtype))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path, False


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


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
