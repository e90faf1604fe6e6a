"""The decoder-only transformer: its parameters and the autodiff graphs it runs on (config: lm.config).

Forward and backward are `autodiff` graphs (not PyTorch's autograd). Each graph is built once per batch
size (and attention layout) and reused with its Evaluator: the training loss, the full forward
(logits, attention weights, keys and values) and the KV-cached step that computes one new position.
Activations are kept as (N, D) rows, N = B * T, so every weight matmul and its gradient is a plain
2-D matmul. One block whose parts the config picks (norm, its placement, positions, feed-forward, head);
three presets name the recipes a learner compares: classic (this project's first model), gpt, llama.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import autodiff as ad
from autodiff import Evaluator, Node, Variable
from lm.config import (  # noqa: F401  (re-exported: lm.model has always been where the config lives)
    CHOICES,
    DTYPES,
    MAX_PARAMETERS,
    MAX_SIZES,
    PART_FIELDS,
    PRESETS,
    ModelConfig,
    param_shapes,
    preset_config,
    preset_d_ff,
)

Tensor = torch.Tensor
NORM_EPS = 1e-5  # LayerNorm and RMSNorm epsilon (torch's and Llama 2's)
IGNORE_INDEX = -100  # a sparse target that counts for nothing (torch's default)
NEG_INF = -1e9  # the causal mask value: large and negative, but finite so softmax never sees inf - inf


def rope_tables(config: ModelConfig, positions: Tensor) -> tuple[Tensor, Tensor]:
    """(N,) positions -> cos and sin of the angles pos * theta^(-2i / d_head), each (N, 1, d_head / 2)
    (the 1 broadcasts over heads). Computed in float64, then the model's dtype: fed to the graph, not
    built in it, so a float32 model at position 8000 still turns by the exact angle."""
    dh = config.d_head
    inv_freq = config.rope_theta ** (-torch.arange(0, dh // 2, dtype=torch.float64) * 2 / dh)  # (dh/2,)
    angles = positions.to(torch.float64)[:, None, None] * inv_freq  # (N, 1, dh/2)
    return angles.cos().to(config.torch_dtype), angles.sin().to(config.torch_dtype)


def causal_mask(T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(T, T) additive mask: 0 on and below the diagonal, NEG_INF above (a query sees no later key)."""
    return torch.full((T, T), NEG_INF, dtype=dtype).triu(1)


class ParamVars:
    """One autodiff Variable per parameter, shared by all the graphs of a model."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.by_name = {name: Variable(name) for name in param_shapes(config)}

    def __getitem__(self, name: str) -> Node:
        return self.by_name[name]


# Two layouts for attention over a batch of B sequences of T positions (N = B * T rows):
# - batched: heads (B, H, T, dh), scores (B, H, T, T), mask causal_mask(T);
# - packed: heads (H, N, dh), scores (H, N, N) over all rows at once, mask packed_mask(B, T) that is
#   causal within a sequence and blocks every other sequence. It wastes (B - 1) / B of the scores but
#   needs fewer, larger matmuls and no reshapes for one head: faster for tiny batches (the classic
#   recipe's 10 sentences of 4 positions), so it is used when B == 1 or N <= PACK_ROWS. Its cost grows as
#   N^2: at B 8 x T 32 (N 256) a training step of a 4-layer, 8-head model took 3x longer packed than
#   batched (bench/bench_text.py --d-model 64 --context 32), hence the low bound.
PACK_ROWS = 64


def use_packed(batch: int, T: int) -> bool:
    return batch == 1 or batch * T <= PACK_ROWS


def packed_mask(batch: int, T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(N, N) additive mask: causal_mask(T) blocks on the diagonal, NEG_INF between sequences."""
    mask = torch.full((batch * T, batch * T), NEG_INF, dtype=dtype)
    for b in range(batch):
        mask[b * T : (b + 1) * T, b * T : (b + 1) * T] = causal_mask(T, dtype)
    return mask


def _split_heads(x: Node, batch: int, cfg: ModelConfig, packed: bool) -> Node:
    """(N, D) -> (H, N, dh) packed, (B, H, T, dh) batched; one packed head stays (N, D)."""
    H, dh = cfg.n_heads, cfg.d_head
    if packed:
        return x if H == 1 else ad.permute(ad.reshape(x, (-1, H, dh)), (1, 0, 2))  # (H, N, dh)
    if H == 1:
        return ad.reshape(x, (batch, 1, -1, dh))  # (B, 1, T, D): a single reshape, no permute
    return ad.permute(ad.reshape(x, (batch, -1, H, dh)), (0, 2, 1, 3))  # (B, T, H, dh) -> (B, H, T, dh)


