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
from functools import lru_cache
from pathlib import Path

from lm import files
from lm.tokenizers.base import Merges, TokenizerError, Vocab, atomic_write_text, check_unicode, load_json

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
    moved = [b for b in range(256) if b not in keep]
    return {b: chr(b) if b in keep else chr(256 + moved.index(b)) for b in range(256)}


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


def read_files(
    vocab_path: str | os.PathLike, merges_path: str | os.PathLike, hashes: dict[str, str] | None = None
) -> tuple[Vocab, Merges]:
    """`vocab.json` as {id: bytes} and `merges.txt` as byte pairs in rank order; with a manifest's `hashes`
    (file name -> sha256), each file must have the recorded hash before it is parsed."""
    vocab = parse_vocab(_read(Path(vocab_path), "vocabulary file", hashes=hashes), vocab_path)
    return vocab, parse_merges(_read(Path(merges_path), "merges file", hashes=hashes), merges_path)


def _read(path: Path, what: str, max_bytes: int = MAX_FILE_BYTES, hashes: dict[str, str] | None = None) -> str:
    """A file's text; with `hashes` (a manifest's), the file must have the sha256 it records for the name."""
    raw = files.read_regular_file(path, max_bytes, what, error=TokenizerError)
    if hashes is not None and hashlib.sha256(raw).hexdigest() != hashes[path.name]:
        raise TokenizerError(
            f"{path} does not belong with the other files of {path.parent}: its sha256 is not the one "
            f"{MANIFEST_FILE} records (a save was interrupted, or a file was replaced); save the tokenizer again"
        )
    return files.decode_text(raw, str(path), TokenizerError)


def parse_vocab(text: str, path: str | os.PathLike) -> Vocab:
    """The text of a `vocab.json` (read from `path`, named in errors) as {id: bytes}. Whether the ids run
    0..n-1 and the merges fit is BPETokenizer's check."""
    data = load_json(text, str(path))
    if not isinstance(data, dict) or not data:
        raise TokenizerError(f"{path}: a vocabulary is a non-empty JSON object mapping token strings to ids")
    vocab: Vocab = {}
    for key, token_id in data.items():
        check_unicode(key, f"{path}: entry")
        if type(token_id) is not int or token_id < 0:
            raise TokenizerError(f"{path}: entry {key!r} has id {token_id!r}; ids are non-negative integers")
        if token_id in vocab:
            first = token_to_string(vocab[token_id])
            raise TokenizerError(f"{path}: id {token_id} is given to both {first!r} and {key!r}")
        vocab[token_id] = string_to_token(key, f"{path} entry {key!r}")
    return vocab


def parse_merges(text: str, path: str | os.PathLike) -> Merges:
    """The text of a `merges.txt` (read from `path`, named in errors) as byte pairs in rank order; a `#version`
    first line and blank last lines are allowed."""
    lines = text.split("\n")
    merges: Merges = []
    first_line: dict[tuple[bytes, bytes], int] = {}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if number == 1 and line.startswith("#version"):
            continue
        where = f"{path} line {number}"
        if not line:
            if any(rest.strip() for rest in lines[number:]):
                raise TokenizerError(f"{where}: an empty line in the middle of the merges")
            break
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{where}: expected two tokens separated by one space, got {line[:80]!r}")
        pair = (string_to_token(parts[0], where), string_to_token(parts[1], where))
        if pair in first_line:
            raise TokenizerError(f"{where}: the merge {line!r} repeats line {first_line[pair]}")
        first_line[pair] = number
        merges.append(pair)
    return merges


def write_files(directory: str | os.PathLike, vocab: Vocab, merges: Merges, special_tokens: list[str] = ()) -> Path:
    """Write `vocab.json`, `merges.txt` (with GPT-2's `#version: 0.2` first line) and the manifest into
    `directory`. The manifest goes first: from then until both files are in place it records the new files'
    hashes, so a reader in between, or a save killed halfway, meets a mismatch it reports, never a silent mix
    of old and new (written last, it would leave a half-done save over a folder without a manifest unnoticed)."""
    directory = Path(directory)
    strings = {token_to_string(vocab[token_id]): token_id for token_id in sorted(vocab)}
    merge_lines = [f"{token_to_string(a)} {token_to_string(b)}" for a, b in merges]
    texts = {
        VOCAB_FILE: json.dumps(strings, ensure_ascii=False, indent=0) + "\n",
        MERGES_FILE: "\n".join([VERSION_LINE, *merge_lines]) + "\n",
    }
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1, "special_tokens": list(special_tokens),
        "sha256": {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()},
    }  # fmt: skip
    atomic_write_text(directory / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    for name, text in texts.items():
        atomic_write_text(directory / name, text)
    return directory


def read_folder(directory: Path) -> tuple[Vocab, Merges, list[str] | None]:
    """The vocab, merges and declared special tokens of a folder `write_files` wrote, each file checked against
    the manifest's hash; for a folder without a manifest (GPT-2's files, or a folder saved before manifests
    existed), the special tokens are None (to be inferred)."""
    manifest = directory / MANIFEST_FILE
    hashes, specials = _read_manifest(manifest) if os.path.lexists(manifest) else (None, None)
    return *read_files(directory / VOCAB_FILE, directory / MERGES_FILE, hashes), specials


def _read_manifest(path: Path) -> tuple[dict[str, str], list[str]]:
    """The file hashes and special tokens a manifest records."""
    data = load_json(_read(path, "tokenizer manifest", MAX_MANIFEST_BYTES), str(path))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
        raise TokenizerError(
            f'{path}: a tokenizer manifest is a JSON object with "format": "{MANIFEST_FORMAT}", "version": 1'
        )
    hashes = data.get("sha256")  # a hash that is not one (not hex, too short) is a mismatch when the file is read
    if not isinstance(hashes, dict) or not all(isinstance(hashes.get(name), str) for name in (VOCAB_FILE, MERGES_FILE)):
        raise TokenizerError(f'{path}: "sha256" must give the hex sha256 of {VOCAB_FILE} and {MERGES_FILE}')
    specials = data.get("special_tokens")
    if not isinstance(specials, list):
        raise TokenizerError(f'{path}: "special_tokens" must be a list of strings')
    return hashes, specials  # each checked as BPETokenizer checks every special token


def unreachable_entries(vocab: Vocab, merges: Merges) -> list[str]:
    """The vocab entries that are neither a byte nor a merge's result (GPT-2's `<|endoftext|>`): how files
    written without a manifest say which tokens are special."""
    reachable = {bytes([b]) for b in range(256)} | {a + b for a, b in merges}
    specials = []
    for token_id in sorted(vocab):
        token = vocab[token_id]
        if token not in reachable:
            try:
                specials.append(token.decode("utf-8"))
            except UnicodeDecodeError:
                pass  # an unreachable, undecodable entry stays an ordinary (decodable) token
    return specials
