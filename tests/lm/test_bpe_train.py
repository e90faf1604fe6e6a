"""BPE training: a hand-checked example, ties to the greatest pair, specials never merged, the incremental
trainer equal to a naive recount-everything trainer, chunked-parallel equal to one process, and errors."""

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.tokenizers import BPETokenizer, TokenizerError, train_bpe, train_bpe_detailed, train_bpe_file
from lm.tokenizers.pretokenize import chunk_bounds, count_pretokens, parallel_pretoken_counts

ROOT = Path(__file__).resolve().parents[2]
EOT = "<|endoftext|>"
STORIES = (ROOT / "lm/data/tinystories-sample-b.txt").read_text(encoding="utf-8")


def naive_train(text: str, vocab_size: int, specials: list[str]) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """The definition, slowly: recount every pair of every word after each merge; max by (count, pair)."""
    words = Counter()
    for piece, n in count_pretokens(text, specials).items():
        words[tuple(bytes([b]) for b in piece.encode())] += n
    merges, counts = [], []
    while len(merges) < vocab_size - 256 - len(specials):
        pairs = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        counts.append(pairs[best])
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges, counts


def test_hand_checked_example():
    # One pre-token "aaabdaaabac". Pairs: aa 4 (overlaps count), ab 2, the rest 1 -> merge (a, a).
    # aa a b d aa a b a c: (aa, a) 2 and (a, b) 2 tie; b"aa" > b"a", so (aa, a).   aaa b d aaa b a c: (aaa, b) 2.
    # aaab d aaab a c: every pair once, the greatest first part wins: (d, aaab), then (daaab, a), then
    # (daaaba, c), then (aaab, daaabac), and one token is left: 7 merges, fewer than the 8 asked for.
    result = train_bpe_detailed("aaabdaaabac", 256 + 8)
    assert result.merges == [
        (b"a", b"a"), (b"aa", b"a"), (b"aaa", b"b"), (b"d", b"aaab"), (b"daaab", b"a"), (b"daaaba", b"c"),
        (b"aaab", b"daaabac"),
    ]  # fmt: skip
    assert result.merge_counts == [4, 2, 2, 1, 1, 1, 1]
    assert result.stopped_early and len(result.vocab) == 256 + 7
    assert result.vocab[256] == b"aa" and result.vocab[262] == b"aaabdaaabac"


def test_ties_go_to_the_lexicographically_greatest_pair():
    # pre-tokens "cd" and " ab": every pair occurs once; greatest first: (c, d) > (a, b) > (" ", a...)
    vocab, merges = train_bpe("cd ab", 259)
    assert merges == [(b"c", b"d"), (b"a", b"b"), (b" ", b"ab")]
    assert vocab[258] == b" ab"


def test_merges_never_cross_pre_tokens_or_special_tokens():
    result = train_bpe_detailed(f"x{EOT}y{EOT}" * 100 + " the cat", 300, [EOT])
    assert all(b"<|" not in a + b and b"|>" not in a + b for a, b in result.merges)
    assert (b"x", b"y") not in result.merges and (b"y", b"x") not in result.merges
    assert result.vocab[max(result.vocab)] == EOT.encode() and list(result.vocab.values()).count(EOT.encode()) == 1
    assert result.stopped_early  # only " the" and " cat" can merge: 6 merges, not 43
    assert len(result.merges) == 6 and all(not (a + b).strip(b" ").count(b" ") for a, b in result.merges)


def test_special_tokens_take_the_last_ids_and_are_encoded_whole():
    tok, result = BPETokenizer.train(STORIES, 320, [EOT, "<|pad|>"])
    assert tok.special_ids == {EOT: 318, "<|pad|>": 319}
    assert tok.encode(f"the{EOT}") == tok.encode("the") + [318]


def test_incremental_training_equals_the_naive_definition_on_stories():
    result = train_bpe_detailed(STORIES, 450, [EOT])
    merges, counts = naive_train(STORIES, 450, [EOT])
    assert result.merges == merges and result.merge_counts == counts


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n'", min_size=1, max_size=60), st.integers(256, 290))
def test_incremental_training_equals_the_naive_definition_on_tie_heavy_text(text, vocab_size):
    _, merges = train_bpe(text, vocab_size)
    assert merges == naive_train(text, vocab_size, [])[0]


def test_chunk_cuts_fall_on_special_tokens_or_before_whitespace():
    text = STORIES * 3
    bounds = chunk_bounds(text, [EOT], 3000)
    assert len(bounds) > 10 and bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(text.startswith(EOT, start) for start, _ in bounds[1:])
    plain = text.replace(EOT, "")
    for start, _ in chunk_bounds(plain, [], 3000)[1:]:
        assert plain[start].isspace() and not plain[start - 1].isspace()
    for source, specials in ((text, [EOT]), (plain, [])):
        total = Counter()
        for a, b in chunk_bounds(source, specials, 3000):
            total.update(count_pretokens(source[a:b], specials))
        assert total == count_pretokens(source, specials)


