"""GPT-2's pre-tokenization: split on special tokens, then cut each stretch with GPT-2's regex.

BPE never merges across a pre-token (a word with its leading space, a number, a run of punctuation
or of whitespace), so training only needs each distinct pre-token and its count. A large text is
counted in parallel chunks whose boundaries fall on a special token (or, where a stretch has none,
just before whitespace that follows a non-space: a pre-token boundary in GPT-2's pattern too).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context

import regex

from lm.tokenizers.base import special_splitter

# GPT-2's split pattern (the `pat` of openai/gpt-2's encoder.py, as in tiktoken's gpt2 encoding).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)
# A cut between a non-space and a whitespace character is always a pre-token boundary in GPT-2's pattern
# (no alternative matches a non-space followed by whitespace), so text on either side pre-tokenizes alike
# whether encoded together or apart.
SAFE_CUT = regex.compile(r"(?<=\S)(?=\s)")
PARALLEL_MIN_CHARS = 4_000_000  # below this, starting worker processes costs more than it saves
CHUNK_CHARS = 2_000_000  # target chunk size for the parallel count

Progress = Callable[[int, int, str], None]  # (done, total, stage)


def count_pretokens(text: str, special_tokens: list[str]) -> Counter[str]:
    """How often each pre-token occurs in `text`, with the special tokens' occurrences cut out."""
    counts: Counter[str] = Counter()
    splitter = special_splitter(special_tokens)
    for piece in splitter.split(text)[::2] if splitter else [text]:  # even pieces: the text between specials
        if piece:
            counts.update(GPT2_REGEX.findall(piece))
    return counts


def chunk_bounds(text: str, special_tokens: list[str], chunk_chars: int) -> list[tuple[int, int]]:
    """Cut `text` into (start, end) chunks of about `chunk_chars`, each cut at a special token's start,
    or, where none is near, at a non-space -> whitespace boundary; pre-tokens never straddle a cut."""
    splitter = special_splitter(special_tokens)
    # the special tokens exactly as the full-text split sees them (one left-to-right, longest-first scan)
    spans = [m.span() for m in splitter.finditer(text)] if splitter else []
    starts = [a for a, _ in spans]
    cuts = [0]
    while cuts[-1] + chunk_chars < len(text):
        target = cuts[-1] + chunk_chars
        i = bisect.bisect_left(starts, target)
        if i < len(starts) and starts[i] < target + chunk_chars:
            cut = starts[i]
        else:
            m = SAFE_CUT.search(text, target)
            if m is None:
                break
            cut = m.start()
            j = bisect.bisect_right(starts, cut) - 1  # a special token holding whitespace must stay whole
            if j >= 0 and spans[j][0] < cut < spans[j][1]:
                cut = spans[j][0]
        if cut <= cuts[-1] or cut >= len(text):
            break
        cuts.append(cut)
    cuts.append(len(text))
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _context():
    """fork where it is safe (one thread: the CLI), since a forked worker starts at once; spawn otherwise
    (a server's or a test runner's threads may hold locks a forked child would inherit, held forever),
    though a spawned worker first re-imports `lm` and torch (seconds)."""
    if "fork" in get_all_start_methods() and threading.active_count() == 1:
        return get_context("fork")
    return get_context("spawn")


def parallel_pretoken_counts(
    text: str, special_tokens: list[str], workers: int | None = None, chunk_chars: int = CHUNK_CHARS,
    progress: Progress | None = None,
) -> Counter[str]:  # fmt: skip
    """`count_pretokens` over chunks in `workers` processes (default: the CPUs, one process for small texts)."""
    workers = workers if workers is not None else (os.cpu_count() or 1) if len(text) >= PARALLEL_MIN_CHARS else 1
    bounds = chunk_bounds(text, special_tokens, chunk_chars) if workers > 1 else [(0, len(text))]
    if progress:
        progress(0, len(bounds), "pretokenize")
    if len(bounds) == 1:
        counts = count_pretokens(text, special_tokens)
        if progress:
            progress(1, 1, "pretokenize")
        return counts
    total: Counter[str] = Counter()
    with ProcessPoolExecutor(max_workers=min(workers, len(bounds)), mp_context=_context()) as pool:
        chunks = (text[a:b] for a, b in bounds)
        for done, counts in enumerate(pool.map(count_pretokens, chunks, [special_tokens] * len(bounds)), start=1):
            total.update(counts)
            if progress:
                progress(done, len(bounds), "pretokenize")
    return total
