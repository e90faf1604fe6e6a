"""lm.data: sources with their checks, tokenizers by name, the cached token file, the split, batches, the
two batch sources (sentences, windows) a config picks, and the TinyStories download failing clearly (and
fast) when it cannot happen. (The sentence corpus' own checks are in test_lm_tokenizer.)"""

import json
import time

import numpy as np
import pytest
import torch

from lm import data
from lm.data import EOT, DataError
from lm.tokenizers import TokenizerError, from_json, to_json


def test_bundled_sources_load():
    shakespeare = data.load_source("shakespeare")
    assert len(shakespeare) == 1_115_394 and shakespeare.startswith("First Citizen:")
    stories = data.load_source("stories")
    assert stories.count(EOT) >= 20


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no text file at"),
        (b"", "is empty"),
        (b"abc\x00def", r"NUL byte \(line 1\)"),
        (b"caf\xe9 au lait", r"not UTF-8 text \(byte 3 is b'\\xe9', line 1\)"),
    ],
)
def test_bad_text_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        data.load_source(str(path))


def test_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("x" * 2000)
    with pytest.raises(DataError, match="has 2,000 bytes; a text file here is at most 1,000"):
        data.read_text_file(path, max_bytes=1000)
    with pytest.raises(DataError, match="is a folder, not a file"):
        data.read_text_file(tmp_path)


def test_char_and_word_tokenizers_know_end_of_text_and_round_trip():
    text = f"The cat sat.\nThe dog ran.{EOT}A bird sang."
    char = data.make_tokenizer("char", text)
    assert char.decode(char.encode(text)) == text and data.eot_id(char) == len(char) - 1
    with pytest.raises(TokenizerError, match=r"not in the vocabulary: 'cats' \(did you mean 'cat'\?\)"):
        data.make_tokenizer("word", text).encode("cats")
    word = data.make_tokenizer("word", text)
    ids = word.encode(text)
    assert ids.count(data.eot_id(word)) == 2  # the line break and the document boundary
    assert word.decode(ids) == "the cat sat.\nthe dog ran.\na bird sang."
    for tok in (char, word):  # what a checkpoint stores
        again = from_json(to_json(tok))
        assert again.encode(text) == tok.encode(text)


def test_a_word_corpus_ends_each_sentence_with_end_of_text():
    """A line break ends a sentence: one end token after it (blank lines add none), none after a prompt
    that has no line break, one for a line break and a document boundary together."""
    corpus = "The cat sat.\n\nThe dog ran.\n"
    word = data.make_tokenizer("word", corpus + f"{EOT}A bird sang.")
    eot = data.eot_id(word)
    the, cat, sat, dog, ran, a, bird, sang = (word.encode(w)[0] for w in "the cat sat. dog ran. a bird sang.".split())
    assert word.encode(corpus) == [the, cat, sat, eot, the, dog, ran, eot]
    assert word.encode(f"{corpus}{EOT}A bird sang.") == [the, cat, sat, eot, the, dog, ran, eot, a, bird, sang]
    assert word.encode("the cat") == [the, cat]  # a prompt: no end
    assert word.encode(EOT) == [eot] and word.encode("") == []
    assert word.decode(word.encode(corpus)) == "the cat sat.\nthe dog ran.\n"


def test_token_cache_is_not_shared_with_the_earlier_word_rule(tmp_path, monkeypatch):
    """Token files key on the tokenizer's JSON: a file encoded before the line rule existed (the same
    vocabulary, then saved as {"type": "word-text", "vocab": ...}, no end token after a line) is not reused."""
    text = "the cat sat.\nthe dog ran.\n"
    word = data.make_tokenizer("word", text)
    before_rule = json.dumps({"type": "word-text", "vocab": word.vocab}, ensure_ascii=False)
    with monkeypatch.context() as m:  # a cache file as the earlier rule wrote it: no end tokens
        m.setattr(data, "to_json", lambda tok: before_rule)
        encode = word.encode
        m.setattr(word, "encode", lambda t: [i for i in encode(t) if i != word.end_id])
        stale, _ = data.encode_to_file(text, word, tmp_path)
    path, reused = data.encode_to_file(text, word, tmp_path)
    assert not reused and path != stale and to_json(word) != before_rule
    assert list(np.load(path)) == word.encode(text) and word.encode(text).count(word.end_id) == 2
    assert data.encode_to_file(text, word, tmp_path) == (path, True)


@pytest.mark.parametrize(
    "spec,message", [("morse", "unknown tokenizer 'morse'"), ("bpe:lots", "whole vocabulary size"), ("bpe:3", "257")]
)
def test_bad_tokenizer_names(spec, message):
    with pytest.raises(DataError, match=message):
        data.make_tokenizer(spec, "some text")


@pytest.mark.parametrize("spec", ["bpe:300", "gpt2"])
def test_bpe_tokenizers_know_end_of_text_and_round_trip(spec):
    text = data.load_source("stories")
    tok = data.make_tokenizer(spec, text[:5000] if spec.startswith("bpe") else text)
    ids = tok.encode(text[:2000])
    assert tok.decode(ids) == text[:2000] and data.eot_id(tok) in ids
    assert len(tok) == (300 if spec == "bpe:300" else 50257)
    again = from_json(to_json(tok))
    assert again.encode(text[:2000]) == ids


