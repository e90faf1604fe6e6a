"""Corpus parsing (lm.data): bad corpora explained, files bounded before they are read. (The word tokenizer's tests
are in test_tokenizers_word.py.)"""

import pytest

from lm.data import DEFAULT_CORPUS, MAX_SENTENCES, DataError, load_corpus, parse_corpus


def test_default_corpus_is_ten_five_word_sentences_each_fixed_by_its_first_two_words():
    assert len(DEFAULT_CORPUS) == 10
    assert all(len(s.split()) == 5 for s in DEFAULT_CORPUS)
    assert len({tuple(s.split()[:2]) for s in DEFAULT_CORPUS}) == 10
    assert parse_corpus("\n".join(DEFAULT_CORPUS)) == DEFAULT_CORPUS


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "empty"),
        ("\n  \n", "empty"),
        ("the red fox\nhi there", "sentence 2"),
        ("w " * 100, "limit is 64"),
        ("a b c\n" * (MAX_SENTENCES + 1), f"limit is {MAX_SENTENCES}"),
        ("a b c\n" * 2000, f"2,000 sentences; the limit is {MAX_SENTENCES}"),
        ("x" * 200_000, "characters"),
    ],
)
def test_bad_corpus_says_what_is_wrong(text, needle):
    with pytest.raises(DataError, match=needle):
        parse_corpus(text)


def test_parse_drops_blank_lines_and_normalizes_spaces(tmp_path):
    assert parse_corpus("  the red   fox \n\n a b c\n") == ["the red fox", "a b c"]
    path = tmp_path / "c.txt"
    path.write_text("one two three\nfour five six\n", encoding="utf-8")
    assert load_corpus(path) == ["one two three", "four five six"]
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="UTF-8"):
        load_corpus(path)


def test_a_caller_limit_is_the_one_the_message_names():
    assert len(parse_corpus("a b c\n" * 100, max_sentences=100)) == 100
    with pytest.raises(DataError, match="2,000 sentences; the limit is 100:"):
        parse_corpus("a b c\n" * 2000, max_sentences=100)


def test_corpus_files_are_bounded_before_they_are_read(tmp_path):
    for special in ("/dev/zero", tmp_path):  # an endless device, a folder
        with pytest.raises(DataError, match="not a file"):
            load_corpus(special)
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(1_000_000_000)
    with pytest.raises(DataError, match="a corpus file here is at most 400,000"):
        load_corpus(big)