def test_a_whitespace_cut_never_splits_a_special_token_holding_whitespace():
    special = "<end of text>"
    text = ("word " * 50 + special) * 20
    spans = [(i, i + len(special)) for i in range(len(text)) if text.startswith(special, i)]
    for start, _ in chunk_bounds(text, [special], 100)[1:]:
        assert not any(a < start < b for a, b in spans)


def test_parallel_training_equals_one_process():
    text = STORIES * 4
    events = []
    parallel = train_bpe_detailed(
        text, 400, [EOT], workers=2, chunk_chars=20_000, progress=lambda d, t, s: events.append((d, t, s))
    )
    single = train_bpe_detailed(text, 400, [EOT], workers=1)
    assert parallel.merges == single.merges and parallel.merge_counts == single.merge_counts
    chunks = [e for e in events if e[2] == "pretokenize"]
    assert chunks[0][:2] == (0, len(chunk_bounds(text, [EOT], 20_000))) and chunks[-1][0] == chunks[-1][1] > 2
    merges = [e for e in events if e[2] == "merge"]
    assert merges[-1][:2] == (143, 143) and len(merges) <= 201
    assert parallel_pretoken_counts(text, [EOT], 2, 20_000) == count_pretokens(text, [EOT])


def test_training_from_a_file(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text(STORIES, encoding="utf-8")
    expected = train_bpe(STORIES, 300, [EOT])
    assert train_bpe_file(path, 300, [EOT]) == train_bpe_file(str(path), 300, [EOT]) == expected
    with path.open("rb") as f:  # an open binary file
        assert train_bpe_file(f, 300, [EOT]) == expected
    with path.open("r", encoding="utf-8") as f, pytest.raises(TokenizerError, match="open it with 'rb'"):
        train_bpe_file(f, 300)
    with pytest.raises(TokenizerError, match="at most 1,000: .*train on a part of it"):
        train_bpe_file(path, 300, max_bytes=1000)


@pytest.mark.parametrize(
    "text", ["tests/lm/fixtures/corpus.en", "corpus.txt", "data/stories.json", "README.md", str(ROOT / "lm")]
)
def test_a_path_given_as_the_text_is_refused(text):
    """train_bpe("tests/lm/fixtures/corpus.en", 500) used to train on the path's 27 characters, silently."""
    with pytest.raises(TokenizerError, match=r"looks like a file path.*train_bpe_file"):
        train_bpe(text, 300)
    with pytest.raises(TokenizerError, match="looks like a file path"):
        BPETokenizer.train(text, 300)


def test_a_path_object_given_as_the_text_is_refused(tmp_path):
    path = tmp_path / "my stories.txt"  # a path with a space: only its existence gives it away as a str
    path.write_text(STORIES, encoding="utf-8")
    with pytest.raises(TokenizerError, match="use train_bpe_file"):
        train_bpe(path, 300)
    with pytest.raises(TokenizerError, match="looks like a file path"):
        train_bpe(str(path), 300)
    assert train_bpe("the cat sat. " * 5, 260)[1]  # text with a full stop still trains


@pytest.mark.parametrize(
    ("vocab_size", "specials", "match"),
    [
        (255, [], "from 256 .* to 1,000,000"),
        (256, [EOT], r"from 257 \(the 256 bytes and 1 special token"),
        (300.0, [], "must be an integer"),
        (300, ["x"], "single byte"),
        (300, [EOT, EOT], "twice"),
    ],
)
def test_bad_settings_are_explained(vocab_size, specials, match):
    with pytest.raises(TokenizerError, match=match):
        train_bpe("some text", vocab_size, specials)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"  \n\n ", "is empty"),
        (b"good line\nbad \xff\xfe byte", r"not UTF-8 text \(byte 14 is b'\\xff', line 2\)"),
        (b"text\n\x00\x01\x02", r"NUL byte \(line 2\)"),
    ],
)
def test_bad_files_are_explained(tmp_path, content, match):
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(TokenizerError, match=match):
        train_bpe_file(path, 300)


def test_missing_file_and_wrong_input_type(tmp_path):
    with pytest.raises(TokenizerError, match="no training text file at"):
        train_bpe_file(Path("/nonexistent/file.txt"), 300)
    with pytest.raises(TokenizerError, match="not a file"):
        train_bpe_file(tmp_path, 300)
    with pytest.raises(TokenizerError, match="not bytes"):
        train_bpe(b"bytes", 300)
    with pytest.raises(TokenizerError, match="a path or a binary file"):
        train_bpe_file(42, 300)
    with pytest.raises(TokenizerError, match="empty"):
        train_bpe("", 300)
