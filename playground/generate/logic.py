"""The Generate page's logic for every model, without Streamlit: the bundled Shakespeare character model,
the classic word model, a model trained in this session (either mode of the Train page) or an uploaded
file. One call into `lm.generate.generate` (`run_generation`) keeps every step's distribution and
attention; what differs between models is data (`Profile`: which widgets apply, their bounds, whether the
KV cache is compared, how the text is drawn), chosen by what the model reads (`profile_of`).

lm checks prompts and sampling settings (a character model names the characters it has never seen, a
word model suggests close words); this module adds only the page's limits and turns lm's errors into
messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lm import checkpoint
from lm.generate import Step, Trace, generate
from lm.generate import check_prompt as lm_check_prompt
from lm.model import LanguageModel
from playground.common.markdown import literal

# Where the page takes its model from (the radio's choices), and the keys Home presets.
SHAKESPEARE = "Shakespeare (characters)"  # the bundled text model: the page's first choice
DEFAULT, TRAINED, UPLOADED = "Classic (words)", "Trained in this session", "Upload a weights file"
GEN_MODEL, GEN_PROMPT = "gen_model", "gen_prompt"  # the model choice and the word model's prompt widgets
SHAKESPEARE_MODEL = checkpoint.SHAKESPEARE_WEIGHTS  # the bundled text model (lm/data, docs/lm.md)
MAX_UPLOAD_BYTES = 20_000_000  # far above any model the Memorize mode can make (256-wide, 4 layers: ~10 MB)
MAX_PROMPT_CHARS = 2_000
MAX_TEMPERATURE = 5.0


class GenerateError(ValueError):
    """A model file, prompt or setting the page cannot use; the message says why and what to do."""


@dataclass(frozen=True)
class Profile:
    """How the page treats one kind of model: its widgets (keys, defaults, bounds), what it checks, how it
    generates and how it draws the text."""

    key: str  # the prefix of its widgets' keys: "gen_prompt", "gen_text_prompt"...
    prompt: str  # the default prompt
    prompt_help: str
    multiline: bool  # a text area for the prompt (free text), else one line (words)
    empty_prompt: bool  # an empty prompt starts a new document; else the page asks for a word
    max_new_tokens: int  # the page's bound: every step keeps each layer's (H, t, t) attention
    new_tokens: int  # the default
    new_tokens_step: int
    sample_switch: bool  # a "Sample" switch (off: greedy); without it, temperature 0 is greedy
    temperature: float  # the default
    min_temperature: float
    top_k: int  # the default (0: all tokens)
    top_k_range: tuple[int, int]
    top_p: bool  # whether nucleus sampling is offered
    compare_cache: bool  # generate with and without the KV cache, timed, and show both
    slide: bool  # past the context: slide the window (free text) or stop (a sentence ends within it)
    chips: bool  # the text as token chips (free text), else the words with the new ones highlighted
    counts_words: bool  # the caption's vocabulary: "45 words (+ specials)", else the tokenizer and its size

    def widget(self, name: str) -> str:
        return f"{self.key}_{name}"


SENTENCES = Profile(
    key="gen", prompt="the red", prompt_help="Words of the model's vocabulary, e.g. the first two words of a sentence.",
    multiline=False, empty_prompt=False, max_new_tokens=64, new_tokens=10, new_tokens_step=1, sample_switch=True,
    temperature=1.0, min_temperature=0.05, top_k=5, top_k_range=(1, 100), top_p=False, compare_cache=True,
    slide=False, chips=False, counts_words=True,
)  # fmt: skip
FREE_TEXT = Profile(
    key="gen_text", prompt="ROMEO:\nWhat light is ",
    prompt_help="Any text the model's tokenizer can read (a character model only knows the characters of its "
    "training text). Empty: the model starts a new document.",
    multiline=True, empty_prompt=True, max_new_tokens=200, new_tokens=60, new_tokens_step=10, sample_switch=False,
    temperature=0.8, min_temperature=0.0, top_k=20, top_k_range=(0, 100_000), top_p=True, compare_cache=False,
    slide=True, chips=True, counts_words=False,
)  # fmt: skip


def profile_of(model: LanguageModel) -> Profile:
    """SENTENCES for a sentence model (a word vocabulary that pads its batches: it starts from a word and
    ends within its context), FREE_TEXT for every other (characters, BPE, text words)."""
    return SENTENCES if getattr(model.tokenizer, "pad_id", None) is not None else FREE_TEXT


# ---------------------------------------------------------------- models
def default_model() -> LanguageModel:
    """The committed pretrained classic model (trained on the default corpus)."""
    return checkpoint.load(checkpoint.DEFAULT_WEIGHTS).model


def shakespeare_model() -> LanguageModel:
    """The bundled character-level Tiny Shakespeare model (lm/data/README: how it was trained)."""
    return checkpoint.load(SHAKESPEARE_MODEL).model


def model_from_upload(data: bytes, name: str) -> LanguageModel:
    """A model from an uploaded weights file or checkpoint (any model: lm.checkpoint checks it);
    GenerateError for a bad file."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise GenerateError(f"'{name}' has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    try:
        return checkpoint.load(data, source=f"'{name}'").model
    except checkpoint.CheckpointError as err:
        raise GenerateError(f"Cannot use this weights file: {err}") from None


