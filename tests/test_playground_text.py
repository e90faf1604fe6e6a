"""The text-model logic of the Generate and Train pages, without Streamlit: the bundled Shakespeare
model loads and its traced generation is lm.generate's (cached or not) and attention rows sum to one; bad
prompts and uploads are messages; a language-model session trains, validates, samples, stops and
resumes, keeps its runs for comparison, and its settings errors name the setting.
"""

from __future__ import annotations

import math

import pytest
import torch

from lm.data import DATA_DIR
from lm.generate import generate
from playground import lm_charts
from playground.generation import GenerateError, default_model, model_from_upload
from playground.text_generation import (
    SHAKESPEARE_MODEL,
    TextGenerateError,
    chips_html,
    generate_trace,
    is_text_model,
    shakespeare_model,
)
from playground.textrun_session import LMSession, LMSettings, LMSettingsError, check_text_upload

SHAKESPEARE = shakespeare_model()


def test_the_bundled_model_is_a_small_character_model_that_beats_chance() -> None:
    assert SHAKESPEARE_MODEL.stat().st_size < 2_000_000
    assert is_text_model(SHAKESPEARE) and len(SHAKESPEARE.tokenizer) == 66
    # It has learned from order: on held-out text (the last 10%) its loss is far below the unigram
    # baseline's 3.35 nats (a model that knows only each character's frequency).
    text = DATA_DIR.joinpath("tinyshakespeare.txt").read_text()[-20_000:]
    ids = torch.tensor([SHAKESPEARE.tokenizer.encode(text[i : i + 65]) for i in range(0, 19_000, 1_000)])
    logits = SHAKESPEARE.forward(ids[:, :-1])["logits"].double()  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    assert float(loss) < 2.7


