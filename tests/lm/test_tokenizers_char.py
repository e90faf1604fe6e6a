"""The character tokenizer and the common interface: ids, specials, round trips, files, errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lm.tokenizers import CharTokenizer, TextTokenizer, TokenizerError, WordTokenizer

EOT = "<|endoftext|>"


def test_ids_are_sorted_characters_then_specials():
    tok = CharTokenizer.from_text(f"hello world{EOT}ok", [EOT])
    assert tok.chars == sorted(set("hello worldok"))
    assert tok.vocab_size == len(tok.chars) + 1 == len(tok)
    assert tok.special_tokens == [EOT]
    assert tok.encode("lo") == [tok.chars.index("l"), tok.chars.index("o")]
    assert tok.encode(f"ok{EOT}") == [tok.chars.index("o"), tok.chars.index("k"), len(tok.chars)]
    assert tok.decode(tok.encode(f"hello{EOT}world")) == f"hello{EOT}world"


def test_tiny_shakespeare_has_nanogpts_65_ids():
    from pathlib import Path

    text = Path(__file__).resolve().parents[2] / "lm/data/tinyshakespeare.txt"
    if not text.exists():
        pytest.skip("lm/data/tinyshakespeare.txt not copied yet")
    tok = CharTokenizer.from_text(text.read_text(encoding="utf-8"))
    assert tok.vocab_size == 65 and tok.encode("\n !") == [0, 1, 2]


def test_overlapping_specials_match_longest_first():
    tok = CharTokenizer.from_text("ab<>", ["<a>", "<a><b>"])
    assert tok.encode("<a><b><a>") == [tok.special_ids["<a><b>"], tok.special_ids["<a>"]]


def test_display_strings_make_whitespace_visible():
    tok = CharTokenizer.from_text("a b\n\t", ["<s>"])
    shown = [tok.token_str(i) for i in range(tok.vocab_size)]
    assert shown == ["\\t", "\\n", "\u2423", "a", "b", "<s>"]


def test_unknown_characters_and_bad_ids_are_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"'z', 'y'.*position 1"):
        tok.encode("azby")
    with pytest.raises(TokenizerError, match="position 1.*0..2"):
        tok.decode([0, 3])
    with pytest.raises(TokenizerError, match="not a token id"):
        tok.decode([1.5])
    with pytest.raises(TokenizerError, match="not an integer"):
        tok.token_str("a")


@pytest.mark.parametrize(
    ("text", "specials", "match"),
    [
        ("", [], "no characters"),
        (EOT, [EOT], "no characters"),
        ("abc", ["a", "a"], "twice"),
        ("abc", [""], "non-empty"),
        ("abc", EOT, "list of strings"),
    ],
)
def test_bad_corpora_and_specials_are_explained(text, specials, match):
    with pytest.raises(TokenizerError, match=match):
        CharTokenizer.from_text(text, specials)


def test_save_and_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text("héllo, wörld 😀\n", [EOT])
    path = tok.save(tmp_path / "tok")
    again = CharTokenizer.load(tmp_path / "tok")
    assert again.itos == tok.itos and again.special_tokens == [EOT]
    assert CharTokenizer.load(path).encode("wörld😀") == tok.encode("wörld😀")
    assert CharTokenizer.from_json(tok.to_json()).itos == tok.itos


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not JSON"),
        ('{"type": "bpe"}', '"type": "char"'),
        ('{"type": "char", "chars": "abc"}', "lists"),
        ('{"type": "char", "chars": ["ab"]}', "single character"),
        ('{"type": "char", "chars": ["a", "a"]}', "twice"),
    ],
)
def test_malformed_files_are_explained(tmp_path, content, match):
    (tmp_path / "char_tokenizer.json").write_text(content)
    with pytest.raises(TokenizerError, match=match):
        CharTokenizer.load(tmp_path)


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(TokenizerError, match="no character tokenizer"):
        CharTokenizer.load(tmp_path)


@given(st.text(max_size=200))
def test_round_trip_any_text_it_was_built_from(text):
    if not text:
        return
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_every_tokenizer_fits_the_interface():
    word = WordTokenizer(["<pad>", "a", "b"])
    char = CharTokenizer.from_text("b a")
    for tok in (word, char):
        assert isinstance(tok, TextTokenizer)
        assert tok.decode(tok.encode("a b")).replace(" ", "") == "ab"
    assert word.vocab_size == 3 and word.special_tokens == ["<pad>"] and word.token_str(2) == "b"
