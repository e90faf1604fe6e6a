"""The model presets against the plain-PyTorch reference (bench/reference_model.py), and their config.

For classic, gpt and llama (1 and 2 layers, 1 and 4 heads, both attention layouts): the loss (the one
sparse cross-entropy, ignored targets left out), the logits and every parameter gradient equal the
reference on the same weights to 1e-10 in float64; the KV-cached step equals full recomputation (RoPE
included); a model is built from its config alone; the config validates and names its preset.
"""

import pytest
import torch

from bench.reference_model import reference_decode_step, reference_logits, reference_loss
from lm.generate import KVCache, cached_step, prefill
from lm.model import (
    PRESETS,
    LanguageModel,
    ModelConfig,
    build_loss,
    init_params,
    param_shapes,
    preset_config,
    preset_d_ff,
)
from lm.nn import IGNORE_INDEX
from lm.tokenizers import WordTokenizer

V = 13


def make_model(preset: str, layers: int, heads: int, context: int = 6, seed: int = 3) -> LanguageModel:
    cfg = preset_config(preset, V, context, d_model=16, n_layers=layers, n_heads=heads, seed=seed)
    model = LanguageModel(cfg)  # ids in, logits out: no tokenizer needed
    generator = torch.Generator().manual_seed(seed)
    for p in model.params.values():
        if p.dim() == 1:  # gains start at 1: move them so a wrong use of them shows
            p.add_(torch.rand(p.shape, generator=generator, dtype=p.dtype) - 0.5)
    return model


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
@pytest.mark.parametrize("layers,heads", [(1, 1), (2, 4)])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_loss_logits_and_every_gradient_match_the_reference(preset, layers, heads, packed):
    model = make_model(preset, layers, heads)
    B, T = 3, 6
    generator = torch.Generator().manual_seed(7)
    ids, targets = torch.randint(0, V, (B, T), generator=generator), torch.randint(0, V, (B, T), generator=generator)
    targets[0, :2] = IGNORE_INDEX  # positions without a target count for nothing
    graph = build_loss(model.vars, B, packed)
    feed = model.param_feed()
    feed.update(graph.forward.inputs(ids))
    feed[graph.targets] = targets.reshape(-1)
    loss, *grads = graph.evaluator.run(feed)

    params = {n: p.clone().requires_grad_(True) for n, p in model.params.items()}
    ref = reference_loss(params, model.config, ids, targets, ignore_index=IGNORE_INDEX)
    ref.backward()
    assert float(loss) == pytest.approx(ref.item(), abs=1e-10)
    for (name, p), g in zip(params.items(), grads):
        assert g.shape == p.shape, name
        torch.testing.assert_close(g, p.grad, rtol=0, atol=1e-10, msg=f"gradient of {name}")
    logits = model.forward(ids)["logits"]
    torch.testing.assert_close(logits, reference_logits(params, model.config, ids).detach(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_cached_decoding_equals_recomputation_and_the_reference(preset):
    model = make_model(preset, 2, 4, context=12)
    ids = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(1))
    full = model.forward(ids, ("probs",))["probs"][0]  # (10, V)
    cache = KVCache(model)
    probs, _ = prefill(model, ids[0, :3].tolist(), cache)
    steps = [probs] + [cached_step(model, int(ids[0, t]), cache)[0] for t in range(3, 10)]
    torch.testing.assert_close(torch.stack(steps), full[2:], rtol=0, atol=1e-12)
    ref_cache, ref_steps = None, []
    for t in range(10):
        logits, ref_cache = reference_decode_step(model.params, model.config, ids[:, t], ref_cache)
        ref_steps.append(torch.softmax(logits[0], -1))
    torch.testing.assert_close(torch.stack(ref_steps), full, rtol=0, atol=1e-12)


def test_rope_makes_attention_depend_on_relative_position_only():
    # Shifting both positions by the same offset leaves RoPE's q·k score unchanged: the rotation
    # encodes the distance between query and key, which is what RoPE is for.
    from bench.reference_model import apply_rope, rope_tables

    cfg = preset_config("llama", V, 64, d_model=16, n_heads=2)
    q, k = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    scores = []
    for offset in (0, 17):
        cos, sin = rope_tables(cfg, torch.tensor([offset, offset + 3]), torch.float64)
        qr, kr = apply_rope(q[:1], cos[:1], sin[:1]), apply_rope(k[1:], cos[1:], sin[1:])
        scores.append(float(qr @ kr.T))
    assert scores[0] == pytest.approx(scores[1], abs=1e-12)


def test_presets_have_their_parts_and_widths():
    gpt, llama = preset_config("gpt", 65, 64, d_model=128), preset_config("llama", 65, 64, d_model=128)
    assert (gpt.d_ff, llama.d_ff) == (512, 384)  # 4·d; 8/3·128 = 341.3 rounded up to 64
    assert preset_d_ff("classic", 64) == 128 == ModelConfig(10, 4).d_ff
    assert [c.preset for c in (ModelConfig(10, 4), gpt, llama)] == ["classic", "gpt", "llama"]
    assert ModelConfig(10, 4, ffn="gelu").validate().preset == "custom"
    shapes = param_shapes(gpt)
    assert "w_out" not in shapes and shapes["norm_f"] == (128,) and shapes["pos_emb"] == (64, 128)
    shapes = param_shapes(llama)
    assert "pos_emb" not in shapes and shapes["layers.0.w3"] == (128, 384) and shapes["w_out"] == (128, 65)
    assert list(param_shapes(ModelConfig(10, 4))) == [
        "tok_emb", "pos_emb", "layers.0.wq", "layers.0.wk", "layers.0.wv", "layers.0.wo",
        "layers.0.w1", "layers.0.w2", "w_out",
    ]  # fmt: skip


def test_normal_init_scales_residual_outputs():
    model = LanguageModel(preset_config("gpt", 50, 32, d_model=64, n_layers=2, seed=0))
    p = model.params
    assert p["tok_emb"].std().item() == pytest.approx(0.02, rel=0.05)
    assert p["layers.1.wo"].std().item() == pytest.approx(0.02 / 2, rel=0.1)
    assert torch.equal(p["layers.0.norm1"], torch.ones(64, dtype=torch.float64))


def test_a_model_is_built_from_its_config_alone():
    """The seed draws the parameters; a tokenizer is an optional companion whose length must be the
    vocabulary's; given parameters must have the config's names and shapes."""
    cfg = preset_config("llama", V, 6, d_model=16, n_heads=2, seed=4)
    a, b = LanguageModel(cfg), LanguageModel(cfg)
    assert a.tokenizer is None and list(a.params) == list(param_shapes(cfg))
    assert all(torch.equal(a.params[n], b.params[n]) for n in a.params)
    assert a.num_parameters() == sum(p.numel() for p in init_params(cfg).values())
    ids = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(0))
    assert a.forward(ids)["logits"].shape == (2, 6, V)
    tok = WordTokenizer.from_sentences(["the red fox jumps high"])  # <pad>, <eos> and 5 words: 7 tokens
    with pytest.raises(ValueError, match="the tokenizer has 7 tokens but config.vocab_size is 13"):
        LanguageModel(cfg, tokenizer=tok)
    assert LanguageModel(preset_config("classic", 7, 5), tokenizer=tok).tokenizer is tok
    params = init_params(cfg)
    params["w_out"] = params["w_out"][:, :-1]
    with pytest.raises(ValueError, match="do not match the config's parameter names and shapes"):
        LanguageModel(cfg, params=params)
    with pytest.raises(ValueError, match="exceed the model's context of 6"):
        a.forward(torch.zeros(1, 7, dtype=torch.long))


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"norm": "batchnorm"}, "norm must be one of 'layernorm', 'rmsnorm'"),
        ({"norm_placement": "middle"}, "norm_placement must be one of"),
        ({"positions": "alibi"}, "positions must be one of"),
        ({"ffn": "tanh"}, "ffn must be one of 'relu', 'gelu', 'swiglu'"),
        ({"tie_embeddings": 1}, "tie_embeddings must be true or false"),
        ({"rope_theta": 0.5}, "rope_theta must be a number above 1"),
        ({"positions": "rope", "d_model": 12, "n_heads": 4}, "d_model / n_heads must be even"),
    ],
)
def test_bad_parts_get_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(10, 4, **fields).validate()
    with pytest.raises(ValueError, match="unknown preset 'bert'"):
        preset_config("bert", 10, 4)


def test_a_classic_config_saved_before_the_parts_existed_still_loads():
    old = {"vocab_size": 10, "context": 4, "d_model": 8, "d_ff": 8, "n_layers": 1, "n_heads": 1, "seed": 0}
    assert ModelConfig.from_dict({**old, "dtype": "float64"}).preset == "classic"
