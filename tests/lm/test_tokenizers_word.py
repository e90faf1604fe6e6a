"""The word tokenizer, one class for the sentence model and the word-level text models: vocabularies,
the end token at line breaks, unknown words named, old vocabularies and old import paths, and its JSON."""

import json

import pytest

from lm.tokenizers import EOT, TokenizerError, UnknownWordError, WordTokenizer, from_json, to_json
from lm.tokenizers import word as word_module

CORPUS = [  # the classic default corpus's shape: ten five-word sentences
    "the red fox jumps high", "a small bird sings softly", "my old cat sleeps often", "the blue whale swims slowly",
    "a green frog hops away", "our young dog runs fast", "the tall tree grows quietly", "a bright star shines above",
    "his new boat sails north", "the cold wind blows hard",
]  # fmt: skip


# -- sentences (the classic model's vocabulary) ------------------------------------------------------------


def test_vocab_starts_with_pad_and_eos_then_first_appearance_order():
    tok = WordTokenizer.from_sentences(["b a c", "a d"])
    assert tok.vocab == ["<pad>", "<eos>", "b", "a", "c", "d"] and len(tok) == tok.vocab_size == 6
    assert tok.pad_id == 0 and tok.end_id == 1 and tok.words == ["b", "a", "c", "d"]
    assert tok.special_tokens == ["<pad>", "<eos>"] and tok.ids["c"] == 4
    assert tok.encode("A  d b") == [3, 5, 2]  # lowercased, any whitespace
    assert tok.decode([3, 5, 1, 0, 0]) == "a d\n"  # the padding left out, the end written as a line break
    assert tok.tokens([0, 1, 4]) == ["<pad>", "<eos>", "c"] and tok.token_str(4) == "c"


def test_a_line_break_ends_a_sentence_with_eos_as_in_the_text_models():
    tok = WordTokenizer.from_sentences(["the cat sat", "a dog ran"])
    the, cat, sat, a, dog, ran = (tok.ids[w] for w in "the cat sat a dog ran".split())
    assert tok.encode("the cat sat\n\na dog ran\n") == [the, cat, sat, 1, a, dog, ran, 1]
    assert tok.encode("the cat") == [the, cat]  # a prompt: no end
    assert tok.encode(f"the cat{EOT}a dog") == [the, cat, 1, a, dog]  # the literal end token
    assert tok.decode(tok.encode("the cat sat\na dog ran\n")) == "the cat sat\na dog ran\n"


def test_a_vocabulary_saved_before_the_end_token_still_works():
    tok = WordTokenizer(["<pad>", "b", "a"])
    assert tok.end_id is None and tok.pad_id == 0
    assert tok.encode("a b") == [2, 1] and tok.words == ["b", "a"] and tok.special_tokens == ["<pad>"]
    assert tok.encode("a b\nb\n") == [2, 1, 1]  # no end token to add
    with pytest.raises(UnknownWordError, match="a special token, not a word"):
        tok.encode(f"a {EOT} b")
    with pytest.raises(TokenizerError, match="not a lowercase word"):
        WordTokenizer(["<pad>", "a", "<eos>"])  # a special token has its place: before the words


def test_an_unknown_word_message_lists_the_vocabulary_and_stays_short():
    tok = WordTokenizer.from_sentences(CORPUS)
    distinct = sorted({w for s in CORPUS for w in s.split()})
    message = str(pytest.raises(UnknownWordError, tok.encode, "purple").value)
    assert f"The vocabulary ({len(distinct)} words): {', '.join(distinct)}" in message
    many = " ".join(f"x{i}" for i in range(10_000))
    message = str(pytest.raises(UnknownWordError, tok.encode, many).value)
    assert "'x9'" in message and "'x10'" not in message and "and 9,990 more" in message and len(message) < 1500