def model_caption(name: str, model: LanguageModel) -> str:
    """What the model is: its size, its parts and its vocabulary."""
    cfg, tok = model.config, model.tokenizer
    if profile_of(model).counts_words:
        vocabulary = f"vocabulary {len(tok.words)} words (+ {', '.join(f'`{t}`' for t in tok.special_tokens)})"
    else:
        vocabulary = f"{type(tok).__name__} vocabulary {len(tok):,}"
    return (
        f"{name}: {model.num_parameters():,} parameters · preset {cfg.preset} · {cfg.n_layers} layer(s) × "
        f"{cfg.n_heads} head(s) · d_model {cfg.d_model} · {vocabulary} · context {cfg.context}"
    )


def fingerprint(model: LanguageModel) -> tuple:
    """A cheap identity of a model's current weights, to reuse a generation until they change
    (the session's model changes in place when its training resumes)."""
    return (id(model), *(float(p.sum()) for p in model.params.values()))


# ---------------------------------------------------------------- generation
def _sentence(err: Exception) -> str:
    """lm's message as a sentence for the page (a leading parameter name such as top_k keeps its case)."""
    text = str(err)
    if text.split(" ", 1)[0].isalpha():
        text = text[:1].upper() + text[1:]
    return text + ("" if text.endswith(".") else ".")


