"""The Tokenizer page's logic (playground/tokenizer/logic.py, its chart figures.py) without Streamlit:
corpus bounds and checks, chips and their escaping, merge steps, the curve, and the downloadable zip
loading back."""

import io
import zipfile

import pytest

from lm.tokenizers import BPETokenizer
from playground.tokenizer import logic as tk
from playground.tokenizer.figures import curve_figure


@pytest.fixture(scope="module")
def trained() -> tk.Trained:
    return tk.train(tk.story_sample(), 300, True, 1)


def test_counts_and_chips_for_gpt2():
    shown = tk.tokenize(tk.gpt2(), "héllo")
    assert (shown.chars, shown.n_bytes, shown.tokens) == (5, 6, len(tk.gpt2().encode("héllo")))
    assert shown.bytes_per_token == 6 / shown.tokens
    assert b"".join(chip.raw for chip in shown.chips) == "héllo".encode()


def test_chips_html_escapes_and_colours_neighbours_differently():
    shown = tk.tokenize(tk.gpt2(), '<b onclick="x">&</b>')
    body = tk.chips_html(shown.chips)
    assert "<b " not in body and "&lt;" in body and "&quot;" in body and "&amp;" in body
    colours = [part.split(";")[0] for part in body.split("background:")[1:]]
    assert all(a != b for a, b in zip(colours, colours[1:]))


def test_text_bound_and_unknown_words():
    with pytest.raises(tk.TokenizingError, match="at most 20,000"):
        tk.tokenize(tk.gpt2(), "a" * (tk.MAX_TEXT_CHARS + 1))
    with pytest.raises(tk.TokenizingError, match="'zebra'.*try GPT-2's"):
        tk.tokenize(tk.word_tokenizer(), "the zebra")


@pytest.mark.parametrize(
    ("source", "pasted", "upload", "match"),
    [
        ("pasted text", "", None, "the pasted text is empty"),
        ("pasted text", "x" * (tk.MAX_CORPUS_BYTES + 1), None, "at most 500,000"),
        ("uploaded file", "", None, "upload a .txt file first"),
        ("uploaded file", "", b"\x89PNG\r\n\x1a\n\xff", "'f.txt' is not UTF-8 text"),
        ("uploaded file", "", b"text\x00more", "NUL byte"),
        ("uploaded file", "", b"a" * (tk.MAX_CORPUS_BYTES + 1), "'f.txt' is 500,001 bytes"),
    ],
)
def test_bad_corpora_are_explained(source, pasted, upload, match):
    with pytest.raises(tk.TokenizingError, match=match):
        tk.corpus_text(source, pasted, upload, "f.txt")


def test_vocab_bounds():
    with pytest.raises(tk.TokenizingError, match="257..2,000"):
        tk.train("some text", 256, True, 1)


def test_training_reports_progress_and_explores(trained):
    fractions = []
    tk.train(tk.story_sample(), 300, True, 2, progress=lambda f, label: fractions.append(f))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    step = tk.merge_step(trained, 1)
    a, b = trained.result.merges[0]
    assert (step.token_id, step.count) == (256, trained.result.merge_counts[0])
    assert (step.left, step.right, step.merged) == (tk.visible(a), tk.visible(b), tk.visible(a + b))
    with pytest.raises(tk.TokenizingError, match="1..43"):
        tk.merge_step(trained, 44)
    ks, values = tk.bytes_per_token_curve(trained)
    assert ks[0] == 0 and ks[-1] == 43 and len(ks) == 40
    assert 1.0 < values[0] < 1.05  # bytes alone: one byte a token, but each <|endoftext|> is 13 bytes in one
    assert values == sorted(values) and values[-1] > 1.5


def test_download_zip_loads_back(trained, tmp_path):
    with zipfile.ZipFile(io.BytesIO(tk.tokenizer_zip(trained))) as archive:
        assert sorted(archive.namelist()) == ["merges.txt", "tokenizer_manifest.json", "vocab.json"]
        archive.extractall(tmp_path)
    again = BPETokenizer.load(tmp_path)
    assert again.vocab == trained.tokenizer.vocab and again.special_tokens == ["<|endoftext|>"]


def test_the_curve_figure_draws_the_curve_and_marks_the_chosen_k(trained):
    ks, values = tk.bytes_per_token_curve(trained)
    fig = curve_figure(ks, values, k=10)
    assert list(fig.data[0].x) == ks and list(fig.data[0].y) == values
    assert fig.layout.shapes[0].x0 == 10 and not curve_figure(ks, values).layout.shapes
