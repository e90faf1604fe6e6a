"""Generation with a trace: per step the chosen token, the full next-token distribution and the causal
attention of every layer and head, which is what the Generate page draws.

Decoding runs either with a KV cache (`KVCache`: one cached step graph computes only the new position)
or by full recomputation of the forward graph each step; both give the same tokens and probabilities.
`sample_next_token` is pure: temperature 0 is argmax, otherwise temperature and top-k sampling.
Every argument is checked here (`check_prompt`, `check_sampling`), so a page or a command line only
adds its own limits and shows these messages.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from lm.model import LanguageModel
from lm.tokenizer import Tokenizer

Tensor = torch.Tensor


@dataclass
class Step:
    """One decoding step."""

    token: str  # the chosen token
    token_id: int
    probs: Tensor  # (V,) the model's softmax distribution over the vocabulary
    attention: list[Tensor]  # per layer (H, t, t): rows = query positions, columns = keys, causal
    labels: list[str]  # the t input tokens, labels of the attention rows and columns
    seconds: float  # time of this step's forward computation


# Why a generation stopped, in words (the CLI and the Generate page say it the same way).
STOP_REASONS = {
    "max_new_tokens": "it generated the max new tokens",
    "context": "the model's context is full",
    "end": "the model predicted the end of the sentence (<eos>)",
    "pad": "the model predicted padding (<pad>), which ends a sentence too",
}


@dataclass
class Trace:
    """A generation: the prompt, what was generated, and every step."""

    prompt_tokens: list[str]
    new_tokens: list[str]  # generated tokens, <pad> excluded
    steps: list[Step] = field(default_factory=list)
    stop_reason: str = ""  # "max_new_tokens", "context" (the context is full), "end" (<eos>) or "pad"

    @property
    def text(self) -> str:
        return " ".join(self.prompt_tokens + self.new_tokens)

    @property
    def continuation(self) -> str:
        return " ".join(self.new_tokens)


def sample_next_token(
    logits: Tensor, temperature: float = 0.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> int:
    """The next token id from (V,) logits: argmax at temperature 0, else a sample of
    softmax(logits / temperature) restricted to the top_k most likely tokens (None: all)."""
    check_sampling(temperature, top_k)
    if temperature == 0:
        return int(torch.argmax(logits))
    # Shift so the largest logit is 0 before dividing: a tiny temperature then sends the others to -inf
    # (a near-greedy choice), never every logit to -inf (which softmax would turn into NaN).
    logits = (logits.double() - logits.max()) / temperature  # (V,) float64: sampling identical across dtypes
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep the top_k (and ties)
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=generator))


def check_sampling(
    temperature: float, top_k: int | None = None, max_new_tokens: int = 1, top_p: float | None = None
) -> None:
    """ValueError with a clear message for a temperature, top-k, top-p (nucleus, text models) or token
    count that cannot be used."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be 0 (greedy) or a positive number, got {temperature!r}")
    if not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a whole number of at least 1 (or none: all tokens), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a whole number of at least 1, got {max_new_tokens!r}")


def check_prompt(model: LanguageModel, prompt: str) -> list[int]:
    """The prompt's ids, or ValueError naming the problem: an empty prompt, unknown words (named, with
    close matches and the vocabulary: UnknownWordError), or more words than the model's context."""
    ids = model.tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: type at least one word of the vocabulary")
    context = model.config.context
    if len(ids) > context:
        raise ValueError(f"the prompt has {len(ids)} words but the model reads at most {context}: shorten it")
    return ids


class KVCache:
    """Keys and values of every past position, per layer, each (B, H, t, dh)."""

    def __init__(self, model: LanguageModel, batch: int = 1):
        cfg = model.config
        empty = torch.zeros(batch, cfg.n_heads, 0, cfg.d_head, dtype=cfg.torch_dtype)
        self.keys: list[Tensor] = [empty] * cfg.n_layers
        self.values: list[Tensor] = [empty] * cfg.n_layers

    def __len__(self) -> int:
        """Positions cached."""
        return self.keys[0].shape[2]

    def update(self, keys: list[Tensor], values: list[Tensor]) -> None:
        """Replace the cache by the grown keys and values a step or prefill returned."""
        self.keys, self.values = list(keys), list(values)


