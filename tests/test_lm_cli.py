"""The command line: a short training run as a user runs it (`python -m lm` in a subprocess), then
generation, help and errors in-process (each subprocess pays torch's import time, so only one runs)."""

import subprocess
import sys
import time

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
    assert out.startswith("a bright star shines above\n") and out.count("top-3") == 4  # 3 words, then <eos>
    assert "step 4: '<eos>'" in out and "stopped: the model predicted the end of the sentence" in out


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


@pytest.fixture
def no_training(monkeypatch):
    """Make sure a bad command line fails before any training starts."""
    monkeypatch.setattr("lm.train.Trainer.step", lambda self: pytest.fail("training started"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--out", "{tmp}"], "is a folder"),
        (["--out", ""], "--out is empty"),
        (["--out", "{tmp}/missing/m.safetensors"], "does not exist: create it first"),
        (["--out", "{tmp}/file.txt/m.safetensors"], "is a file, not a folder"),
        (["--corpus", "/dev/zero"], "not a regular file"),
        # 2 V D + C D + 4 D^2 + 2 D F with V = 47 (45 words, <pad>, <eos>), C = 5, D = 8192, F = 32768
        (
            ["--d-model", "8192", "--d-ff", "32768", "--heads", "8"],
            f"{2 * 47 * 8192 + 5 * 8192 + 4 * 8192**2 + 2 * 8192 * 32768:,} parameters",
        ),
        (["--optimizer", "adamw", "--weight-decay", "nan"], "weight_decay must be 0 or a positive number, got nan"),
        (["--lr", "nan"], "lr must be a positive number"),
        (["--clip", "-1"], "clip_grad_norm"),
    ],
)
def test_bad_train_command_lines_fail_before_training(args, needle, tmp_path, capsys, no_training):
    (tmp_path / "file.txt").write_text("a file")
    start = time.perf_counter()
    assert main(["train", *[a.replace("{tmp}", str(tmp_path)) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err and "Traceback" not in err and err.count("\n") == 1
    assert time.perf_counter() - start < 5  # no 6 GB model was allocated


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--temperature", "nan"], "temperature must be 0"),
        (["--max-new-tokens", "0"], "max_new_tokens must be a whole number of at least 1, got 0"),
        (["--max-new-tokens", "-1"], "got -1"),
        (["--top-k", "0"], "top_k"),
        (["--weights", "/proc/self/mem"], "/proc/self/mem"),
    ],
)
def test_bad_generate_command_lines_are_one_clear_line(args, needle, capsys):
    assert main(["generate", "the red", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error:") and needle in captured.err and captured.out == ""


def test_a_diverging_run_fails_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--lr", "3", "--quiet", "--out", str(out)]) == 1
    assert "diverged: the loss climbed" in capsys.readouterr().err and not out.exists()