def _merge_heads(x: Node, cfg: ModelConfig, packed: bool) -> Node:
    """The inverse of _split_heads: back to (N, D)."""
    if cfg.n_heads == 1:
        return x if packed else ad.reshape(x, (-1, cfg.d_model))
    dims = (1, 0, 2) if packed else (0, 2, 1, 3)  # to (N, H, dh) or (B, T, H, dh)
    return ad.reshape(ad.permute(x, dims), (-1, cfg.d_model))


def unpack_heads(x: Tensor, batch: int, T: int, cfg: ModelConfig, packed: bool) -> Tensor:
    """A key or value tensor of either layout -> (B, H, T, dh)."""
    return x.reshape(cfg.n_heads, batch, T, cfg.d_head).transpose(0, 1) if packed else x


def unpack_attention(w: Tensor, batch: int, T: int, cfg: ModelConfig, packed: bool) -> Tensor:
    """Attention weights of either layout -> (B, H, T, T) (packed: the diagonal blocks)."""
    if not packed:
        return w
    blocks = w.reshape(cfg.n_heads, batch, T, batch, T).diagonal(dim1=1, dim2=3)  # (H, T, T, B)
    return blocks.permute(3, 0, 1, 2)


def _norm(x: Node, gain: Node | None, cfg: ModelConfig) -> Node:
    """LayerNorm or RMSNorm over the last dim (D), times the gain when the config has one (one fused
    node forward, two backward: the input's gradient and the gain's)."""
    if gain is not None:
        return ad.rmsnorm(x, gain, NORM_EPS) if cfg.norm == "rmsnorm" else ad.layernorm_gain(x, gain, NORM_EPS)
    if cfg.norm == "rmsnorm":  # x / sqrt(mean(x^2) + eps), without a gain (a custom config)
        return x * ad.power(ad.add_by_const(ad.mean(x * x, -1, keepdim=True), NORM_EPS), -0.5)
    return ad.layernorm(x, (cfg.d_model,), eps=NORM_EPS)


def _rope(x: Node, cos: Node, sin: Node, cfg: ModelConfig) -> Node:
    """Rotary positions on (N, D) rows: each head's (first half, second half) pairs turned by their
    angle (cos, sin: (N, 1, dh/2)); the same layout as tests/reference_model.py."""
    heads = ad.reshape(x, (-1, cfg.n_heads, cfg.d_head))  # (N, H, dh)
    return ad.reshape(ad.rope(heads, cos, sin), (-1, cfg.d_model))  # (N, D)


def _feed_forward(h: Node, pv: ParamVars, i: int, cfg: ModelConfig) -> Node:
    """The feed-forward part without norm or residual: (N, D) -> (N, F) -> (N, D)."""
    up = h @ pv[f"layers.{i}.w1"]  # (N, F)
    if cfg.ffn == "swiglu":
        hidden = ad.silu(up) * (h @ pv[f"layers.{i}.w3"])  # gate * up
    else:
        hidden = ad.gelu(up) if cfg.ffn == "gelu" else ad.relu(up)
    return hidden @ pv[f"layers.{i}.w2"]  # (N, D)


def _layer(x: Node, pv: ParamVars, i: int, rope: tuple[Node, Node] | None, attend) -> Node:
    """One decoder layer on (N, D) rows. `attend(q, k, v)` ((N, D) each, after RoPE) returns the
    heads' merged output (N, D), laid out as the caller's graph needs (full forward or cached step)."""
    cfg = pv.config
    g1 = pv[f"layers.{i}.norm1"] if cfg.norm_gain else None
    g2 = pv[f"layers.{i}.norm2"] if cfg.norm_gain else None
    pre = cfg.norm_placement == "pre"
    a = _norm(x, g1, cfg) if pre else x
    q, k, v = (a @ pv[f"layers.{i}.{w}"] for w in ("wq", "wk", "wv"))  # (N, D) each
    if rope is not None:
        q, k = _rope(q, *rope, cfg), _rope(k, *rope, cfg)
    attn = attend(q, k, v) @ pv[f"layers.{i}.wo"]  # (N, D)
    if pre:  # x + attn(norm(x)), then x + ffn(norm(x))
        x = x + attn
        return x + _feed_forward(_norm(x, g2, cfg), pv, i, cfg)
    h = _norm(x + attn, g1, cfg)  # post: norm(x + attn(x)), then norm(h + ffn(h))
    return _norm(h + _feed_forward(h, pv, i, cfg), g2, cfg)


