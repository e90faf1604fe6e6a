"""Golden test: our autodiff model against a plain PyTorch-autograd implementation of the same model.

On the same weights and padded batch, the loss, the logits and every parameter gradient agree to
1e-10 in float64, for 1 layer / 1 head and 2 layers / 4 heads; greedy decoding is token-identical.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lm.generate import generate
from lm.model import LanguageModel, ModelConfig, build_loss
from lm.tokenizer import Tokenizer
from lm.train import make_batch

CORPUS = ["the red fox jumps high", "a small bird sings", "my old cat sleeps very often", "the blue whale"]


def reference_logits(params: dict[str, torch.Tensor], cfg: ModelConfig, ids: torch.Tensor) -> torch.Tensor:
    """The same decoder in plain torch: (B, T) ids -> (B, T, V) logits."""
    B, T = ids.shape
    H, dh, D = cfg.n_heads, cfg.d_model // cfg.n_heads, cfg.d_model
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    x = params["tok_emb"][ids] + params["pos_emb"][:T]  # (B, T, D)
    for i in range(cfg.n_layers):
        p = {w: params[f"layers.{i}.{w}"] for w in ("wq", "wk", "wv", "wo", "w1", "w2")}
        q, k, v = ((x @ p[w]).view(B, T, H, dh).transpose(1, 2) for w in ("wq", "wk", "wv"))  # (B, H, T, dh)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(causal, -1e9)  # (B, H, T, T)
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, D) @ p["wo"]  # (B, T, D)
        h = F.layer_norm(x + out, (D,))
        x = F.layer_norm(h + torch.relu(h @ p["w1"]) @ p["w2"], (D,))
    return x @ params["w_out"]  # (B, T, V)


def reference_loss(params, cfg, ids, targets):
    logits = reference_logits(params, cfg, ids)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
@pytest.mark.parametrize("layers,heads", [(1, 1), (2, 4)])
def test_loss_and_every_gradient_match_plain_torch(layers, heads, packed):
    tok = Tokenizer.from_corpus(CORPUS)
    cfg = ModelConfig(vocab_size=len(tok), context=5, d_model=16, d_ff=24, n_layers=layers, n_heads=heads)
    model = LanguageModel.create(cfg, tok, seed=3)
    batch = make_batch(tok, CORPUS)
    B, T = batch.ids.shape
    graph = build_loss(model.vars, B, packed)  # both attention layouts (see lm.model.PACK_ROWS)
    fwd = graph.forward
    feed = model.param_feed()
    feed.update({
        fwd.ids: batch.ids.reshape(-1), fwd.pos: torch.arange(T).repeat(B),
        fwd.mask: fwd.mask_for(B, T, torch.float64), graph.targets: -batch.weights,
    })  # fmt: skip
    loss, *grads = graph.evaluator.run(feed)

    params = {n: p.clone().requires_grad_(True) for n, p in model.params.items()}
    ref = reference_loss(params, cfg, batch.ids, batch.targets)
    ref.backward()
    assert float(loss) == pytest.approx(ref.item(), abs=1e-10)
    for (name, p), g in zip(params.items(), grads):
        assert g.shape == p.shape, name
        torch.testing.assert_close(g, p.grad, rtol=0, atol=1e-10, msg=f"gradient of {name}")

    logits = model.forward(batch.ids)["logits"]
    torch.testing.assert_close(logits, reference_logits(params, cfg, batch.ids).detach(), rtol=0, atol=1e-10)


def test_greedy_tokens_match_plain_torch():
    tok = Tokenizer.from_corpus(CORPUS)
    cfg = ModelConfig(vocab_size=len(tok), context=8, d_model=16, d_ff=24, n_layers=2, n_heads=2)
    model = LanguageModel.create(cfg, tok, seed=1)

    ids = tok.encode("the red")
    while len(ids) <= cfg.context:
        ids.append(int(reference_logits(model.params, cfg, torch.tensor([ids]))[0, -1].argmax()))
    trace = generate(model, "the red", max_new_tokens=50)
    expected = ids[: ids.index(0)] if 0 in ids else ids  # decoding stops at <pad>
    assert tok.encode(trace.text) == expected


def test_packed_and_batched_layouts_give_the_same_forward(monkeypatch):
    tok = Tokenizer.from_corpus(CORPUS)
    cfg = ModelConfig(vocab_size=len(tok), context=5, d_model=16, d_ff=24, n_layers=2, n_heads=4)
    ids = make_batch(tok, CORPUS).ids  # (4, 5)
    outputs = ("logits", "attention", "keys", "values")
    packed = LanguageModel.create(cfg, tok, seed=5).forward(ids, outputs)
    monkeypatch.setattr("lm.model.PACK_ROWS", 0)  # a fresh model builds the batched layout
    batched = LanguageModel.create(cfg, tok, seed=5).forward(ids, outputs)
    torch.testing.assert_close(packed["logits"], batched["logits"], rtol=0, atol=1e-12)
    for name in ("attention", "keys", "values"):
        for a, b in zip(packed[name], batched[name]):
            assert a.shape == b.shape == ((4, 4, 5, 5) if name == "attention" else (4, 4, 5, 4))
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
