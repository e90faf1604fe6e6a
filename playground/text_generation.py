"""The Generate page's logic for text models (character or BPE tokens; lm.checkpoint files), without
Streamlit: the bundled Shakespeare model, an uploaded checkpoint, and a generation traced step by step
(each step's distribution and every layer's attention over the window the model read).

lm checks the prompt (a character model names the characters it has never seen) and the sampling
settings; this module adds only the page's limits and turns lm's errors into messages.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lm import checkpoint
from lm.data import EOT, eot_id
from lm.model import LanguageModel
from lm.textgen import GenerationStep, generate_text
from lm.tokenizer import Tokenizer as WordTokenizer

SHAKESPEARE_MODEL = Path(__file__).resolve().parent.parent / "lm" / "data" / "shakespeare-char.safetensors"
MAX_PROMPT_CHARS = 2_000
MAX_NEW_TOKENS = 200  # every step keeps each layer's (H, t, t) attention for the page: bounded
MAX_UPLOAD_BYTES = 50_000_000  # a checkpoint holds AdamW's two moments too: three times the weights


class TextGenerateError(ValueError):
    """A checkpoint, prompt or setting the page cannot use; the message says why and what to do."""


def is_text_model(model: LanguageModel) -> bool:
    """Whether the model reads free text (character, BPE or word-text tokens), not the classic
    sentence model's word vocabulary with <pad>/<eos>."""
    return not isinstance(model.tokenizer, WordTokenizer)


def shakespeare_model() -> LanguageModel:
    """The bundled character-level Tiny Shakespeare model (README: how it was trained)."""
    return checkpoint.load(SHAKESPEARE_MODEL).model()


def model_from_checkpoint_bytes(data: bytes, name: str) -> LanguageModel:
    """A text model from an uploaded checkpoint's bytes (lm.checkpoint checks it)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise TextGenerateError(f"'{name}' has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    fd, tmp = tempfile.mkstemp(suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return checkpoint.load(tmp).model()
    except checkpoint.CheckpointError as err:
        raise TextGenerateError(str(err).replace(f"'{tmp}'", f"'{name}'")) from None
    finally:
        os.unlink(tmp)


def token_label(text: str) -> str:
    """A token as a chip or axis label shows it: spaces and line breaks made visible."""
    if text == "":
        return "∅"
    return text.replace("\n", "\\n").replace(" ", "␣")


@dataclass
class TextStep:
    token_id: int
    token: str  # its text (decoded alone)
    probs: torch.Tensor  # (V,) float64: the softmax before temperature/top-k/top-p
    attention: list[torch.Tensor]  # per layer (H, t, t) over the window the model read
    labels: list[str]  # the window's t tokens (for the heatmaps' axes)
    seconds: float


@dataclass
class TextTrace:
    prompt_tokens: list[str]
    new_tokens: list[str] = field(default_factory=list)
    steps: list[TextStep] = field(default_factory=list)
    stop_reason: str = ""  # "max_new_tokens" | "end_of_text"
    text: str = ""  # the prompt and continuation, decoded


STOP_REASONS = {
    "max_new_tokens": "it generated the max new tokens",
    "end_of_text": f"the model predicted the end of the text ({EOT})",
}


def vocab_labels(model: LanguageModel) -> list[str]:
    """Every token id's label (a BPE token may be part of a character: shown by its bytes' decode)."""
    tok = model.tokenizer
    return [token_label(tok.token_str(i)) for i in range(len(tok))]


def encode_prompt(model: LanguageModel, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts a new document. TextGenerateError with lm's reason
    (characters outside a character model's vocabulary, named) or the page's length limit."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise TextGenerateError(f"The prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    try:
        ids = model.tokenizer.encode(prompt)
    except ValueError as err:  # TokenizerError, DataError: lm's message
        raise TextGenerateError(f"This model cannot read the prompt: {err}") from None
    if not ids:
        end = eot_id(model.tokenizer)
        if end is None:
            raise TextGenerateError("The prompt is empty: type some text to continue.")
        ids = [end]
    return ids


def generate_trace(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> TextTrace:
    """Continue `prompt` with lm.textgen.generate_text (by recomputation, so every step gives each
    layer's attention over the window the model read; past the context, lm's sliding window), recording
    each step's distribution and attention."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens:
        raise TextGenerateError(f"Max new tokens must be a whole number of at least 1, got {max_new_tokens!r}.")
    if max_new_tokens > MAX_NEW_TOKENS:
        raise TextGenerateError(f"Max new tokens: this page generates at most {MAX_NEW_TOKENS}, got {max_new_tokens}.")
    ids = encode_prompt(model, prompt)
    tok = model.tokenizer
    shown = [] if ids == [eot_id(tok)] else list(ids)
    trace = TextTrace([token_label(tok.token_str(i)) for i in shown])

    def record(step: GenerationStep) -> None:
        labels = [token_label(tok.token_str(i)) for i in step.window]
        attention = [a.double() for a in step.attention]  # (H, t, t) per layer
        probs = torch.softmax(step.logits.double(), -1)
        token = token_label(tok.token_str(step.token_id))
        trace.steps.append(TextStep(step.token_id, token, probs, attention, labels, step.seconds))

    try:
        result = generate_text(
            model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
            use_cache=False, on_step=record, attention=True,
        )  # fmt: skip
    except ValueError as err:  # lm's message for a bad temperature, top-k or top-p
        raise TextGenerateError(f"Sampling: {err}.") from None
    trace.new_tokens = [token_label(tok.token_str(i)) for i in result.new_ids]
    trace.stop_reason, trace.text = result.stop_reason, result.text
    return trace


def step_labels(trace: TextTrace) -> list[str]:
    """One label per step: '3 → e'."""
    return [f"{i} → {step.token}" for i, step in enumerate(trace.steps, start=1)]


_CHIP_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def chips_html(trace: TextTrace) -> str:
    """The prompt's tokens and the new ones as chips (HTML, every token escaped: model text is data)."""

    def chip(token: str, new: bool) -> str:
        colour = "background:#ffe0b2;border:1px solid #fb8c00" if new else "background:#eceff1;border:1px solid #b0bec5"
        return (
            f'<span style="{colour};border-radius:4px;padding:1px 3px;margin:1px;display:inline-block;'
            f'font-family:monospace;white-space:pre">{token.translate(_CHIP_ESCAPES)}</span>'
        )

    return "".join([chip(t, False) for t in trace.prompt_tokens] + [chip(t, True) for t in trace.new_tokens])


def is_checkpoint_bytes(data: bytes) -> bool:
    """Whether uploaded bytes look like a text-model checkpoint (its header's format), not the classic
    model's weights file; the loader then checks everything else."""
    if len(data) < 8:
        return False
    n = int.from_bytes(data[:8], "little")
    if n > checkpoint.MAX_HEADER or 8 + n > len(data):
        return False
    return f'"format":"{checkpoint.FORMAT}"' in data[8 : 8 + n].decode("utf-8", "replace").replace(" ", "")
