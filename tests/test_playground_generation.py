"""Tests of the Generate page's logic (playground/generation.py): prompt checks with helpful messages,
bad weights files, both decoding modes agreeing, bounds on settings, and the highlighted text."""

from __future__ import annotations

import pytest
import torch

from lm.checkpoint import DEFAULT_WEIGHTS, to_bytes
from lm.generate import Trace
from playground.generation import (
    GenerateError,
    check_prompt,
    default_model,
    highlighted_markdown,
    model_from_upload,
    run_generation,
    step_labels,
)
from playground.markdown import literal


@pytest.fixture(scope="module")
def model():
    return default_model()


def test_default_model_completes_a_sentence_and_both_modes_agree(model) -> None:
    gen = run_generation(model, "the red", max_new_tokens=10, repeats=1)
    assert gen.trace.text == "the red fox jumps high"
    assert gen.same_tokens and gen.cached.tokens == ["fox", "jumps", "high"]
    assert gen.cached.ms_per_token > 0 and gen.uncached.ms_per_token > 0 and gen.cached.first_ms > 0
    assert step_labels(gen.trace) == ["1 → fox", "2 → jumps", "3 → high", "4 → <eos>"]  # it ends the sentence
    assert gen.trace.stop_reason == "end"
    assert len(gen.vocab) == model.config.vocab_size


def test_sampling_with_a_seed_is_repeatable_and_modes_agree(model) -> None:
    runs = [run_generation(model, "a", 3, temperature=2.0, top_k=5, seed=7, repeats=1) for _ in range(2)]
    assert runs[0].trace.new_tokens == runs[1].trace.new_tokens
    assert all(run.same_tokens for run in runs)


def test_the_uncached_trace_is_shown_when_the_cache_is_off(model) -> None:
    gen = run_generation(model, "my old", use_cache=False, repeats=1)
    assert gen.trace.text == "my old cat sleeps often"


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "The prompt is empty"),
        ("   ", "The prompt is empty"),
        ("the purple", r"'purple'.*The vocabulary \(45 words\): a, above"),
        ("teh red", "did you mean 'the'"),
        ("<pad> red", "'<pad>' \\(a special token"),
        ("<eos>", "'<eos>' \\(a special token"),
        ("the red fox jumps high often", "6 words but the model reads at most 5"),
        ("x" * 3000, "limit is 2,000"),
    ],
)
def test_bad_prompts_give_a_clear_message(model, prompt: str, message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        check_prompt(model, prompt)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be a whole number of at least 1"),  # lm's rule
        ({"max_new_tokens": 1000}, "Max new tokens: this page generates at most 64"),  # the page's limit
        ({"temperature": 50.0}, "Temperature: this page allows at most 5"),
        ({"temperature": float("nan")}, "Temperature must be 0"),
        ({"temperature": 1.0, "top_k": 0}, "top_k must be"),
        ({"temperature": 1.0, "top_k": 1000}, "Top-k: this page allows at most 100"),
    ],
)
def test_settings_are_bounded(model, kwargs: dict, message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        run_generation(model, "the red", **kwargs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty or truncated"),
        (b"\x00" * 64, "not a safetensors file|truncated"),
        (DEFAULT_WEIGHTS.read_bytes()[:-10], "truncated"),
        (b"x" * 20_000_001, "the limit is"),
    ],
)
def test_bad_weights_files_give_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        model_from_upload(data, "upload.safetensors")


def test_a_good_weights_file_loads(model) -> None:
    loaded = model_from_upload(to_bytes(model), "default.safetensors")
    assert loaded.config == model.config and loaded.tokenizer.vocab == model.tokenizer.vocab
    assert all(torch.equal(loaded.params[n], p) for n, p in model.params.items())  # the weights, not just the shape


def test_the_new_tokens_are_highlighted_and_user_text_is_escaped() -> None:
    trace = Trace([4, 5], prompt_tokens=["the", "red"], new_tokens=["fox", "[x]*"])
    assert highlighted_markdown(trace) == (r"the red :orange-background[**fox**] :orange-background[**\[x\]\***]")
    assert literal("a_b:c") == r"a\_b\:c"


def test_trained_in_this_session_is_the_run_started_last():
    """Issue 18, finding 1: a language-model run, then a Memorize run whose banner says it is now the trained
    model: Generate must offer the Memorize run (and the other way round), never the older one."""
    from types import SimpleNamespace

    from playground.generation import latest_trained

    memorize = SimpleNamespace(status="finished", started_at=2.0)
    text = SimpleNamespace(model=object(), started_at=1.0)
    assert latest_trained(memorize, text) == "sentences"
    assert latest_trained(SimpleNamespace(status="finished", started_at=0.5), text) == "text"
    assert latest_trained(SimpleNamespace(status="running", started_at=3.0), text) == "text"  # no model yet
    assert latest_trained(memorize, SimpleNamespace(model=None, started_at=5.0)) == "sentences"
    assert latest_trained(SimpleNamespace(status="idle", started_at=-1), SimpleNamespace(model=None)) is None
