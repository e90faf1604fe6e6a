"""A byte-level BPE tokenizer: GPT-2's encoding, from GPT-2's files or from `train_bpe`.

Encoding: special tokens are matched first (longest first, so overlapping specials work), the rest is
pre-tokenized with GPT-2's pattern, and each pre-token's bytes are merged by rank (lowest first), with
a bounded cache of pre-token results because real text repeats its words. Decoding joins the bytes and
turns invalid UTF-8 into U+FFFD. `encode_iterable` streams a large file in bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from lm.tokenizers.base import Merges, TextTokenizer, TokenizerError, Vocab, check_ids, visible
from lm.tokenizers.bpe_train import train_bpe_detailed
from lm.tokenizers.gpt2_files import MERGES_FILE, VOCAB_FILE, read_files, read_folder, unreachable_entries, write_files
from lm.tokenizers.pretokenize import GPT2_REGEX, chunk_bounds

DATA = Path(__file__).resolve().parents[1] / "data"
GPT2_VOCAB, GPT2_MERGES = DATA / "gpt2_vocab.json", DATA / "gpt2_merges.txt"
CACHE_SIZE = 16_384  # pre-tokens remembered; the cache is emptied when full, so memory stays bounded
STREAM_FLUSH_CHARS = 65_536  # encode_iterable encodes once this much text has gathered


class BPETokenizer(TextTokenizer):
    """GPT-2-style byte-level BPE over `vocab` (id -> bytes), `merges` (rank order) and special tokens."""

    kind = "bpe"

    def __init__(self, vocab: Vocab, merges: Merges, special_tokens: Iterable[str] = ()):
        try:
            self._bytes: list[bytes] = [vocab[i] for i in range(len(vocab))]
        except KeyError as err:
            raise TokenizerError(f"vocab ids must run 0..{len(vocab) - 1}, but {err} is missing") from None
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
            absent = next((part for part in (a, b, a + b) if part not in ids), None)
            if absent is not None:
                raise TokenizerError(f"merge {rank + 1} ({a!r} {b!r}) uses {absent!r}, which is not in the vocabulary")
            self._ranks.setdefault((ids[a], ids[b]), (rank, ids[a + b]))
        self.special_ids: dict[str, int] = {}
        for token in self._keep_special_tokens(special_tokens):
            if token.encode("utf-8") not in ids:
                raise TokenizerError(f"special token {token!r} is not in the vocabulary")
            self.special_ids[token] = ids[token.encode("utf-8")]
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (), **options):
        """Train on `text` with `train_bpe_detailed` (same arguments); returns (tokenizer, BPETrainResult).
        For a file, pass `read_training_text(path)` (it checks the file first)."""
        result = train_bpe_detailed(text, vocab_size, list(special_tokens), **options)
        return cls(result.vocab, result.merges, result.special_tokens), result

    @classmethod
    def from_files(cls, vocab_path, merges_path, special_tokens: Iterable[str] | None = None) -> BPETokenizer:
        """Load GPT-2-format files. Without `special_tokens`, every vocab entry that is neither a byte nor a
        merge result (GPT-2's `<|endoftext|>`) is a special token."""
        return cls._from_files(merges_path, *read_files(vocab_path, merges_path), special_tokens)

    @classmethod
    def load(cls, directory: str | os.PathLike, special_tokens: Iterable[str] | None = None) -> BPETokenizer:
        """Load a folder `save` wrote: `vocab.json` and `merges.txt`, checked against the manifest's hashes, with
        the special tokens it declares. A folder without a manifest (GPT-2's files, or one saved before
        manifests existed) still loads, its special tokens inferred as `from_files` does."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerError(f"no tokenizer directory at {directory}: it holds {VOCAB_FILE} and {MERGES_FILE}")
        vocab, merges, declared = read_folder(directory)
        return cls._from_files(directory, vocab, merges, declared if special_tokens is None else special_tokens)

    @classmethod
    def _from_files(cls, where, vocab: Vocab, merges: Merges, special_tokens: Iterable[str] | None) -> BPETokenizer:
        """The tokenizer of what was read from `where` (named in an error); special tokens None: inferred."""
        if special_tokens is None:
            special_tokens = unreachable_entries(vocab, merges)
        try:
            return cls(vocab, merges, special_tokens)
        except TokenizerError as err:
            raise TokenizerError(f"{where}: {err}") from None

    @classmethod
    def gpt2(cls) -> BPETokenizer:
        """GPT-2's own tokenizer, from the files shipped in lm/data (50,257 ids, `<|endoftext|>` = 50256)."""
        return cls.from_files(GPT2_VOCAB, GPT2_MERGES)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `vocab.json` and `merges.txt` (GPT-2's format) and a manifest of both (their hashes, the special
        tokens) into `directory`: a loader never takes files of two different saves for one tokenizer."""
        return write_files(directory, dict(enumerate(self._bytes)), self.merges, self._specials)

    def _fields(self) -> dict:
        return {  # bytes as hex, so any byte string survives JSON
            "vocab": [t.hex() for t in self._bytes], "merges": [[a.hex(), b.hex()] for a, b in self.merges],
            "special_tokens": self._specials,
        }  # fmt: skip

    @classmethod
    def _from_fields(cls, data: dict) -> BPETokenizer:
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
    def __len__(self) -> int:
        return len(self._bytes)

    @property
    def vocab(self) -> Vocab:
        return dict(enumerate(self._bytes))

    def token_bytes(self, token_id: int) -> bytes:
        (token_id,) = check_ids([token_id], len(self._bytes))
        return self._bytes[token_id]

    def token_str(self, token_id: int) -> str:
        """The token's text with whitespace made visible; bytes that are not whole UTF-8 shown as `\\xNN`."""
        token = self.token_bytes(token_id)
        return token.decode("utf-8") if token_id in self.special_ids.values() else visible(token)

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
            # cut where the parallel trainer cuts (chunk_bounds: never inside a pre-token or a special token),
            # and only before the longest special token's reach from the end, where one may still be growing
            limit = len(buffer) - longest_special
            cuts = [a for a, _ in chunk_bounds(buffer, self._specials, max(1, flush_chars // 4))[1:] if a <= limit]
            if cuts:
                yield from self.encode(buffer[: cuts[-1]])
                buffer = buffer[cuts[-1] :]
        if buffer:
            yield from self.encode(buffer)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD."""
        table = self._bytes
        return b"".join(table[i] for i in check_ids(ids, len(table))).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"BPETokenizer({len(self._bytes):,} ids, {len(self.merges):,} merges, special_tokens={self._specials})"
