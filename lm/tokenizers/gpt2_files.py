"""GPT-2's tokenizer files: `vocab.json` (token string -> id) and `merges.txt` (one merge a line, in rank order).

Both write each token's bytes through GPT-2's bytes-to-unicode table (every byte becomes a printable
character: a space is `Ġ`, a newline `Ċ`), so the files are plain text. Reading checks every entry and
names the line (merges) or the entry (vocab) that is wrong. A save adds `tokenizer_manifest.json` (both
files' sha256 and the special tokens), so a loader rejects files that do not belong together; a folder
without one (GPT-2's files, or saved before manifests existed) still loads, its specials inferred.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path

from lm.tokenizers.base import TokenizerError, check_unicode, validate_special_tokens
from lm.tokenizers.files import (
    atomic_write_text,
    decode_utf8,
    load_json,
    read_regular_file,
    read_text_file,
    remove_stale_temps,
)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MANIFEST_FILE = "tokenizer_manifest.json"
MANIFEST_FORMAT = "byte-level-bpe"
MAX_MANIFEST_BYTES = 1_000_000  # hashes and special tokens: a few hundred bytes
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


def read_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """`vocab.json` as {id: bytes}; ids must be 0..n-1, each once, and every token string valid."""
    return parse_vocab(read_text_file(path, MAX_FILE_BYTES, "vocabulary file"), path)


def parse_vocab(text: str, path: str | os.PathLike) -> dict[int, bytes]:
    """The text of a `vocab.json` (read from `path`, named in errors) as {id: bytes}."""
    data = load_json(text, str(path))
    if not isinstance(data, dict) or not data:
        raise TokenizerError(f"{path}: a vocabulary is a non-empty JSON object mapping token strings to ids")
    vocab: dict[int, bytes] = {}
    seen: dict[bytes, str] = {}
    for key, token_id in data.items():
        check_unicode(key, f"{path}: entry")
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
    return parse_merges(read_text_file(path, MAX_FILE_BYTES, "merges file"), path)


def parse_merges(text: str, path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """The text of a `merges.txt` (read from `path`, named in errors) as byte pairs in rank order."""
    lines = text.split("\n")
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


def check_pair(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], vocab_path, merges_path) -> None:
    """A TokenizerError naming the first merge whose parts or result `vocab` lacks (files not belonging together)."""
    tokens = set(vocab.values())
    for line, (a, b) in enumerate(merges, start=1):
        for part in (a, b, a + b):
            if part not in tokens:
                raise TokenizerError(
                    f"{merges_path}: merge {line} ({a!r} {b!r}) uses {part!r}, which is not in {vocab_path}"
                )


def write_files(
    directory: str | os.PathLike,
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    special_tokens: list[str] = (),
) -> Path:
    """Write `vocab.json`, `merges.txt` (with GPT-2's `#version: 0.2` first line) and the manifest into
    `directory`. The manifest goes first: from then until both files are in place it records the new files'
    hashes, so a reader in between, or a save killed halfway, meets a mismatch it reports, never a silent mix
    of old and new (written last, it would leave a half-done save over a folder without a manifest unnoticed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory, (VOCAB_FILE, MERGES_FILE, MANIFEST_FILE))  # what a killed save left
    strings = {}
    for token_id in sorted(vocab):
        key = token_to_string(vocab[token_id])
        if key in strings:
            raise TokenizerError(f"ids {strings[key]} and {token_id} have the same bytes; vocab.json cannot hold both")
        strings[key] = token_id
    texts = {
        VOCAB_FILE: json.dumps(strings, ensure_ascii=False, indent=0) + "\n",
        MERGES_FILE: "\n".join([VERSION_LINE] + [f"{token_to_string(a)} {token_to_string(b)}" for a, b in merges])
        + "\n",
    }
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1, "special_tokens": list(special_tokens),
        "sha256": {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()},
    }  # fmt: skip
    atomic_write_text(directory / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    for name, text in texts.items():
        atomic_write_text(directory / name, text)
    return directory


def read_folder(directory: Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str] | None]:
    """The vocab, merges and declared special tokens of a folder `write_files` wrote, each file checked against
    the manifest's hash; for a folder without a manifest, the special tokens are None (to be inferred)."""
    vocab_path, merges_path, manifest_path = directory / VOCAB_FILE, directory / MERGES_FILE, directory / MANIFEST_FILE
    if not os.path.lexists(manifest_path):  # GPT-2's files, or a folder saved before manifests existed
        vocab, merges = read_vocab(vocab_path), read_merges(merges_path)
        check_pair(vocab, merges, vocab_path, merges_path)
        return vocab, merges, None
    hashes, specials = _read_manifest(manifest_path)
    texts = {}
    for path, what in ((vocab_path, "vocabulary file"), (merges_path, "merges file")):
        raw = read_regular_file(path, MAX_FILE_BYTES, what)
        if hashlib.sha256(raw).hexdigest() != hashes[path.name]:
            raise TokenizerError(
                f"{path} does not belong with the other files of {directory}: its sha256 is not the one "
                f"{MANIFEST_FILE} records (a save was interrupted, or a file was replaced); save the tokenizer again"
            )
        texts[path.name] = decode_utf8(raw, path)
    vocab, merges = parse_vocab(texts[VOCAB_FILE], vocab_path), parse_merges(texts[MERGES_FILE], merges_path)
    check_pair(vocab, merges, vocab_path, merges_path)
    return vocab, merges, specials


def _read_manifest(path: Path) -> tuple[dict[str, str], list[str]]:
    """The file hashes and special tokens a manifest records, each checked."""
    data = load_json(read_text_file(path, MAX_MANIFEST_BYTES, "tokenizer manifest"), str(path))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
        raise TokenizerError(
            f'{path}: a tokenizer manifest is a JSON object with "format": "{MANIFEST_FORMAT}", "version": 1'
        )
    hashes = data.get("sha256")
    if not isinstance(hashes, dict) or not all(
        isinstance(hashes.get(name), str) and re.fullmatch(r"[0-9a-f]{64}", hashes[name])
        for name in (VOCAB_FILE, MERGES_FILE)
    ):
        raise TokenizerError(f'{path}: "sha256" must give the hex sha256 of {VOCAB_FILE} and {MERGES_FILE}')
    specials = data.get("special_tokens")
    if not isinstance(specials, list):
        raise TokenizerError(f'{path}: "special_tokens" must be a list of strings')
    try:
        return hashes, validate_special_tokens(specials)
    except TokenizerError as err:
        raise TokenizerError(f"{path}: {err}") from None
