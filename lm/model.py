"""The decoder-only transformer: its parameters and the autodiff graphs it runs on, composed of lm.nn's
components (config: lm.config). A model is built from its config alone; a tokenizer is an optional
companion for text in and out.

Each graph is built once per batch size (and attention layout) and reused with its Evaluator: the
training loss, the full forward (logits, attention weights, keys and values) and the KV-cached step that
computes one new position. Activations are (N, D) rows, N = B * T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

import autodiff as ad
from autodiff import Evaluator, Node, Variable
from lm import nn
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


class ParamVars:
    """One autodiff Variable per parameter, shared by all the graphs of a model."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.by_name = {name: Variable(name) for name in param_shapes(config)}

    def __getitem__(self, name: str) -> Node:
        return self.by_name[name]

    def layer(self, i: int) -> nn.Prefixed:
        """Layer i's weights by short name (wq, w1, norm1, ...)."""
        return nn.Prefixed(self.by_name, f"layers.{i}.")


# The packed attention layout (lm.nn) is used when B == 1 or N <= PACK_ROWS: its cost grows as N^2, and at
# B 8 x T 32 (N 256) a training step of a 4-layer, 8-head model took 3x longer packed than batched
# (bench/bench_text.py --d-model 64 --context 32), hence the low bound.
PACK_ROWS = 64


def use_packed(batch: int, T: int) -> bool:
    return batch == 1 or batch * T <= PACK_ROWS