def prefill(model: LanguageModel, ids: list[int], cache: KVCache) -> tuple[Tensor, list[Tensor]]:
    """Run the prompt through the full forward once, filling the cache.
    Returns the last position's probs (V,) and per layer the prompt's attention (H, t, t)."""
    out = model.forward(torch.tensor([ids]), ("probs", "attention", "keys", "values"))
    cache.update(out["keys"], out["values"])
    return out["probs"][0, -1], [a[0] for a in out["attention"]]


def cached_step(model: LanguageModel, token_id: int, cache: KVCache) -> tuple[Tensor, list[Tensor]]:
    """Feed one new token at position len(cache): returns its probs (V,) and per layer its attention
    row (H, 1, t + 1); the cache grows by one position."""
    graph = model.step_graph(1)
    feed = model.param_feed()
    feed.update(graph.inputs(torch.tensor([token_id]), torch.tensor([len(cache)])))  # ids, pos (RoPE: cos, sin)
    for i in range(model.config.n_layers):
        feed[graph.past_keys[i]] = cache.keys[i]
        feed[graph.past_values[i]] = cache.values[i]
    L = model.config.n_layers
    _, probs, *rest = graph.evaluator.run(feed)
    cache.update(rest[L : 2 * L], rest[2 * L :])
    return probs[0], [a[0] for a in rest[:L]]


def generate(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
) -> Trace:
    """Continue `prompt` until max_new_tokens, the context limit, the end of the sentence (<eos>) or
    <pad>; return the full trace. Raises ValueError (UnknownWordError for words outside the vocabulary)
    with a clear message for a bad prompt or setting, before any work."""
    tok = model.tokenizer
    check_sampling(temperature, top_k, max_new_tokens)
    ids = check_prompt(model, prompt)
    context = model.config.context
    generator = torch.Generator().manual_seed(seed)
    trace = Trace(tok.tokens(ids), [])
    cache = KVCache(model) if use_cache else None
    attention: list[Tensor] = []  # with the cache: per layer the (H, t, t) rows so far
    while True:
        if len(trace.new_tokens) >= max_new_tokens:
            trace.stop_reason = "max_new_tokens"
            break
        if len(ids) > context:
            trace.stop_reason = "context"
            break
        start = time.perf_counter()
        if cache is None:  # full recomputation over all t positions
            out = model.forward(torch.tensor([ids]), ("probs", "attention"))
            probs, attention = out["probs"][0, -1], [a[0] for a in out["attention"]]
        elif len(cache) == 0:  # the prompt, in one forward pass
            probs, attention = prefill(model, ids, cache)
        else:  # only the newest token: its attention row is appended to the earlier rows
            probs, rows = cached_step(model, ids[-1], cache)
            attention = [_append_row(a, r) for a, r in zip(attention, rows)]
        seconds = time.perf_counter() - start
        next_id = sample_next_token(torch.log(probs), temperature, top_k, generator)
        trace.steps.append(Step(tok.vocab[next_id], next_id, probs, attention, tok.tokens(ids), seconds))
        if next_id in (Tokenizer.PAD_ID, tok.eos_id):
            trace.stop_reason = "pad" if next_id == Tokenizer.PAD_ID else "end"
            break
        ids = ids + [next_id]
        trace.new_tokens.append(tok.vocab[next_id])
    return trace


def _append_row(matrix: Tensor, row: Tensor) -> Tensor:
    """(H, t, t) causal attention and the new query's (H, 1, t + 1) row -> (H, t + 1, t + 1)."""
    H, t, _ = matrix.shape
    grown = matrix.new_zeros(H, t + 1, t + 1)
    grown[:, :t, :t] = matrix
    grown[:, t:, :] = row
    return grown