def _embed(pv: ParamVars, ids: Node, pos: Node, rope: tuple[Node, Node]) -> tuple[Node, tuple[Node, Node] | None]:
    """Token (plus learned position) embeddings (N, D), and RoPE's fed (cos, sin) when the config has it."""
    x = ad.embedding(pv["tok_emb"], ids)  # (N, D)
    if pv.config.positions == "rope":
        return x, rope
    return x + ad.embedding(pv["pos_emb"], pos), None


def _head(x: Node, pv: ParamVars) -> Node:
    """Final norm (if any) and the output projection: (N, D) -> (N, V) logits."""
    cfg = pv.config
    if cfg.final_norm:
        x = _norm(x, pv["norm_f"] if cfg.norm_gain else None, cfg)
    if cfg.tie_embeddings:
        return x @ ad.transpose(pv["tok_emb"], 0, 1)  # (N, D) @ (D, V)
    return x @ pv["w_out"]


@dataclass
class ForwardGraph:
    """The full forward pass over (B, T) ids: logits of every position, attention, keys and values.

    Feed `ids` and `pos` as (N,) int64 (row-major B x T), `mask` as packed_mask(B, T) (packed) or
    causal_mask(T) (batched), and with RoPE `cos`, `sin` as rope_tables(config, pos); `inputs(ids)` builds
    all of them. Works for any T up to the context: shapes come from the fed values."""

    ids: Node
    pos: Node
    mask: Node
    cos: Node  # (N, 1, dh/2), fed only with RoPE
    sin: Node
    packed: bool
    logits: Node  # (N, V)
    probs: Node  # (N, V)
    attention: list[Node]  # per layer (H, N, N) packed (one head: (N, N)) or (B, H, T, T)
    keys: list[Node]  # per layer (H, N, dh) packed (one head: (N, D)) or (B, H, T, dh); after RoPE
    values: list[Node]
    config: ModelConfig

    def mask_for(self, batch: int, T: int, dtype: torch.dtype) -> Tensor:
        return packed_mask(batch, T, dtype) if self.packed else causal_mask(T, dtype)

    def inputs(self, ids: Tensor) -> dict[Node, Tensor]:
        """The feed of everything but the parameters for (B, T) ids."""
        B, T = ids.shape
        pos = torch.arange(T).repeat(B)  # (N,)
        feed = {self.ids: ids.reshape(-1), self.pos: pos, self.mask: self.mask_for(B, T, self.config.torch_dtype)}
        if self.config.positions == "rope":
            feed[self.cos], feed[self.sin] = rope_tables(self.config, pos)
        return feed


def build_forward(pv: ParamVars, batch: int, packed: bool) -> ForwardGraph:
    """Graph of the full forward pass."""
    cfg = pv.config
    ids, pos, mask, cos, sin = (Variable(n) for n in ("ids", "pos", "mask", "cos", "sin"))
    x, rope = _embed(pv, ids, pos, (cos, sin))  # (N, D)
    scale = 1.0 / math.sqrt(cfg.d_head)
    attention, keys, values = [], [], []

    def attend(q: Node, k: Node, v: Node) -> Node:
        # Shapes given packed | batched:
        # The 1/sqrt(dh) scale goes on q (N x D values), not on the scores (B x H x T x T: T/dh times more).
        q, k, v = (_split_heads(t, batch, cfg, packed) for t in (q * scale, k, v))  # (H, N, dh) | (B, H, T, dh)
        scores = ad.matmul(q, ad.transpose(k, -1, -2)) + mask  # (H, N, N) | (B, H, T, T)
        weights = ad.softmax(scores, -1)  # rows = queries
        attention.append(weights), keys.append(k), values.append(v)
        return _merge_heads(ad.matmul(weights, v), cfg, packed)  # (N, D)

    for i in range(cfg.n_layers):
        x = _layer(x, pv, i, rope, attend)  # (N, D)
    logits = _head(x, pv)  # (N, V)
    return ForwardGraph(ids, pos, mask, cos, sin, packed, logits, ad.softmax(logits, -1), attention, keys, values, cfg)


