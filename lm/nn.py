"""The transformer's components as graph-building functions: each takes autodiff nodes and returns a node,
so it can be used on its own (run it with an `autodiff.Evaluator`) or composed into a model (lm.model).

Activations are (N, D) rows, N = B * T positions of B sequences, so every weight product is a plain 2-D
matmul. Weights are (in, out): `linear(x, w) = x @ w` (the course's (out, in) weight is `w.T` here).
A layer's weights are a mapping from short names (`wq`, `w1`, `norm1`, ...) to nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

import autodiff as ad
from autodiff import Node

Tensor = torch.Tensor
NORM_EPS = 1e-5  # LayerNorm and RMSNorm epsilon (torch's and Llama 2's)
IGNORE_INDEX = -100  # a target that counts for nothing in the loss (torch's default): padding
NEG_INF = -1e9  # the causal mask value: large and negative, but finite so softmax never sees inf - inf

# attend(q, k, v) -> (N, D): how a layer's heads attend, given its projected queries, keys and values
# (N, D) each; full_attention builds one for a whole sequence, lm.model another for a KV-cached step.
Attend = Callable[[Node, Node, Node], Node]


def linear(x: Node, w: Node) -> Node:
    """x @ w: (N, in) @ (in, out) -> (N, out), no bias."""
    return ad.matmul(x, w)


def embedding(table: Node, ids: Node) -> Node:
    """Rows of `table` (V, D) picked by integer `ids` (N,) -> (N, D); the gradient scatters back to rows."""
    return ad.embedding(table, ids)


def rmsnorm(x: Node, gain: Node | None = None, eps: float = NORM_EPS) -> Node:
    """x / sqrt(mean(x^2) + eps) over the last dim, times `gain` (D,) when given (one fused node)."""
    if gain is not None:
        return ad.rmsnorm(x, gain, eps)
    return x * ad.power(ad.add_by_const(ad.mean(x * x, -1, keepdim=True), eps), -0.5)


def layernorm(x: Node, d: int, gain: Node | None = None, eps: float = NORM_EPS) -> Node:
    """(x - mean) / sqrt(var + eps) over the last dim (of size d), times `gain` (d,) when given; no bias."""
    if gain is not None:
        return ad.layernorm_gain(x, gain, eps)
    return ad.layernorm(x, (d,), eps=eps)


def norm(x: Node, gain: Node | None, cfg) -> Node:
    """The config's norm (cfg.norm: "layernorm" or "rmsnorm") over its d_model."""
    return rmsnorm(x, gain) if cfg.norm == "rmsnorm" else layernorm(x, cfg.d_model, gain)


def softmax(x: Node, dim: int = -1) -> Node:
    """exp(x) / sum(exp(x)) along `dim` (the op, computed stably)."""
    return ad.softmax(x, dim)


