"""The one generator: the KV cache gives the same tokens, probabilities and attention as full recomputation
for every preset, also past the context (sliding window); the sampling filters match a plain torch formula;
sampling is deterministic for a seed; generation stops at the end token (or <pad>), at the context with
slide=False; empty, unknown, over-long and id prompts and bad settings get clear errors before any work."""

import pytest
import torch

from lm.checkpoint import DEFAULT_WEIGHTS, load
from lm.data import DEFAULT_CORPUS
from lm.generate import (
    KVCache,
    cached_step,
    check_sampling,
    end_tokens,
    filter_logits,
    generate,
    sample_next_token,
)
from lm.model import PRESETS, LanguageModel, ModelConfig, preset_config
from lm.tokenizers.base import EOT
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.word import UnknownWordError, WordTokenizer

TEXT = f"the cat sat on the mat.{EOT}a dog ran in the park.{EOT}"


@pytest.fixture(scope="module")
def trained():
    return load(DEFAULT_WEIGHTS).model


def _random_model(context=12, layers=2, heads=4, seed=0):
    """A classic sentence model (<pad>, <eos>, the corpus words) with random weights."""
    tok = WordTokenizer.from_sentences(DEFAULT_CORPUS)
    cfg = ModelConfig(len(tok), context, d_model=32, d_ff=48, n_layers=layers, n_heads=heads, seed=seed)
    return LanguageModel(cfg, tokenizer=tok)


def char_model(preset: str, context: int = 12, seed: int = 0, specials=(EOT,)) -> LanguageModel:
    """A character model of a preset whose weights are sharper than the init (more varied logits)."""
    tok = CharTokenizer.from_text(TEXT, list(specials))
    cfg = preset_config(preset, len(tok), context, d_model=16, n_layers=2, n_heads=2, seed=seed)
    model = LanguageModel(cfg, tokenizer=tok)
    for p in model.params.values():
        p.mul_(8 if p.dim() > 1 else 1)
    return model