@dataclass
class LossGraph:
    """Training: mean cross-entropy over non-pad targets, and the gradient of every parameter.

    Sparse (the text models): `targets` is fed as (N,) int64 ids, IGNORE_INDEX where a position has no
    target; one cross_entropy node, no one-hot. Dense (the classic trainer): `targets` is fed as (N, V)
    one-hot rows divided by minus the number of non-pad targets, with all-zero rows at padded targets:
    sum(targets * log_softmax(logits)) is then the masked mean of -log p(target)."""

    forward: ForwardGraph
    targets: Node
    loss: Node
    grads: list[Node]  # in ParamVars order
    evaluator: Evaluator


def build_loss(pv: ParamVars, batch: int, packed: bool, sparse: bool = False) -> LossGraph:
    fwd = build_forward(pv, batch, packed)
    targets = Variable("targets")
    if sparse:
        loss = ad.cross_entropy(fwd.logits, targets, IGNORE_INDEX)  # () mean over kept targets
    else:
        logp = ad.log_softmax(fwd.logits, -1)  # (N, V), stable
        loss = ad.sum_op(logp * targets)  # () masked mean cross-entropy
    grads = ad.gradients(loss, list(pv.by_name.values()))
    return LossGraph(fwd, targets, loss, grads, Evaluator([loss, *grads]))


@dataclass
class StepGraph:
    """One KV-cached decoding step: B new tokens at one new position each.

    Feed `ids`, `pos` as (B,) int64 (with RoPE also `cos`, `sin`: `inputs(ids, pos)` builds them) and
    per layer `past_keys[i]`, `past_values[i]` as (B, H, t, dh) (t may be 0). Only the new position's
    projections are computed; it attends over the cache and itself. Outputs the logits, probs,
    attention row and the grown cache (B, H, t + 1, dh)."""

    ids: Node
    pos: Node
    cos: Node  # (B, 1, dh/2), fed only with RoPE
    sin: Node
    past_keys: list[Node]
    past_values: list[Node]
    logits: Node  # (B, V)
    probs: Node  # (B, V)
    attention: list[Node]  # per layer (B, H, 1, t + 1)
    keys: list[Node]  # per layer (B, H, t + 1, dh)
    values: list[Node]
    evaluator: Evaluator
    config: ModelConfig

    def inputs(self, ids: Tensor, pos: Tensor) -> dict[Node, Tensor]:
        """The feed of the new tokens: (B,) ids at (B,) positions (the cache's length)."""
        feed = {self.ids: ids, self.pos: pos}
        if self.config.positions == "rope":
            feed[self.cos], feed[self.sin] = rope_tables(self.config, pos)
        return feed


def build_step(pv: ParamVars, batch: int) -> StepGraph:
    cfg = pv.config
    ids, pos, cos, sin = (Variable(n) for n in ("ids", "pos", "cos", "sin"))
    x, rope = _embed(pv, ids, pos, (cos, sin))  # (B, D)
    scale = 1.0 / math.sqrt(cfg.d_head)
    heads = (batch, cfg.n_heads, 1, cfg.d_head)
    past_keys, past_values, attention, keys, values = [], [], [], [], []

    def attend(q: Node, k: Node, v: Node) -> Node:
        i = len(keys)
        past_k, past_v = Variable(f"past_k{i}"), Variable(f"past_v{i}")  # (B, H, t, dh)
        q = ad.reshape(q, heads)  # (B, H, 1, dh)
        k = ad.concat([past_k, ad.reshape(k, heads)], 2)  # (B, H, t+1, dh)
        v = ad.concat([past_v, ad.reshape(v, heads)], 2)  # (B, H, t+1, dh)
        weights = ad.softmax(ad.matmul(q, ad.transpose(k, -1, -2)) * scale, -1)  # (B, H, 1, t+1), no mask
        past_keys.append(past_k), past_values.append(past_v)
        attention.append(weights), keys.append(k), values.append(v)
        return ad.reshape(ad.matmul(weights, v), (batch, cfg.d_model))  # (B, D)

    for i in range(cfg.n_layers):
        x = _layer(x, pv, i, rope, attend)  # (B, D)
    logits = _head(x, pv)  # (B, V)
    probs = ad.softmax(logits, -1)
    evaluator = Evaluator([logits, probs, *attention, *keys, *values])
    return StepGraph(ids, pos, cos, sin, past_keys, past_values, logits, probs, attention, keys, values, evaluator, cfg)


