"""Generation from a text model (any preset, any tokenizer): a free-text prompt, temperature, top-k,
top-p, stopping at <|endoftext|>; with a KV cache or by full recomputation (the same tokens).

Past the context the model reads a sliding window: when the text outgrows it, the window jumps ahead
by half a context and the cache is refilled from the window (positions restart at 0), so cached and
recomputed generation see exactly the same tokens at the same positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lm.data import eot_id
from lm.generate import check_sampling
from lm.model import LanguageModel

Tensor = torch.Tensor
MAX_NEW_TOKENS = 100_000


@dataclass
class TextGeneration:
    prompt_ids: list[int]
    new_ids: list[int] = field(default_factory=list)
    text: str = ""  # the prompt and the continuation, decoded
    continuation: str = ""
    stop_reason: str = ""  # "max_new_tokens" or "end_of_text"
    seconds: float = 0.0


@dataclass
class GenerationStep:
    """One step as `generate_text(on_step=...)` reports it, for a page that shows it."""

    token_id: int  # the token chosen (the end token included)
    logits: Tensor  # (V,) the model's logits, before temperature, top-k and top-p
    window: list[int]  # the ids the model read
    attention: list[Tensor] | None  # per layer (H, t, t) over the window (with attention=True)
    seconds: float  # the forward pass and the sampling


def filter_logits(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None) -> Tensor:
    """(V,) logits -> float64 log-weights to sample from: divided by the temperature, then only the top_k
    most likely and the smallest set whose probability reaches top_p (nucleus) kept; the rest -inf."""
    check_sampling(temperature, top_k, top_p=top_p)
    if temperature == 0:
        raise ValueError("temperature must be positive to sample (0 means greedy: no filtering)")
    logits = (logits.double() - logits.max()) / temperature  # largest 0: a tiny temperature never gives NaN
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, -1) >= top_p  # mass before this token already enough
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def sample(
    logits: Tensor, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, generator=None
) -> int:
    """The next token: argmax at temperature 0, else a sample of the filtered distribution."""
    if temperature == 0:
        return int(torch.argmax(logits))
    return int(
        torch.multinomial(torch.softmax(filter_logits(logits, temperature, top_k, top_p), -1), 1, generator=generator)
    )


class _Decoder:
    """Next-token logits of a growing sequence, by KV cache or full recomputation, over the same window."""

    def __init__(self, model: LanguageModel, use_cache: bool, attention: bool = False):
        self.model, self.use_cache, self.attention = model, use_cache, attention
        self.start = 0  # first position of the window
        self.window: list[int] = []  # the ids the last call read
        self.last_attention: list[Tensor] | None = None  # per layer (H, t, t), with attention (no cache)
        self.keys: list[Tensor] | None = None  # (1, H, t, dh) per layer, for the window so far
        self.values: list[Tensor] | None = None

    def next_logits(self, ids: list[int]) -> Tensor:
        context = self.model.config.context
        refill = False
        if len(ids) - self.start > context:  # slide: jump ahead half a context (at least one token)
            self.start = len(ids) - context + context // 2 if context > 1 else len(ids) - 1
            refill = True
        window = self.window = ids[self.start :]
        if not self.use_cache:
            out = self.model.forward(torch.tensor([window]), ("logits", "attention") if self.attention else ("logits",))
            if self.attention:
                self.last_attention = [a[0] for a in out["attention"]]
            return out["logits"][0, -1]
        if self.keys is None or refill:
            out = self.model.forward(torch.tensor([window]), ("logits", "keys", "values"))
            self.keys, self.values = out["keys"], out["values"]
            return out["logits"][0, -1]
        graph = self.model.step_graph(1)
        feed = self.model.param_feed()
        feed.update(graph.inputs(torch.tensor([window[-1]]), torch.tensor([len(window) - 1])))
        for i in range(self.model.config.n_layers):
            feed[graph.past_keys[i]], feed[graph.past_values[i]] = self.keys[i], self.values[i]
        L = self.model.config.n_layers
        logits, _, *rest = graph.evaluator.run(feed)
        self.keys, self.values = rest[L : 2 * L], rest[2 * L :]
        return logits[0]


def generate_text(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    use_cache: bool = True,
    on_step: Callable[[GenerationStep], None] | None = None,
    attention: bool = False,
) -> TextGeneration:
    """Continue `prompt` (any text the tokenizer can encode; empty starts a new document) until
    max_new_tokens or the end-of-text token. `on_step`, when given, receives each step's GenerationStep;
    with `attention=True` (by recomputation: use_cache=False) it holds every layer's attention."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or not 1 <= max_new_tokens <= MAX_NEW_TOKENS
    ):
        raise ValueError(f"max_new_tokens must be 1 to {MAX_NEW_TOKENS:,}, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, top_p=top_p)  # before the first token: finite temperature >= 0 ...
    if attention and use_cache:
        raise ValueError("attention=True needs use_cache=False: only a full forward gives every row")
    tok = model.tokenizer
    end = eot_id(tok)
    ids = tok.encode(prompt)
    if not ids:
        if end is None:
            raise ValueError("the prompt is empty: type some text to continue")
        ids = [end]  # a new document
    generator = torch.Generator().manual_seed(seed)
    decoder = _Decoder(model, use_cache, attention)
    result = TextGeneration(list(ids))
    start = time.perf_counter()
    with torch.no_grad():
        while len(result.new_ids) < max_new_tokens:
            step_start = time.perf_counter()
            logits = decoder.next_logits(ids)
            next_id = sample(logits, temperature, top_k, top_p, generator)
            if on_step is not None:
                seconds = time.perf_counter() - step_start
                on_step(GenerationStep(next_id, logits, list(decoder.window), decoder.last_attention, seconds))
            if next_id == end:
                result.stop_reason = "end_of_text"
                break
            ids.append(next_id)
            result.new_ids.append(next_id)
        else:
            result.stop_reason = "max_new_tokens"
    result.seconds = time.perf_counter() - start
    result.continuation = tok.decode(result.new_ids)
    shown = result.prompt_ids if result.prompt_ids != [end] else []  # an empty prompt shows as nothing
    result.text = tok.decode(shown + result.new_ids)
    return result
