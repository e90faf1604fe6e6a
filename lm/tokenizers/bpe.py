"""A byte-level BPE tokenizer: GPT-2's encoding, from GPT-2's files or from `train_bpe`.

Encoding: special tokens are matched first (longest first, so overlapping specials work), the rest is
pre-tokenized with GPT-2's pattern, and each pre-token's bytes are merged by rank (lowest first), with
a bounded cache of pre-token results because real text repeats its words. Decoding joins the bytes and
turns invalid UTF-8 into U+FFFD. `encode_iterable` streams a large file in bounded memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import regex

from lm.tokenizers.base import TokenizerError, check_ids, special_pattern, validate_special_tokens
from lm.tokenizers.files import load_json
from lm.tokenizers.gpt2_files import (
    MERGES_FILE,
    VOCAB_FILE,
    check_pair,
    read_folder,
    read_merges,
    read_vocab,
    write_files,
)
from lm.tokenizers.pretokenize import GPT2_REGEX

DATA = Path(__file__).resolve().parents[1] / "data"
GPT2_VOCAB, GPT2_MERGES = DATA / "gpt2_vocab.json", DATA / "gpt2_merges.txt"
CACHE_SIZE = 16_384  # pre-tokens remembered; the cache is emptied when full, so memory stays bounded
STREAM_FLUSH_CHARS = 65_536  # encode_iterable encodes once this much text has gathered

# A cut between a non-space and a whitespace character is always a pre-token boundary in GPT-2's
# pattern (no alternative matches a non-space followed by whitespace), so text on either side
# pre-tokenizes alike whether encoded together or apart.
_SAFE_CUT = regex.compile(r"(?<=\S)(?=\s)")


class BPETokenizer:
    """GPT-2-style byte-level BPE over `vocab` (id -> bytes), `merges` (rank order) and special tokens."""

    kind = "bpe"

    def __init__(self, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: Iterable[str] = ()):
        if not isinstance(vocab, dict) or sorted(vocab) != list(range(len(vocab))):
            raise TokenizerError("vocab must map ids 0..n-1, each once, to bytes")
        self._bytes: list[bytes] = [vocab[i] for i in range(len(vocab))]
        ids: dict[bytes, int] = {}
        for token_id, token in enumerate(self._bytes):
            if not isinstance(token, bytes) or not token:
                raise TokenizerError(f"vocab id {token_id} must be non-empty bytes, not {token!r}")
            if token in ids:
                raise TokenizerError(f"vocab ids {ids[token]} and {token_id} are the same bytes {token!r}")
            ids[token] = token_id
        missing = [b for b in range(256) if bytes([b]) not in ids]
        if missing:
            raise TokenizerError(f"the vocabulary lacks {len(missing)} single-byte token(s), e.g. byte {missing[0]}")
        self._byte_ids = [ids[bytes([b])] for b in range(256)]
        self.merges = list(merges)
        # (left id, right id) -> (rank, merged id): the table the encoder reads
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self.merges):
            try:
                pair, merged = (ids[a], ids[b]), ids[a + b]
            except KeyError:
                raise TokenizerError(f"merge {rank} ({a!r}, {b!r}): a part or the result is not in the vocab") from None
            self._ranks.setdefault(pair, (rank, merged))
        self._specials = validate_special_tokens(special_tokens)
        self.special_ids: dict[str, int] = {}
        for token in self._specials:
            token_id = ids.get(token.encode("utf-8"))
            if token_id is None:
                raise TokenizerError(f"special token {token!r} is not in the vocabulary")
            self.special_ids[token] = token_id
        pattern = special_pattern(self._specials)
        self._special_re = regex.compile(f"({pattern})") if pattern else None
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (), **options):
        """Train on `text` with `train_bpe_detailed` (same arguments); returns (tokenizer, BPETrainResult).
        For a file, pass `read_training_text(path)` (it checks the file first)."""
        from lm.tokenizers.bpe_train import train_bpe_detailed

        result = train_bpe_detailed(text, vocab_size, list(special_tokens), **options)
        return cls(result.vocab, result.merges, result.special_tokens), result

    @classmethod
    def from_files(cls, vocab_path, merges_path, special_tokens: Iterable[str] | None = None) -> BPETokenizer:
        """Load GPT-2-format files. Without `special_tokens`, every vocab entry that is neither a byte nor a
        merge result (GPT-2's `<|endoftext|>`) is a special token."""
        vocab, merges = read_vocab(vocab_path), read_merges(merges_path)
        check_pair(vocab, merges, vocab_path, merges_path)
        if special_tokens is None:
            special_tokens = _unreachable_entries(vocab, merges)
        return cls(vocab, merges, special_tokens)

    @classmethod
    def load(cls, directory: str | os.PathLike, special_tokens: Iterable[str] | None = None) -> BPETokenizer:
        """Load a folder `save` wrote: `vocab.json` and `merges.txt`, checked against the manifest's hashes, with
        the special tokens it declares. A folder without a manifest (GPT-2's files, or one saved before
        manifests existed) still loads, its special tokens inferred as `from_files` does."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerError(f"no tokenizer directory at {directory}: it holds {VOCAB_FILE} and {MERGES_FILE}")
        vocab, merges, declared = read_folder(directory)
        if special_tokens is None:
            special_tokens = declared if declared is not None else _unreachable_entries(vocab, merges)
        try:
            return cls(vocab, merges, special_tokens)
        except TokenizerError as err:
            raise TokenizerError(f"{directory}: {err}") from None

    @classmethod
    def gpt2(cls) -> BPETokenizer:
        """GPT-2's own tokenizer, from the files shipped in lm/data (50,257 ids, `<|endoftext|>` = 50256)."""
        return cls.from_files(GPT2_VOCAB, GPT2_MERGES)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `vocab.json` and `merges.txt` (GPT-2's format) and a manifest of both (their hashes, the special
        tokens) into `directory`: a loader never takes files of two different saves for one tokenizer."""
        return write_files(directory, dict(enumerate(self._bytes)), self.merges, self._specials)

    def to_json(self) -> str:
        """The tokenizer as one JSON text (for a checkpoint): bytes as hex, so any byte string survives."""
        return json.dumps({
            "type": "bpe", "vocab": [t.hex() for t in self._bytes],
            "merges": [[a.hex(), b.hex()] for a, b in self.merges], "special_tokens": self._specials,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """The tokenizer of `to_json`'s text; malformed text gets a TokenizerError saying what is wrong."""
        return cls.from_dict(load_json(text, "a BPE tokenizer's JSON"))

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        """The tokenizer of `to_json`'s text once parsed."""
        if not isinstance(data, dict) or data.get("type") != "bpe":
            raise TokenizerError('a BPE tokenizer\'s JSON must be an object with "type": "bpe"')
        try:
            vocab = {i: bytes.fromhex(h) for i, h in enumerate(data["vocab"])}
            merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in data["merges"]]
        except (KeyError, TypeError, ValueError) as err:
            raise TokenizerError(f'a BPE tokenizer\'s JSON needs hex "vocab" and "merges" lists ({err})') from None
        return cls(vocab, merges, data.get("special_tokens", []))

    def with_merges(self, k: int) -> BPETokenizer:
        """The same tokenizer with only its first `k` merges (the bytes, those merges' tokens, the specials)."""
        if not 0 <= k <= len(self.merges):
            raise TokenizerError(f"k must be 0..{len(self.merges)}, not {k}")
        merges = self.merges[:k]
        keep = [bytes([b]) for b in range(256)] + [a + b for a, b in merges]
        keep += [t.encode("utf-8") for t in self._specials]
        return BPETokenizer(dict(enumerate(dict.fromkeys(keep))), merges, self._specials)

    # -- the common interface --------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def special_tokens(self) -> list[str]:
        return list(self._specials)

    def __len__(self) -> int:
        return len(self._bytes)

    @property
    def vocab(self) -> dict[int, bytes]:
        return dict(enumerate(self._bytes))

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], len(self._bytes))
        return self._bytes[token_id]

    def token_str(self, token_id: int) -> str:
        """The token's text with whitespace made visible; bytes that are not whole UTF-8 shown as `\\xNN`."""
        token = self.token_bytes(token_id)
        if token_id in self.special_ids.values():
            return token.decode("utf-8")
        return visible(token)

    def encode(self, text: str) -> list[int]:
        """The ids of `text`; special tokens (longest first) are one id each."""
        if not isinstance(text, str):
            raise TokenizerError(f"text to encode must be a string, not {type(text).__name__}")
        ids: list[int] = []
        if self._special_re is None:
            self._encode_ordinary(text, ids)
            return ids
        for i, piece in enumerate(self._special_re.split(text)):
            if i % 2:  # odd pieces are the captured special tokens
                ids.append(self.special_ids[piece])
            elif piece:
                self._encode_ordinary(piece, ids)
        return ids

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        cache = self._cache
        extend = out.extend
        for piece in GPT2_REGEX.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = self._merge(piece)
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                cache[piece] = ids
            extend(ids)

    def _merge(self, piece: str) -> tuple[int, ...]:
        """One pre-token's ids: start from its bytes, merge the lowest-ranked adjacent pair until none is left."""
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in piece.encode("utf-8")]
        ranks = self._ranks
        while len(ids) > 1:
            best = None
            for pair in zip(ids, ids[1:]):
                found = ranks.get(pair)
                if found is not None and (best is None or found[0] < best[0]):
                    best, best_pair = found, pair
            if best is None:
                break
            a, b = best_pair
            merged, out, i, n = best[1], [], 0, len(ids)
            while i < n:
                if i + 1 < n and ids[i] == a and ids[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return tuple(ids)

    def encode_iterable(self, chunks: Iterable[str], flush_chars: int = STREAM_FLUSH_CHARS) -> Iterator[int]:
        """Ids of the concatenated `chunks` (e.g. an open file's lines), equal to `encode("".join(chunks))`.

        Memory: it holds about `flush_chars` (64 Ki) characters of text plus the last chunk read, and
        longer only across a run with no safe cut (a non-space followed by whitespace, outside any special
        token); the ids of one flush; the pre-token cache (CACHE_SIZE entries). Never the whole input."""
        buffer = ""
        longest_special = max((len(s) for s in self._specials), default=0)
        for chunk in chunks:
            if not isinstance(chunk, str):
                kind = type(chunk).__name__
                raise TokenizerError(f"encode_iterable reads str chunks (open files as text), not {kind}")
            buffer += chunk
            if len(buffer) < flush_chars:
                continue
            cut = self._safe_cut(buffer, longest_special)
            if cut:
                yield from self.encode(buffer[:cut])
                buffer = buffer[cut:]
        if buffer:
            yield from self.encode(buffer)

    def _safe_cut(self, text: str, longest_special: int) -> int:
        """The last position where `text` may be cut without changing its encoding, or 0 if none."""
        # a special token may still be growing at the end of the buffer: cut only before its longest reach
        limit = len(text) - longest_special
        spans = [m.span() for m in self._special_re.finditer(text)] if self._special_re else []
        position = limit
        while position > 0:
            m = None
            for m in _SAFE_CUT.finditer(text, max(0, position - 4096), position):  # noqa: B007
                pass  # keep the last safe cut in this window
            if m is None:
                position -= 4096
                continue
            cut = m.start()
            inside = next((a for a, b in spans if a < cut < b), None)
            if inside is None:
                return cut
            position = inside  # never cut inside a special token
        return 0

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD."""
        table = self._bytes
        return b"".join(table[i] for i in check_ids(ids, len(table))).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"BPETokenizer({len(self._bytes):,} ids, {len(self.merges):,} merges, special_tokens={self._specials})"


def visible(token: bytes) -> str:
    """Bytes as readable text: spaces as `␣`, newlines and tabs as `\\n` `\\t`, broken UTF-8 as `\\xNN`."""
    text = token.decode("utf-8", errors="backslashreplace")
    out = []
    for ch in text:
        if ch == " ":
            out.append("\u2423")
        elif ch.isprintable() or ch == "\\":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def _unreachable_entries(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]) -> list[str]:
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
