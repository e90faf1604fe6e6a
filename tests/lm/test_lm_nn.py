"""Each component of lm.nn alone: built on autodiff Variables, run with an autodiff Evaluator, against a
plain-torch formula in float64 (the oracle) — its value, and, where it has inputs to learn, every input's
gradient (autodiff.gradients) against torch.autograd under a random upstream gradient."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import autodiff as ad
from lm import nn
from lm.config import preset_config

Tensor = torch.Tensor
EPS = 1e-5  # torch's LayerNorm and Llama's RMSNorm epsilon: nn.NORM_EPS
B, T, H, DH = 2, 5, 2, 4
D = H * DH
N = B * T


def randn(*shape: int, seed: int = 0, scale: float = 1.0) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def check(
    build: Callable[..., ad.Node], inputs: dict[str, Tensor], reference: Callable[..., Tensor], wrt: list[str],
    atol: float = 1e-10,
) -> Tensor:  # fmt: skip
    """Our `build(**variables)` against `reference(**tensors)`: the value, then the gradient of every input in
    `wrt` under one random upstream gradient (a sum over ones would hide a wrong rule). Returns our value."""
    variables = {name: ad.Variable(name) for name in inputs}
    node = build(**variables)
    feed = {variables[name]: value for name, value in inputs.items()}
    (ours,) = ad.Evaluator([node]).run(feed)
    leaves = {name: value.clone().requires_grad_(name in wrt) for name, value in inputs.items()}
    theirs = reference(**leaves)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs.detach(), rtol=0, atol=atol, msg="value")
    if not wrt:
        return ours
    upstream = randn(*theirs.shape, seed=99)
    g = ad.Variable("upstream")
    feed[g] = upstream
    grads = ad.Evaluator(ad.gradients(ad.sum_op(node * g), [variables[name] for name in wrt])).run(feed)
    expected = torch.autograd.grad(theirs, [leaves[name] for name in wrt], upstream)
    for name, ours_g, theirs_g in zip(wrt, grads, expected):
        assert ours_g.shape == inputs[name].shape, name  # a gradient has its input's shape
        torch.testing.assert_close(ours_g, theirs_g, rtol=0, atol=atol, msg=f"gradient of {name}")
    return ours


# ------------------------------------------------------------------------------------ simple layers


def test_linear_is_x_times_w():
    check(nn.linear, {"x": randn(N, 3), "w": randn(3, 7, seed=1)}, lambda x, w: x @ w, ["x", "w"])


def test_embedding_picks_rows_and_scatters_the_gradient_back():
    ids = torch.tensor([3, 0, 3, 5, 1, 3])  # repeated rows: their gradients add up
    check(
        lambda table, ids: nn.embedding(table, ids), {"table": randn(6, 4), "ids": ids},
        lambda table, ids: F.embedding(ids, table), ["table"],
    )  # fmt: skip


def torch_rmsnorm(x: Tensor, gain: Tensor | None = None) -> Tensor:
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    return y if gain is None else y * gain


@pytest.mark.parametrize("shape", [(N, D), (B, T, D)])
@pytest.mark.parametrize("with_gain", [True, False], ids=["gain", "no-gain"])
def test_rmsnorm(with_gain: bool, shape: tuple[int, ...]):
    inputs = {"x": randn(*shape) * 3 + 1}
    if with_gain:
        inputs["gain"] = randn(D, seed=1) + 1
    check(lambda **v: nn.rmsnorm(v["x"], v.get("gain")), inputs, lambda **t: torch_rmsnorm(t["x"], t.get("gain")),
          list(inputs))  # fmt: skip


def torch_layernorm(x: Tensor, gain: Tensor | None = None) -> Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    y = (x - mean) / torch.sqrt(var + EPS)
    return y if gain is None else y * gain


@pytest.mark.parametrize("shape", [(N, D), (B, T, D)])
@pytest.mark.parametrize("with_gain", [True, False], ids=["gain", "no-gain"])
def test_layernorm(with_gain: bool, shape: tuple[int, ...]):
    inputs = {"x": randn(*shape) * 3 + 1}
    if with_gain:
        inputs["gain"] = randn(D, seed=1) + 1
    check(lambda **v: nn.layernorm(v["x"], D, v.get("gain")), inputs,
          lambda **t: torch_layernorm(t["x"], t.get("gain")), list(inputs))  # fmt: skip
    # torch's own LayerNorm (no bias) agrees with the formula
    torch.testing.assert_close(
        torch_layernorm(inputs["x"], inputs.get("gain")), F.layer_norm(inputs["x"], (D,), inputs.get("gain"), eps=EPS)
    )


def test_norm_picks_the_configs_norm():
    x = randn(N, D)
    for kind, formula in (("layernorm", torch_layernorm), ("rmsnorm", torch_rmsnorm)):
        cfg = preset_config("classic", 10, T, d_model=D, norm=kind)
        check(lambda x, cfg=cfg: nn.norm(x, None, cfg), {"x": x}, formula, ["x"])


@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax(dim: int):
    check(lambda x: nn.softmax(x, dim), {"x": randn(4, 6)}, lambda x: torch.softmax(x, dim), ["x"])
    check(lambda x: nn.softmax(x, dim), {"x": randn(4, 6) * 1000}, lambda x: torch.softmax(x, dim), ["x"])  # stable


# ------------------------------------------------------------------------------------------ rope


def torch_rotary(x: Tensor, positions: Tensor, theta: float = 10000.0) -> Tensor:
    """x (N, H, dh): dims i and i + dh/2 of each head, as a 2-vector, turned by pos * theta^(-2i/dh)
    (the GPT-NeoX / Hugging Face layout), one 2x2 rotation matrix per pair."""
    dh = x.shape[-1]
    i = torch.arange(dh // 2, dtype=torch.float64)
    angles = positions.double()[:, None] / theta ** (2 * i / dh)  # (N, dh/2)
    c, s = angles.cos(), angles.sin()
    rotation = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (N, dh/2, 2, 2)
    pairs = torch.stack([x[..., : dh // 2], x[..., dh // 2 :]], -1)  # (N, H, dh/2, 2)
    turned = torch.einsum("npij,nhpj->nhpi", rotation, pairs)  # (N, H, dh/2, 2)
    return torch.cat([turned[..., 0], turned[..., 1]], -1)  # (N, H, dh)


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_turns_each_pair_by_its_angle(theta: float):
    positions = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4093])  # two sequences, and a far position
    cos, sin = nn.rope_tables(DH, positions, theta)
    assert cos.shape == sin.shape == (len(positions), 1, DH // 2)
    check(
        lambda x, cos, sin: nn.rope(x, cos, sin, H, DH), {"x": randn(len(positions), D), "cos": cos, "sin": sin},
        lambda x, cos, sin: torch_rotary(x.reshape(-1, H, DH), positions, theta).reshape(-1, D), ["x"],
    )  # fmt: skip


def test_rope_tables_are_exact_in_float32():
    """Computed in float64, then rounded once (a float32 angle at position 8000 is only good to ~5e-4 rad)."""
    positions = torch.tensor([8000])
    cos, sin = nn.rope_tables(DH, positions, dtype=torch.float32)
    exact = positions.double()[:, None, None] / 10000.0 ** (2 * torch.arange(DH // 2, dtype=torch.float64) / DH)
    assert (
        cos.dtype == torch.float32 and torch.equal(cos, exact.cos().float()) and torch.equal(sin, exact.sin().float())
    )


# ------------------------------------------------------------------------------------- attention


def test_the_masks():
    causal = nn.causal_mask(4)
    assert torch.equal(causal == 0, torch.ones(4, 4, dtype=torch.bool).tril())
    assert causal.max() == 0 and causal.min() == nn.NEG_INF and torch.isfinite(causal).all()
    packed = nn.packed_mask(3, 4)  # (12, 12): causal blocks on the diagonal, nothing between sequences
    assert torch.equal(packed == 0, torch.block_diag(*[torch.ones(4, 4).tril()] * 3).bool())


@pytest.mark.parametrize("mask", ["causal", "none", "cache-step"])
def test_scaled_dot_product_attention_matches_torch(mask: str):
    """With the causal mask (vs is_causal=True), without any, and one query over more keys (a cached step)."""
    tq = 1 if mask == "cache-step" else T
    inputs = {"q": randn(B, H, tq, DH), "k": randn(B, H, T, DH, seed=1), "v": randn(B, H, T, DH, seed=2)}
    if mask == "causal":
        inputs["mask"] = nn.causal_mask(T)

    def ours(which: int):
        return lambda **v: nn.scaled_dot_product_attention(v["q"], v["k"], v["v"], DH, v.get("mask"))[which]

    def weights(q, k, v, mask=None):
        scores = q @ k.transpose(-1, -2) / math.sqrt(DH)
        return torch.softmax(scores if mask is None else scores + mask, -1)

    output = lambda **t: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=mask == "causal")  # noqa: E731
    check(ours(0), inputs, output, ["q", "k", "v"])
    attention = check(ours(1), inputs, weights, ["q", "k"])  # the weights do not read v
    assert attention.shape == (B, H, tq, T)
    torch.testing.assert_close(attention.sum(-1), torch.ones(B, H, tq, dtype=torch.float64))
    if mask == "causal":
        assert (attention.triu(1) == 0).all()  # no query sees a later key


def torch_mha(x: Tensor, wq, wk, wv, wo, positions: Tensor | None) -> Tensor:
    """Plain multi-head causal self-attention on (B*T, D) rows of B sequences."""
    q, k, v = ((x @ w).reshape(B, T, H, DH) for w in (wq, wk, wv))  # (B, T, H, dh)
    if positions is not None:
        q, k = (torch_rotary(t.reshape(N, H, DH), positions).reshape(B, T, H, DH) for t in (q, k))
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, dh)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, dh)
    return out.transpose(1, 2).reshape(N, D) @ wo


def attention_inputs(d: int = D) -> dict[str, Tensor]:
    weights = {name: randn(d, d, seed=i + 1, scale=d**-0.5) for i, name in enumerate(("wq", "wk", "wv", "wo"))}
    return {"x": randn(N, d), **weights}


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
@pytest.mark.parametrize("use_rope", [False, True], ids=["no-rope", "rope"])
def test_multihead_self_attention_matches_plain_torch(use_rope: bool, packed: bool):
    """Both layouts of full_attention (packed rows with packed_mask, batched heads with causal_mask)."""
    positions = torch.arange(T).repeat(B)  # (N,)
    inputs = {**attention_inputs(), "mask": nn.packed_mask(B, T) if packed else nn.causal_mask(T)}
    if use_rope:
        inputs["cos"], inputs["sin"] = nn.rope_tables(DH, positions)

    def ours(x, wq, wk, wv, wo, mask, cos=None, sin=None):
        attend = nn.full_attention(B, H, DH, mask, packed)
        angles = (cos, sin) if use_rope else None
        return nn.multihead_self_attention(x, {"wq": wq, "wk": wk, "wv": wv, "wo": wo}, H, DH, attend, angles)

    def theirs(x, wq, wk, wv, wo, mask, cos=None, sin=None):
        return torch_mha(x, wq, wk, wv, wo, positions if use_rope else None)

    check(ours, inputs, theirs, ["x", "wq", "wk", "wv", "wo"])


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
def test_one_head_attention_in_both_layouts(packed: bool):
    """One head skips the head reshapes (split_heads and merge_heads keep (N, D) or reshape only)."""
    inputs = {**attention_inputs(), "mask": nn.packed_mask(B, T) if packed else nn.causal_mask(T)}

    def ours(x, wq, wk, wv, wo, mask):
        attend = nn.full_attention(B, 1, D, mask, packed)
        return nn.multihead_self_attention(x, {"wq": wq, "wk": wk, "wv": wv, "wo": wo}, 1, D, attend)

    def theirs(x, wq, wk, wv, wo, mask):
        q, k, v = ((x @ w).reshape(B, 1, T, D) for w in (wq, wk, wv))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).reshape(N, D) @ wo

    check(ours, inputs, theirs, ["x", "wq", "wk", "wv", "wo"])


def test_full_attention_records_each_layers_weights_keys_and_values():
    record: list = []
    inputs = attention_inputs()
    x, wq, wk, wv, wo, mask = (ad.Variable(n) for n in ("x", "wq", "wk", "wv", "wo", "mask"))
    attend = nn.full_attention(B, H, DH, mask, False, record)
    nn.multihead_self_attention(x, {"wq": wq, "wk": wk, "wv": wv, "wo": wo}, H, DH, attend)
    assert len(record) == 1
    feed = {x: inputs["x"], wq: inputs["wq"], wk: inputs["wk"], wv: inputs["wv"], mask: nn.causal_mask(T)}
    weights, keys, values = ad.Evaluator(list(record[0])).run(feed)
    expected_k = (inputs["x"] @ inputs["wk"]).reshape(B, T, H, DH).transpose(1, 2)
    assert weights.shape == (B, H, T, T) and values.shape == (B, H, T, DH)
    torch.testing.assert_close(keys, expected_k, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------- feed-forward


@pytest.mark.parametrize("kind", ["relu", "gelu", "swiglu"])
def test_feed_forward(kind: str):
    F_ = 12
    inputs = {"x": randn(N, D), "w1": randn(D, F_, seed=1, scale=0.5), "w2": randn(F_, D, seed=2, scale=0.5)}
    if kind == "swiglu":
        inputs["w3"] = randn(D, F_, seed=3, scale=0.5)
    formulas = {
        "relu": lambda x, w1, w2: torch.relu(x @ w1) @ w2,
        "gelu": lambda x, w1, w2: (0.5 * (x @ w1) * (1 + torch.erf(x @ w1 / math.sqrt(2)))) @ w2,  # exact GELU
        "swiglu": lambda x, w1, w2, w3: (F.silu(x @ w1) * (x @ w3)) @ w2,
    }
    check(lambda x, **w: nn.feed_forward(x, w, kind), inputs, formulas[kind], list(inputs))


def test_an_unknown_feed_forward_is_named():
    x, w = ad.Variable("x"), {"w1": ad.Variable("w1"), "w2": ad.Variable("w2")}
    with pytest.raises(ValueError, match="relu, gelu, swiglu, got 'tanh'"):
        nn.feed_forward(x, w, "tanh")


# ------------------------------------------------------------------------------------------ block


def torch_block(x: Tensor, w: dict[str, Tensor], cfg) -> Tensor:
    """One decoder block in plain torch, by the config's parts (pre or post norm, gains, ffn, rope)."""
    positions = torch.arange(T).repeat(B) if cfg.positions == "rope" else None
    norm = torch_rmsnorm if cfg.norm == "rmsnorm" else torch_layernorm
    g1, g2 = (w["norm1"], w["norm2"]) if cfg.norm_gain else (None, None)

    def attn(h):
        return torch_mha(h, w["wq"], w["wk"], w["wv"], w["wo"], positions)

    def ffn(h):
        if cfg.ffn == "swiglu":
            return (F.silu(h @ w["w1"]) * (h @ w["w3"])) @ w["w2"]
        return (F.gelu(h @ w["w1"]) if cfg.ffn == "gelu" else torch.relu(h @ w["w1"])) @ w["w2"]

    if cfg.norm_placement == "pre":
        x = x + attn(norm(x, g1))
        return x + ffn(norm(x, g2))
    h = norm(x + attn(x), g1)
    return norm(h + ffn(h), g2)


