"""Byte-level BPE training, GPT-2 style, with incremental pair counts.

The text is split on the special tokens, pre-tokenized with GPT-2's pattern and counted (in parallel
for large inputs); each distinct pre-token becomes a word of byte ids with its count. Then, until the
vocabulary is full: merge the most frequent adjacent pair, ties going to the lexicographically greatest
pair of byte strings. Only the words holding the merged pair are rewritten, and only their pairs' counts
change; a heap with lazy deletion finds the next best pair without scanning every pair each step.
Ids: 0..255 are the bytes, then one id per merge in order, then the special tokens (GPT-2's layout).
"""

from __future__ import annotations

import gc
import heapq
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import BinaryIO

from lm import files
from lm.tokenizers.base import Merges, TokenizerError, Vocab, validate_special_tokens
from lm.tokenizers.pretokenize import CHUNK_CHARS, Progress, parallel_pretoken_counts

MAX_VOCAB_SIZE = 1_000_000
MAX_TRAIN_BYTES = 2 * 2**30  # a file is read whole (as for the course's reference trainer); 2 GiB at most

# The heap orders pairs by (-count, key(a), key(b)); key() reverses the byte order so that the smallest
# heap entry is the lexicographically *greatest* pair: each byte c becomes chr(256 - c), and a terminator
# above them all makes a prefix sort after its extensions (b"a" < b"ab" becomes key(b"a") > key(b"ab")).
_REVERSE = {c: chr(256 - c) for c in range(256)}
_END = chr(300)


def _reverse_key(token: bytes) -> str:
    return token.decode("latin-1").translate(_REVERSE) + _END


@dataclass
class BPETrainResult:
    """A trained BPE: `vocab` (id -> bytes), `merges` in rank order, and what the training saw."""

    vocab: Vocab
    merges: Merges
    special_tokens: list[str]
    merge_counts: list[int] = field(default_factory=list)  # how often merge k's pair occurred when chosen
    distinct_pretokens: int = 0
    text_bytes: int = 0
    seconds: float = 0.0
    stopped_early: bool = False  # every pre-token became one token before the vocabulary was full


def read_training_text(source: str | os.PathLike | BinaryIO, max_bytes: int = MAX_TRAIN_BYTES) -> str:
    """A training file's text: from a path (stat'ed first: a regular file within `max_bytes`) or a file opened
    in binary mode; what is not non-empty UTF-8 text gets a TokenizerError."""
    if isinstance(source, (str, os.PathLike)):
        too_big = "train on a part of it"
        raw = files.read_regular_file(source, max_bytes, "training text file", error=TokenizerError, too_big=too_big)
        return files.decode_text(raw, str(source), TokenizerError)
    if not hasattr(source, "read"):
        raise TokenizerError(f"a training file is a path or a binary file, not {type(source).__name__}")
    name = str(getattr(source, "name", "the file"))
    raw = source.read(max_bytes + 1)
    if not isinstance(raw, bytes):
        raise TokenizerError(f"{name} is open in text mode: open it with 'rb', or pass its path")
    if len(raw) > max_bytes:
        raise TokenizerError(f"{name} holds over {max_bytes:,} bytes, the limit: train on a part of it")
    return files.decode_text(raw, name, TokenizerError)


def train_bpe(text: str, vocab_size: int, special_tokens: list[str] = (), **options) -> tuple[Vocab, Merges]:
    """Train on `text`, the text itself -> (vocab, merges). For a file, use `train_bpe_file`.

    Options are those of `train_bpe_detailed`: `progress`, `workers`, `chunk_chars`."""
    result = train_bpe_detailed(text, vocab_size, special_tokens, **options)
    return result.vocab, result.merges


def train_bpe_file(
    path: str | os.PathLike | BinaryIO, vocab_size: int, special_tokens: list[str] = (),
    max_bytes: int = MAX_TRAIN_BYTES, **options,
) -> tuple[Vocab, Merges]:  # fmt: skip
    """Train on a UTF-8 text file: a path (checked to be a regular file within `max_bytes` before it is read)
    or a file opened in binary mode -> (vocab, merges). Options as `train_bpe`."""
    return train_bpe(read_training_text(path, max_bytes), vocab_size, special_tokens, **options)


def train_bpe_detailed(
    text: str, vocab_size: int, special_tokens: list[str] = (), progress: Progress | None = None,
    workers: int | None = None, chunk_chars: int = CHUNK_CHARS,
) -> BPETrainResult:  # fmt: skip
    """`train_bpe` with the merge counts and statistics; `progress(done, total, stage)` is called during
    "pretokenize" (chunks) and "merge" (merges, at most ~200 times). For a file: `read_training_text(path)`."""
    start = time.perf_counter()
    specials = validate_special_tokens(special_tokens)
    for token in specials:
        if len(token.encode("utf-8")) == 1:
            raise TokenizerError(f"special token {token!r} is a single byte, which is already a token: make it longer")
    if type(vocab_size) is not int or not 256 + len(specials) <= vocab_size <= MAX_VOCAB_SIZE:
        raise TokenizerError(
            f"vocab_size {vocab_size!r} must be an integer from {256 + len(specials)} (the 256 bytes"
            f"{' and ' + str(len(specials)) + ' special token(s)' if specials else ''}) to {MAX_VOCAB_SIZE:,}"
        )
    check_text_argument(text)

    counts = parallel_pretoken_counts(text, specials, workers, chunk_chars, progress)
    num_merges = vocab_size - 256 - len(specials)
    # The loop makes and drops many small tuples; the cyclic GC would walk them all repeatedly (up to a
    # third of the time here) although they hold no cycles, so it is paused while merging.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        merges, merge_counts = _merge_loop(counts, num_merges, progress)
    finally:
        if gc_was_enabled:
            gc.enable()

    # GPT-2's layout: the 256 bytes, one token per merge in order, then the special tokens
    tokens = [bytes([i]) for i in range(256)] + [a + b for a, b in merges] + [t.encode("utf-8") for t in specials]
    return BPETrainResult(
        vocab=dict(enumerate(tokens)), merges=merges, special_tokens=specials, merge_counts=merge_counts,
        distinct_pretokens=len(counts), text_bytes=len(text.encode("utf-8")),
        seconds=time.perf_counter() - start, stopped_early=len(merges) < num_merges,
    )  # fmt: skip


