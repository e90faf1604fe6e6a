"""`python -m lm tokenizer`: train (progress, summary, files), encode and decode, and exit code 2 with a
clear message for each kind of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from lm.__main__ import main
from lm.tokenizers import BPETokenizer, CharTokenizer

ROOT = Path(__file__).resolve().parents[2]
STORIES = ROOT / "lm/data/tinystories-sample-a.txt"


def test_train_then_encode_with_the_saved_tokenizer(tmp_path, capsys):
    out = tmp_path / "tok"
    code = main(["tokenizer", "train", "--data", str(STORIES), "--vocab-size", "300",
                 "--special", "<|endoftext|>", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "merging 43/43" in captured.err  # the progress bar reached the end
    assert "done: 43 merges, vocabulary 300 (1 special)" in captured.out and "bytes per token" in captured.out
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 300 and tok.special_tokens == ["<|endoftext|>"]

    assert main(["tokenizer", "encode", "--tokenizer", str(out), "Once upon a time<|endoftext|>"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = [int(x) for x in lines[1].split()]
    assert ids == tok.encode("Once upon a time<|endoftext|>") and ids[-1] == 299
    assert lines[0].endswith("[<|endoftext|>]")


def test_encode_and_decode_with_gpt2(capsys):
    assert main(["tokenizer", "encode", "Hello world"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["[Hello] [\u2423world]", "15496 995"]
    assert main(["tokenizer", "decode", "--tokenizer", "gpt2", "15496", "995"]) == 0
    assert capsys.readouterr().out == "Hello world\n"


def test_encode_with_a_character_tokenizer(tmp_path, capsys):
    CharTokenizer.from_text("abc ").save(tmp_path)
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path), "--ids-only", "cab a"]) == 0
    assert capsys.readouterr().out == "3 1 2 0 1\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "{missing}", "--vocab-size", "300", "--out", "{tmp}/o"], "no training text file at"),
        (["train", "--data", "{empty}", "--vocab-size", "300", "--out", "{tmp}/o"], "is empty"),
        (["train", "--data", "{binary}", "--vocab-size", "300", "--out", "{tmp}/o"], "it looks binary"),
        (["train", "--data", "{stories}", "--vocab-size", "100", "--out", "{tmp}/o"], "must be an integer from 256"),
        (["encode", "--tokenizer", "{tmp}/nowhere", "hi"], "no tokenizer at"),
        (["encode", "--tokenizer", "{badtok}", "hi"], "vocab.json is not JSON"),
        (["decode", "1", "x"], "'x' is not an id"),
        (["decode", "99999"], "not a token id: ids are integers 0..50256"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (tmp_path / "badtok").mkdir()
    (tmp_path / "badtok/vocab.json").write_text("nope")
    (tmp_path / "badtok/merges.txt").write_text("")
    names = {"missing": tmp_path / "missing.txt", "empty": tmp_path / "empty.txt", "tmp": tmp_path,
             "binary": tmp_path / "binary.txt", "stories": STORIES, "badtok": tmp_path / "badtok"}  # fmt: skip
    assert main(["tokenizer", *[a.format(**names) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_module_entry_point_exit_code():
    run = subprocess.run(
        [sys.executable, "-m", "lm", "tokenizer", "encode", "--tokenizer", "/nonexistent", "x"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 2 and "no tokenizer at" in run.stderr
    assert run.stdout == ""


def test_a_bad_out_is_refused_before_any_training(tmp_path, capsys, monkeypatch):
    """Issue 19, item 1: a tokenizer --out that is a device, a FIFO, under /proc, empty or a file is refused
    with one line and exit code 2 before the BPE trains (it used to train, then fail or replace the device)."""
    import os

    import lm.tokenizers.cli as tokenizer_cli

    monkeypatch.setattr(tokenizer_cli, "read_training_text", lambda path: pytest.fail("training started"))
    data = tmp_path / "text.txt"
    data.write_text("a b c " * 100)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "file").write_text("x")
    cases = {"/proc/x": "/proc or /sys", str(tmp_path / "pipe"): "a FIFO", "": "--out is empty",
             str(tmp_path / "file"): "a tokenizer is a folder"}  # fmt: skip
    if os.path.exists("/dev/full"):
        cases["/dev/full"] = "a character device"
    for out, needle in cases.items():
        assert main(["tokenizer", "train", "--data", str(data), "--vocab-size", "300", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("\nerror:") or err.startswith("error:"), err
        assert needle in err, err
