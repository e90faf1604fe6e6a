"""Golden test: the classic word model against the plain-PyTorch reference (bench/reference_model.py).

On the same weights and padded batch of the word corpus (lm.data.Sentences: padding targets are
IGNORE_INDEX), the loss, the logits and every parameter gradient agree to 1e-10 in float64, for 1 layer /
1 head and 2 layers / 4 heads, in both attention layouts; greedy decoding is token-identical. (The presets
are checked the same way in test_lm_model, each component alone in test_lm_nn.)
"""

import pytest
import torch

from bench.reference_model import reference_logits, reference_loss
from lm.data import Sentences
from lm.generate import generate
from lm.model import LanguageModel, ModelConfig, build_loss
from lm.nn import IGNORE_INDEX
from lm.tokenizers import WordTokenizer

CORPUS = ["the red fox jumps high", "a small bird sings", "my old cat sleeps very often", "the blue whale"]
CONTEXT = 8  # the longest sentence and its end


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
@pytest.mark.parametrize("layers,heads", [(1, 1), (2, 4)])
def test_loss_and_every_gradient_match_plain_torch(layers, heads, packed):
    tok = WordTokenizer.from_sentences(CORPUS)
    cfg = ModelConfig(len(tok), CONTEXT, d_model=16, d_ff=24, n_layers=layers, n_heads=heads, seed=3)
    model = LanguageModel(cfg, tokenizer=tok)
    batch = Sentences(CORPUS, tok)
    B, T = batch.ids.shape
    assert (batch.targets == IGNORE_INDEX).any()  # the padding is in the batch, and out of the loss
    graph = build_loss(model.vars, B, packed)  # both attention layouts (see lm.model.PACK_ROWS)
    fwd = graph.forward
    feed = model.param_feed()
    feed.update({
        fwd.ids: batch.ids.reshape(-1), fwd.pos: torch.arange(T).repeat(B),
        fwd.mask: fwd.mask_for(B, T, torch.float64), graph.targets: batch.targets.reshape(-1),
    })  # fmt: skip
    loss, *grads = graph.evaluator.run(feed)

    params = {n: p.clone().requires_grad_(True) for n, p in model.params.items()}
    ref = reference_loss(params, cfg, batch.ids, batch.targets, ignore_index=IGNORE_INDEX)
    ref.backward()
    assert float(loss) == pytest.approx(ref.item(), abs=1e-10)
    for (name, p), g in zip(params.items(), grads):
        assert g.shape == p.shape, name
        torch.testing.assert_close(g, p.grad, rtol=0, atol=1e-10, msg=f"gradient of {name}")

    logits = model.forward(batch.ids)["logits"]
    torch.testing.assert_close(logits, reference_logits(params, cfg, batch.ids).detach(), rtol=0, atol=1e-10)


def test_greedy_tokens_match_plain_torch():
    tok = WordTokenizer.from_sentences(CORPUS)
    cfg = ModelConfig(vocab_size=len(tok), context=8, d_model=16, d_ff=24, n_layers=2, n_heads=2, seed=1)
    model = LanguageModel(cfg, tokenizer=tok)

    ids = tok.encode("the red")
    while len(ids) <= cfg.context and ids[-1] not in (tok.pad_id, tok.end_id):  # until the context or an end
        ids.append(int(reference_logits(model.params, cfg, torch.tensor([ids]))[0, -1].argmax()))
    for use_cache in (True, False):
        trace = generate(model, "the red", max_new_tokens=50, use_cache=use_cache, slide=False)
        assert trace.prompt_ids + [step.token_id for step in trace.steps] == ids  # a predicted end included


def test_packed_and_batched_layouts_give_the_same_forward(monkeypatch):
    tok = WordTokenizer.from_sentences(CORPUS)
    cfg = ModelConfig(len(tok), CONTEXT, d_model=16, d_ff=24, n_layers=2, n_heads=4, seed=5)
    ids = Sentences(CORPUS, tok).ids  # (4, T)
    T = ids.shape[1]
    outputs = ("logits", "attention", "keys", "values")
    packed = LanguageModel(cfg).forward(ids, outputs)
    monkeypatch.setattr("lm.model.PACK_ROWS", 0)  # a fresh model builds the batched layout
    batched = LanguageModel(cfg).forward(ids, outputs)
    torch.testing.assert_close(packed["logits"], batched["logits"], rtol=0, atol=1e-12)
    for name in ("attention", "keys", "values"):
        for a, b in zip(packed[name], batched[name]):
            assert a.shape == b.shape == ((4, 4, T, T) if name == "attention" else (4, 4, T, 4))
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
