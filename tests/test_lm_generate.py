"""Generation: the KV cache gives the same tokens, probabilities and attention as full recomputation,
sampling is deterministic for a seed, and the trace and stopping rules are what the Generate page needs."""

import pytest
import torch

from lm.corpus import DEFAULT_CORPUS
from lm.generate import KVCache, cached_step, generate, sample_next_token
from lm.model import LanguageModel, ModelConfig
from lm.tokenizer import Tokenizer, UnknownWordError
from lm.weights import DEFAULT_WEIGHTS, load


@pytest.fixture(scope="module")
def trained():
    return load(DEFAULT_WEIGHTS)


def _random_model(context=12, layers=2, heads=4, seed=0):
    tok = Tokenizer.from_corpus(DEFAULT_CORPUS)
    cfg = ModelConfig(vocab_size=len(tok), context=context, d_model=32, d_ff=48, n_layers=layers, n_heads=heads)
    return LanguageModel.create(cfg, tok, seed=seed)


@pytest.mark.parametrize("which", ["trained", "2x4", "1x1"])
def test_cache_equals_full_recomputation(which, trained):
    model = {"trained": trained, "2x4": _random_model(), "1x1": _random_model(layers=1, heads=1)}[which]
    for kwargs in ({}, {"temperature": 1.5, "seed": 4}):
        cached = generate(model, "the red", max_new_tokens=20, use_cache=True, **kwargs)
        full = generate(model, "the red", max_new_tokens=20, use_cache=False, **kwargs)
        assert cached.new_tokens == full.new_tokens and cached.stop_reason == full.stop_reason
        for a, b in zip(cached.steps, full.steps):
            assert a.token_id == b.token_id and a.labels == b.labels
            torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-9)
            for x, y in zip(a.attention, b.attention):
                torch.testing.assert_close(x, y, rtol=0, atol=1e-9)


def test_trace_holds_probabilities_and_causal_attention_per_layer_and_head():
    model = _random_model(seed=1)  # a seed whose random weights do not pick <pad> within 4 steps
    trace = generate(model, "the red fox", max_new_tokens=4)
    assert len(trace.steps) == 4 and trace.stop_reason == "max_new_tokens"
    assert trace.prompt_tokens == ["the", "red", "fox"] and trace.text.startswith("the red fox ")
    for i, step in enumerate(trace.steps):
        t = 3 + i
        assert step.labels == (trace.prompt_tokens + trace.new_tokens)[:t]
        assert step.probs.shape == (len(model.tokenizer),) and step.probs.sum().item() == pytest.approx(1.0)
        assert len(step.attention) == 2 and step.attention[0].shape == (4, t, t)
        for a in step.attention:
            torch.testing.assert_close(a.sum(-1), torch.ones(4, t, dtype=a.dtype))
            assert a.triu(1).abs().max() == 0  # causal: no query sees a later key
        assert step.seconds >= 0 and step.token == model.tokenizer.vocab[step.token_id]


def test_greedy_default_model_completes_the_corpus(trained):
    for sentence in DEFAULT_CORPUS:
        prompt = " ".join(sentence.split()[:2])
        trace = generate(trained, prompt)
        assert trace.text == sentence and trace.stop_reason == "end"  # it ends the sentence itself
        assert trace.steps[-1].token == "<eos>" and len(trace.new_tokens) == 3


def test_sampling_is_deterministic_for_a_seed():
    model = _random_model()
    runs = [generate(model, "a", max_new_tokens=10, temperature=2.0, seed=s).new_tokens for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    logits = torch.tensor([0.0, 3.0, 2.0, 1.0])
    assert sample_next_token(logits) == 1  # temperature 0: argmax
    picks = {sample_next_token(logits, 5.0, top_k=2, generator=torch.Generator().manual_seed(s)) for s in range(50)}
    assert picks == {1, 2}
    with pytest.raises(ValueError):
        sample_next_token(logits, -1.0)
    # A denormal temperature is (nearly) greedy, not a NaN distribution.
    assert sample_next_token(logits - 1e3, 1e-310, generator=torch.Generator().manual_seed(0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": float("nan")}, "temperature must be 0"),
        ({"temperature": float("inf")}, "finite"),
        ({"temperature": -0.5}, "temperature must be 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a whole number of at least 1, got 0"),
        ({"max_new_tokens": -1}, "at least 1, got -1"),
        ({"top_k": 0}, "top_k must be"),
    ],
)
def test_bad_settings_are_refused_before_any_work(kwargs, needle, monkeypatch):
    model = _random_model()
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("ran the model"))
    with pytest.raises(ValueError, match=needle):
        generate(model, "the red", **kwargs)


def test_a_whole_sentence_as_the_prompt_ends_at_once(trained):
    trace = generate(trained, "the red fox jumps high")
    assert trace.stop_reason == "end" and [s.token for s in trace.steps] == ["<eos>"] and trace.new_tokens == []
    assert trace.text == "the red fox jumps high"  # <eos> is not part of the text


def test_stops_at_pad_and_bad_prompts_are_explained():
    model = _random_model()
    model.params["w_out"][:, 0] = 100.0 * model.params["w_out"][:, 0].sign()  # nudge towards <pad>
    model.params["w_out"][:, 1:] = 0.0
    trace = generate(model, "the red")
    assert trace.stop_reason == "pad" and trace.steps[-1].token == "<pad>" and "<pad>" not in trace.new_tokens
    with pytest.raises(UnknownWordError, match="'purple'"):
        generate(model, "the purple fox")
    with pytest.raises(ValueError, match="empty"):
        generate(model, "   ")
    with pytest.raises(ValueError, match="at most 12"):
        generate(model, " ".join(["the"] * 13))


def test_kv_cache_grows_one_position_per_step():
    model = _random_model(layers=1, heads=2)
    cache = KVCache(model)
    for t, word in enumerate(["the", "red", "fox"], start=1):
        probs, rows = cached_step(model, model.tokenizer.ids[word], cache)
        assert len(cache) == t and cache.keys[0].shape == (1, 2, t, 16) and rows[0].shape == (2, 1, t)