def test_unknown_words_are_named_with_close_matches():
    tok = WordTokenizer.from_sentences(CORPUS)
    with pytest.raises(UnknownWordError) as info:
        tok.encode("the redd fox zzz redd")
    assert info.value.words == ["redd", "zzz"]
    assert isinstance(info.value, TokenizerError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'redd'" in message and "'zzz'" in message and "'red'" in message
    with pytest.raises(UnknownWordError):
        tok.encode("<pad> fox")  # the pad token is not a word a prompt may use


@pytest.mark.parametrize("special", ["<pad>", "<EOS>", EOT])
def test_special_tokens_are_not_words_of_a_corpus(special):
    with pytest.raises(TokenizerError, match="is a special token"):
        WordTokenizer.from_sentences([f"the {special} sat"])
    if special != EOT:  # in running text the literal <|endoftext|> separates documents
        with pytest.raises(TokenizerError, match="is a special token"):
            WordTokenizer.from_text(f"the {special} sat")


@pytest.mark.parametrize("special", ["<pad>", "<EOS>", "<eos>"])
def test_special_tokens_typed_as_words_are_named(special):
    tok = WordTokenizer.from_sentences(["the cat sat"])
    with pytest.raises(UnknownWordError, match="a special token, not a word"):
        tok.encode(f"the {special}")


@pytest.mark.parametrize("word", ["", "Cat", "a b", 7, None])
def test_a_vocabulary_holds_only_words_a_prompt_can_spell(word):
    with pytest.raises(TokenizerError, match="not a lowercase word without spaces"):
        WordTokenizer(["<pad>", "cat", word])


@pytest.mark.parametrize(
    ("vocab", "match"),
    [
        ([], "must start with a special token"),
        (["cat", "<pad>"], "must start with a special token"),
        (["<pad>", "cat", "cat"], "must not repeat"),
        (["<pad>", "<pad>", "cat"], "must not repeat"),
        (["<pad>", "<eos>", EOT, "cat"], "one end token"),
        (["<pad>", "ca\ud800t"], "not valid Unicode"),
    ],
)
def test_bad_vocabularies_are_explained(vocab, match):
    with pytest.raises(TokenizerError, match=match):
        WordTokenizer(vocab)


def test_bad_ids_are_named():
    tok = WordTokenizer(["<pad>", "<eos>", "a"])
    for call in (tok.decode, tok.tokens):
        with pytest.raises(TokenizerError, match="position 1.*0..2"):
            call([2, 3])
    with pytest.raises(TokenizerError, match="not a token id"):
        tok.token_str(-1)
    with pytest.raises(TokenizerError, match="must be a string"):
        tok.encode(b"a")


# -- running text (the word-level text models' vocabulary) -------------------------------------------------


def test_text_vocabulary_and_round_trip():
    text = f"The cat sat.\nThe dog ran.{EOT}A bird sang."
    tok = WordTokenizer.from_text(text)
    assert tok.vocab == [EOT, "the", "cat", "sat.", "dog", "ran.", "a", "bird", "sang."]
    assert tok.special_tokens == [EOT] and tok.end_id == 0 and tok.pad_id is None and len(tok) == 9
    ids = tok.encode(text)
    assert ids.count(0) == 2  # the line break and the document boundary
    assert tok.decode(ids) == "the cat sat.\nthe dog ran.\na bird sang."


def test_a_word_corpus_ends_each_sentence_with_end_of_text():
    """A line break ends a sentence: one end token after it (blank lines add none), none after a prompt
    that has no line break, one for a line break and a document boundary together."""
    corpus = "The cat sat.\n\nThe dog ran.\n"
    tok = WordTokenizer.from_text(corpus + f"{EOT}A bird sang.")
    eot = tok.end_id
    the, cat, sat, dog, ran, a, bird, sang = (tok.encode(w)[0] for w in "the cat sat. dog ran. a bird sang.".split())
    assert tok.encode(corpus) == [the, cat, sat, eot, the, dog, ran, eot]
    assert tok.encode(f"{corpus}{EOT}A bird sang.") == [the, cat, sat, eot, the, dog, ran, eot, a, bird, sang]
    assert tok.encode("the cat") == [the, cat]  # a prompt: no end
    assert tok.encode(EOT) == [eot] and tok.encode("") == [] and tok.encode(EOT + EOT) == [eot]
    assert tok.decode(tok.encode(corpus)) == "the cat sat.\nthe dog ran.\n"


def test_an_unknown_word_of_a_text_is_named_with_close_matches_and_the_vocabulary():
    tok = WordTokenizer.from_text("the cat sat\n")
    with pytest.raises(UnknownWordError, match=r"'cats' \(did you mean 'cat'\?\).*The vocabulary \(3 words\)"):
        tok.encode("cats")


def test_a_text_with_too_many_distinct_words_asks_for_bpe(monkeypatch):
    monkeypatch.setattr(word_module, "MAX_WORD_VOCAB", 3)
    assert len(WordTokenizer.from_text("a b c a")) == 4
    with pytest.raises(TokenizerError, match="4 distinct words, over 3: use bpe:N"):
        WordTokenizer.from_text("a b c d")


# -- JSON (what checkpoints and weights files hold) --------------------------------------------------------


def test_json_round_trip_and_the_older_forms():
    for tok in (
        WordTokenizer.from_sentences(CORPUS),
        WordTokenizer.from_text("the cat\nsat"),
        WordTokenizer(["<pad>", "a"]),
    ):
        text = to_json(tok)
        assert json.loads(text)["type"] == "word"
        again = from_json(text)
        assert type(again) is WordTokenizer and again.vocab == tok.vocab
    # the text models' checkpoints before one class: "word-text"
    old_text = from_json(json.dumps({"type": "word-text", "lines": True, "vocab": [EOT, "the", "cat"]}))
    assert old_text.encode("the cat\n") == [1, 2, 0] and old_text.end_id == 0
    # the classic weights files' metadata: a bare vocabulary, with <eos> or from before it
    classic = from_json(json.dumps(["<pad>", "<eos>", "the", "cat"]))
    assert classic.pad_id == 0 and classic.end_id == 1 and classic.encode("the cat") == [2, 3]
    assert from_json(json.dumps(["<pad>", "the", "cat"])).end_id is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 200_000, "nests arrays or objects"),
        ('{"type": "word", "vocab": ' * 50_000, "nests arrays or objects"),
        ("[1, 2", "is not JSON"),
        ('{"type": "word", "vocab": "abc"}', "list of strings"),
        ('{"type": "word", "vocab": ["<pad>", "\\ud800"]}', "not valid Unicode"),
        ('{"type": "morse"}', "unknown tokenizer type 'morse'"),
        ('"just a string"', "unknown tokenizer type None"),
    ],
)
def test_bad_json_is_a_tokenizer_error(text, match):
    with pytest.raises(TokenizerError, match=match):
        from_json(text)
