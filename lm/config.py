"""The model's config: its sizes, the block's parts and the presets that name them, and the parameter
names and shapes a config implies (what a weights file or checkpoint must hold).

`ModelConfig` defaults are the classic recipe, so a config saved before the parts existed still loads;
`preset_config("gpt" | "llama" | "classic", vocab_size, context, ...)` builds a validated one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

# Upper bounds a config must respect: far above anything trained here, low enough that a config read
# from an uploaded file cannot make the program loop over a billion layers before failing.
MAX_SIZES = {"vocab_size": 1_000_000, "context": 8192, "d_model": 8192, "d_ff": 32768, "n_layers": 64, "n_heads": 128}
MAX_PARAMETERS = 100_000_000  # 0.8 GB of float64 (with gradients and AdamW's moments, ~3 GB to train)
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
    seed: int = 0  # seed of the initialization
    dtype: str = "float64"  # "float64" (exact gradient checks) or "float32"
    # The block's parts (defaults: the classic recipe, so a config saved before they existed still loads).
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_placement: str = "post"  # "post": x = norm(x + f(x)); "pre": x = x + f(norm(x))
    norm_gain: bool = False  # a learned (D,) gain per norm (layers.{i}.norm1, layers.{i}.norm2, norm_f)
    final_norm: bool = False  # one more norm before the head (norm_f)
    positions: str = "learned"  # "learned" (pos_emb, context rows) | "rope" (rotary, no parameters)
    rope_theta: float = 10000.0  # RoPE base: pair i of a head turns by pos * theta^(-2i / d_head)
    ffn: str = "relu"  # "relu" | "gelu" (exact, erf) | "swiglu" (silu(h W1) * (h W3)) W2
    tie_embeddings: bool = False  # True: logits = x @ tok_emb.T and there is no w_out
    init: str = "uniform"  # "uniform": ±1/sqrt(d_model); "normal": N(0, 0.02), residual outputs / sqrt(2 L)

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
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        for name in ("norm_gain", "final_norm", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 1.0 < theta <= 1e7:
            raise ValueError(f"rope_theta must be a number above 1 and at most 1e7, got {theta!r}")
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"RoPE turns pairs of dims: d_model / n_heads must be even, got {self.d_head}")
        n_params = sum(math.prod(shape) for shape in param_shapes(self).values())
        if n_params > MAX_PARAMETERS:  # each field may be in range while their product is not
            raise ValueError(
                f"the model would have {n_params:,} parameters ({n_params * self.torch_dtype.itemsize / 1e9:.1f} GB "
                f"as {self.dtype}); the limit is {MAX_PARAMETERS:,}: use a smaller d_model, d_ff, n_layers or "
                "vocabulary"
            )
        return self

    @property
    def preset(self) -> str:
        """The preset whose parts this config has ("classic", "gpt", "llama"), or "custom"."""
        mine = {name: getattr(self, name) for name in PART_FIELDS}
        return next((name for name, parts in PRESETS.items() if parts == mine), "custom")

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


CHOICES = {
    "norm": ("layernorm", "rmsnorm"),
    "norm_placement": ("post", "pre"),
    "positions": ("learned", "rope"),
    "ffn": ("relu", "gelu", "swiglu"),
    "init": ("uniform", "normal"),
}
PART_FIELDS = ("norm", "norm_placement", "norm_gain", "final_norm", "positions", "ffn", "tie_embeddings", "init")
PRESETS = {
    # This project's first model: post-LayerNorm without gains, learned positions, ReLU, untied head.
    "classic": dict(norm="layernorm", norm_placement="post", norm_gain=False, final_norm=False,
                    positions="learned", ffn="relu", tie_embeddings=False, init="uniform"),
    # GPT-2 / nanoGPT without biases or dropout: pre-LayerNorm with gain, final norm, GELU, tied head.
    "gpt": dict(norm="layernorm", norm_placement="pre", norm_gain=True, final_norm=True,
                positions="learned", ffn="gelu", tie_embeddings=True, init="normal"),
    # Llama: pre-RMSNorm with gain, final norm, rotary positions, SwiGLU, untied head.
    "llama": dict(norm="rmsnorm", norm_placement="pre", norm_gain=True, final_norm=True,
                  positions="rope", ffn="swiglu", tie_embeddings=False, init="normal"),
}  # fmt: skip


def preset_d_ff(preset: str, d_model: int) -> int:
    """The preset's feed-forward width: classic 2·d (128 at d 64), gpt 4·d, llama 8/3·d rounded up to 64
    (three matrices of d × 8/3·d hold as many weights as gpt's two of d × 4·d)."""
    if preset == "llama":
        return 64 * math.ceil(8 * d_model / 3 / 64)
    return {"classic": 2, "gpt": 4}[preset] * d_model


def preset_config(preset: str, vocab_size: int, context: int, d_ff: int | None = None, **fields) -> ModelConfig:
    """A validated config of a preset ("classic", "gpt", "llama"); `fields` set the sizes (d_model,
    n_layers, n_heads, seed, dtype) or override a part; d_ff defaults to the preset's width."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    d_model = fields.get("d_model", ModelConfig.d_model)
    d_ff = preset_d_ff(preset, d_model) if d_ff is None else d_ff
    return ModelConfig(vocab_size, context, d_ff=d_ff, **{**PRESETS[preset], **fields}).validate()


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in initialization order (no biases). The classic recipe's
    names and order are kept as they were, so its seeded initialization and saved weights still match."""
    V, C, D, F = config.vocab_size, config.context, config.d_model, config.d_ff
    gain = config.norm_gain
    shapes = {"tok_emb": (V, D)}
    if config.positions == "learned":
        shapes["pos_emb"] = (C, D)
    for i in range(config.n_layers):
        if gain:
            shapes[f"layers.{i}.norm1"] = (D,)
        for w in ("wq", "wk", "wv", "wo"):
            shapes[f"layers.{i}.{w}"] = (D, D)
        if gain:
            shapes[f"layers.{i}.norm2"] = (D,)
        shapes[f"layers.{i}.w1"] = (D, F)
        if config.ffn == "swiglu":
            shapes[f"layers.{i}.w3"] = (D, F)
        shapes[f"layers.{i}.w2"] = (F, D)
    if config.final_norm and gain:
        shapes["norm_f"] = (D,)
    if not config.tie_embeddings:
        shapes["w_out"] = (D, V)
    return shapes