def greedy_by_full_forward(model: LanguageModel, ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding the plain way, no cache and no window (the prompt stays within the context): the
    tokens up to and including the first end token."""
    ends = set(end_tokens(model.tokenizer)) - {None}
    out = []
    for _ in range(max_new_tokens):
        next_id = int(model.forward(torch.tensor([ids + out]))["logits"][0, -1].argmax())
        out.append(next_id)
        if next_id in ends:
            break
    return out


def assert_same_steps(a, b):
    """Two traces' steps: the same tokens and windows; logits, probs and attention to float rounding."""
    assert [s.token_id for s in a.steps] == [s.token_id for s in b.steps] and a.new_ids == b.new_ids
    assert a.stop_reason == b.stop_reason and a.text == b.text
    for x, y in zip(a.steps, b.steps):
        assert x.window == y.window and x.labels == y.labels
        torch.testing.assert_close(x.logits, y.logits, rtol=0, atol=1e-10)
        torch.testing.assert_close(x.probs, y.probs, rtol=0, atol=1e-10)
        assert (x.attention is None) == (y.attention is None)
        for p, q in zip(x.attention or [], y.attention or []):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------ cache == recomputation


@pytest.mark.parametrize("which", ["trained", "2x4", "1x1"])
def test_cache_equals_full_recomputation(which, trained):
    model = {"trained": trained, "2x4": _random_model(), "1x1": _random_model(layers=1, heads=1)}[which]
    for kwargs in ({}, {"temperature": 1.5, "seed": 4}):
        cached = generate(model, "the red", max_new_tokens=20, use_cache=True, attention=True, **kwargs)
        full = generate(model, "the red", max_new_tokens=20, use_cache=False, attention=True, **kwargs)
        assert cached.new_tokens == full.new_tokens
        assert_same_steps(cached, full)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_cache_equals_recomputation_past_the_context_with_attention(preset):
    """4 + 30 tokens at context 12: the window slides three times, the cache is refilled each time (a new full
    attention matrix), and both paths read the same tokens at the same positions."""
    model = char_model(preset, context=12, specials=())  # no end token: every run is 30 tokens long
    for kwargs in ({"temperature": 0}, {"temperature": 0.9, "top_k": 5, "seed": 3}):
        cached = generate(model, "the ", 30, use_cache=True, attention=True, **kwargs)
        full = generate(model, "the ", 30, use_cache=False, attention=True, **kwargs)
        assert_same_steps(cached, full)
        sizes = [len(s.window) for s in cached.steps]
        assert sizes[:9] == list(range(4, 13)) and sizes[9] == 6  # 13 ids: the window jumps to the last 6
        assert sum(b < a for a, b in zip(sizes, sizes[1:])) == 3  # 9 + 7 + 7 + 7 steps
        without = generate(model, "the ", 30, use_cache=True, **kwargs)  # attention is only kept on request
        assert without.new_ids == cached.new_ids and all(s.attention is None for s in without.steps)


def test_trace_holds_probabilities_and_causal_attention_per_layer_and_head():
    model = _random_model(seed=1)  # a seed whose random weights do not pick an end within 4 steps
    trace = generate(model, "the red fox", max_new_tokens=4, attention=True)
    assert len(trace.steps) == 4 and trace.stop_reason == "max_new_tokens"
    assert trace.prompt_tokens == ["the", "red", "fox"] and trace.text.startswith("the red fox ")
    assert trace.prompt_ids == model.tokenizer.encode("the red fox") and len(trace.new_ids) == 4
    assert trace.continuation == " ".join(trace.new_tokens) and trace.seconds >= 0
    for i, step in enumerate(trace.steps):
        t = 3 + i
        assert step.labels == (trace.prompt_tokens + trace.new_tokens)[:t]
        assert step.window == (trace.prompt_ids + trace.new_ids)[:t]
        assert step.probs.shape == (len(model.tokenizer),) and step.probs.sum().item() == pytest.approx(1.0)
        torch.testing.assert_close(step.probs, torch.softmax(step.logits.double(), -1))
        assert len(step.attention) == 2 and step.attention[0].shape == (4, t, t)
        for a in step.attention:
            torch.testing.assert_close(a.sum(-1), torch.ones(4, t, dtype=a.dtype))
            assert a.triu(1).abs().max() == 0  # causal: no query sees a later key
        assert step.seconds >= 0 and step.token == model.tokenizer.vocab[step.token_id]


def test_on_step_streams_each_step_as_it_is_made():
    seen = []
    trace = generate(char_model("gpt"), "the c", 6, temperature=0.9, seed=2, on_step=seen.append)
    assert seen == trace.steps and len(seen) >= 1


# ------------------------------------------------------------------------------ sampling


def test_sampling_is_deterministic_for_a_seed():
    model = _random_model()
    runs = [generate(model, "a", max_new_tokens=10, temperature=2.0, seed=s).new_tokens for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    text = char_model("llama", specials=())
    runs = [generate(text, "the", 20, temperature=1.0, top_p=0.9, seed=s).new_ids for s in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    logits = torch.tensor([0.0, 3.0, 2.0, 1.0])
    assert sample_next_token(logits) == 1  # temperature 0: argmax
    picks = {sample_next_token(logits, 5.0, top_k=2, generator=torch.Generator().manual_seed(s)) for s in range(50)}
    assert picks == {1, 2}
    with pytest.raises(ValueError):
        sample_next_token(logits, -1.0)
    # A denormal temperature is (nearly) greedy, not a NaN distribution.
    assert sample_next_token(logits - 1e3, 1e-310, generator=torch.Generator().manual_seed(0)) == 1


def reference_filter(logits, temperature, top_k, top_p):
    """The textbook filters in plain torch: probabilities of softmax(logits / T), the top_k kept, then the
    smallest most-likely set whose mass reaches top_p kept, renormalized."""
    probs = torch.softmax(logits.double() / temperature, -1)
    if top_k is not None:
        probs = torch.where(probs >= torch.topk(probs, min(top_k, probs.numel())).values[-1], probs, 0.0)
        probs = probs / probs.sum()
    if top_p is not None:
        sorted_probs, order = torch.sort(probs, descending=True)
        n_kept = int((sorted_probs.cumsum(-1) < top_p).sum()) + 1  # up to the first that reaches top_p
        kept = torch.zeros_like(probs)
        kept[order[:n_kept]] = probs[order[:n_kept]]
        probs = kept / kept.sum()
    return probs


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("top_k,top_p", [(None, None), (3, None), (None, 0.7), (5, 0.5), (50, 0.99)])
def test_filters_match_a_plain_torch_formula(temperature, top_k, top_p):
    logits = torch.randn(40, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * 2
    ours = torch.softmax(filter_logits(logits, temperature, top_k, top_p), -1)
    torch.testing.assert_close(ours, reference_filter(logits, temperature, top_k, top_p), rtol=0, atol=1e-12)


def test_filters():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    kept = filter_logits(logits, 1.0, top_k=2, top_p=None)
    assert torch.isinf(kept[2:]).all() and torch.isfinite(kept[:2]).all()
    p = torch.softmax(logits, -1)  # 0.644, 0.237, 0.087, 0.032
    nucleus = filter_logits(logits, 1.0, None, top_p=0.85)
    assert torch.isfinite(nucleus[:2]).all() and torch.isinf(nucleus[2:]).all()  # 0.644 + 0.237 >= 0.85
    assert torch.isfinite(filter_logits(logits, 1.0, None, top_p=float(p[0]) - 1e-3)).sum() == 1
    with pytest.raises(ValueError, match="0 means greedy"):
        filter_logits(logits, 0.0)
    assert sample_next_token(logits, 0.0) == 0
    draws = [sample_next_token(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(i)) for i in range(300)]
    counts = torch.bincount(torch.tensor(draws), minlength=4)
    assert counts[2:].sum() == 0 and counts[1] > 30  # only the top 2, both drawn


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": float("nan")}, "temperature must be 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number"),
        ({"temperature": -0.5}, "temperature must be 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a whole number of at least 1, got 0"),
        ({"max_new_tokens": -1}, "at least 1, got -1"),
        ({"max_new_tokens": 100_001}, "max_new_tokens must be 1 to 100,000, got 100001"),
        ({"top_k": 0}, "top_k must be a whole number of at least 1"),
        ({"temperature": 1, "top_p": 1.5}, "top_p must be in"),
        ({"temperature": 1, "top_p": float("nan")}, "top_p must be in"),
    ],
)
@pytest.mark.parametrize("kind", ["classic", "text"])
def test_bad_settings_are_refused_before_any_work(kwargs, needle, kind, monkeypatch):
    model = _random_model() if kind == "classic" else char_model("gpt")
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("ran the model"))
    with pytest.raises(ValueError, match=needle):
        generate(model, "the red", **kwargs)
    with pytest.raises(ValueError, match=needle):
        check_sampling(**{"temperature": 0.0, **kwargs})


# ------------------------------------------------------------------------------ stopping and prompts


def test_greedy_default_model_completes_the_corpus(trained):
    for sentence in DEFAULT_CORPUS:
        prompt = " ".join(sentence.split()[:2])
        trace = generate(trained, prompt)
        assert trace.text == sentence and trace.stop_reason == "end"  # it ends the sentence itself
        assert trace.steps[-1].token == "<eos>" and len(trace.new_tokens) == 3


def test_a_whole_sentence_as_the_prompt_ends_at_once(trained):
    trace = generate(trained, "the red fox jumps high")
    assert trace.stop_reason == "end" and [s.token for s in trace.steps] == ["<eos>"] and trace.new_tokens == []
    assert trace.text == "the red fox jumps high"  # <eos> is not part of the text


def test_stops_at_pad_and_bad_prompts_are_explained():
    model = _random_model()
    model.params["w_out"][:, 0] = 100.0 * model.params["w_out"][:, 0].sign()  # nudge towards <pad>
    model.params["w_out"][:, 1:] = 0.0
    trace = generate(model, "the red")
    assert trace.stop_reason == "end" and trace.steps[-1].token == "<pad>" and "<pad>" not in trace.new_tokens
    with pytest.raises(UnknownWordError, match="'purple'"):
        generate(model, "the purple fox")
    with pytest.raises(ValueError, match="at most 12"):
        generate(model, " ".join(["the"] * 13), slide=False)


def test_stops_at_the_end_of_text_with_the_tokens_of_greedy_decoding():
    model = char_model("llama")
    end, _ = end_tokens(model.tokenizer)
    assert end == model.tokenizer.encode(EOT)[0]
    with torch.no_grad():  # make the end token likely: its head column is the sum of all the others
        model.params["w_out"][:, end] = model.params["w_out"].sum(1)
    ids = model.tokenizer.encode("a dog")
    expected = greedy_by_full_forward(model, ids, 10)
    assert expected[-1] == end and len(expected) < 10  # the reference ends within the context
    trace = generate(model, "a dog", 10)
    assert [s.token_id for s in trace.steps] == expected and trace.new_ids == expected[:-1]
    assert trace.stop_reason == "end" and end not in trace.new_ids and trace.steps[-1].token == EOT
    assert trace.text == "a dog" + trace.continuation and EOT not in trace.text


def test_slide_false_stops_when_the_context_is_full():
    model = char_model("gpt", context=12, specials=())
    trace = generate(model, "the cat", 50, slide=False)
    assert trace.stop_reason == "context" and len(trace.new_ids) == 12 - 7 + 1  # the last step reads 12 ids
    assert [len(s.window) for s in trace.steps] == list(range(7, 13))
    assert generate(model, "the cat", 50).stop_reason == "max_new_tokens"  # slide=True goes on


def test_an_empty_prompt_starts_from_the_end_token_or_is_refused():
    model = char_model("gpt")
    end, _ = end_tokens(model.tokenizer)
    empty = generate(model, "", 5, temperature=0)  # a new document
    assert empty.prompt_ids == [end] and empty.steps[0].window == [end]
    assert empty.prompt_tokens == [] and not empty.text.startswith(EOT) and empty.text == empty.continuation
    classic = generate(_random_model(), "", 3)  # the sentence model starts from <eos>
    assert classic.prompt_ids == [classic.steps[0].window[0]] and classic.steps[0].labels == ["<eos>"]
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(char_model("gpt", specials=()), "")  # no end token to start from
    tok = WordTokenizer(["<pad>", "the", "cat"])  # a sentence vocabulary saved before <eos> existed
    no_end = LanguageModel(ModelConfig(len(tok), 4, d_model=8, d_ff=8), tokenizer=tok)
    for prompt in ("", "   "):
        with pytest.raises(ValueError, match="the prompt is empty"):
            generate(no_end, prompt)


def test_an_ids_prompt_on_a_model_without_a_tokenizer():
    tokenized = char_model("llama", specials=())
    bare = LanguageModel(tokenized.config, params=tokenized.params)
    ids = tokenized.tokenizer.encode("the ca")
    trace = generate(bare, ids, 6, attention=True)
    assert trace.new_ids == generate(tokenized, "the ca", 6).new_ids  # the same model reads the same ids
    assert trace.new_ids == greedy_by_full_forward(bare, ids, 6)
    assert trace.prompt_tokens == [str(i) for i in ids] and trace.steps[0].labels == trace.prompt_tokens
    assert trace.text == " ".join(trace.prompt_tokens + trace.new_tokens)
    with pytest.raises(ValueError, match="no tokenizer: give the prompt as a list of token ids"):
        generate(bare, "the ca")
    with pytest.raises(ValueError, match="not a token id"):
        generate(bare, [0, len(tokenized.tokenizer)])
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(bare, [])


def test_unknown_characters_are_named():
    with pytest.raises(ValueError, match="not in the vocabulary: 'Z'"):
        generate(char_model("llama"), "Zebra", 3)


def test_word_and_llama_models_generate_the_tokens_of_greedy_decoding():
    tok = WordTokenizer.from_text(TEXT)
    cfg = preset_config("llama", len(tok), 8, d_model=16, n_heads=2)
    model = LanguageModel(cfg, tokenizer=tok)
    for p in model.params.values():
        p.mul_(8 if p.dim() > 1 else 1)
    ids = tok.encode("the cat")
    expected = greedy_by_full_forward(model, ids, 5)
    out = generate(model, "the cat", 5)
    assert [s.token_id for s in out.steps] == expected
    assert out.new_ids == [i for i in expected if i != tok.end_id] and len(out.new_ids) <= 5
    assert out.text.startswith("the cat") and out.text == tok.decode(ids + out.new_ids)
    sampled = generate(model, "the cat", 5, temperature=1.0, seed=1)
    assert sampled.text.startswith("the cat") and len(sampled.new_ids) <= 5


def test_kv_cache_grows_one_position_per_step():
    model = _random_model(layers=1, heads=2)
    cache = KVCache(model)
    for t, word in enumerate(["the", "red", "fox"], start=1):
        probs, rows = cached_step(model, model.tokenizer.ids[word], cache)
        assert len(cache) == t and cache.keys[0].shape == (1, 2, t, 16) and rows[0].shape == (2, 1, t)
        torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=probs.dtype))
