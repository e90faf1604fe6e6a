"""Tokenizer files: a BPE folder saved as a pair its loader can check (manifest of hashes and special tokens),
killed saves cleaned up, folders of the released code still loading, paths stat'ed before they are opened,
text that is not valid Unicode and hostile JSON refused with a TokenizerError, `len` on every tokenizer."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lm.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    TextTokenizer,
    TokenizerError,
    WordTokenizer,
    from_json,
    gpt2_files,
    read_training_text,
    train_bpe_file,
)
from lm.tokenizers.gpt2_files import MANIFEST_FILE, bytes_to_unicode

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EOT = "<|endoftext|>"
TEXT = "the cat sat on the mat. the dog ran to the cat. " * 20 + EOT + " a bird sang."


def _trained(vocab_size: int, specials=(EOT,)) -> BPETokenizer:
    return BPETokenizer.train(TEXT, vocab_size, list(specials))[0]


# -- BPE folders: a pair that belongs together ---------------------------------------------------------------


def test_a_saved_folder_declares_its_special_tokens_rather_than_leaving_them_to_inference(tmp_path):
    tok = _trained(280)
    plain = BPETokenizer(tok.vocab, tok.merges, special_tokens=[])  # <|endoftext|> an ordinary, unreachable entry
    plain.save(tmp_path / "plain")
    manifest = json.loads((tmp_path / "plain" / MANIFEST_FILE).read_text())
    assert manifest["special_tokens"] == [] and set(manifest["sha256"]) == {"vocab.json", "merges.txt"}
    assert BPETokenizer.load(tmp_path / "plain").special_tokens == []  # inference would have said [EOT]
    tok.save(tmp_path / "tok")
    again = BPETokenizer.load(tmp_path / "tok")
    assert again.special_tokens == [EOT] and again.vocab == tok.vocab and again.merges == tok.merges


def test_files_of_two_saves_are_refused_naming_the_file(tmp_path):
    small, large = _trained(270), _trained(280)  # small's merges are the first of large's: they fit its vocab
    small.save(tmp_path / "small")
    large.save(tmp_path / "large")
    shutil.copy(tmp_path / "small/merges.txt", tmp_path / "large/merges.txt")
    with pytest.raises(TokenizerError, match=r"large/merges.txt does not belong with .*save the tokenizer again"):
        BPETokenizer.load(tmp_path / "large")


def test_a_save_killed_halfway_is_detected_even_over_a_folder_without_a_manifest(tmp_path, monkeypatch):
    folder = tmp_path / "tok"
    shutil.copytree(FIXTURES / "bpe_released", folder)  # written by the released code: no manifest
    write = gpt2_files.atomic_write_text

    def killed_at_merges(path, text):
        if path.name == "merges.txt":
            raise KeyboardInterrupt  # the writer dies after vocab.json
        write(path, text)

    monkeypatch.setattr(gpt2_files, "atomic_write_text", killed_at_merges)
    with pytest.raises(KeyboardInterrupt):
        _trained(300).save(folder)
    monkeypatch.undo()
    with pytest.raises(TokenizerError, match="merges.txt does not belong"):
        BPETokenizer.load(folder)  # not the new vocab with the old merges, silently
    new = _trained(300)
    new.save(folder)
    assert BPETokenizer.load(folder).vocab == new.vocab


def test_a_declared_special_token_must_be_in_the_vocabulary(tmp_path):
    _trained(280).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["special_tokens"] = ["<|pad|>"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(TokenizerError, match=r"special token '<\|pad\|>' is not in the vocabulary"):
        BPETokenizer.load(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text('{"format": "byte-level-bpe", "version": 1, "sha256": {}}')
    with pytest.raises(TokenizerError, match=f'{MANIFEST_FILE}: "sha256" must give'):
        BPETokenizer.load(tmp_path)


def test_folders_of_the_released_code_still_load():
    """Saved by the code before manifests (tests/lm/fixtures/bpe_released, char_released): the special tokens
    of a BPE folder inferred as before."""
    bpe = BPETokenizer.load(FIXTURES / "bpe_released")
    assert bpe.special_tokens == [EOT] and len(bpe) == 280 and bpe.encode(f"the cat sat{EOT}") == [275, 261, 270, 279]
    char = CharTokenizer.load(FIXTURES / "char_released")
    assert char.special_tokens == [EOT] and char.encode(f"hé{EOT}") == [4, 9, 11]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_save_removes_what_a_killed_save_left(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, alive = _dead_pid(), sleeper.pid
        leftovers = [f".vocab.json.{dead}.k3j2.tmp", f".merges.txt.{dead}.x.tmp", f".char_tokenizer.json.{dead}.y.tmp"]
        kept = [f".vocab.json.{alive}.a1.tmp", "notes.txt", f".other.{dead}.z.tmp"]  # a live writer's, not ours
        for name in leftovers + kept:
            (tmp_path / name).write_text("x")
        _trained(270).save(tmp_path)
        CharTokenizer.from_text("abc").save(tmp_path)
        names = set(os.listdir(tmp_path))
        assert not names & set(leftovers) and set(kept) <= names
        assert names - set(kept) == {"vocab.json", "merges.txt", MANIFEST_FILE, "char_tokenizer.json"}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_saved_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        _trained(270).save(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "vocab.json").stat().st_mode & 0o777 == 0o644


# -- paths: stat'ed first, every failure a TokenizerError naming the file --------------------------------------


def _finishes(call, seconds: float = 10.0) -> BaseException | None:
    """Run `call` in a thread; the exception it raised, failing the test if it is still blocked after `seconds`."""
    outcome: list = []

    def run():
        try:
            call()
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, "blocked on the path (a FIFO opened before it was stat'ed?)"
    return outcome[0]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    os.mkfifo(folder / "vocab.json")
    (folder / "merges.txt").write_text("")
    os.mkfifo(tmp_path / "char_tokenizer.json")
    for call in (
        lambda: BPETokenizer.load(folder),
        lambda: CharTokenizer.load(tmp_path),
        lambda: train_bpe_file(folder / "vocab.json", 300),
        lambda: read_training_text(folder / "vocab.json"),
    ):
        err = _finishes(call)
        assert isinstance(err, TokenizerError) and "not a file" in str(err)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_file_that_stats_as_regular_but_cannot_be_read_is_a_tokenizer_error(tmp_path):
    for call in (
        lambda: CharTokenizer.load("/proc/self/mem"),
        lambda: train_bpe_file("/proc/self/mem", 300),
        lambda: BPETokenizer.from_files("/proc/self/mem", tmp_path / "merges.txt"),
    ):
        with pytest.raises(TokenizerError, match="/proc/self/mem"):
            call()


# -- text that is not valid Unicode, and hostile JSON ----------------------------------------------------------


def test_a_lone_surrogate_in_a_vocabulary_is_refused_at_load(tmp_path):
    vocab = {ch: b for b, ch in bytes_to_unicode().items()} | {"\ud800": 256}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))  # json.dumps writes the escape \ud800
    (tmp_path / "merges.txt").write_text("")
    with pytest.raises(TokenizerError, match=r"vocab.json: entry '\\ud800' is not valid Unicode"):
        BPETokenizer.load(tmp_path)
    (tmp_path / "char_tokenizer.json").write_text('{"type": "char", "chars": ["a", "\\ud800"]}')
    with pytest.raises(TokenizerError, match="char_tokenizer.json: character entry 1 .* not valid Unicode"):
        CharTokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="special token .* not valid Unicode"):
        CharTokenizer.from_text("abc", ["<\udfff>"])
    bpe = json.loads(_trained(270).to_json()) | {"special_tokens": ["<\ud800>"]}
    with pytest.raises(TokenizerError, match="special token .* not valid Unicode"):
        from_json(json.dumps(bpe))
    with pytest.raises(TokenizerError, match="not valid Unicode"):
        from_json('{"type": "word", "vocab": ["<pad>", "a\\udc80"]}')


@pytest.mark.parametrize(
    "text", ["[" * 200_000, '{"type": "char", "chars": ' + "[" * 100_000, '{"type": "bpe", "x": ' * 20_000 + "1}"]
)
def test_deeply_nested_json_is_a_tokenizer_error_everywhere(tmp_path, text):
    for load in (from_json, CharTokenizer.from_json, BPETokenizer.from_json):
        with pytest.raises(TokenizerError, match="nests arrays or objects"):
            load(text)
    (tmp_path / "char_tokenizer.json").write_text(text)
    with pytest.raises(TokenizerError, match="char_tokenizer.json is not JSON we read: it nests arrays or objects"):
        CharTokenizer.load(tmp_path)
    (tmp_path / "vocab.json").write_text(text)
    with pytest.raises(TokenizerError, match="vocab.json is not JSON we read: it nests arrays or objects"):
        BPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_json_with_brackets_inside_strings_is_not_deep():
    tok = CharTokenizer.from_text("[[[[{{{{", ["[" * 100])
    assert CharTokenizer.from_json(tok.to_json()).special_tokens == ["[" * 100]
    words = WordTokenizer(["<pad>", "[" * 50, '"[[\\'])
    assert from_json(json.dumps({"type": "word", "vocab": words.vocab})).vocab == words.vocab


# -- the interface ---------------------------------------------------------------------------------------------


def test_every_tokenizer_has_a_length_and_the_interface_asks_for_it():
    for tok in (WordTokenizer(["<pad>", "a"]), CharTokenizer.from_text("ab"), _trained(270)):
        assert isinstance(tok, TextTokenizer) and len(tok) == tok.vocab_size

    class NoLength:  # everything else of the interface
        vocab_size, special_tokens = 1, []
        encode = decode = token_str = staticmethod(lambda x: x)

    assert not isinstance(NoLength(), TextTokenizer)