def test_tokens_are_encoded_once_and_reused(tmp_path, monkeypatch):
    text = "hello world, " * 100
    tok = data.make_tokenizer("char", text)
    first = data.load_tokens(text, tok, context=8, cache_dir=tmp_path)
    assert not first.reused and first.path.suffix == ".npy" and first.tokens.dtype == np.uint16
    assert isinstance(first.tokens, np.memmap)
    calls = []
    encode = type(tok).encode
    monkeypatch.setattr(type(tok), "encode", lambda self, t: calls.append(t) or encode(self, t))
    again = data.load_tokens(text, tok, context=8, cache_dir=tmp_path)
    assert again.reused and again.path == first.path and text not in calls  # not encoded again
    assert np.array_equal(again.tokens, first.tokens)
    # A changed text or tokenizer is a different file.
    other = data.make_tokenizer("char", text + "!")
    assert data.encode_to_file(text, other, tmp_path)[0] != first.path


def test_split_by_document_or_last_tenth():
    plain = np.arange(100)
    train, val = data.split_tokens(plain, eot=None)
    assert (len(train), len(val)) == (90, 10)
    docs = np.array([1] * 50 + [0] + [2] * 30 + [0] + [3] * 19)  # 0 = end of text, at 50 and 81
    train, val = data.split_tokens(docs, eot=0)
    assert len(train) == 82 and val[0] == 3 and set(val.tolist()) == {3}  # whole documents only


def test_validation_too_short_for_the_context(tmp_path):
    tok = data.make_tokenizer("char", "abcdefghij" * 3)
    with pytest.raises(DataError, match="validation part has 3 tokens, not more than the context of 8"):
        data.load_tokens("abcdefghij" * 3, tok, context=8, cache_dir=tmp_path)


def test_get_batch_gives_shifted_windows():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = data.get_batch(tokens, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:] - x[:, :-1], torch.ones(4, 15, dtype=torch.int64))
    x2, _ = data.get_batch(tokens, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # the generator decides


def test_tinystories_without_network_fails_clearly_and_fast(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(DataError, match="TinyStories|datasets") as err:
        data.load_source("tinystories", cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    assert "the bundled TinyStories sample (the source 'stories')" in str(err.value)
    assert "--" not in str(err.value)  # no command-line flags: the Train page shows this message too (issue 18)


def test_tinystories_download_failing_midway_is_reported_and_leaves_no_file(tmp_path):
    def failing_loader(n):
        yield {"text": "Once upon a time."}
        raise ConnectionError("connection reset by peer")

    with pytest.raises(DataError, match="downloading TinyStories failed .*connection reset"):
        data.download_tinystories(5, tmp_path, loader=failing_loader)
    assert not list(tmp_path.iterdir())


def test_tinystories_download_is_cached_with_progress(tmp_path):
    seen = []
    rows = [{"text": f"Story {i}. "} for i in range(3)]
    path = data.download_tinystories(3, tmp_path, progress=lambda d, t: seen.append((d, t)), loader=lambda n: rows)
    assert path.read_text() == f"Story 0.\n{EOT}\nStory 1.\n{EOT}\nStory 2."
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert data.download_tinystories(3, tmp_path, loader=lambda n: 1 / 0) == path  # cached: no download


def test_tinystories_streams_through_the_datasets_library_when_online(tmp_path, monkeypatch):
    """Online, the download asks `datasets` for the train split as a stream and takes the first N stories
    (the Hub itself is replaced here: no network in tests); the file is written once, then reused."""
    datasets = pytest.importorskip("datasets")
    asked = {}

    class Stream:
        def take(self, n):
            asked["n"] = n
            return iter([{"text": f" Story {i}. "} for i in range(n)])

    def load_dataset(name, split, streaming):
        asked.update(name=name, split=split, streaming=streaming)
        return Stream()

    monkeypatch.setattr(data, "_online", lambda *args, **kwargs: True)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    seen = []
    path = data.download_tinystories(3, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert asked == {"name": "roneneldan/TinyStories", "split": "train", "streaming": True, "n": 3}
    assert path.read_text() == f"Story 0.\n{EOT}\nStory 1.\n{EOT}\nStory 2."
    assert seen == [(1, 3), (2, 3), (3, 3)]
    monkeypatch.setattr(datasets, "load_dataset", None)  # a second call reads the cached file
    assert data.download_tinystories(3, tmp_path) == path


def test_make_source_picks_sentences_or_windows(tmp_path):
    """`sentences` (the default ten), `sentences:FILE`, or any text for windows; each source names its data."""
    from lm.train import TrainConfig  # noqa: PLC0415  (the config is the trainer's; the sources are here)

    default = data.make_source(TrainConfig.recipe("classic"))
    assert isinstance(default, data.Sentences) and default.sentences == data.DEFAULT_CORPUS
    lines = tmp_path / "sentences.txt"
    lines.write_text("one two three\n\nfour five six seven\n")
    mine = data.make_source(TrainConfig.recipe("classic", data=f"sentences:{lines}"))
    assert mine.sentences == ["one two three", "four five six seven"] and mine.ids.shape == (2, 4)
    assert mine.data_id != default.data_id and mine.data_id == data.Sentences(mine.sentences).data_id

    text = tmp_path / "text.txt"
    text.write_text("hello world, " * 100)
    windows = data.make_source(TrainConfig(data=str(text), context=8), cache_dir=tmp_path / "cache")
    assert isinstance(windows, data.Windows) and windows.batch_shape(3, 8) == (3, 8)
    assert (
        windows.data_id == windows.tokens.path.stem
        and windows.tokenizer.decode(windows.tokenizer.encode("hello")) == "hello"
    )
    x, y = windows.batch(3, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 8) and torch.equal(x[:, 1:], y[:, :-1])
    held_out = windows.validation(3, 8, 2, seed=5)
    assert len(held_out) == 2 and all(
        torch.equal(a, b) for (a, _), (b, _) in zip(held_out, windows.validation(3, 8, 2, 5))
    )