def init_params(config: ModelConfig) -> dict[str, Tensor]:
    """Seeded initialization, parameters drawn in param_shapes order (in float64, then the dtype).

    uniform (classic): every parameter ±1/sqrt(d_model). normal (GPT-2): matrices and embeddings
    N(0, 0.02), the residual outputs wo and w2 N(0, 0.02 / sqrt(2 n_layers)), gains 1."""
    generator = torch.Generator().manual_seed(config.seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 1:  # a norm gain
            value = torch.ones(shape, dtype=torch.float64)
        elif config.init == "uniform":
            value = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul_(
                1 / math.sqrt(config.d_model)
            )
        else:
            std = 0.02 / math.sqrt(2 * config.n_layers) if name.endswith((".wo", ".w2")) else 0.02
            value = torch.randn(shape, generator=generator, dtype=torch.float64).mul_(std)
        params[name] = value.to(config.torch_dtype)
    return params


class LanguageModel:
    """Config, tokenizer (any with len() and encode/decode) and parameters (plain tensors, updated in
    place by an optimizer).

    The graphs are built lazily, once per batch size, and cached on the model."""

    def __init__(self, config: ModelConfig, tokenizer, params: dict[str, Tensor]):
        config.validate()
        if len(tokenizer) != config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} words but config.vocab_size is {config.vocab_size}")
        expected = param_shapes(config)
        if list(params) != list(expected) or any(tuple(params[n].shape) != s for n, s in expected.items()):
            raise ValueError("params do not match the config's parameter names and shapes")
        self.config = config
        self.tokenizer = tokenizer
        self.params = params
        self.vars = ParamVars(config)
        self._forward: dict[tuple[int, bool], tuple[ForwardGraph, dict[tuple, Evaluator]]] = {}
        self._loss: dict[tuple[int, int, bool], LossGraph] = {}
        self._step: dict[int, StepGraph] = {}

    @classmethod
    def create(cls, config: ModelConfig, tokenizer, seed: int | None = None) -> LanguageModel:
        """A freshly initialized model; `seed` (if given) replaces config.seed."""
        if seed is not None:
            config = ModelConfig(**{**config.to_dict(), "seed": seed})
        config.validate()
        return cls(config, tokenizer, init_params(config))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def param_feed(self) -> dict[Node, Tensor]:
        """{Variable: tensor} for every parameter: the part of a feed that is the same every run."""
        return {self.vars[name]: value for name, value in self.params.items()}

    # Graphs, built once per batch size.
    def loss_graph(self, batch: int, T: int, sparse: bool = False) -> LossGraph:
        """The loss graph for (batch, T) inputs (T picks the attention layout); sparse: integer targets."""
        if (batch, T, sparse) not in self._loss:
            self._loss[batch, T, sparse] = build_loss(self.vars, batch, use_packed(batch, T), sparse)
        return self._loss[batch, T, sparse]

    def step_graph(self, batch: int = 1) -> StepGraph:
        if batch not in self._step:
            self._step[batch] = build_step(self.vars, batch)
        return self._step[batch]

    def forward(self, ids: Tensor, outputs: tuple[str, ...] = ("logits",)) -> dict[str, Tensor | list[Tensor]]:
        """Run the full forward on (B, T) ids; `outputs` picks from logits, probs (each (B, T, V)),
        attention (per layer (B, H, T, T)), keys, values (per layer (B, H, T, dh)).
        One graph per batch size and layout, one Evaluator per set of outputs."""
        B, T = ids.shape
        if T > self.config.context:
            raise ValueError(f"{T} positions exceed the model's context of {self.config.context}")
        packed = use_packed(B, T)
        if (B, packed) not in self._forward:
            self._forward[B, packed] = (build_forward(self.vars, B, packed), {})
        graph, evaluators = self._forward[B, packed]
        if outputs not in evaluators:
            nodes = []
            for name in outputs:
                value = getattr(graph, name)
                nodes.extend(value if isinstance(value, list) else [value])
            evaluators[outputs] = Evaluator(nodes)
        feed = self.param_feed()
        feed.update(graph.inputs(ids))
        values = iter(evaluators[outputs].run(feed))
        result: dict[str, Tensor | list[Tensor]] = {}
        cfg = self.config
        for name in outputs:
            if name in ("logits", "probs"):
                result[name] = next(values).reshape(B, T, -1)  # (B, T, V)
            elif name == "attention":
                result[name] = [unpack_attention(next(values), B, T, cfg, packed) for _ in range(cfg.n_layers)]
            else:  # keys, values: (B, H, T, dh)
                result[name] = [unpack_heads(next(values), B, T, cfg, packed) for _ in range(cfg.n_layers)]
        return result
