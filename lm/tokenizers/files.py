"""Tokenizer files through lm's one file layer (lm/files.py): the same bounded reader, bounded JSON
parser and atomic writer, raising TokenizerError (what a tokenizer's caller catches) and naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from lm import files
from lm.tokenizers.base import TokenizerError

MAX_JSON_DEPTH = 32  # our tokenizer JSON nests 3 deep; the parser recurses once per level
MAX_JSON_CHARS = 256 * 2**20  # a 1M-token BPE in hex with its merges is ~60 MB


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str, too_big: str = "") -> bytes:
    """The bytes of `path` (lm.files.read_regular_file), or a TokenizerError naming it; `too_big` says
    what to do about a file over the bound."""
    return files.read_regular_file(path, max_bytes, what, error=TokenizerError, too_big=too_big.lstrip(":; "))


def read_text_file(path: str | os.PathLike, max_bytes: int, what: str) -> str:
    """`read_regular_file` decoded as UTF-8; bad bytes are a TokenizerError naming the line."""
    return decode_utf8(read_regular_file(path, max_bytes, what), path)


def decode_utf8(raw: bytes, path: str | os.PathLike) -> str:
    """A file's bytes as text, or a TokenizerError naming the file and the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TokenizerError(f"{path} line {line}: not UTF-8 text (byte {err.start}); is it a binary file?") from None


def load_json(text: str, what: str, max_chars: int = MAX_JSON_CHARS):
    """JSON with a size and nesting bound (lm.files.loads_json), so hostile JSON gets a TokenizerError."""
    if not isinstance(text, str):
        raise TokenizerError(f"{what} must be JSON text (str), not {type(text).__name__}")
    return files.loads_json(text, what, MAX_JSON_DEPTH, max_chars, error=TokenizerError)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (lm.files.atomic_write: a reader never sees half a file, and the
    temp files a killed writer left are removed first)."""
    files.atomic_write(path, text.encode("utf-8"))


def remove_stale_temps(directory: Path, names: tuple[str, ...]) -> None:
    """Delete the temp files a killed save of `names` in `directory` left behind."""
    for name in names:
        files.remove_stale_temps(Path(directory) / name)
