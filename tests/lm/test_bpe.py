"""BPE encoding against tiktoken's gpt2 encoding (built offline from the same files), round trips,
special tokens, decoding of broken UTF-8, and GPT-2 files: saving, loading and every malformed line."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.tokenizers import BPETokenizer, TokenizerError
from lm.tokenizers.bpe import GPT2_MERGES, GPT2_VOCAB

ROOT = Path(__file__).resolve().parents[2]
EOT = "<|endoftext|>"
VARIED = (
    (ROOT / "lm/data/tinystories-sample-a.txt").read_text(encoding="utf-8")
    + "\nHéllo wörld! Ünïcödé: 日本語のテキスト, 中文, Ελληνικά, русский, عربى, हिन्दी.\n"
    + "Emoji: 😀👍🏽👨‍👩‍👧‍👦 🇫🇷 — ‘quotes’ “double” … ½ ² ⁂\n"
    + "def f(x):\n\treturn {'a': x ** 2, \"b\": [1, 2, 3]}  # code\n\n\n"
    + "    four spaces,\t\ttabs, trailing   \n  \n\r\n"
    + "numbers 1234567 3.14159 1e-9 0x1F, contractions: it's we'll they've I'M don't\n"
    + f"specials{EOT}inside{EOT}{EOT} and  {EOT}  spaced\n"
    + "a" * 300
    + " " * 50
    + "\u200b\u00a0\ufeff"
)


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.gpt2()


@pytest.fixture(scope="module")
def tiktoken_gpt2(tmp_path_factory):
    """tiktoken's gpt2 Encoding from our copies of the files, offline (tiktoken would download them)."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    folder = tmp_path_factory.mktemp("tiktoken")
    merges = folder / "vocab.bpe"  # tiktoken skips the first line: GPT-2's `#version: 0.2`, absent from our copy
    merges.write_text("#version: 0.2\n" + GPT2_MERGES.read_text(encoding="utf-8"), encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files directly, cache nothing
    ranks = data_gym_to_mergeable_bpe_ranks(str(merges), str(GPT2_VOCAB))
    mp.undo()
    return tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
        explicit_n_vocab=50257,
    )


def test_gpt2_files_load_with_their_special_token(gpt2):
    assert gpt2.vocab_size == 50257 and len(gpt2.merges) == 50000
    assert gpt2.special_tokens == [EOT] and gpt2.special_ids[EOT] == 50256
    assert gpt2.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids


def test_parity_with_tiktoken_on_varied_text(gpt2, tiktoken_gpt2):
    expected = tiktoken_gpt2.encode(VARIED, allowed_special="all")
    assert gpt2.encode(VARIED) == expected
    assert gpt2.decode(expected) == VARIED


@pytest.mark.parametrize("line", VARIED.splitlines(keepends=True))
def test_parity_with_tiktoken_line_by_line(gpt2, tiktoken_gpt2, line):
    assert gpt2.encode(line) == tiktoken_gpt2.encode(line, allowed_special="all")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_parity_with_tiktoken_and_round_trip_on_any_unicode(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.text(alphabet="ab <|>", max_size=20))
def test_round_trip_with_specials_mixed_in(gpt2, text, noise):
    mixed = text + EOT + noise + EOT
    assert gpt2.decode(gpt2.encode(mixed)) == mixed


def test_overlapping_specials_match_longest_first():
    tok, _ = BPETokenizer.train("hello world " * 20, 270, ["<a>", "<a><b>"])
    ids = tok.encode("x<a><b><a>y")
    assert ids[1:3] == [tok.special_ids["<a><b>"], tok.special_ids["<a>"]]
    assert tok.decode(ids) == "x<a><b><a>y"


def test_decode_turns_broken_utf8_into_replacement_characters(gpt2):
    ids = gpt2.encode("😀")  # four bytes, several tokens
    assert len(ids) > 1
    assert gpt2.decode(ids[:1]) == "\ufffd"
    assert gpt2.decode(ids[:1] + gpt2.encode("ok")) == "\ufffdok"


def test_display_strings(gpt2):
    assert gpt2.token_str(gpt2.encode(" the")[0]) == "\u2423the"
    assert gpt2.token_str(gpt2.encode("\n")[0]) == "\\n"
    assert gpt2.token_str(50256) == EOT
    first_byte_of_emoji = gpt2.encode("😀")[0]
    assert "\\x" in gpt2.token_str(first_byte_of_emoji)


def test_bad_ids_and_text_are_explained(gpt2):
    with pytest.raises(TokenizerError, match="position 1.*0..50256"):
        gpt2.decode([1, 50257])
    with pytest.raises(TokenizerError, match="must be a string"):
        gpt2.encode(b"bytes")


