"""The decoder-only transformer: its config, its parameters, and the autodiff graphs it runs on.

Forward and backward are `autodiff` graphs (not PyTorch's autograd). Each graph is built once per batch
size (and attention layout) and reused with its Evaluator: the training loss, the full forward
(logits, attention weights, keys and values) and the KV-cached step that computes one new position.
Activations are kept as (N, D) rows, N = B * T, so every weight matmul and its gradient is a plain
2-D matmul.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

import autodiff as ad
from autodiff import Evaluator, Node, Variable
from lm.tokenizer import Tokenizer

Tensor = torch.Tensor

# Upper bounds a config must respect: far above anything trained here, low enough that a config read
# from an uploaded file cannot make the program loop over a billion layers before failing.
MAX_SIZES = {"vocab_size": 1_000_000, "context": 8192, "d_model": 8192, "d_ff": 32768, "n_layers": 64, "n_heads": 128}
NEG_INF = -1e9  # the causal mask value: large and negative, but finite so softmax never sees inf - inf
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class ModelConfig:
    """The shape of the model. Defaults are the classic recipe (about 39K parameters)."""

    vocab_size: int  # words in the vocabulary, <pad> included
    context: int  # the most positions the model reads: the longest sentence - 1 by default
    d_model: int = 64  # width of the residual stream and of the embeddings
    d_ff: int = 128  # hidden width of the feed-forward block
    n_layers: int = 1  # decoder layers
    n_heads: int = 1  # attention heads; they split d_model into n_heads slices of d_model / n_heads
    seed: int = 0  # seed of the uniform ±1/sqrt(d_model) initialization
    dtype: str = "float64"  # "float64" (exact gradient checks) or "float32"

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def validate(self) -> ModelConfig:
        """Raise ValueError with a clear message if a field is out of range; return self."""
        for name in ("vocab_size", "context", "d_model", "d_ff", "n_layers", "n_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"{name} must be at most {MAX_SIZES[name]:,}, got {value:,}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 (<pad> and one word), got {self.vocab_size}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide d_model ({self.d_model}): the heads split d_model; "
                f"try n_heads in {[h for h in range(1, min(self.d_model, 16) + 1) if self.d_model % h == 0]}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A config from a dict; unknown keys raise ValueError (they are a typo or a newer format)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data).validate()


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in initialization order (no biases)."""
    V, C, D, F = config.vocab_size, config.context, config.d_model, config.d_ff
    shapes = {"tok_emb": (V, D), "pos_emb": (C, D)}
    for i in range(config.n_layers):
        for w in ("wq", "wk", "wv", "wo"):
            shapes[f"layers.{i}.{w}"] = (D, D)
        shapes[f"layers.{i}.w1"] = (D, F)
        shapes[f"layers.{i}.w2"] = (F, D)
    shapes["w_out"] = (D, V)
    return shapes


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
#   needs fewer, larger matmuls and no reshapes for one head: faster for the small batches of this
#   project, so it is used when B == 1 or N <= PACK_ROWS.
PACK_ROWS = 256


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


def _feed_forward(h: Node, pv: ParamVars, i: int, cfg: ModelConfig) -> Node:
    """out = LN(h + relu(h W1) W2), on (N, D) rows."""
    ff = ad.relu(h @ pv[f"layers.{i}.w1"]) @ pv[f"layers.{i}.w2"]  # (N, F) -> (N, D)
    return ad.layernorm(h + ff, (cfg.d_model,))  # (N, D)


@dataclass
class ForwardGraph:
    """The full forward pass over (B, T) ids: logits of every position, attention, keys and values.

    Feed `ids` and `pos` as (N,) int64 (row-major B x T) and `mask` as packed_mask(B, T) (packed) or
    causal_mask(T) (batched). Works for any T up to the context: shapes come from the fed values."""

    ids: Node
    pos: Node
    mask: Node
    packed: bool
    logits: Node  # (N, V)
    probs: Node  # (N, V)
    attention: list[Node]  # per layer (H, N, N) packed (one head: (N, N)) or (B, H, T, T)
    keys: list[Node]  # per layer (H, N, dh) packed (one head: (N, D)) or (B, H, T, dh)
    values: list[Node]

    def mask_for(self, batch: int, T: int, dtype: torch.dtype) -> Tensor:
        return packed_mask(batch, T, dtype) if self.packed else causal_mask(T, dtype)


def build_forward(pv: ParamVars, batch: int, packed: bool) -> ForwardGraph:
    """Graph of the full forward pass (post-LayerNorm decoder layers, learned positions)."""
    cfg = pv.config
    ids, pos, mask = Variable("ids"), Variable("pos"), Variable("mask")
    x = ad.embedding(pv["tok_emb"], ids) + ad.embedding(pv["pos_emb"], pos)  # (N, D)
    scale = 1.0 / math.sqrt(cfg.d_head)
    attention, keys, values = [], [], []
    for i in range(cfg.n_layers):
        # Shapes given packed | batched:
        q = _split_heads(x @ pv[f"layers.{i}.wq"], batch, cfg, packed)  # (H, N, dh) | (B, H, T, dh)
        k = _split_heads(x @ pv[f"layers.{i}.wk"], batch, cfg, packed)  # (H, N, dh) | (B, H, T, dh)
        v = _split_heads(x @ pv[f"layers.{i}.wv"], batch, cfg, packed)  # (H, N, dh) | (B, H, T, dh)
        scores = ad.matmul(q, ad.transpose(k, -1, -2)) * scale + mask  # (H, N, N) | (B, H, T, T)
        weights = ad.softmax(scores, -1)  # rows = queries
        attn = _merge_heads(ad.matmul(weights, v), cfg, packed) @ pv[f"layers.{i}.wo"]  # (N, D)
        h = ad.layernorm(x + attn, (cfg.d_model,))  # (N, D)
        x = _feed_forward(h, pv, i, cfg)  # (N, D)
        attention.append(weights), keys.append(k), values.append(v)
    logits = x @ pv["w_out"]  # (N, V)
    return ForwardGraph(ids, pos, mask, packed, logits, ad.softmax(logits, -1), attention, keys, values)


