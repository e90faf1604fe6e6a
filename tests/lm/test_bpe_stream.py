"""encode_iterable: equal to encode on the whole text however it is chunked, and bounded in memory."""

import os
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.tokenizers import BPETokenizer, TokenizerError

EOT = "<|endoftext|>"
# pieces whose pre-tokenization depends on what follows: runs of spaces and newlines, contractions, specials
PIECES = [
    "the",
    " cat",
    "'s",
    "'",
    "ll",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "42",
    "!?",
    "é",
    "😀",
    EOT,
    "<|",
    "endoftext|>",
]


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.gpt2()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.lists(st.integers(0, 200), max_size=8), st.integers(1, 12))
def test_any_chunking_encodes_like_the_whole_text(gpt2, pieces, cuts, flush):
    text = "".join(pieces)
    points = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    assert list(gpt2.encode_iterable(chunks, flush_chars=flush)) == gpt2.encode(text)


def test_a_file_streams_like_the_whole_text(gpt2, tmp_path):
    path = tmp_path / "stories.txt"
    text = "Once upon a time,  there was a cat.\n\n   It's big!\n" * 3000 + EOT + "\nThe end.  \n"
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(gpt2.encode_iterable(f)) == gpt2.encode(text)


def test_bytes_chunks_are_refused(gpt2):
    with pytest.raises(TokenizerError, match="open files as text"):
        list(gpt2.encode_iterable([b"bytes"]))


def _generated_lines(n_bytes: int, seed: int = 0):
    """Story-like lines with fresh numbers and made-up words, so the pre-token cache keeps filling."""
    rng = random.Random(seed)
    words = "the a cat dog ran saw big little happy sun tree and then she he it was".split()
    produced = 0
    while produced < n_bytes:
        made_up = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        line = " ".join(rng.choice(words) for _ in range(12)) + f" {made_up} {rng.randint(0, 10**6)}.\n"
        if rng.random() < 0.05:
            line += EOT + "\n"
        produced += len(line)
        yield line


# The stated bound: Python allocations at the peak (text buffer, one flush's ids, the 16k-entry cache) stay
# under 8 MiB whatever the input's size (measured: about 2.5 MiB).
MEMORY_BOUND = 8 * 2**20


@pytest.mark.parametrize("n_bytes", [1 * 2**20])
def test_memory_stays_bounded_on_a_large_stream(gpt2, n_bytes):
    """1 MiB of generated text (330k ids) streams under the bound, although a list of its ids alone
    would take ~2.6 MiB of pointers (the slow test below checks 32 MiB)."""
    count = 0
    tracemalloc.start()
    try:
        for _ in gpt2.encode_iterable(_generated_lines(n_bytes)):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > n_bytes // 5  # it did encode everything (about 4 bytes per token)
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="slow (~80 s): run with RUN_SLOW=1")
def test_memory_does_not_grow_with_the_stream(gpt2):
    """The peak for 32 MiB is within 1.5x of the peak for 2 MiB: memory does not scale with the input."""
    peaks = []
    for n_bytes in (2 * 2**20, 32 * 2**20):
        tracemalloc.start()
        for _ in gpt2.encode_iterable(_generated_lines(n_bytes)):
            pass
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0] and peaks[1] < MEMORY_BOUND