def check_text_argument(text: str) -> None:
    """A TokenizerError unless `text` is a non-empty str that does not look like a file path: a caller who
    passes a path where the text belongs would otherwise train on the path's few characters, silently."""
    if isinstance(text, os.PathLike):
        raise TokenizerError(f"train_bpe takes the text itself; to train on the file {text}, use train_bpe_file(path)")
    if not isinstance(text, str):
        raise TokenizerError(f"the text must be a str, not {type(text).__name__}; for a file, use train_bpe_file")
    if not text:
        raise TokenizerError("the training text is empty: give text to learn from")
    if _looks_like_path(text):
        raise TokenizerError(
            f"{text!r} looks like a file path, not text to learn from: to train on the file, use "
            f"train_bpe_file({text!r}, ...) (or read_training_text(path) for train_bpe_detailed / BPETokenizer.train)"
        )


def _looks_like_path(text: str) -> bool:
    """A one-line string that names something on disk, or ends in a file extension and holds no whitespace."""
    if len(text) > 4096 or "\n" in text or "\0" in text:
        return False  # longer than any path, or text with lines
    if not any(ch.isspace() for ch in text) and re.search(r".\.[A-Za-z0-9]{1,10}$", text):
        return True
    return os.path.exists(text)


def _merge_loop(counts: dict[str, int], num_merges: int, progress: Progress | None) -> tuple[Merges, list[int]]:
    """The merges (and the count of each chosen pair), updating pair counts only where a merge happened."""
    words = [list(piece.encode("utf-8")) for piece in counts]  # each distinct pre-token as byte ids
    freqs = list(counts.values())
    tokens = [bytes([i]) for i in range(256)]  # id -> bytes, grows by one per merge
    keys = [_reverse_key(t) for t in tokens]

    pair_count: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)  # may hold stale words: checked on use
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_count[pair] += freq
            pair_words[pair].add(w)
    heap = [(-c, keys[a], keys[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges: Merges = []
    merge_counts: list[int] = []
    report_every = max(1, num_merges // 200)
    while len(merges) < num_merges:
        # Pop until an entry matches its pair's current count. Counts only fall, except for pairs holding
        # the newest token (pushed when made), so an entry whose count has fallen sorts too early: push it
        # back with its true count, which saves a push for every decrease.
        while heap:
            neg, key_a, key_b, a, b = heapq.heappop(heap)
            current = pair_count.get((a, b), 0)
            if current == -neg:
                break
            if current > 0:
                heapq.heappush(heap, (-current, key_a, key_b, a, b))
        else:
            break  # no pair left: every pre-token is a single token
        count = -neg
        new = len(tokens)
        tokens.append(tokens[a] + tokens[b])
        keys.append(_reverse_key(tokens[new]))
        merges.append((tokens[a], tokens[b]))
        merge_counts.append(count)

        grown: set[tuple[int, int]] = set()  # pairs holding the new token, whose counts rose
        for w in pair_words.pop((a, b)):
            merged = _merge_word(words[w], a, b, new, freqs[w], pair_count)
            if merged is None:
                continue  # stale: an earlier merge already consumed this word's (a, b)
            words[w], new_pairs = merged
            for pair in new_pairs:
                pair_words[pair].add(w)
            grown.update(new_pairs)
        del pair_count[(a, b)]
        for pair in grown:
            heapq.heappush(heap, (-pair_count[pair], keys[pair[0]], keys[pair[1]], pair[0], pair[1]))
        if progress and (len(merges) % report_every == 0 or len(merges) == num_merges):
            progress(len(merges), num_merges, "merge")
    return merges, merge_counts


def _merge_word(
    word: list[int], a: int, b: int, new: int, freq: int, pair_count: dict[tuple[int, int], int]
) -> tuple[list[int], list[tuple[int, int]]] | None:
    """`word` with every (a, b) replaced by `new`, left to right, and the new pairs it holds; None when it holds
    no (a, b). Updates `pair_count` by `freq` for the neighbours of each merge only: (x, a) and (b, y) go,
    (x, new) and (new, y) come; a pair between two merges, (b, a), goes once and (new, new) comes once."""
    out: list[int] = []
    new_pairs: list[tuple[int, int]] = []
    i, n = 0, len(word)
    just_merged = found = False
    while i < n:
        token = word[i]
        if token == a and i + 1 < n and word[i + 1] == b:
            found = True
            if out:
                if just_merged:
                    pair = (new, new)  # (b, a) between the two merges went with the previous right neighbour
                else:
                    pair_count[(word[i - 1], a)] -= freq
                    pair = (out[-1], new)
                pair_count[pair] += freq
                new_pairs.append(pair)
            if i + 2 < n:
                pair_count[(b, word[i + 2])] -= freq
            out.append(new)
            just_merged = True
            i += 2
        else:
            if just_merged:  # the right neighbour of a merge: known only now
                pair = (new, token)
                pair_count[pair] += freq
                new_pairs.append(pair)
                just_merged = False
            out.append(token)
            i += 1
    return (out, new_pairs) if found else None