def rope_tables(d_head: int, positions: Tensor, theta: float = 10000.0, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """(N,) positions -> cos and sin of the angles pos * theta^(-2i / d_head), each (N, 1, d_head / 2)
    (the 1 broadcasts over heads). Computed in float64, then `dtype`: fed to the graph, not built in it,
    so a float32 model at position 8000 still turns by the exact angle."""
    inv_freq = theta ** (-torch.arange(0, d_head // 2, dtype=torch.float64) * 2 / d_head)  # (dh/2,)
    angles = positions.to(torch.float64)[:, None, None] * inv_freq  # (N, 1, dh/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope(x: Node, cos: Node, sin: Node, n_heads: int, d_head: int) -> Node:
    """Rotary positions on (N, D) rows: each head's (first half, second half) pairs turned by their
    angle (cos, sin from rope_tables: (N, 1, dh/2)), the layout of bench/reference_model.py."""
    heads = ad.reshape(x, (-1, n_heads, d_head))  # (N, H, dh)
    return ad.reshape(ad.rope(heads, cos, sin), (-1, n_heads * d_head))  # (N, D)


def causal_mask(T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(T, T) additive mask: 0 on and below the diagonal, NEG_INF above (a query sees no later key)."""
    return torch.full((T, T), NEG_INF, dtype=dtype).triu(1)


def packed_mask(batch: int, T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(N, N) additive mask over B sequences packed as rows: causal_mask(T) blocks on the diagonal,
    NEG_INF between sequences."""
    mask = torch.full((batch * T, batch * T), NEG_INF, dtype=dtype)
    for b in range(batch):
        mask[b * T : (b + 1) * T, b * T : (b + 1) * T] = causal_mask(T, dtype)
    return mask


def scaled_dot_product_attention(q: Node, k: Node, v: Node, d_head: int, mask: Node | None = None) -> tuple[Node, Node]:
    """softmax(q k^T / sqrt(d_head) + mask) v over the last two dims: q (..., Tq, dh), k and v
    (..., Tk, dh), an additive mask broadcasting to (..., Tq, Tk) (None: every key is seen).
    Returns (output (..., Tq, dh), weights (..., Tq, Tk)); the rows of the weights are queries."""
    scores = ad.matmul(q * (1.0 / math.sqrt(d_head)), ad.transpose(k, -1, -2))  # (..., Tq, Tk)
    weights = ad.softmax(scores if mask is None else scores + mask, -1)
    return ad.matmul(weights, v), weights


# Two layouts for attention over a batch of B sequences of T positions (N = B * T rows):
# - batched: heads (B, H, T, dh), scores (B, H, T, T), mask causal_mask(T);
# - packed: heads (H, N, dh), scores (H, N, N) over all rows at once, mask packed_mask(B, T). It wastes
#   (B - 1) / B of the scores but needs fewer, larger matmuls and no reshapes for one head: faster for
#   tiny batches (the classic recipe's 10 sentences of 4 positions); lm.model picks it for few rows.


def split_heads(x: Node, batch: int, n_heads: int, d_head: int, packed: bool) -> Node:
    """(N, D) -> (H, N, dh) packed, (B, H, T, dh) batched; one packed head stays (N, D)."""
    H, dh = n_heads, d_head
    if packed:
        return x if H == 1 else ad.permute(ad.reshape(x, (-1, H, dh)), (1, 0, 2))  # (H, N, dh)
    if H == 1:
        return ad.reshape(x, (batch, 1, -1, dh))  # (B, 1, T, D): a single reshape, no permute
    return ad.permute(ad.reshape(x, (batch, -1, H, dh)), (0, 2, 1, 3))  # (B, T, H, dh) -> (B, H, T, dh)


def merge_heads(x: Node, n_heads: int, d_model: int, packed: bool) -> Node:
    """The inverse of split_heads: back to (N, D)."""
    if n_heads == 1:
        return x if packed else ad.reshape(x, (-1, d_model))
    dims = (1, 0, 2) if packed else (0, 2, 1, 3)  # to (N, H, dh) or (B, T, H, dh)
    return ad.reshape(ad.permute(x, dims), (-1, d_model))


def full_attention(
    batch: int, n_heads: int, d_head: int, mask: Node, packed: bool, record: list | None = None
) -> Attend:
    """The attend of a whole sequence: every head over the (masked) positions of its own sequence.
    `record`, when given, receives (weights, keys, values) of each call in the layout's shapes."""

    def attend(q: Node, k: Node, v: Node) -> Node:
        q, k, v = (split_heads(t, batch, n_heads, d_head, packed) for t in (q, k, v))  # (H, N, dh) | (B, H, T, dh)
        out, weights = scaled_dot_product_attention(q, k, v, d_head, mask)
        if record is not None:
            record.append((weights, k, v))
        return merge_heads(out, n_heads, n_heads * d_head, packed)  # (N, D)

    return attend


def multihead_self_attention(
    x: Node, w: Mapping[str, Node], n_heads: int, d_head: int, attend: Attend,
    rope_angles: tuple[Node, Node] | None = None,
) -> Node:  # fmt: skip
    """(N, D) rows -> (N, D): queries, keys and values x @ wq, wk, wv ((D, D) each), rotary positions on
    q and k when `rope_angles` (cos, sin) are given, the heads' attention (`attend`), then @ wo."""
    q, k, v = (linear(x, w[name]) for name in ("wq", "wk", "wv"))  # (N, D) each
    if rope_angles is not None:
        q, k = rope(q, *rope_angles, n_heads, d_head), rope(k, *rope_angles, n_heads, d_head)
    return linear(attend(q, k, v), w["wo"])  # (N, D)


FEED_FORWARDS = ("relu", "gelu", "swiglu")


def feed_forward(x: Node, w: Mapping[str, Node], kind: str = "relu") -> Node:
    """(N, D) -> (N, F) -> (N, D): relu(x w1) w2, gelu(x w1) w2 (exact, erf), or SwiGLU
    (silu(x w1) * (x w3)) w2."""
    up = linear(x, w["w1"])  # (N, F)
    if kind == "swiglu":
        hidden = ad.silu(up) * linear(x, w["w3"])  # gate * up
    elif kind in ("relu", "gelu"):
        hidden = ad.gelu(up) if kind == "gelu" else ad.relu(up)
    else:
        raise ValueError(f"feed_forward kind must be one of {', '.join(FEED_FORWARDS)}, got {kind!r}")
    return linear(hidden, w["w2"])  # (N, D)


def block(x: Node, w: Mapping[str, Node], cfg, attend: Attend, rope_angles: tuple[Node, Node] | None = None) -> Node:
    """One decoder block on (N, D) rows, its parts picked by `cfg` (an lm.config.ModelConfig: norm,
    norm_placement, norm_gain, ffn, n_heads). Pre-norm: x + attn(norm(x)), then x + ffn(norm(x));
    post-norm: h = norm(x + attn(x)), then norm(h + ffn(h)). Gains `norm1`, `norm2` when cfg has them."""
    g1, g2 = (w[g] if cfg.norm_gain else None for g in ("norm1", "norm2"))

    def attn(h: Node) -> Node:
        return multihead_self_attention(h, w, cfg.n_heads, cfg.d_head, attend, rope_angles)

    if cfg.norm_placement == "pre":
        x = x + attn(norm(x, g1, cfg))
        return x + feed_forward(norm(x, g2, cfg), w, cfg.ffn)
    h = norm(x + attn(x), g1, cfg)
    return norm(h + feed_forward(h, w, cfg.ffn), g2, cfg)


def cross_entropy(logits: Node, targets: Node) -> Node:
    """Mean of -log softmax(logits)[target] over the rows whose target is not IGNORE_INDEX:
    logits (N, V), integer targets (N,). One fused node; its gradient is softmax - one-hot, over the count."""
    return ad.cross_entropy(logits, targets, IGNORE_INDEX)


class Prefixed(Mapping):
    """The weights of one layer as short names: Prefixed(params, "layers.0.")["wq"] is params["layers.0.wq"]."""

    def __init__(self, params: Mapping[str, Node], prefix: str):
        self.params, self.prefix = params, prefix

    def __getitem__(self, name: str) -> Node:
        return self.params[self.prefix + name]

    def __iter__(self):
        return (n[len(self.prefix) :] for n in self.params if n.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)
