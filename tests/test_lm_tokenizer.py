"""Tokenizer and corpus parsing: the vocabulary, round trips, unknown words named, bad corpora explained."""

import pytest

from lm.corpus import DEFAULT_CORPUS, MAX_SENTENCES, CorpusError, load_corpus, parse_corpus
from lm.tokenizer import Tokenizer, UnknownWordError


def test_default_corpus_is_ten_five_word_sentences_each_fixed_by_its_first_two_words():
    assert len(DEFAULT_CORPUS) == 10
    assert all(len(s.split()) == 5 for s in DEFAULT_CORPUS)
    assert len({tuple(s.split()[:2]) for s in DEFAULT_CORPUS}) == 10
    assert parse_corpus("\n".join(DEFAULT_CORPUS)) == DEFAULT_CORPUS


def test_vocab_starts_with_pad_then_first_appearance_order():
    tok = Tokenizer.from_corpus(["b a c", "a d"])
    assert tok.vocab == ["<pad>", "b", "a", "c", "d"] and len(tok) == 5
    assert tok.encode("A  d b") == [2, 4, 1]  # lowercased, any whitespace
    assert tok.decode([2, 4, 0, 0]) == "a d"  # padding left out
    assert tok.tokens([0, 3]) == ["<pad>", "c"]


def test_unknown_words_are_named_with_close_matches():
    tok = Tokenizer.from_corpus(DEFAULT_CORPUS)
    with pytest.raises(UnknownWordError) as info:
        tok.encode("the redd fox zzz redd")
    assert info.value.words == ["redd", "zzz"]
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'redd'" in message and "'zzz'" in message and "'red'" in message
    with pytest.raises(UnknownWordError):
        tok.encode("<pad> fox")  # the pad token is not a word a prompt may use


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "empty"),
        ("\n  \n", "empty"),
        ("the red fox\nhi there", "sentence 2"),
        ("w " * 100, "limit is 64"),
        ("a b c\n" * (MAX_SENTENCES + 1), f"limit is {MAX_SENTENCES}"),
        ("x" * 200_000, "characters"),
    ],
)
def test_bad_corpus_says_what_is_wrong(text, needle):
    with pytest.raises(CorpusError, match=needle):
        parse_corpus(text)


def test_parse_drops_blank_lines_and_normalizes_spaces(tmp_path):
    assert parse_corpus("  the red   fox \n\n a b c\n") == ["the red fox", "a b c"]
    path = tmp_path / "c.txt"
    path.write_text("one two three\nfour five six\n", encoding="utf-8")
    assert load_corpus(path) == ["one two three", "four five six"]
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CorpusError, match="UTF-8"):
        load_corpus(path)


def test_pad_is_not_a_word():
    with pytest.raises(ValueError, match="reserved for padding"):
        Tokenizer.from_corpus(["the <PAD> sat"])
    tok = Tokenizer.from_corpus(["the cat sat"])
    with pytest.raises(UnknownWordError, match="the padding token, not a word"):
        tok.encode("the <pad>")


@pytest.mark.parametrize("word", ["", "Cat", "a b", 7, None])
def test_a_vocabulary_holds_only_words_a_prompt_can_spell(word):
    with pytest.raises(ValueError, match="not a lowercase word without spaces"):
        Tokenizer(["<pad>", "cat", word])
