"""The Generate page's logic for text models (character, BPE or text-word tokens; lm.checkpoint files),
without Streamlit: the bundled Shakespeare model, an uploaded checkpoint, and lm.generate's trace (each
step's distribution and every layer's attention over the window the model read) within the page's limits.

lm checks the prompt (a character model names the characters it has never seen) and the sampling
settings; this module adds only the page's limits and turns lm's errors into messages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lm import checkpoint
from lm.generate import Step, Trace, check_prompt, generate
from lm.model import LanguageModel

SHAKESPEARE_MODEL = Path(__file__).resolve().parent.parent / "lm" / "data" / "shakespeare-char.safetensors"
MAX_PROMPT_CHARS = 2_000
MAX_NEW_TOKENS = 200  # every step keeps each layer's (H, t, t) attention for the page: bounded
MAX_UPLOAD_BYTES = 50_000_000  # a checkpoint holds AdamW's two moments too: three times the weights


class TextGenerateError(ValueError):
    """A checkpoint, prompt or setting the page cannot use; the message says why and what to do."""


def is_text_model(model: LanguageModel) -> bool:
    """Whether the model reads free text (character, BPE or text-word tokens), not the classic sentence
    model, whose word vocabulary pads its batches (<pad>)."""
    return getattr(model.tokenizer, "pad_id", None) is None


def shakespeare_model() -> LanguageModel:
    """The bundled character-level Tiny Shakespeare model (README: how it was trained)."""
    return checkpoint.load(SHAKESPEARE_MODEL).model


def token_label(text: str) -> str:
    """A token as a chip or axis label shows it: spaces and line breaks made visible."""
    if text == "":
        return "∅"
    return text.replace("\n", "\\n").replace(" ", "␣")


def vocab_labels(model: LanguageModel) -> list[str]:
    """Every token id's label (a BPE token may be part of a character: shown by its bytes' decode)."""
    tok = model.tokenizer
    return [token_label(tok.token_str(i)) for i in range(len(tok))]


def generate_trace(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    on_step: Callable[[Step], None] | None = None,
) -> Trace:
    """Continue `prompt` (empty: a new document) with lm.generate, keeping every step's attention (with the
    KV cache; past the context, lm's sliding window). `on_step` receives each step as it is made.
    TextGenerateError with lm's reason for a prompt or setting, or the page's limits."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise TextGenerateError(f"The prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens:
        raise TextGenerateError(f"Max new tokens must be a whole number of at least 1, got {max_new_tokens!r}.")
    if max_new_tokens > MAX_NEW_TOKENS:
        raise TextGenerateError(f"Max new tokens: this page generates at most {MAX_NEW_TOKENS}, got {max_new_tokens}.")
    try:
        check_prompt(model, prompt)
    except ValueError as err:  # TokenizerError (characters named) or an empty prompt without an end token
        raise TextGenerateError(f"This model cannot read the prompt: {err}.") from None
    try:
        return generate(model, prompt, max_new_tokens, temperature, top_k, top_p, seed, attention=True, on_step=on_step)
    except ValueError as err:  # lm's message for a bad temperature, top-k or top-p
        raise TextGenerateError(f"Sampling: {err}.") from None


def step_labels(trace: Trace) -> list[str]:
    """One label per step: '3 → e'."""
    return [f"{i} → {token_label(step.token)}" for i, step in enumerate(trace.steps, start=1)]


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