@dataclass
class LossGraph:
    """Training: mean cross-entropy over non-pad targets, and the gradient of every parameter.

    `targets` is fed as (N, V) one-hot rows divided by minus the number of non-pad targets, with
    all-zero rows at padded targets: sum(targets * log_softmax(logits)) is then the masked mean of
    -log p(target). (The minus sign lives in the fed tensor: two fewer nodes than a graph `neg`.)"""

    forward: ForwardGraph
    targets: Node
    loss: Node
    grads: list[Node]  # in ParamVars order
    evaluator: Evaluator


def build_loss(pv: ParamVars, batch: int, packed: bool) -> LossGraph:
    fwd = build_forward(pv, batch, packed)
    targets = Variable("targets")
    logp = ad.log_softmax(fwd.logits, -1)  # (N, V), stable
    loss = ad.sum_op(logp * targets)  # () masked mean cross-entropy
    grads = ad.gradients(loss, list(pv.by_name.values()))
    return LossGraph(fwd, targets, loss, grads, Evaluator([loss, *grads]))


@dataclass
class StepGraph:
    """One KV-cached decoding step: B new tokens at one new position each.

    Feed `ids`, `pos` as (B,) int64 and per layer `past_keys[i]`, `past_values[i]` as (B, H, t, dh)
    (t may be 0). Only the new position's projections are computed; it attends over the cache and
    itself. Outputs the logits, probs, attention row and the grown cache (B, H, t + 1, dh)."""

    ids: Node
    pos: Node
    past_keys: list[Node]
    past_values: list[Node]
    logits: Node  # (B, V)
    probs: Node  # (B, V)
    attention: list[Node]  # per layer (B, H, 1, t + 1)
    keys: list[Node]  # per layer (B, H, t + 1, dh)
    values: list[Node]
    evaluator: Evaluator


def build_step(pv: ParamVars, batch: int) -> StepGraph:
    cfg = pv.config
    ids, pos = Variable("ids"), Variable("pos")
    x = ad.embedding(pv["tok_emb"], ids) + ad.embedding(pv["pos_emb"], pos)  # (B, D)
    scale = 1.0 / math.sqrt(cfg.d_head)
    heads = (batch, cfg.n_heads, 1, cfg.d_head)
    past_keys, past_values, attention, keys, values = [], [], [], [], []
    for i in range(cfg.n_layers):
        past_k, past_v = Variable(f"past_k{i}"), Variable(f"past_v{i}")  # (B, H, t, dh)
        q = ad.reshape(x @ pv[f"layers.{i}.wq"], heads)  # (B, H, 1, dh)
        k = ad.concat([past_k, ad.reshape(x @ pv[f"layers.{i}.wk"], heads)], 2)  # (B, H, t+1, dh)
        v = ad.concat([past_v, ad.reshape(x @ pv[f"layers.{i}.wv"], heads)], 2)  # (B, H, t+1, dh)
        weights = ad.softmax(ad.matmul(q, ad.transpose(k, -1, -2)) * scale, -1)  # (B, H, 1, t+1), no mask
        attn = ad.reshape(ad.matmul(weights, v), (batch, cfg.d_model)) @ pv[f"layers.{i}.wo"]  # (B, D)
        h = ad.layernorm(x + attn, (cfg.d_model,))  # (B, D)
        x = _feed_forward(h, pv, i, cfg)  # (B, D)
        past_keys.append(past_k), past_values.append(past_v)
        attention.append(weights), keys.append(k), values.append(v)
    logits = x @ pv["w_out"]  # (B, V)
    probs = ad.softmax(logits, -1)
    evaluator = Evaluator([logits, probs, *attention, *keys, *values])
    return StepGraph(ids, pos, past_keys, past_values, logits, probs, attention, keys, values, evaluator)


def init_params(config: ModelConfig) -> dict[str, Tensor]:
    """Uniform ±1/sqrt(d_model) init from config.seed, parameters drawn in param_shapes order."""
    generator = torch.Generator().manual_seed(config.seed)
    bound = 1.0 / math.sqrt(config.d_model)
    return {
        name: (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul_(bound).to(config.torch_dtype)
        for name, shape in param_shapes(config).items()
    }


class LanguageModel:
    """Config, tokenizer and parameters (plain tensors, updated in place by an optimizer).

    The graphs are built lazily, once per batch size, and cached on the model."""

    def __init__(self, config: ModelConfig, tokenizer: Tokenizer, params: dict[str, Tensor]):
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
        self._loss: dict[tuple[int, int], LossGraph] = {}
        self._step: dict[int, StepGraph] = {}

    @classmethod
    def create(cls, config: ModelConfig, tokenizer: Tokenizer, seed: int | None = None) -> LanguageModel:
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
    def loss_graph(self, batch: int, T: int) -> LossGraph:
        """The loss graph for (batch, T) inputs (T picks the attention layout)."""
        if (batch, T) not in self._loss:
            self._loss[batch, T] = build_loss(self.vars, batch, use_packed(batch, T))
        return self._loss[batch, T]

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
        feed[graph.ids] = ids.reshape(-1)
        feed[graph.pos] = torch.arange(T).repeat(B)
        feed[graph.mask] = graph.mask_for(B, T, self.config.torch_dtype)
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
