"""Tokenizer and corpus parsing: the vocabulary, round trips, unknown words named, bad corpora explained."""

import pytest

from lm.corpus import DEFAULT_CORPUS, MAX_SENTENCES, CorpusError, load_corpus, parse_corpus
from lm.tokenizer import Tokenizer, UnknownWordError


def test_default_corpus_is_ten_five_word_sentences_each_fixed_by_its_first_two_words():
    assert len(DEFAULT_CORPUS) == 10
    assert all(len(s.split()) == 5 for s in DEFAULT_CORPUS)
    assert len({tuple(s.split()[:2]) for s in DEFAULT_CORPUS}) == 10
    assert parse_corpus("\n".join(DEFAULT_CORPUS)) == DEFAULT_CORPUS


def test_vocab_starts_with_pad_and_eos_then_first_appearance_order():
    tok = Tokenizer.from_corpus(["b a c", "a d"])
    assert tok.vocab == ["<pad>", "<eos>", "b", "a", "c", "d"] and len(tok) == 6
    assert tok.eos_id == 1 and tok.words == ["b", "a", "c", "d"]
    assert tok.encode("A  d b") == [3, 5, 2]  # lowercased, any whitespace
    assert tok.decode([3, 5, 1, 0, 0]) == "a d"  # the end and the padding left out
    assert tok.tokens([0, 1, 4]) == ["<pad>", "<eos>", "c"]


def test_a_vocabulary_saved_before_the_end_token_still_works():
    tok = Tokenizer(["<pad>", "b", "a"])
    assert tok.eos_id is None and tok.encode("a b") == [2, 1] and tok.words == ["b", "a"]
    with pytest.raises(ValueError, match="not a lowercase word"):
        Tokenizer(["<pad>", "a", "<eos>"])  # <eos> has its place: id 1


def test_an_unknown_word_message_lists_the_vocabulary_and_stays_short():
    tok = Tokenizer.from_corpus(DEFAULT_CORPUS)
    distinct = sorted({w for s in DEFAULT_CORPUS for w in s.split()})
    message = str(pytest.raises(UnknownWordError, tok.encode, "purple").value)
    assert f"The vocabulary ({len(distinct)} words): {', '.join(distinct)}" in message
    many = " ".join(f"x{i}" for i in range(10_000))
    message = str(pytest.raises(UnknownWordError, tok.encode, many).value)
    assert "'x9'" in message and "'x10'" not in message and "and 9,990 more" in message and len(message) < 1500


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
        ("a b c\n" * 2000, f"2,000 sentences; the limit is {MAX_SENTENCES}"),
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


def test_a_caller_limit_is_the_one_the_message_names():
    assert len(parse_corpus("a b c\n" * 100, max_sentences=100)) == 100
    with pytest.raises(CorpusError, match="2,000 sentences; the limit is 100:"):
        parse_corpus("a b c\n" * 2000, max_sentences=100)


def test_corpus_files_are_bounded_before_they_are_read(tmp_path):
    for special in ("/dev/zero", tmp_path):  # an endless device, a folder
        with pytest.raises(CorpusError, match="not a regular file"):
            load_corpus(special)
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(1_000_000_000)
    with pytest.raises(CorpusError, match="is over 400,000 bytes"):
        load_corpus(big)


@pytest.mark.parametrize("special", ["<pad>", "<EOS>"])
def test_special_tokens_are_not_words(special):
    with pytest.raises(ValueError, match="is a special token"):
        Tokenizer.from_corpus([f"the {special} sat"])
    tok = Tokenizer.from_corpus(["the cat sat"])
    with pytest.raises(UnknownWordError, match="a special token, not a word"):
        tok.encode(f"the {special}")


@pytest.mark.parametrize("word", ["", "Cat", "a b", 7, None])
def test_a_vocabulary_holds_only_words_a_prompt_can_spell(word):
    with pytest.raises(ValueError, match="not a lowercase word without spaces"):
        Tokenizer(["<pad>", "cat", word])
