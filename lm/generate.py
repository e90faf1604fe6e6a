"""The one generator of every model (classic sentences or text, any tokenizer) and its trace: per step the
chosen token, the logits and distribution, the window the model read and, on request, every layer's
attention — what the Generate pages draw and the command lines print.

Decoding runs with a KV cache (`KVCache`, `prefill`, `cached_step`) or by full recomputation; both give
the same tokens. `sample_next_token` is pure (temperature 0 is argmax) and all checks happen before the
first token, so a page or a command line only adds its own limits and shows these messages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lm.model import LanguageModel
from lm.tokenizers.base import EOT, check_ids

Tensor = torch.Tensor
MAX_NEW_TOKENS = 100_000

# Why a generation stopped, in words (the CLIs and the Generate pages say it the same way).
STOP_REASONS = {
    "max_new_tokens": "it generated the max new tokens",
    "context": "the model's context is full",
    "end": "the model predicted the end of the sentence or text (its end or padding token)",
}


@dataclass
class Step:
    """One decoding step."""

    token_id: int  # the chosen token (an end token included)
    token: str  # its token_str
    logits: Tensor  # (V,) the model's logits, before temperature, top-k and top-p
    probs: Tensor  # (V,) float64 softmax of those logits
    window: list[int]  # the t ids the model read
    labels: list[str]  # their token strings: the attention's row and column labels
    attention: list[Tensor] | None  # per layer (H, t, t) over the window, causal; None unless attention=True
    seconds: float  # the forward pass and the sampling


@dataclass
class Trace:
    """A generation: what it started from, what it generated, every step and why it stopped."""

    prompt_ids: list[int]  # the ids it started from (an empty prompt: the end token)
    new_ids: list[int] = field(default_factory=list)  # generated, the end token excluded
    steps: list[Step] = field(default_factory=list)
    stop_reason: str = ""  # a key of STOP_REASONS
    text: str = ""  # the prompt and the continuation, decoded (a starting end token shows as nothing)
    continuation: str = ""  # the new ids, decoded
    prompt_tokens: list[str] = field(default_factory=list)  # token strings of the shown prompt
    new_tokens: list[str] = field(default_factory=list)  # token strings of new_ids
    seconds: float = 0.0


def end_tokens(tokenizer) -> tuple[int | None, int | None]:
    """(end id, pad id) of any tokenizer, None where it has none; either ends a generation. Word
    tokenizers name theirs (`end_id`, `pad_id`); character and BPE ones end at <|endoftext|> if they know it."""
    if hasattr(tokenizer, "end_id") or hasattr(tokenizer, "pad_id"):
        return getattr(tokenizer, "end_id", None), getattr(tokenizer, "pad_id", None)
    if tokenizer is not None and EOT in tokenizer.special_tokens:
        return tokenizer.encode(EOT)[0], None
    return None, None


# ------------------------------------------------------------------------------------------ sampling


def check_sampling(
    temperature: float, top_k: int | None = None, top_p: float | None = None, max_new_tokens: int = 1
) -> None:
    """ValueError with a clear message for a temperature, top-k, top-p (nucleus) or token count that
    cannot be used."""
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
    if max_new_tokens > MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be 1 to {MAX_NEW_TOKENS:,}, got {max_new_tokens!r}")


def filter_logits(logits: Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """(V,) logits -> float64 log-weights to sample from: divided by the temperature, then only the top_k
    most likely (and ties) and the smallest set whose probability reaches top_p (nucleus) kept; the rest -inf."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("temperature must be positive to sample (0 means greedy: no filtering)")
    # Shift so the largest logit is 0 before dividing: a tiny temperature then sends the others to -inf
    # (a near-greedy choice), never every logit to -inf (which softmax would turn into NaN).
    logits = (logits.double() - logits.max()) / temperature  # (V,) float64: sampling identical across dtypes
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reaches top_p
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def sample_next_token(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """The next token id from (V,) logits: argmax at temperature 0, else a sample of the filtered
    distribution (filter_logits)."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), -1)
    return int(torch.multinomial(probs, 1, generator=generator))


# ------------------------------------------------------------------------------------------ the KV cache


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


def prefill(model: LanguageModel, ids: list[int], cache: KVCache, output: str = "probs") -> tuple[Tensor, list[Tensor]]:
    """Run the ids through the full forward once, filling the cache (positions from 0). Returns the last
    position's `output` (V,) ("probs" or "logits") and per layer the ids' attention (H, t, t)."""
    out = model.forward(torch.tensor([ids]), (output, "attention", "keys", "values"))
    cache.update(out["keys"], out["values"])
    return out[output][0, -1], [a[0] for a in out["attention"]]


def cached_step(
    model: LanguageModel, token_id: int, cache: KVCache, output: str = "probs"
) -> tuple[Tensor, list[Tensor]]:
    """Feed one new token at position len(cache): returns its `output` (V,) ("probs" or "logits") and per
    layer its attention row (H, 1, t + 1); the cache grows by one position."""
    graph = model.step_graph(1)
    feed = model.param_feed()
    feed.update(graph.inputs(torch.tensor([token_id]), torch.tensor([len(cache)])))  # ids, pos (RoPE: cos, sin)
    for i in range(model.config.n_layers):
        feed[graph.past_keys[i]] = cache.keys[i]
        feed[graph.past_values[i]] = cache.values[i]
    L = model.config.n_layers
    logits, probs, *rest = graph.evaluator.run(feed)
    cache.update(rest[L : 2 * L], rest[2 * L :])
    return (logits if output == "logits" else probs)[0], [a[0] for a in rest[:L]]


def _append_row(matrix: Tensor, row: Tensor) -> Tensor:
    """(H, t, t) causal attention and the new query's (H, 1, t + 1) row -> (H, t + 1, t + 1)."""
    H, t, _ = matrix.shape
    grown = matrix.new_zeros(H, t + 1, t + 1)
    grown[:, :t, :t] = matrix
    grown[:, t:, :] = row
    return grown


# ------------------------------------------------------------------------------------------ generation


def check_prompt(model: LanguageModel, prompt: str | list[int], slide: bool = True) -> list[int]:
    """The ids a generation starts from, or ValueError naming the problem: a text prompt to a model without
    a tokenizer, ids outside the vocabulary, unknown words or characters (the tokenizer names them), an
    empty prompt when the tokenizer has no end token to start from, or (slide=False) more than the context."""
    tok = model.tokenizer
    if isinstance(prompt, str):
        if tok is None:
            raise ValueError("this model has no tokenizer: give the prompt as a list of token ids")
        ids = tok.encode(prompt)
    else:
        ids = check_ids(prompt, model.config.vocab_size)
    if not ids:
        end, _ = end_tokens(tok)
        if end is None:
            raise ValueError("the prompt is empty: type some text to continue")
        ids = [end]  # a new document (or sentence)
    context = model.config.context
    if not slide and len(ids) > context:
        raise ValueError(f"the prompt has {len(ids)} words but the model reads at most {context}: shorten it")
    return ids


def _token_strs(tokenizer, ids: list[int]) -> list[str]:
    """How ids are shown: each one's token_str (a model without a tokenizer: the id itself)."""
    return [str(i) if tokenizer is None else tokenizer.token_str(i) for i in ids]


def _finish(trace: Trace, tokenizer, end: int | None) -> None:
    """Fill the trace's texts and token strings from its ids."""
    shown = [] if trace.prompt_ids == [end] else trace.prompt_ids  # an empty prompt shows as nothing
    trace.prompt_tokens, trace.new_tokens = _token_strs(tokenizer, shown), _token_strs(tokenizer, trace.new_ids)
    if tokenizer is None:
        trace.text, trace.continuation = " ".join(trace.prompt_tokens + trace.new_tokens), " ".join(trace.new_tokens)
    else:
        trace.text, trace.continuation = tokenizer.decode(shown + trace.new_ids), tokenizer.decode(trace.new_ids)


def generate(
    model: LanguageModel,
    prompt: str | list[int],
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    use_cache: bool = True,
    attention: bool = False,
    slide: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> Trace:
    """Continue `prompt` (text, or ids; empty: from the end token) until max_new_tokens or an end (or
    padding) token. Past the context, slide=True moves the window ahead by half a context (the cache is
    refilled from it); slide=False stops ("context"). attention=True keeps every layer's attention in each
    Step. `on_step` receives each Step as it is made. ValueError for a bad prompt or setting, before any work."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    ids = check_prompt(model, prompt, slide)
    tok, context = model.tokenizer, model.config.context
    end, pad = end_tokens(tok)
    generator = torch.Generator().manual_seed(seed)
    trace = Trace(list(ids))
    cache = KVCache(model) if use_cache else None
    start = 0  # first position of the window the model reads
    weights: list[Tensor] | None = None  # per layer (H, t, t): the last step's attention (attention=True)
    began = time.perf_counter()
    with torch.no_grad():
        while len(trace.new_ids) < max_new_tokens:
            if len(ids) - start > context:
                if not slide:
                    trace.stop_reason = "context"
                    break
                # Jump ahead half a context (at least one token), so the cache is refilled rarely; positions
                # restart at 0, so cached and recomputed decoding read the same tokens at the same positions.
                start = len(ids) - context + context // 2 if context > 1 else len(ids) - 1
                cache = KVCache(model) if use_cache else None
            window = ids[start:]
            step_began = time.perf_counter()
            if cache is None:  # full recomputation over the window
                out = model.forward(torch.tensor([window]), ("logits", "attention") if attention else ("logits",))
                logits = out["logits"][0, -1]  # (V,)
                weights = [a[0] for a in out["attention"]] if attention else None
            elif len(cache) == 0:  # the window in one forward pass
                logits, weights = prefill(model, window, cache, "logits")
            else:  # only the newest token: its attention row is appended to the earlier rows
                logits, rows = cached_step(model, window[-1], cache, "logits")
                weights = [_append_row(a, r) for a, r in zip(weights, rows)] if attention else None
            next_id = sample_next_token(logits, temperature, top_k, top_p, generator)
            step = Step(
                next_id, _token_strs(tok, [next_id])[0], logits, torch.softmax(logits.double(), -1), window,
                _token_strs(tok, window), weights if attention else None, time.perf_counter() - step_began,
            )  # fmt: skip
            trace.steps.append(step)
            if on_step is not None:
                on_step(step)
            if next_id in (end, pad):
                trace.stop_reason = "end"
                break
            ids.append(next_id)
            trace.new_ids.append(next_id)
        else:
            trace.stop_reason = "max_new_tokens"
    trace.seconds = time.perf_counter() - began
    _finish(trace, tok, end)
    return trace