def test_save_and_load_round_trip_keeps_ids_and_specials(tmp_path):
    tok, _ = BPETokenizer.train("the cat sat on the mat. " * 30 + EOT + " the end", 280, [EOT])
    tok.save(tmp_path / "tok")
    assert (tmp_path / "tok/merges.txt").read_text().startswith("#version: 0.2\n")
    again = BPETokenizer.load(tmp_path / "tok")
    assert again.vocab == tok.vocab and again.merges == tok.merges and again.special_tokens == [EOT]
    text = f"the mat sat{EOT} on the cat"
    assert again.encode(text) == tok.encode(text)


def test_json_round_trip_and_its_errors():
    tok, _ = BPETokenizer.train("the cat sat on the mat. " * 30, 280, [EOT])
    again = BPETokenizer.from_json(tok.to_json())
    assert again.vocab == tok.vocab and again.merges == tok.merges and again.special_tokens == [EOT]
    for bad, match in [("{", "is not JSON"), ('{"type": "char"}', '"type": "bpe"'),
                       ('{"type": "bpe", "vocab": ["zz"], "merges": []}', "hex")]:  # fmt: skip
        with pytest.raises(TokenizerError, match=match):
            BPETokenizer.from_json(bad)


def test_our_saved_gpt2_files_equal_the_originals(gpt2, tmp_path):
    gpt2.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads(GPT2_VOCAB.read_text())
    ours = (tmp_path / "merges.txt").read_text().splitlines()
    assert ours[0] == "#version: 0.2" and ours[1:] == GPT2_MERGES.read_text().splitlines()


def _write(folder: Path, vocab: str, merges: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "vocab.json").write_text(vocab, encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return folder


def _byte_vocab(extra: dict | None = None) -> dict:
    from lm.tokenizers.gpt2_files import bytes_to_unicode

    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    vocab.update(extra or {})
    return vocab


@pytest.mark.parametrize(
    ("vocab", "merges", "match"),
    [
        ("{", "", r"vocab.json is not JSON: .*line 1 column 2"),
        ("[]", "", "non-empty JSON object"),
        (json.dumps(_byte_vocab({"ab": "x"})), "a b\n", "entry 'ab' has id 'x'"),
        (json.dumps(_byte_vocab({"ab": 3})), "a b\n", "id 3 is given to both"),
        (json.dumps(_byte_vocab({"ab": 300})), "a b\n", "300 is missing|256 is missing"),
        (json.dumps(_byte_vocab({"a b": 256})), "", "' ' which is not in GPT-2's bytes-to-unicode|holds ' '"),
        (json.dumps(_byte_vocab({"ab": 256})), "#version: 0.2\na b\nab\n", "merges.txt line 3: expected two tokens"),
        (json.dumps(_byte_vocab({"ab": 256})), "a b\n\nb a\n", "line 2: an empty line in the middle"),
        (json.dumps(_byte_vocab({"ab": 256})), "a b\na b\n", "line 2: the merge 'a b' repeats line 1"),
        (json.dumps(_byte_vocab({"ab": 256})), "a c\n", "merge 1 .* uses b'ac', which is not in"),
        (json.dumps(_byte_vocab({"ab": 256})), "a  b\n", "line 1: expected two tokens separated by one space"),
        (json.dumps(_byte_vocab({"ab": 256})), "a\u3000 b\n", r"line 1: 'a\\u3000' holds '\\u3000', which is not in"),
    ],
)
def test_malformed_files_name_what_is_wrong(tmp_path, vocab, merges, match):
    with pytest.raises(TokenizerError, match=match):
        BPETokenizer.load(_write(tmp_path / "tok", vocab, merges))


def test_missing_and_binary_files_are_explained(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer directory"):
        BPETokenizer.load(tmp_path / "nowhere")
    with pytest.raises(TokenizerError, match="no merges file"):
        (tmp_path / "only").mkdir()
        (tmp_path / "only/vocab.json").write_text(json.dumps(_byte_vocab()))
        BPETokenizer.load(tmp_path / "only")
    folder = _write(tmp_path / "bin", json.dumps(_byte_vocab()), "")
    (folder / "merges.txt").write_bytes(b"a b\n\xff\xfe")
    with pytest.raises(TokenizerError, match=r"merges.txt is not UTF-8 text \(byte 4 is b'\\xff', line 2\)"):
        BPETokenizer.load(folder)


def test_first_k_merges(gpt2):
    tok, result = BPETokenizer.train((ROOT / "lm/data/tinystories-sample-a.txt").read_text(), 300, [EOT])
    assert tok.with_merges(0).encode("the") == list(b"the")
    assert tok.with_merges(len(tok.merges)).encode("Once upon a time") == tok.encode("Once upon a time")
    lengths = [len(tok.with_merges(k).encode("Once upon a time there was")) for k in range(0, 44, 4)]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] > lengths[-1]