def check_prompt(model: LanguageModel, prompt: str, profile: Profile | None = None) -> list[int]:
    """The prompt's ids if the model can read it; else GenerateError with lm's reason (unknown words with
    close matches and the vocabulary, characters it never saw, a sentence longer than the context). The page
    adds its length limit and, for a sentence model, asks for a word: it never saw a sentence start from
    its end token."""
    profile = profile or profile_of(model)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GenerateError(f"The prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    if not profile.empty_prompt and not prompt.strip():
        raise GenerateError("The prompt is empty: type at least one word of the vocabulary.")
    try:
        return lm_check_prompt(model, prompt, slide=profile.slide)
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
    """What the page shows: the trace of the chosen decoding, and its timing (both modes' when compared)."""

    trace: Trace
    vocab: list[str]  # every token id's label
    cached: Timing
    uncached: Timing | None = None  # only when the profile compares the KV cache

    @property
    def same_tokens(self) -> bool:
        return self.uncached is None or self.cached.tokens == self.uncached.tokens


def _timing(traces: list[Trace]) -> Timing:
    # Each step's best time over the runs: a shared CPU stalls single steps for ~10 ms at random, and a
    # per-step minimum drops those stalls where a per-run one needs a run without any.
    best = [1e3 * min(step.seconds for step in steps) for steps in zip(*(t.steps for t in traces))]
    if not best:
        return Timing(0.0, 0.0, traces[-1].new_tokens)
    later = best[1:] or best
    return Timing(sum(later) / len(later), best[0], traces[-1].new_tokens)


def run_generation(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    use_cache: bool = True,
    repeats: int = 5,
    on_step: Callable[[Step], None] | None = None,
) -> Generation:
    """Continue `prompt` with lm.generate, keeping every step's attention; `on_step` receives each step of
    the first run as it is made. Where the model's profile compares the KV cache, both decoding modes run
    `repeats` times each (the same seed, so the same tokens) and `use_cache` picks the trace shown.
    GenerateError for a bad prompt or setting."""
    profile = profile_of(model)
    check_prompt(model, prompt, profile)
    # The page's limits; lm checks the rest (at least one token, a temperature of 0 or more, top-k >= 1).
    if max_new_tokens > profile.max_new_tokens:
        raise GenerateError(
            f"Max new tokens: this page generates at most {profile.max_new_tokens}, got {max_new_tokens}."
        )
    if temperature > MAX_TEMPERATURE:
        raise GenerateError(f"Temperature: this page allows at most {MAX_TEMPERATURE:g}, got {temperature}.")
    if top_k is not None and top_k > profile.top_k_range[1]:
        raise GenerateError(f"Top-k: this page allows at most {profile.top_k_range[1]}, got {top_k}.")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def run(cached: bool, step: Callable[[Step], None] | None = None) -> Trace:
        # the one call into lm: past the context a text slides its window, a sentence stops
        return generate(model, prompt, use_cache=cached, attention=True, slide=profile.slide, on_step=step, **settings)

    try:
        first = run(True, on_step)  # also builds the cached graphs before any timing
    except ValueError as err:  # lm's message for a bad temperature, top-k, top-p or token count
        raise GenerateError(_sentence(err)) from None
    vocab = vocab_labels(model)
    if not profile.compare_cache:
        return Generation(first, vocab, _timing([first]))
    run(False)  # build the uncached graphs before timing them
    cached = [run(True) for _ in range(repeats)]
    uncached = [run(False) for _ in range(repeats)]
    shown = cached[-1] if use_cache else uncached[-1]
    return Generation(shown, vocab, _timing(cached), _timing(uncached))


# ---------------------------------------------------------------- how a trace is shown
def token_label(text: str) -> str:
    """A token as a chip or axis label shows it: spaces and line breaks made visible."""
    if text == "":
        return "∅"
    return text.replace("\n", "\\n").replace(" ", "␣")


def vocab_labels(model: LanguageModel) -> list[str]:
    """Every token id's label (a BPE token may be part of a character: shown by its bytes' decode)."""
    tok = model.tokenizer
    return [token_label(tok.token_str(i)) for i in range(len(tok))]


def step_labels(trace: Trace) -> list[str]:
    """One label per step for the heatmap rows: '1 → fox', '3 → e'."""
    return [f"{i} → {token_label(step.token)}" for i, step in enumerate(trace.steps, start=1)]


def highlighted_markdown(trace: Trace) -> str:
    """The generated words as Markdown: the prompt plain, each new word highlighted."""
    prompt = " ".join(literal(t) for t in trace.prompt_tokens)
    new = " ".join(f":orange-background[**{literal(t)}**]" for t in trace.new_tokens)
    return f"{prompt} {new}".strip()


_CHIP_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def chips_html(prompt_tokens: list[str], new_tokens: list[str]) -> str:
    """The prompt's tokens and the new ones (token strings) as chips (HTML, every token escaped: model text
    is data)."""

    def chip(token: str, new: bool) -> str:
        colour = "background:#ffe0b2;border:1px solid #fb8c00" if new else "background:#eceff1;border:1px solid #b0bec5"
        return (
            f'<span style="{colour};border-radius:4px;padding:1px 3px;margin:1px;display:inline-block;'
            f'font-family:monospace;white-space:pre">{token.translate(_CHIP_ESCAPES)}</span>'
        )

    return "".join(
        [chip(token_label(t), False) for t in prompt_tokens] + [chip(token_label(t), True) for t in new_tokens]
    )