def rope_tables(config: ModelConfig, positions: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of the config's rotary angles at (N,) positions, each (N, 1, d_head / 2)."""
    return nn.rope_tables(config.d_head, positions, config.rope_theta, config.torch_dtype)


def unpack_heads(x: Tensor, batch: int, T: int, cfg: ModelConfig, packed: bool) -> Tensor:
    """A key or value tensor of either layout -> (B, H, T, dh)."""
    return x.reshape(cfg.n_heads, batch, T, cfg.d_head).transpose(0, 1) if packed else x


def unpack_attention(w: Tensor, batch: int, T: int, cfg: ModelConfig, packed: bool) -> Tensor:
    """Attention weights of either layout -> (B, H, T, T) (packed: the diagonal blocks)."""
    if not packed:
        return w
    blocks = w.reshape(cfg.n_heads, batch, T, batch, T).diagonal(dim1=1, dim2=3)  # (H, T, T, B)
    return blocks.permute(3, 0, 1, 2)


def _embed(pv: ParamVars, ids: Node, pos: Node, rope: tuple[Node, Node]) -> tuple[Node, tuple[Node, Node] | None]:
    """Token (plus learned position) embeddings (N, D), and RoPE's fed (cos, sin) when the config has it."""
    x = nn.embedding(pv["tok_emb"], ids)  # (N, D)
    if pv.config.positions == "rope":
        return x, rope
    return x + nn.embedding(pv["pos_emb"], pos), None


def _head(x: Node, pv: ParamVars) -> Node:
    """Final norm (if any) and the output projection: (N, D) -> (N, V) logits."""
    cfg = pv.config
    if cfg.final_norm:
        x = nn.norm(x, pv["norm_f"] if cfg.norm_gain else None, cfg)
    if cfg.tie_embeddings:
        return nn.linear(x, ad.transpose(pv["tok_emb"], 0, 1))  # (N, D) @ (D, V)
    return nn.linear(x, pv["w_out"])


def language_model(
    pv: ParamVars, ids: Node, pos: Node, attend: nn.Attend, rope: tuple[Node, Node], blocks: list | None = None
) -> Node:
    """(N,) ids at (N,) positions -> (N, V) logits: embeddings, the blocks, the head. `attend` is each
    layer's attention (lm.nn.full_attention, or a KV-cached step's), called once per layer in order.
    `blocks`, when given, receives each block's input and the last block's output (checkpoints for remat)."""
    x, rope_angles = _embed(pv, ids, pos, rope)  # (N, D)
    for i in range(pv.config.n_layers):
        if blocks is not None:
            blocks.append(x)
        x = nn.block(x, pv.layer(i), pv.config, attend, rope_angles)  # (N, D)
    if blocks is not None:
        blocks.append(x)
    return _head(x, pv)  # (N, V)


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
    blocks: list[Node] = field(default_factory=list)  # each block's input, then the last one's output

    def mask_for(self, batch: int, T: int, dtype: torch.dtype) -> Tensor:
        return nn.packed_mask(batch, T, dtype) if self.packed else nn.causal_mask(T, dtype)

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
    record: list[tuple[Node, Node, Node]] = []  # (weights, keys, values) of each layer
    attend = nn.full_attention(batch, cfg.n_heads, cfg.d_head, mask, packed, record)
    blocks: list[Node] = []
    logits = language_model(pv, ids, pos, attend, (cos, sin), blocks)  # (N, V)
    attention, keys, values = (list(t) for t in zip(*record))
    probs = ad.softmax(logits, -1)
    return ForwardGraph(ids, pos, mask, cos, sin, packed, logits, probs, attention, keys, values, cfg, blocks)


@dataclass
class LossGraph:
    """Training: mean cross-entropy over the targets that are not IGNORE_INDEX (padding), and the
    gradient of every parameter. `targets` is fed as (N,) int64 ids."""

    forward: ForwardGraph
    targets: Node
    loss: Node
    grads: list[Node]  # in ParamVars order
    evaluator: Evaluator


def build_loss(pv: ParamVars, batch: int, packed: bool, fused: bool = True, remat: bool = False) -> LossGraph:
    """`fused=False` writes the fused backward nodes out in primitive ops (the Systems page's toggle);
    `remat`: activation checkpointing per block, only each block's input kept for the backward pass and
    the block's forward computed again just before its backward (autodiff/plan.py)."""
    fwd = build_forward(pv, batch, packed)
    targets = Variable("targets")
    loss = nn.cross_entropy(fwd.logits, targets)  # () mean over kept targets
    grads = ad.gradients(loss, list(pv.by_name.values()), fused=fused)
    return LossGraph(fwd, targets, loss, grads, Evaluator([loss, *grads], remat=fwd.blocks if remat else ()))


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
    heads = (batch, cfg.n_heads, 1, cfg.d_head)
    past_keys, past_values, attention, keys, values = [], [], [], [], []

    def attend(q: Node, k: Node, v: Node) -> Node:
        i = len(keys)
        past_k, past_v = Variable(f"past_k{i}"), Variable(f"past_v{i}")  # (B, H, t, dh)
        k = ad.concat([past_k, ad.reshape(k, heads)], 2)  # (B, H, t+1, dh)
        v = ad.concat([past_v, ad.reshape(v, heads)], 2)  # (B, H, t+1, dh)
        out, weights = nn.scaled_dot_product_attention(ad.reshape(q, heads), k, v, cfg.d_head)  # no mask: all past
        past_keys.append(past_k), past_values.append(past_v)
        attention.append(weights), keys.append(k), values.append(v)  # weights (B, H, 1, t+1)
        return ad.reshape(out, (batch, cfg.d_model))  # (B, D)

    logits = language_model(pv, ids, pos, attend, (cos, sin))  # (B, V)
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
    """Config, parameters (plain tensors, updated in place by an optimizer; a fresh seeded initialization
    when none are given) and an optional tokenizer (any with len() and encode/decode) for text in and out.

    The graphs are built lazily, once per batch size, and cached on the model."""

    def __init__(self, config: ModelConfig, *, params: dict[str, Tensor] | None = None, tokenizer=None):
        config.validate()
        if tokenizer is not None and len(tokenizer) != config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but config.vocab_size is {config.vocab_size}")
        params = init_params(config) if params is None else params
        expected = param_shapes(config)
        if list(params) != list(expected) or any(tuple(params[n].shape) != s for n, s in expected.items()):
            raise ValueError("params do not match the config's parameter names and shapes")
        self.config = config
        self.tokenizer = tokenizer
        self.params = params
        self.vars = ParamVars(config)
        self._forward: dict[tuple[int, bool], tuple[ForwardGraph, dict[tuple, Evaluator]]] = {}
        self._loss: dict[tuple[int, int, bool, bool, bool], LossGraph] = {}
        self._step: dict[int, StepGraph] = {}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def param_feed(self) -> dict[Node, Tensor]:
        """{Variable: tensor} for every parameter: the part of a feed that is the same every run."""
        return {self.vars[name]: value for name, value in self.params.items()}

    # Graphs, built once per batch size.
    def loss_graph(
        self, batch: int, T: int, packed: bool | None = None, fused: bool = True, remat: bool = False
    ) -> LossGraph:
        """The loss graph for (batch, T) inputs; the attention layout is `use_packed`'s choice unless
        `packed` says, `fused=False` leaves out fused backward nodes (both: to profile a plan) and `remat`
        recomputes each block's forward in the backward pass instead of keeping it (build_loss)."""
        key = (batch, T, use_packed(batch, T) if packed is None else packed, fused, remat)
        if key not in self._loss:
            self._loss[key] = build_loss(self.vars, batch, key[2], fused, remat)
        return self._loss[key]

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
