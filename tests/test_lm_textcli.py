"""The text models' command line: train a tiny run, resume it, generate from it, and clear errors
for bad options; `python -m lm` hands text commands to lm.textcli."""

from pathlib import Path

import pytest

from lm import textcli

TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}." for i in range(200))
TINY = ["--layers", "1", "--heads", "2", "--d-model", "16", "--context", "8", "--batch", "4", "--eval-every", "5",
        "--eval-batches", "2", "--warmup", "2", "--quiet"]  # fmt: skip


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def test_train_resume_generate(tmp_path, corpus, capsys):
    run = str(tmp_path / "runs" / "tiny")
    args = ["train", "--data", corpus, *TINY, "--out", run, "--cache-dir", str(tmp_path / "cache")]
    assert textcli.wants_text(args)
    assert textcli.main([*args, "--steps", "10"]) == 0
    out, err = capsys.readouterr()
    assert "done: step 10" in out and "sample:" in out
    assert "step      5  train loss" in err and "val loss" in err and "tok/s" in err
    assert textcli.main([*args, "--steps", "10"]) == 2  # the run exists: refuse to overwrite it
    assert "already holds a run" in capsys.readouterr().err
    assert (
        textcli.main(["train", "--resume", "--out", run, "--steps", "15", "--cache-dir", str(tmp_path / "cache")]) == 0
    )
    out, err = capsys.readouterr()
    assert "resuming" in err and "at step 10 of 15" in err and "done: step 15" in out

    generate = ["generate", "--weights", run, "line 1", "--max-new-tokens", "12", "--top-k", "5", "--top-p", "0.9"]
    assert textcli.wants_text(generate)
    assert textcli.main(generate) == 0
    out, err = capsys.readouterr()
    assert out.startswith("line 1") and "tokens in" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "nowhere.txt"], "no file nowhere.txt"),
        (["train", "--data", "shakespeare", "--tokenizer", "morse"], "unknown tokenizer 'morse'"),
        (["train", "--data", "shakespeare", "--steps", "0"], "steps must be a whole number"),
        (["train", "--resume", "--out", "no-such-run"], "no checkpoint at"),
        (["generate", "--weights", "no-such-run", "hi"], "no checkpoint at"),
        (["train", "--data", "shakespeare", "--out", "a-file/run"], "cannot write the run to --out 'a-file/run'"),
    ],
)
def test_bad_options_get_clear_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    assert textcli.main([*args, "--cache-dir", str(tmp_path)] if args[0] == "train" else args) == 2
    assert message in capsys.readouterr().err


def test_classic_commands_stay_with_the_classic_cli():
    assert not textcli.wants_text(["train", "--epochs", "5"])
    assert not textcli.wants_text(["generate", "the red"])
    assert not textcli.wants_text(["generate", "--weights", "lm/data/default.safetensors", "the red"])


@pytest.mark.parametrize(
    "option,message",
    [
        (["--temperature", "nan"], "temperature must be 0 (greedy) or a positive number, got nan"),
        (["--temperature", "inf"], "temperature must be a finite number"),
        (["--top-k", "0"], "top_k must be a whole number of at least 1"),
        (["--top-p", "nan"], "top_p must be in (0, 1], got nan"),
        (["--max-new-tokens", "0"], "max_new_tokens must be 1 to 100,000, got 0"),
    ],
)
def test_bad_sampling_settings_fail_before_generating(option, message, capsys):
    """Checked before the first token (a NaN temperature reached torch.multinomial and a traceback)."""
    bundled = Path(textcli.__file__).parent / "data" / "shakespeare-char.safetensors"
    assert textcli.main(["generate", "--weights", str(bundled), "ROMEO:", *option]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
