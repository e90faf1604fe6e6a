"""The plain-PyTorch reference of lm's transformer: the oracle for golden tests and model benchmarks.

One decoder written with functional torch ops (PyTorch's autograd does its backward), reading the same
parameter dict as `lm.model` (names and shapes of `lm.model.param_shapes`) and the same `ModelConfig`,
for every preset: classic (post-LayerNorm, learned positions, ReLU, untied), gpt (pre-LayerNorm with
gain, final norm, GELU, tied head) and llama (pre-RMSNorm with gain, final norm, RoPE, SwiGLU).
API: reference_logits(params, cfg, ids), reference_loss(params, cfg, ids, targets, ignore_index=0),
reference_forward(params, cfg, ids, cache) and reference_decode_step(params, cfg, ids, cache).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Cache = list[tuple[Tensor, Tensor]]  # per layer (keys, values), each (B, H, t, dh); keys after RoPE

# The config fields that pick the block's parts, with the classic recipe's values. Read through
# getattr so a config written before a field existed means the classic model.
CLASSIC = {
    "norm": "layernorm",  # "layernorm" | "rmsnorm"
    "norm_placement": "post",  # "post": LN(x + f(x)); "pre": x + f(LN(x))
    "norm_gain": False,  # a learned (D,) gain per norm: layers.{i}.norm1, layers.{i}.norm2, norm_f
    "final_norm": False,  # a norm before the head (norm_f)
    "positions": "learned",  # "learned" (pos_emb) | "rope"
    "rope_theta": 10000.0,
    "ffn": "relu",  # "relu" | "gelu" (exact, erf) | "swiglu" (w1 gate, w3 up, w2 down)
    "tie_embeddings": False,  # True: logits = x @ tok_emb.T and there is no w_out
}
NORM_EPS = 1e-5  # LayerNorm and RMSNorm
MASK_VALUE = -1e9  # lm's additive causal mask value


def part(cfg, name: str):
    """The config's choice for one block part (classic when the field is absent)."""
    return getattr(cfg, name, CLASSIC[name])


def norm(x: Tensor, gain: Tensor | None, cfg) -> Tensor:
    """LayerNorm or RMSNorm over the last dim, times the gain when the config has one."""
    if part(cfg, "norm") == "rmsnorm":
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)
        return x if gain is None else x * gain
    return F.layer_norm(x, (x.shape[-1],), weight=gain, eps=NORM_EPS)


def rope_tables(cfg, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin of the rotation angles pos * theta^(-2i/dh), each (T, dh/2)."""
    dh = cfg.d_model // cfg.n_heads
    inv_freq = part(cfg, "rope_theta") ** (-torch.arange(0, dh // 2, dtype=torch.float64) * 2 / dh)  # (dh/2,)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (T, dh/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each (first half, second half) pair of x (..., T, dh) by its angle (GPT-NeoX / HF layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def feed_forward(h: Tensor, params: dict[str, Tensor], i: int, cfg) -> Tensor:
    """The feed-forward block without its norm and residual: (..., D) -> (..., D)."""
    w1, w2 = params[f"layers.{i}.w1"], params[f"layers.{i}.w2"]
    kind = part(cfg, "ffn")
    if kind == "swiglu":
        return (F.silu(h @ w1) * (h @ params[f"layers.{i}.w3"])) @ w2
    return (F.gelu(h @ w1) if kind == "gelu" else torch.relu(h @ w1)) @ w2


def reference_forward(params: dict[str, Tensor], cfg, ids: Tensor, cache: Cache | None = None) -> tuple[Tensor, Cache]:
    """(B, t_new) ids at positions t..t+t_new-1, after t cached positions (t = 0 without a cache).

    Returns the logits (B, t_new, V) and the grown cache (B, H, t + t_new, dh) per layer. Without a
    cache this is the full forward; with one and t_new = 1 it is a KV-cached decoding step."""
    B, T = ids.shape
    H, D = cfg.n_heads, cfg.d_model
    dh = D // H
    start = 0 if cache is None else cache[0][0].shape[2]
    positions = torch.arange(start, start + T)
    dtype = params["tok_emb"].dtype
    x = params["tok_emb"][ids]  # (B, T, D)
    rope = part(cfg, "positions") == "rope"
    if rope:
        cos, sin = rope_tables(cfg, positions, dtype)  # (T, dh/2)
    else:
        x = x + params["pos_emb"][positions]
    # Query j (absolute start + j) sees keys 0..start + j: the mask is (T, start + T).
    mask = torch.full((T, start + T), MASK_VALUE, dtype=dtype).triu(start + 1)
    gain = part(cfg, "norm_gain")
    pre = part(cfg, "norm_placement") == "pre"
    new_cache: Cache = []
    for i in range(cfg.n_layers):
        p = {w: params[f"layers.{i}.{w}"] for w in ("wq", "wk", "wv", "wo")}
        g1 = params[f"layers.{i}.norm1"] if gain else None
        g2 = params[f"layers.{i}.norm2"] if gain else None
        a = norm(x, g1, cfg) if pre else x
        q, k, v = ((a @ p[w]).view(B, T, H, dh).transpose(1, 2) for w in ("wq", "wk", "wv"))  # (B, H, T, dh)
        if rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)  # (B, H, start + T, dh)
        new_cache.append((k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + mask  # (B, H, T, start + T)
        attn = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, D) @ p["wo"]  # (B, T, D)
        if pre:
            x = x + attn
            x = x + feed_forward(norm(x, g2, cfg), params, i, cfg)
        else:
            h = norm(x + attn, g1, cfg)
            x = norm(h + feed_forward(h, params, i, cfg), g2, cfg)
    if part(cfg, "final_norm"):
        x = norm(x, params["norm_f"] if gain else None, cfg)
    head = params["tok_emb"].T if part(cfg, "tie_embeddings") else params["w_out"]  # (D, V)
    return x @ head, new_cache  # (B, T, V)


def reference_logits(params: dict[str, Tensor], cfg, ids: Tensor) -> Tensor:
    """The full forward: (B, T) ids -> (B, T, V) logits."""
    return reference_forward(params, cfg, ids)[0]


def reference_loss(params: dict[str, Tensor], cfg, ids: Tensor, targets: Tensor, ignore_index: int = 0) -> Tensor:
    """Mean cross-entropy of (B, T) targets, skipping `ignore_index`.

    The default 0 is the classic word model's <pad>; text models (every target real) pass -100."""
    logits = reference_logits(params, cfg, ids)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def reference_decode_step(params: dict[str, Tensor], cfg, ids: Tensor, cache: Cache | None) -> tuple[Tensor, Cache]:
    """One KV-cached step: (B,) new ids -> (B, V) logits of the next token, and the grown cache."""
    logits, cache = reference_forward(params, cfg, ids[:, None], cache)
    return logits[:, -1], cache
