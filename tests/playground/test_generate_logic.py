"""Tests of the Generate page's logic (playground/generate/logic.py), for every model without Streamlit.
The classic word model: prompt checks with helpful messages, bad weights files, both decoding modes
agreeing, bounds on settings, and the highlighted text. The bundled Shakespeare model: it loads, its
traced generation is lm.generate's (cached or not) and its attention rows sum to one; bad prompts and
uploads are messages; chips escape model text. Which widgets and checks apply is each model's profile."""

from __future__ import annotations

import pytest
import torch

from lm.checkpoint import DEFAULT_WEIGHTS, to_bytes
from lm.data import DATA_DIR
from lm.generate import Trace, generate
from playground.common.markdown import literal
from playground.generate.logic import (
    FREE_TEXT,
    SENTENCES,
    SHAKESPEARE_MODEL,
    GenerateError,
    check_prompt,
    chips_html,
    default_model,
    highlighted_markdown,
    model_caption,
    model_from_upload,
    profile_of,
    run_generation,
    shakespeare_model,
    step_labels,
)

SHAKESPEARE = shakespeare_model()


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


# ---------------------------------------------------------------- the bundled Shakespeare model (free text)


def test_the_bundled_model_is_a_small_character_model_that_beats_chance() -> None:
    assert SHAKESPEARE_MODEL.stat().st_size < 10_000_000  # weights only: 1.8M float32 parameters
    assert profile_of(SHAKESPEARE) is FREE_TEXT and len(SHAKESPEARE.tokenizer) == 66
    # It has learned from order: on held-out text (the last 10%) its loss is far below the unigram
    # baseline's 3.35 nats (a model that knows only each character's frequency).
    text = DATA_DIR.joinpath("tinyshakespeare.txt").read_text()[-20_000:]
    ids = torch.tensor([SHAKESPEARE.tokenizer.encode(text[i : i + 65]) for i in range(0, 19_000, 1_000)])
    logits = SHAKESPEARE.forward(ids[:, :-1])["logits"].double()  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    assert float(loss) < 1.8  # the bundled model's recorded validation loss is 1.551 (tests/lm/test_lm_bundled.py)


def test_the_trace_matches_lm_generation_and_its_attention_is_causal() -> None:
    gen = run_generation(SHAKESPEARE, "First Citizen:", max_new_tokens=12, temperature=0.8, top_k=20, seed=3)
    trace = gen.trace
    reference = generate(SHAKESPEARE, "First Citizen:", 12, temperature=0.8, top_k=20, seed=3, use_cache=False)
    assert trace.text == reference.text  # the same sampler, seed and windows: the same text
    step = trace.steps[-1]
    assert len(step.attention) == 4 and step.attention[0].shape == (3, len(step.labels), len(step.labels))
    for weights in step.attention:
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2], dtype=weights.dtype), atol=1e-5)
        assert float(weights.triu(1).abs().max()) == 0  # no position reads the future
    assert abs(float(step.probs.sum()) - 1) < 1e-9
    chips = chips_html(trace.prompt_tokens, trace.new_tokens)
    assert "&lt;" not in chips or "<" in trace.text  # escaped, and only when the text has one
    assert chips_html(["a<b"], []).count("a&lt;b") == 1 and chips_html([], [" "]).count("␣") == 1


def test_past_the_context_the_model_reads_lm_generations_sliding_window() -> None:
    """The page's trace is lm's generation: past the context the window jumps ahead half a context, and
    the text equals lm's, cached or not."""
    context = SHAKESPEARE.config.context
    trace = run_generation(SHAKESPEARE, "a" * (context + 6), max_new_tokens=3, temperature=0).trace
    # 70 ids, context 64: the window jumps to start at 70 - 64 + 32 = 38, then grows by one per token
    assert [len(s.labels) for s in trace.steps] == [context // 2, context // 2 + 1, context // 2 + 2]
    for use_cache in (True, False):
        reference = generate(SHAKESPEARE, "a" * (context + 6), 3, temperature=0, use_cache=use_cache)
        assert trace.text == reference.text


def test_the_trace_streams_its_steps_and_an_empty_prompt_starts_a_document() -> None:
    seen = []
    trace = run_generation(SHAKESPEARE, "", max_new_tokens=5, temperature=0, on_step=seen.append).trace
    assert seen == trace.steps and trace.prompt_tokens == [] and trace.steps[0].labels == ["<|endoftext|>"]
    assert profile_of(default_model()) is SENTENCES  # the classic sentence model starts from a word


def test_bad_prompts_and_settings_are_messages() -> None:
    with pytest.raises(GenerateError, match="not in the vocabulary: '€'"):
        run_generation(SHAKESPEARE, "price: €", temperature=0.8)
    with pytest.raises(GenerateError, match="limit is 2,000"):
        run_generation(SHAKESPEARE, "a" * 2001, temperature=0.8)
    with pytest.raises(GenerateError, match="at most 200"):
        run_generation(SHAKESPEARE, "a", max_new_tokens=201, temperature=0.8)
    with pytest.raises(GenerateError, match="top_p"):
        run_generation(SHAKESPEARE, "a", temperature=0.8, top_p=1.5)


def test_uploaded_checkpoints_load_through_the_one_loader_and_are_checked() -> None:
    data = SHAKESPEARE_MODEL.read_bytes()
    model = model_from_upload(data, "mine.safetensors")
    assert all(torch.equal(model.params[n], p) for n, p in SHAKESPEARE.params.items())
    broken = data[:-100]
    with pytest.raises(GenerateError, match="'mine.safetensors'"):
        model_from_upload(broken, "mine.safetensors")


def test_each_kind_of_model_has_its_profile_and_one_generation() -> None:
    """The word model compares decoding with and without the KV cache (both timed, the same tokens); a text
    model generates once with the cache (its steps streamed). Both are lm.generate's traces."""
    words = run_generation(default_model(), "the red", max_new_tokens=3, repeats=1)
    assert words.uncached is not None and words.same_tokens and words.trace.text == "the red fox jumps high"
    text = run_generation(SHAKESPEARE, "ROMEO:", max_new_tokens=4, temperature=0)
    assert text.uncached is None and text.cached.ms_per_token > 0
    assert text.trace.text == generate(SHAKESPEARE, "ROMEO:", 4, temperature=0).text
    assert (SENTENCES.widget("prompt"), FREE_TEXT.widget("prompt")) == ("gen_prompt", "gen_text_prompt")
    assert not SENTENCES.empty_prompt and FREE_TEXT.empty_prompt and FREE_TEXT.top_p and not SENTENCES.top_p


def test_the_caption_names_the_model_its_size_and_vocabulary() -> None:
    assert model_caption("Classic (words)", default_model()).endswith(
        "d_model 64 · vocabulary 45 words (+ `<pad>`, `<eos>`) · context 5"
    )
    assert model_caption("Shakespeare (characters)", SHAKESPEARE).startswith(
        "Shakespeare (characters): 1,808,448 parameters · preset "
    )
    assert "CharTokenizer vocabulary 66 · context 128" in model_caption("x", SHAKESPEARE)
