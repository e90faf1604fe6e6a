"""The command line: a short training run as a user runs it (`python -m lm` in a subprocess), then
generation, help and errors in-process (each subprocess pays torch's import time, so only one runs)."""

import subprocess
import sys

import pytest

from lm.__main__ import main
from lm.weights import load


def _lm(*args):
    return subprocess.run([sys.executable, "-m", "lm", *args], capture_output=True, text=True, timeout=120)


def test_train_then_generate(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat down\n\nthe dog ran far away\n", encoding="utf-8")
    out = tmp_path / "m.safetensors"
    result = _lm(
        "train", "--corpus", str(corpus), "--epochs", "5", "--heads", "2", "--d-model", "16", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 5/5" in result.stderr and "memorized" in result.stdout and str(out) in result.stdout
    assert load(out).config.n_heads == 2
    assert main(["generate", "--weights", str(out), "the dog", "--max-new-tokens", "2", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the dog") and out.count("top-3") == 2


@pytest.mark.parametrize("cmd,needle", [([], "train"), (["train"], "--d-model"), (["generate"], "--weights")])
def test_help(cmd, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0 and needle in capsys.readouterr().out


def test_generate_with_the_bundled_weights(capsys):
    assert main(["generate", "a bright"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a bright star shines above") and out.count("top-3") == 3


@pytest.mark.parametrize(
    "args,needle",
    [
        (["generate", "the purple fox"], "'purple'"),
        (["generate", "--weights", "/nonexistent.safetensors", "the red"], "does not exist"),
        (["train", "--heads", "3", "--epochs", "1"], "divide d_model"),
        (["train", "--corpus", "/nonexistent.txt"], "does not exist"),
    ],
)
def test_errors_are_one_clear_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err and "Traceback" not in err
