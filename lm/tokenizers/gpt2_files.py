"""GPT-2's tokenizer files: `vocab.json` (token string -> id) and `merges.txt` (one merge a line, in rank order).

Both write each token's bytes through GPT-2's bytes-to-unicode table (every byte becomes a printable
character: a space is `Ġ`, a newline `Ċ`), so the files are plain text. Reading checks every entry and
names the line (merges) or the entry (vocab) that is wrong; writing is atomic.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from lm.tokenizers.base import TokenizerError
from lm.tokenizers.char import atomic_write_text

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
VERSION_LINE = "#version: 0.2"
MAX_FILE_BYTES = 64 * 2**20  # GPT-2's files are 1 MB and 0.5 MB; a 1M-token vocabulary fits well within this


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable Latin-1 bytes map to themselves,
    the other 68 to U+0100 upwards in byte order (so no token string holds whitespace or control characters)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


def token_to_string(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def string_to_token(text: str, where: str) -> bytes:
    """The bytes a GPT-2 token string stands for; `where` names the entry in the error."""
    table = unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in text)
    except KeyError as err:
        raise TokenizerError(
            f"{where}: {text!r} holds {err.args[0]!r}, which is not in GPT-2's bytes-to-unicode alphabet "
            "(was the file written by another kind of tokenizer?)"
        ) from None


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise TokenizerError(f"no {what} at {path}: a GPT-2 tokenizer directory holds {VOCAB_FILE} and {MERGES_FILE}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TokenizerError(f"{path} is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for a {what}")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TokenizerError(f"{path} line {line}: not UTF-8 text (byte {err.start}); is it a binary file?") from None


def read_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """`vocab.json` as {id: bytes}; ids must be 0..n-1, each once, and every token string valid."""
    path = Path(path)
    text = _read_text(path, "vocabulary file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TokenizerError(f"{path} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict) or not data:
        raise TokenizerError(f"{path}: a vocabulary is a non-empty JSON object mapping token strings to ids")
    vocab: dict[int, bytes] = {}
    seen: dict[bytes, str] = {}
    for key, token_id in data.items():
        if type(token_id) is not int or token_id < 0:
            raise TokenizerError(f"{path}: entry {key!r} has id {token_id!r}; ids are non-negative integers")
        if token_id in vocab:
            first = token_to_string(vocab[token_id])
            raise TokenizerError(f"{path}: id {token_id} is given to both {first!r} and {key!r}")
        token = string_to_token(key, f"{path} entry {key!r}")
        if token in seen:
            raise TokenizerError(f"{path}: entries {seen[token]!r} and {key!r} stand for the same bytes")
        if not token:
            raise TokenizerError(f"{path}: the empty string is not a token")
        seen[token] = key
        vocab[token_id] = token
    missing = next((i for i in range(len(vocab)) if i not in vocab), None)
    if missing is not None:
        raise TokenizerError(f"{path}: ids must be 0..{len(vocab) - 1} with none missing, but {missing} is missing")
    return vocab


def read_merges(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """`merges.txt` as a list of byte pairs in rank order; a `#version` first line and blank last lines are allowed."""
    path = Path(path)
    lines = _read_text(path, "merges file").split("\n")
    merges: list[tuple[bytes, bytes]] = []
    first_line: dict[tuple[bytes, bytes], int] = {}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if number == 1 and line.startswith("#version"):
            continue
        if not line:
            if any(rest.strip() for rest in lines[number:]):
                raise TokenizerError(f"{path} line {number}: an empty line in the middle of the merges")
            break
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{path} line {number}: expected two tokens separated by one space, got {line[:80]!r}")
        where = f"{path} line {number}"
        pair = (string_to_token(parts[0], where), string_to_token(parts[1], where))
        if pair in first_line:
            raise TokenizerError(f"{where}: the merge {line!r} repeats line {first_line[pair]}")
        first_line[pair] = number
        merges.append(pair)
    return merges


def write_files(directory: str | os.PathLike, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]) -> Path:
    """Write `vocab.json` and `merges.txt` (with GPT-2's `#version: 0.2` first line) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    strings = {}
    for token_id in sorted(vocab):
        key = token_to_string(vocab[token_id])
        if key in strings:
            raise TokenizerError(f"ids {strings[key]} and {token_id} have the same bytes; vocab.json cannot hold both")
        strings[key] = token_id
    atomic_write_text(directory / VOCAB_FILE, json.dumps(strings, ensure_ascii=False, indent=0) + "\n")
    lines = [VERSION_LINE] + [f"{token_to_string(a)} {token_to_string(b)}" for a, b in merges]
    atomic_write_text(directory / MERGES_FILE, "\n".join(lines) + "\n")
    return directory