@pytest.mark.parametrize(
    "preset,parts",
    [
        ("classic", {}),  # post-norm, LayerNorm without gains, ReLU
        ("classic", {"norm_gain": True, "norm": "rmsnorm"}),  # post-norm with gains
        ("gpt", {}),  # pre-norm, LayerNorm with gains, GELU
        ("llama", {}),  # pre-norm, RMSNorm with gains, SwiGLU, RoPE
        ("llama", {"norm_gain": False, "ffn": "relu"}),  # pre-norm without gains
    ],
)
def test_block_matches_plain_torch(preset: str, parts: dict):
    cfg = preset_config(preset, 10, T, d_ff=12, d_model=D, n_heads=H, **parts)
    shapes = {"wq": (D, D), "wk": (D, D), "wv": (D, D), "wo": (D, D), "w1": (D, 12), "w2": (12, D)}
    if cfg.ffn == "swiglu":
        shapes["w3"] = (D, 12)
    weights = {name: randn(*s, seed=i + 1, scale=s[0] ** -0.5) for i, (name, s) in enumerate(shapes.items())}
    if cfg.norm_gain:  # gains away from 1, so a wrong use of them shows
        weights.update(norm1=randn(D, seed=20) * 0.3 + 1, norm2=randn(D, seed=21) * 0.3 + 1)
    positions = torch.arange(T).repeat(B)
    feed = {"x": randn(N, D), **weights, "mask": nn.causal_mask(T)}
    feed["cos"], feed["sin"] = nn.rope_tables(DH, positions)

    def ours(x, mask, cos, sin, **w):
        angles = (cos, sin) if cfg.positions == "rope" else None
        return nn.block(x, w, cfg, nn.full_attention(B, H, DH, mask, False), angles)

    def theirs(x, mask, cos, sin, **w):
        return torch_block(x, w, cfg)

    check(ours, feed, theirs, ["x", *weights])


# ----------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_cross_entropy_ignores_its_ignored_targets(scale: float):
    targets = torch.tensor([3, nn.IGNORE_INDEX, 0, 6, nn.IGNORE_INDEX, 2, 2])
    check(
        nn.cross_entropy, {"logits": randn(7, 7) * scale, "targets": targets},
        lambda logits, targets: F.cross_entropy(logits, targets, ignore_index=nn.IGNORE_INDEX), ["logits"],
    )  # fmt: skip
    assert nn.IGNORE_INDEX == -100  # torch's default: F.cross_entropy(logits, targets) ignores the same


def test_prefixed_names_one_layers_weights():
    params = {"tok_emb": 0, "layers.0.wq": 1, "layers.0.w1": 2, "layers.1.wq": 3}
    layer = nn.Prefixed(params, "layers.0.")
    assert layer["wq"] == 1 and dict(layer) == {"wq": 1, "w1": 2} and len(layer) == 2
    with pytest.raises(KeyError):
        layer["tok_emb"]
