"""The one command line (`python -m lm train|generate`): a classic run as a user types it (one subprocess,
since each pays torch's import time), then in-process: a tiny text run, --resume, --overwrite, generation
from both kinds of saved runs and from the bundled weights, the recipe picked by --data alone (no argv
sniffing), --epochs as --steps, and every error as one `error:` line with exit code 2, before any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lm import checkpoint
from lm.__main__ import main
from lm.cli import build_parser, train_config
from lm.model import init_params

TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}." for i in range(200))
TINY = ["--layers", "1", "--heads", "2", "--d-model", "16", "--context", "8", "--batch", "4", "--eval-every", "5",
        "--eval-batches", "2", "--warmup", "2", "--quiet"]  # fmt: skip
SHAKESPEARE_MODEL = Path(checkpoint.__file__).parent / "data" / "shakespeare-char.safetensors"


def _lm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lm", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def test_train_sentences_then_generate(tmp_path: Path, capsys):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("the cat sat down\n\nthe dog ran far away\n", encoding="utf-8")
    out = tmp_path / "m.safetensors"
    result = _lm(
        "train", "--data", f"sentences:{sentences}", "--epochs", "5", "--heads", "2", "--d-model", "16",
        "--out", str(out), cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "step 5/5" in result.stderr and "memorized" in result.stderr  # the bar, then the evaluation
    rows = [line for line in result.stdout.splitlines() if line.startswith(("  ok", "  MISS"))]
    assert len(rows) == 2 and "'the cat' -> " in rows[0] and "'the dog' -> " in rows[1]  # one row per sentence
    assert "memorized" in result.stdout and str(out) in result.stdout and "done: step 5" in result.stdout
    saved = checkpoint.load(out)
    assert saved.model.config.n_heads == 2 and saved.iteration == 5 and saved.train_config["data"].endswith(".txt")
    args = ["generate", "--weights", str(out), "the dog", "--max-new-tokens", "2", "--no-cache", "--show-top", "3"]
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("the dog") and shown.count("top-3") == 2


def test_train_resume_and_generate_a_text_run(tmp_path: Path, corpus: str, capsys):
    run = str(tmp_path / "runs" / "tiny")
    args = ["train", "--data", corpus, *TINY, "--out", run, "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--steps", "10"]) == 0
    out, err = capsys.readouterr()
    assert "done: step 10" in out and "validation loss" in out and "sample:" in out
    assert "step      5  train loss" in err and "val loss" in err and "tok/s" in err and "char tokens" in err
    assert main([*args, "--steps", "10"]) == 2  # the run exists: refuse to overwrite it
    assert "already holds a run: add --resume to continue it, --overwrite to replace it" in capsys.readouterr().err
    resume = ["train", "--resume", "--out", run, "--steps", "15", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(resume) == 0
    out, err = capsys.readouterr()
    assert "resuming" in err and "at step 10 of 15" in err and "done: step 15" in out
    assert checkpoint.load(run).iteration == 15
    assert main(resume) == 0 and "nothing to do: the run is at step 15 of 15" in capsys.readouterr().err

    generate = ["generate", "--weights", run, "line 1", "--max-new-tokens", "12", "--top-k", "5", "--top-p", "0.9"]
    assert main(generate) == 0
    out, err = capsys.readouterr()
    assert out.startswith("line 1") and "tokens in" in err

    assert main([*args, "--steps", "3", "--overwrite"]) == 0  # a new run in its place
    assert checkpoint.load(run).iteration == 3 and "done: step 3" in capsys.readouterr().out


def test_resume_a_sentences_run_and_generate_from_its_folder(tmp_path: Path, capsys):
    run = str(tmp_path / "classic")
    assert main(["train", "--epochs", "20", "--quiet", "--out", run]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--epochs", "30", "--quiet", "--out", run]) == 0
    out, err = capsys.readouterr()
    assert "at step 20 of 30" in err and "done: step 30" in out and "memorized 10/10 sentences" in out
    assert checkpoint.load(run).iteration == 30
    assert main(["generate", "--weights", run, "the red"]) == 0
    assert capsys.readouterr().out == "the red fox jumps high\n"


def test_generate_with_the_bundled_weights(capsys):
    assert main(["generate", "a bright", "--show-top", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("a bright star shines above\n") and out.count("top-3") == 4  # 3 words, then <eos>
    assert "step 4: '<eos>'" in out and "stopped: the model predicted the end of the sentence" in err


def test_the_recipe_follows_data_alone_and_epochs_is_steps():
    """No argv sniffing: without --data a run is the classic recipe on the sentences, whatever its preset."""
    parse = build_parser().parse_args
    gpt = train_config(parse(["train", "--preset", "gpt"]))
    assert gpt.is_sentences and gpt.preset == "gpt" and gpt.optimizer == "sgd" and gpt.tokenizer == "word"
    assert (
        train_config(parse(["train", "--data", "shakespeare"])).to_dict()
        == train_config(parse(["train", "--recipe", "nanogpt"])).to_dict()
    )
    classic = train_config(parse(["train"]))
    assert classic.data == "sentences" and classic.steps == 500 and classic.dtype == "float64"
    epochs, steps = (train_config(parse(["train", option, "7"])) for option in ("--epochs", "--steps"))
    assert epochs.steps == steps.steps == 7


def test_a_sentences_run_with_the_gpt_preset_trains_on_the_sentences(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "gpt", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "model: gpt" in err and "data: sentences, word tokens" in err and "10 sentences" in err
    assert checkpoint.load(out).model.config.preset == "gpt"


@pytest.mark.parametrize("cmd,needle", [([], "train"), (["train"], "--d-model"), (["generate"], "--weights")])
def test_help(cmd, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0 and needle in capsys.readouterr().out


def assert_one_error_line(err: str, needle: str) -> None:
    assert err.startswith("error:") and needle in err and "Traceback" not in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["generate", "the purple fox"], "'purple'"),
        (["generate", "--weights", "/nonexistent.safetensors", "the red"], "does not exist"),
        (["generate", "--weights", "no-such-run", "hi"], "no checkpoint at 'no-such-run'"),
        (["train", "--heads", "3", "--epochs", "1"], "divide d_model"),
        (["train", "--data", "sentences:/nonexistent.txt"], "does not exist"),
        (["train", "--data", "nowhere.txt"], "no text file at 'nowhere.txt'"),
        (["train", "--data", "shakespeare", "--tokenizer", "morse"], "unknown tokenizer 'morse'"),
        (["train", "--data", "shakespeare", "--steps", "0"], "steps must be a whole number"),
        (["train", "--resume", "--out", "no-such-run"], "no checkpoint at 'no-such-run'"),
        (["train", "--data", "shakespeare", "--out", "a-file/run"], "'a-file' is not a folder"),
    ],
)
def test_errors_are_one_clear_line(args, needle, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    assert main([*args, "--cache-dir", str(tmp_path)] if args[0] == "train" else args) == 2
    assert_one_error_line(capsys.readouterr().err, needle)


@pytest.fixture
def no_training(monkeypatch):
    """Make sure a bad command line fails before any training starts."""
    monkeypatch.setattr("lm.train.Trainer.train_step", lambda self: pytest.fail("training started"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--out", ""], "--out is empty"),
        (["--out", "{tmp}/file.txt/m.safetensors"], "is not a folder, so nothing can be saved under it"),
        (["--out", "/dev/null"], "is a character device, not a file or folder"),
        (["--out", "/dev/full"], "is a character device, not a file or folder"),  # issue 19: never replaced
        (["--out", "{tmp}/pipe"], "is a FIFO"),
        (["--out", "/proc/x"], "/proc or /sys"),
        (["--data", "shakespeare", "--out", ""], "--out is empty"),
        (["--data", "sentences:/dev/zero"], "a character device, not a file"),
        # 2 V D + C D + 4 D^2 + 2 D F with V = 47 (45 words, <pad>, <eos>), C = 5, D = 8192, F = 32768
        (
            ["--d-model", "8192", "--d-ff", "32768", "--heads", "8"],
            f"{2 * 47 * 8192 + 5 * 8192 + 4 * 8192**2 + 2 * 8192 * 32768:,} parameters",
        ),
        (["--optimizer", "adamw", "--weight-decay", "nan"], "weight_decay must be a number from 0 to 10, got nan"),
        (["--lr", "nan"], "lr must be a number from 0 to 10, got nan"),
        (["--clip", "-1"], "clip must be a number from 0 to 10, got -1.0"),
        (["--preset", "gpt", "--heads", "5"], "divide d_model"),
        (["--data", "{tmp}/text.txt", "--batch", "4096", "--context", "8192"], "a training step would need about"),
    ],
)
def test_bad_train_command_lines_fail_before_training(args, needle, tmp_path: Path, capsys, no_training):
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "text.txt").write_text("some words here. " * 6000)  # a validation part longer than 8192
    os.mkfifo(tmp_path / "pipe")
    start = time.perf_counter()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    assert main(["train", *args, *out, "--cache-dir", str(tmp_path / "cache")]) == 2
    assert_one_error_line(capsys.readouterr().err, needle)
    assert time.perf_counter() - start < 5  # no 6 GB model was allocated
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--temperature", "nan"], "temperature must be 0 (greedy) or a positive number, got nan"),
        (["--temperature", "inf"], "temperature must be a finite number"),
        (["--max-new-tokens", "0"], "max_new_tokens must be a whole number of at least 1, got 0"),
        (["--max-new-tokens", "-1"], "got -1"),
        (["--top-k", "0"], "top_k must be a whole number of at least 1"),
        (["--top-p", "nan"], "top_p must be in (0, 1], got nan"),
        (["--weights", "/proc/self/mem"], "/proc/self/mem"),
    ],
)
@pytest.mark.parametrize("weights", ["classic", "shakespeare"])
def test_bad_generate_command_lines_fail_before_generating(args, needle, weights, capsys):
    """Checked before the first token (a NaN temperature reached torch.multinomial and a traceback), for the
    bundled classic model and the bundled Shakespeare model alike."""
    model = [] if weights == "classic" else ["--weights", str(SHAKESPEARE_MODEL)]
    assert main(["generate", "the red", *model, *args]) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, needle)
    assert captured.out == ""


def test_a_diverging_run_fails_and_keeps_its_last_good_checkpoint(tmp_path: Path, capsys):
    """SGD at lr 3 diverges at step 4, before the first evaluation (50): the run folder keeps the checkpoint
    written before training (step 0), not the diverged model."""
    out = tmp_path / "run"
    assert main(["train", "--lr", "3", "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "diverged: the loss climbed" in err and f"the last checkpoint is in {out}" in err
    saved = checkpoint.load(out)
    assert saved.iteration == 0 and saved.train_config["lr"] == 3
    initial = init_params(saved.model.config)  # the seeded initialization: nothing trained was saved
    assert all(torch.equal(saved.model.params[n], p) for n, p in initial.items())


def test_the_progress_bar_says_how_long_a_step_takes_and_the_time_left() -> None:
    """Issue 19, item 8: a run of huge steps says after its first step how long the rest will take."""
    from types import SimpleNamespace

    from lm.cli import _bar

    event = SimpleNamespace(step=3, total=1003, loss=2.0, lr=1e-3, tokens_per_s=100.0, elapsed=30.0)
    bar = _bar(event, first_step=0)
    assert "10.00 s/step" in bar and "2h46m left" in bar  # 1,000 steps x 10 s
    assert "0s left" in _bar(SimpleNamespace(**{**vars(event), "step": 1003}), first_step=0)
