"""Text generation: the KV cache gives the same tokens and logits as recomputation for every preset
(RoPE included), also past the context (sliding window); temperature, top-k and top-p filter as
they should; generation stops at <|endoftext|>; bad settings get clear errors."""

import pytest
import torch

from lm.data import EOT, make_tokenizer
from lm.model import PRESETS, LanguageModel, preset_config
from lm.textgen import _Decoder, filter_logits, generate_text, sample

TEXT = f"the cat sat on the mat.{EOT}a dog ran in the park.{EOT}"


def char_model(preset: str, context: int = 12, seed: int = 0) -> LanguageModel:
    tok = make_tokenizer("char", TEXT)
    cfg = preset_config(preset, len(tok), context, d_model=16, n_layers=2, n_heads=2, seed=seed)
    model = LanguageModel.create(cfg, tok)
    for p in model.params.values():  # larger weights than the init: sharper, more varied logits
        p.mul_(8 if p.dim() > 1 else 1)
    return model


@pytest.mark.parametrize("preset", list(PRESETS))
def test_cache_equals_recomputation_past_the_context(preset):
    model = char_model(preset, context=12)
    ids = model.tokenizer.encode("the cat sat on the mat. a dog")[:4]
    cached, full = _Decoder(model, True), _Decoder(model, False)
    for step in range(30):  # 4 + 30 tokens: the window slides twice
        a, b = cached.next_logits(ids), full.next_logits(ids)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"step {step}")
        ids = ids + [
            int(torch.randint(0, len(model.tokenizer) - 1, (1,), generator=torch.Generator().manual_seed(step)))
        ]
    assert cached.start > 0
    one = generate_text(model, "the c", 40, temperature=0.9, top_k=5, seed=3, use_cache=True)
    two = generate_text(model, "the c", 40, temperature=0.9, top_k=5, seed=3, use_cache=False)
    assert one.new_ids == two.new_ids and one.text == two.text


def test_free_text_prompt_and_stop_at_end_of_text():
    model = char_model("gpt")
    end = model.tokenizer.encode(EOT)[0]
    with torch.no_grad():
        model.params["tok_emb"][end] *= 0
        model.params["tok_emb"][end] += model.params["tok_emb"].sum(0)  # tied head: make EOT likely...
    greedy = generate_text(model, "a dog", 500, temperature=0)
    assert greedy.text.startswith("a dog") and greedy.continuation == greedy.text[5:]
    assert greedy.stop_reason in ("end_of_text", "max_new_tokens")
    assert end not in greedy.new_ids
    empty = generate_text(model, "", 5, temperature=0)  # an empty prompt starts a document
    assert empty.prompt_ids == [end] and not empty.text.startswith(EOT)


def test_filters():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    kept = filter_logits(logits, 1.0, top_k=2, top_p=None)
    assert torch.isinf(kept[2:]).all() and torch.isfinite(kept[:2]).all()
    p = torch.softmax(logits, -1)  # 0.644, 0.237, 0.087, 0.032
    nucleus = filter_logits(logits, 1.0, None, top_p=0.85)
    assert torch.isfinite(nucleus[:2]).all() and torch.isinf(nucleus[2:]).all()  # 0.644 + 0.237 >= 0.85
    assert torch.isfinite(filter_logits(logits, 1.0, None, top_p=float(p[0]) - 1e-3)).sum() == 1
    assert sample(logits, 0.0) == 0
    counts = torch.bincount(
        torch.tensor([sample(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(i)) for i in range(300)]),
        minlength=4,
    )
    assert counts[2:].sum() == 0 and counts[1] > 30  # only the top 2, both drawn


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be 1"),
        ({"temperature": -1}, "temperature must be 0"),
        ({"temperature": float("nan")}, "temperature must be 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number"),
        ({"temperature": 1, "top_k": 0}, "top_k must be a whole number of at least 1"),
        ({"temperature": 1, "top_p": 1.5}, "top_p must be in"),
        ({"temperature": 1, "top_p": float("nan")}, "top_p must be in"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_text(char_model("gpt"), "the", **{"max_new_tokens": 3, **kwargs})


def test_unknown_characters_are_named():
    with pytest.raises(ValueError, match="not in the vocabulary: 'Z'"):
        generate_text(char_model("llama"), "Zebra", 3)


def test_word_and_llama_models_generate_words():
    tok = make_tokenizer("word", TEXT)
    cfg = preset_config("llama", len(tok), 8, d_model=16, n_heads=2)
    out = generate_text(LanguageModel.create(cfg, tok), "the cat", 5, temperature=1.0, seed=1)
    assert out.text.startswith("the cat") and len(out.new_ids) <= 5