def test_the_trace_matches_lm_generation_and_its_attention_is_causal() -> None:
    trace = generate_trace(SHAKESPEARE, "First Citizen:", max_new_tokens=12, temperature=0.8, top_k=20, seed=3)
    reference = generate(SHAKESPEARE, "First Citizen:", 12, temperature=0.8, top_k=20, seed=3, use_cache=False)
    assert trace.text == reference.text  # the same sampler, seed and windows: the same text
    step = trace.steps[-1]
    assert len(step.attention) == 3 and step.attention[0].shape == (4, len(step.labels), len(step.labels))
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
    trace = generate_trace(SHAKESPEARE, "a" * (context + 6), max_new_tokens=3, temperature=0)
    # 70 ids, context 64: the window jumps to start at 70 - 64 + 32 = 38, then grows by one per token
    assert [len(s.labels) for s in trace.steps] == [context // 2, context // 2 + 1, context // 2 + 2]
    for use_cache in (True, False):
        reference = generate(SHAKESPEARE, "a" * (context + 6), 3, temperature=0, use_cache=use_cache)
        assert trace.text == reference.text


def test_the_trace_streams_its_steps_and_an_empty_prompt_starts_a_document() -> None:
    seen = []
    trace = generate_trace(SHAKESPEARE, "", max_new_tokens=5, temperature=0, on_step=seen.append)
    assert seen == trace.steps and trace.prompt_tokens == [] and trace.steps[0].labels == ["<|endoftext|>"]
    assert not is_text_model(default_model())  # the classic sentence model has its own page


def test_bad_prompts_and_settings_are_messages() -> None:
    with pytest.raises(TextGenerateError, match="not in the vocabulary: '€'"):
        generate_trace(SHAKESPEARE, "price: €")
    with pytest.raises(TextGenerateError, match="limit is 2,000"):
        generate_trace(SHAKESPEARE, "a" * 2001)
    with pytest.raises(TextGenerateError, match="at most 200"):
        generate_trace(SHAKESPEARE, "a", max_new_tokens=201)
    with pytest.raises(TextGenerateError, match="top_p"):
        generate_trace(SHAKESPEARE, "a", top_p=1.5)


def test_uploaded_checkpoints_load_through_the_one_loader_and_are_checked() -> None:
    data = SHAKESPEARE_MODEL.read_bytes()
    model = model_from_upload(data, "mine.safetensors")
    assert all(torch.equal(model.params[n], p) for n, p in SHAKESPEARE.params.items())
    broken = data[:-100]
    with pytest.raises(GenerateError, match="'mine.safetensors'"):
        model_from_upload(broken, "mine.safetensors")


def test_a_language_model_session_trains_validates_samples_and_compares(tmp_path) -> None:
    session = LMSession()
    settings = LMSettings(n_layers=1, d_model=32, context=16, batch_size=4, steps=6, eval_every=3, sample_every=3)
    session.start(settings, cache_dir=tmp_path)
    assert session.status == "running" and math.isclose(session.run.unigram, 3.35, abs_tol=0.05)
    session.advance(budget_s=0)  # at least one step
    session.stop()
    assert session.status == "stopped" and session.run.status == "stopped" and session.step >= 1
    session.resume()
    while session.running:
        session.advance(budget_s=1)
    run = session.run
    assert session.status == "finished" and run.steps == [1, 2, 3, 4, 5, 6] and run.val_steps == [3, 6]
    assert [s for s, _ in run.samples] == [3, 6] and all(text for _, text in run.samples)
    assert run.lrs[0] < run.lrs[1]  # warmup
    session.start(
        LMSettings(**{**settings.__dict__, "preset": "llama", "parts": {"positions": "learned"}}), cache_dir=tmp_path
    )
    assert session.trainer.model.config.positions == "learned" and session.trainer.model.config.ffn == "swiglu"
    session.advance(budget_s=0)
    session.stop()
    saved = model_from_upload(session.checkpoint_bytes(), "run.safetensors")  # what Download gives
    assert all(torch.equal(saved.params[n], p) for n, p in session.trainer.model.params.items())
    rows = [r.row() for r in session.runs]
    assert [r["run"] for r in rows] == [1, 2] and rows[1]["changed parts"] == "positions=learned"
    figure = lm_charts.compare_figure(session.runs)
    assert [t.name for t in figure.data] == [lm_charts.label(r) for r in session.runs]
    assert len(lm_charts.loss_figure(session.runs[0]).data) == 2  # training and validation on one chart


def test_settings_and_texts_the_page_cannot_use_are_messages(tmp_path) -> None:
    with pytest.raises(LMSettingsError, match="d_model: this page allows at most 256"):
        LMSession().start(LMSettings(d_model=512), cache_dir=tmp_path)
    with pytest.raises(LMSettingsError, match="n_heads .3. must divide d_model .64."):
        LMSession().start(LMSettings(n_heads=3), cache_dir=tmp_path)
    with pytest.raises(LMSettingsError, match="no text yet"):
        LMSession().start(LMSettings(corpus="pasted"), cache_dir=tmp_path)
    with pytest.raises(LMSettingsError, match="binary"):
        check_text_upload(b"\x00\x01" * 1000, "a.txt")
    with pytest.raises(LMSettingsError, match="limit is 5,000,000"):
        check_text_upload(b"a" * 5_000_001, "a.txt")
    with pytest.raises(LMSettingsError, match="at least 1,000"):
        check_text_upload(b"short", "a.txt")


def test_a_pasted_text_with_a_bpe_tokenizer_trained_here_reports_progress(tmp_path) -> None:
    text = DATA_DIR.joinpath("tinyshakespeare.txt").read_text()[:6_000]
    calls = []
    session = LMSession()
    settings = LMSettings(
        corpus="pasted", tokenizer="bpe:300", n_layers=1, d_model=32, context=16, batch_size=2, steps=2
    )
    session.start(settings, text, cache_dir=tmp_path, progress=lambda done, total, stage: calls.append(stage))
    assert len(session.trainer.tokenizer) == 300 and "merge" in calls
    session.advance(budget_s=0)
    assert session.step == 1 and math.isfinite(session.run.losses[0])


def test_tinystories_is_downloaded_only_when_chosen_and_fails_clearly_offline(tmp_path, monkeypatch) -> None:
    import lm.data  # noqa: PLC0415

    monkeypatch.setattr(lm.data, "_online", lambda *args, **kwargs: False)
    with pytest.raises(LMSettingsError, match=r"TinyStories.*(offline|datasets)") as err:  # whichever is missing
        LMSession().start(LMSettings(corpus="tinystories"), cache_dir=tmp_path)
    assert "--data" not in str(err.value)  # words for the page, not command-line flags (issue 18, finding 4)


def test_a_sample_that_ends_at_once_says_so() -> None:
    """Issue 18, finding 5: a young model's sample was an empty "step 50:"."""
    from types import SimpleNamespace

    from playground.textrun_session import sample_text

    assert sample_text(SimpleNamespace(continuation="To be", stop_reason="max_new_tokens")) == "To be"
    empty = sample_text(SimpleNamespace(continuation="\n", stop_reason="end"))
    assert empty.startswith("(nothing yet: the model predicted the end") and empty.endswith("at once)")
