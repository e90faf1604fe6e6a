"""The Generate page's logic for the classic sentence model, without Streamlit: pick a model (the
committed default, the session's trained one, an uploaded weights file), check a prompt, and run
lm.generate with and without the KV cache to show the trace, the time per token of each, and that their
tokens agree. lm checks prompts and settings; this module adds only the page's limits (a sentence model
stops at its context, and starts from a typed word) and turns lm's errors into messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm import checkpoint
from lm.generate import Trace, generate
from lm.generate import check_prompt as lm_check_prompt
from lm.model import LanguageModel
from playground.markdown import literal

# Where the Generate page takes its model from.
SHAKESPEARE = "Shakespeare (characters)"  # the bundled text model: the page's first choice
DEFAULT, TRAINED, UPLOADED = "Classic (words)", "Trained in this session", "Upload a weights file"
MAX_UPLOAD_BYTES = 20_000_000  # far above any model the Train page can make (256-wide, 4 layers: ~10 MB)
MAX_PROMPT_CHARS = 2_000
MAX_NEW_TOKENS = 64
MAX_TOP_K = 100
MAX_TEMPERATURE = 5.0


class GenerateError(ValueError):
    """A model file or a prompt cannot be used; the message says why and what to do."""


def default_model() -> LanguageModel:
    """The committed pretrained model (trained on the default corpus)."""
    return checkpoint.load(checkpoint.DEFAULT_WEIGHTS).model


def model_from_upload(data: bytes, name: str) -> LanguageModel:
    """A model from an uploaded weights file or checkpoint (any model: lm.checkpoint checks it);
    GenerateError for a bad file."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise GenerateError(f"'{name}' has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    try:
        return checkpoint.load(data, source=f"'{name}'").model
    except checkpoint.CheckpointError as err:
        raise GenerateError(f"Cannot use this weights file: {err}") from None


def latest_trained(training, text_run) -> str | None:
    """Which of the session's two Train-page runs the Generate page offers as "trained in this session":
    the one started last that has a model ("sentences" or "text"), None when neither has one."""
    runs = []
    if training.status in ("stopped", "finished"):
        runs.append((training.started_at, "sentences"))
    if text_run.model is not None:
        runs.append((text_run.started_at, "text"))
    return max(runs)[1] if runs else None


def _sentence(err: Exception) -> str:
    """lm's message as a sentence for the page (a leading parameter name such as top_k keeps its case)."""
    text = str(err)
    if text.split(" ", 1)[0].isalpha():
        text = text[:1].upper() + text[1:]
    return text + ("" if text.endswith(".") else ".")


def check_prompt(model: LanguageModel, prompt: str) -> list[int]:
    """The prompt's ids if the model can read it; else GenerateError with lm's reason (unknown words with
    close matches and the vocabulary, a prompt longer than the context). The page adds its length limit and
    asks for a word: a sentence model never saw a sentence start from its end token."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GenerateError(f"The prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    if not prompt.strip():
        raise GenerateError("The prompt is empty: type at least one word of the vocabulary.")
    try:
        return lm_check_prompt(model, prompt, slide=False)
    except ValueError as err:
        raise GenerateError(_sentence(err)) from None


@dataclass
class Timing:
    """One decoding mode's speed: each step's best time over a few runs (interruptions only ever add
    time, as with `timeit`). Step 1 reads the whole prompt in both modes; the cache changes the later
    steps, so those are what `ms_per_token` averages."""

    ms_per_token: float  # mean over steps 2.. (step 1 alone if it is the only one)
    first_ms: float  # step 1: the prompt's forward pass
    tokens: list[str]


@dataclass
class Generation:
    """What the page shows: the trace of the chosen mode and both modes' timing."""

    trace: Trace
    vocab: list[str]
    cached: Timing
    uncached: Timing

    @property
    def same_tokens(self) -> bool:
        return self.cached.tokens == self.uncached.tokens


def _timed(model: LanguageModel, prompt: str, kwargs: dict, use_cache: bool, repeats: int) -> tuple[Trace, Timing]:
    traces = [generate(model, prompt, use_cache=use_cache, **kwargs) for _ in range(repeats)]
    # Each step's best time over the runs: a shared CPU stalls single steps for ~10 ms at random, and a
    # per-step minimum drops those stalls where a per-run one needs a run without any.
    best = [1e3 * min(step.seconds for step in steps) for steps in zip(*(t.steps for t in traces))]
    if not best:
        return traces[-1], Timing(0.0, 0.0, traces[-1].new_tokens)
    later = best[1:] or best
    return traces[-1], Timing(sum(later) / len(later), best[0], traces[-1].new_tokens)


def run_generation(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
    repeats: int = 5,
) -> Generation:
    """Generate `prompt`'s continuation with both decoding modes (the same seed, so the same tokens) and
    return the chosen mode's trace. Raises GenerateError for a bad prompt or setting."""
    check_prompt(model, prompt)
    # The page's limits; lm checks the rest (at least one token, a temperature of 0 or more, top-k >= 1).
    if max_new_tokens > MAX_NEW_TOKENS:
        raise GenerateError(f"Max new tokens: this page generates at most {MAX_NEW_TOKENS}, got {max_new_tokens}.")
    if temperature > MAX_TEMPERATURE:
        raise GenerateError(f"Temperature: this page allows at most {MAX_TEMPERATURE:g}, got {temperature}.")
    if top_k is not None and top_k > MAX_TOP_K:
        raise GenerateError(f"Top-k: this page allows at most {MAX_TOP_K}, got {top_k}.")
    kwargs = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "seed": seed}
    kwargs.update(attention=True, slide=False)  # the heatmaps; a sentence ends within the context
    try:
        generate(model, prompt, use_cache=True, **kwargs)  # build both modes' graphs before timing them
    except ValueError as err:
        raise GenerateError(_sentence(err)) from None
    generate(model, prompt, use_cache=False, **kwargs)
    cached_trace, cached = _timed(model, prompt, kwargs, True, repeats)
    uncached_trace, uncached = _timed(model, prompt, kwargs, False, repeats)
    return Generation(cached_trace if use_cache else uncached_trace, list(model.tokenizer.vocab), cached, uncached)


def fingerprint(model: LanguageModel) -> tuple:
    """A cheap identity of a model's current weights, to reuse a generation until they change
    (the session's model changes in place when its training resumes)."""
    return (id(model), *(float(p.sum()) for p in model.params.values()))


def step_labels(trace: Trace) -> list[str]:
    """One label per step for the heatmap rows: '1 → fox'."""
    return [f"{i} → {step.token}" for i, step in enumerate(trace.steps, start=1)]


def highlighted_markdown(trace: Trace) -> str:
    """The generated text as Markdown: the prompt plain, each new token highlighted."""
    prompt = " ".join(literal(t) for t in trace.prompt_tokens)
    new = " ".join(f":orange-background[**{literal(t)}**]" for t in trace.new_tokens)
    return f"{prompt} {new}".strip()
