"""The Train page's two modes as data and small hooks over lm's one Trainer (no st.* here): what each
mode's widgets hold, the page's own bounds on it (lm checks the rest and its messages are shown as they
are), how it becomes a Trainer, and what `TrainingSession` (logic.py) measures besides the loss.

- **Memorize sentences** (`MemorizeSettings`): lm's classic recipe on the Sentences source; memorization
  is scored at fixed epochs (`scored`) and when a run is paused.
- **Language model** (`LanguageModelSettings`): any preset on the Windows source of a corpus and a
  tokenizer; validation loss (lm's evaluation), a sample every N steps, the unigram baseline.

Each settings class offers the same hooks: `build` (a Trainer, or SettingsError saying what to fix),
`baseline`, `due` (the measurements after a step), `on_stop`, `unit`, `planned`, `label` and `columns`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from lm import files
from lm.data import (
    DEFAULT_CORPUS,
    DataError,
    Sentences,
    Windows,
    load_source,
    load_tokens,
    make_tokenizer,
    parse_corpus,
    unigram_loss,
)
from lm.tokenizers import BPETokenizer
from lm.tokenizers.word import split_words
from lm.train import TrainConfig, Trainer


class SettingsError(ValueError):
    """A setting the page cannot use; the message says which one and how to fix it."""


# ------------------------------------------------------------------------------ Memorize sentences
CLASSIC = TrainConfig.recipe("classic")  # the Memorize mode's defaults are lm's classic recipe

# The page's own upper bounds (lm checks the rest: at least one head, heads dividing d_model, a
# positive learning rate, an optimizer it knows). With the corpus bounds below they keep one epoch
# (and one tick) short on a shared CPU: measured on 2 cores, the largest allowed run (4 layers, 8
# heads, d_model 256, d_ff 512, 1,000 word slots, 500 distinct words) takes about 0.3 s an epoch.
MEMORIZE_LIMITS: dict[str, float] = {
    "n_layers": 4,
    "n_heads": 8,
    "d_model": 256,
    "d_ff": 512,
    "epochs": 5000,
    "lr": 10.0,
    "seed": 2**31 - 1,
}
LABELS = {"n_layers": "Layers", "n_heads": "Heads", "d_model": "d_model", "d_ff": "d_ff", "epochs": "Epochs"}
MAX_CORPUS_LINES = 100  # the page's bound, passed to lm's parser so its message names it
# An epoch runs on every sentence padded to the longest one, so its work grows with sentences x longest
# sentence (the "word slots"), and the logits and one-hot targets with word slots x vocabulary: 100
# lines of 64 distinct words took 6 s and 3.4 GB a tick before these bounds.
MAX_CORPUS_WORDS = 1_000  # sentences x words of the longest sentence
MAX_VOCABULARY = 500  # distinct words
# Memorization is scored at fixed epochs (`scored`), never by the clock, so two runs with the same settings
# report the same "first memorized at epoch N": every epoch up to MAX_SCORES (the classic recipe memorizes
# by epoch 25, so that epoch is exact whatever the run's length: it was 25 at 150 epochs, 28 at 2,000 when
# long runs were scored every 14th epoch from the start), then every `score_every(epochs)` and the last.
# At most 2 x MAX_SCORES scores a run: one forward pass each, about a third of an epoch.
MAX_SCORES = 150


def score_every(epochs: int) -> int:
    """Epochs between memorization scores after the first MAX_SCORES: evenly spaced over the run."""
    return max(1, math.ceil(epochs / MAX_SCORES))


def scored(epoch: int, epochs: int) -> bool:
    """Whether memorization is scored after this epoch (see MAX_SCORES)."""
    return epoch <= MAX_SCORES or epoch % score_every(epochs) == 0 or epoch == epochs


@dataclass
class MemorizeSettings:
    """What the Memorize mode's widgets hold. Defaults are lm's classic recipe."""

    corpus: str = "\n".join(DEFAULT_CORPUS)  # one sentence per line
    n_layers: int = 1
    n_heads: int = 1
    d_model: int = 64
    d_ff: int = 128
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.05
    epochs: int = CLASSIC.steps  # the command line's too; memorized by epoch 25, the rest shows the loss settle
    seed: int = 0

    unit: ClassVar[str] = "epoch"
    on_stop: ClassVar[tuple[str, ...]] = ("memorized",)  # a paused run ends with the weights as they are

    @property
    def planned(self) -> int:
        return self.epochs

    def build(self, text: str | None = None, cache_dir=None, progress=None) -> Trainer:
        return make_trainer(self)

    def baseline(self, trainer: Trainer) -> float:
        return math.nan  # a sentence is scored by being reproduced, not against a baseline

    def due(self, step: int, total: int) -> tuple[str, ...]:
        return ("memorized",) if scored(step, total) else ()

    def label(self) -> str:
        return f"classic, {self.optimizer} lr {self.lr:g}, d{self.d_model}, seed {self.seed}"

    def columns(self) -> dict:
        return {
            "sentences": len(self.corpus.strip().splitlines()), "layers": self.n_layers, "heads": self.n_heads,
            "d_model": self.d_model, "d_ff": self.d_ff, "optimizer": self.optimizer, "lr": self.lr,
        }  # fmt: skip


def _page_limits(settings: MemorizeSettings) -> None:
    """The page's own bounds; SettingsError naming the first one broken."""
    for name, label in LABELS.items():
        value = getattr(settings, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MEMORIZE_LIMITS[name]:
            raise SettingsError(f"{label}: this page allows at most {int(MEMORIZE_LIMITS[name]):,}, got {value:,}")
    lr = settings.lr
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > MEMORIZE_LIMITS["lr"]:
        raise SettingsError(f"Learning rate: this page allows at most {MEMORIZE_LIMITS['lr']:g}, got {lr:g}")
    if isinstance(settings.seed, int) and not 0 <= settings.seed <= MEMORIZE_LIMITS["seed"]:
        raise SettingsError(f"Seed: use a whole number from 0 to {int(MEMORIZE_LIMITS['seed']):,}, got {settings.seed}")


def make_trainer(settings: MemorizeSettings) -> Trainer:
    """A fresh Trainer for the settings, or SettingsError saying what is wrong (never another error)."""
    try:
        sentences = parse_corpus(settings.corpus, max_sentences=MAX_CORPUS_LINES)
    except DataError as err:
        raise SettingsError(f"Corpus: {err}") from None
    longest = max(len(s.split()) for s in sentences)
    if len(sentences) * longest > MAX_CORPUS_WORDS:
        raise SettingsError(
            f"Corpus: {len(sentences)} sentences padded to the longest ({longest} words) make "
            f"{len(sentences) * longest:,} words to train on; this page trains on at most {MAX_CORPUS_WORDS:,}: "
            "use fewer or shorter sentences"
        )
    distinct = len({word for s in sentences for word in split_words(s)})  # as the tokenizer sees them
    if distinct > MAX_VOCABULARY:
        raise SettingsError(
            f"Corpus: {distinct:,} distinct words; this page trains on at most {MAX_VOCABULARY:,}: "
            "repeat words more, or use fewer sentences"
        )
    _page_limits(settings)
    sizes = {name: getattr(settings, name) for name in ("n_layers", "n_heads", "d_model", "d_ff")}
    try:  # lm checks every value and says what is wrong in its own words
        config = TrainConfig.recipe(
            "classic", **sizes, optimizer=settings.optimizer, lr=settings.lr, steps=settings.epochs,
            seed=settings.seed, eval_every=0,  # lm scores the last epoch; the session the others (`scored`)
        )  # fmt: skip
        return Trainer(config, source=Sentences(sentences))
    except (TypeError, ValueError) as err:
        raise SettingsError(str(err)) from None


# ------------------------------------------------------------------------------ Language model
CORPORA = {"shakespeare": "Tiny Shakespeare", "stories": "TinyStories sample", "pasted": "Pasted text",
           "upload": "Uploaded .txt", "tinystories": "TinyStories (download)"}  # fmt: skip
MAX_UPLOAD_BYTES = 5_000_000  # a text is encoded whole in the page's process: a few MB is plenty on a CPU
MIN_TEXT_CHARS = 1_000  # train and validation parts must each hold windows
# The page's bounds: one tick (a few steps) stays well under a second on a shared 2-core CPU.
LM_LIMITS = {"n_layers": 6, "n_heads": 8, "d_model": 256, "context": 256, "batch_size": 64, "steps": 20_000}
MAX_BPE_VOCAB = 4_096  # BPE trained here, in the page: larger takes minutes on this text
N_STORIES = 2_000  # TinyStories downloaded from the page: enough for a CPU run, a short wait


@dataclass
class LanguageModelSettings:
    """What the Language model mode's widgets hold. Defaults: a run that beats the unigram baseline
    within a minute."""

    corpus: str = "shakespeare"  # a key of CORPORA
    tokenizer: str = "char"  # char | bpe:N | gpt2
    preset: str = "gpt"
    parts: dict = field(default_factory=dict)  # the preset's parts the learner changed
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    context: int = 32
    batch_size: int = 16
    steps: int = 400
    lr: float = 3e-3
    warmup: int = 20
    seed: int = 1337
    eval_every: int = 25
    sample_every: int = 50
    sample_prompt: str = ""  # empty: a new document (every tokenizer built here knows <|endoftext|>)

    unit: ClassVar[str] = "step"
    on_stop: ClassVar[tuple[str, ...]] = ()

    @property
    def planned(self) -> int:
        return self.steps

    def check(self) -> None:
        for name, high in LM_LIMITS.items():
            value = getattr(self, name)
            if value > high:
                raise SettingsError(f"{name}: this page allows at most {high:,}, got {value:,}")
        if (
            self.tokenizer.startswith("bpe:")
            and self.tokenizer[4:].isdigit()
            and int(self.tokenizer[4:]) > MAX_BPE_VOCAB
        ):
            raise SettingsError(f"BPE vocabulary: this page trains at most {MAX_BPE_VOCAB:,} tokens")
        if self.corpus not in CORPORA:
            raise SettingsError(f"unknown corpus {self.corpus!r}")

    def train_config(self) -> TrainConfig:
        """The lm config (lm validates it); the min learning rate is a tenth of the peak."""
        data = self.corpus if self.corpus in ("shakespeare", "stories", "tinystories") else self.corpus + " text"
        return TrainConfig(
            data=data, tokenizer=self.tokenizer, preset=self.preset, parts=dict(self.parts) or None,
            n_layers=self.n_layers, n_heads=self.n_heads, d_model=self.d_model, context=self.context,
            batch_size=self.batch_size, steps=self.steps, lr=self.lr, min_lr=self.lr / 10, warmup=self.warmup,
            eval_every=self.eval_every, eval_batches=4, seed=self.seed, n_stories=N_STORIES,
        )  # fmt: skip

    def build(self, text: str | None = None, cache_dir=None, progress=None) -> Trainer:
        """A Trainer for the settings; `text` for a pasted or uploaded corpus. `progress(done, total, stage)`
        reports BPE training and a download. Every bad setting is a SettingsError with lm's message."""
        self.check()
        try:
            config = self.train_config().validate()
            if self.corpus in ("pasted", "upload"):
                if text is None:
                    raise SettingsError("no text yet: paste or upload a text first")
                source = text
            else:
                source = load_source(
                    config.data, cache_dir, config.n_stories, lambda d, t: progress and progress(d, t, "download")
                )
            if config.tokenizer.startswith("bpe:"):
                size = int(config.tokenizer[4:]) if config.tokenizer[4:].isdigit() else -1
                if not 257 <= size:
                    raise SettingsError("BPE vocabulary: at least 257 (the 256 bytes and <|endoftext|>)")
                tokenizer = BPETokenizer.train(source, size, ["<|endoftext|>"], progress=progress, workers=1)[0]
            else:
                tokenizer = make_tokenizer(config.tokenizer, source)
            tokens = load_tokens(source, tokenizer, config.context, cache_dir)
            return Trainer(config, source=Windows(tokens, tokenizer), cache_dir=cache_dir)
        except (DataError, ValueError) as err:
            if isinstance(err, SettingsError):
                raise
            raise SettingsError(str(err)) from None

    def baseline(self, trainer: Trainer) -> float:
        """The unigram baseline: the validation loss of a model that knows only each token's frequency."""
        tokens = trainer.source.tokens
        return unigram_loss(tokens.val, len(trainer.tokenizer), tokens.train)

    def due(self, step: int, total: int) -> tuple[str, ...]:
        return ("sample",) if step % self.sample_every == 0 or step == total else ()

    def label(self) -> str:
        parts = ",".join(f"{k}={v}" for k, v in sorted(self.parts.items()))
        return f"{self.preset}{f' ({parts})' if parts else ''}, {self.tokenizer}, d{self.d_model}"

    def columns(self) -> dict:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.parts.items())) or "-"
        return {
            "corpus": self.corpus, "tokenizer": self.tokenizer, "preset": self.preset, "changed parts": parts,
            "layers": self.n_layers, "heads": self.n_heads, "d_model": self.d_model, "context": self.context,
            "batch": self.batch_size, "lr": self.lr,
        }  # fmt: skip


def check_text_upload(data: bytes, name: str) -> str:
    """An uploaded file's text, or SettingsError: too large, binary, not UTF-8, too short."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise SettingsError(f"'{name}' has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}: upload a part of it")
    return check_text(files.decode_text(data, f"'{name}'", SettingsError), f"'{name}'")


def check_text(text: str, what: str = "the pasted text") -> str:
    """A pasted text long enough to train on and small enough to encode here, or SettingsError."""
    if len(text) < MIN_TEXT_CHARS:
        raise SettingsError(f"{what} has {len(text):,} characters; give at least {MIN_TEXT_CHARS:,}")
    if len(text.encode("utf-8")) > MAX_UPLOAD_BYTES:
        raise SettingsError(f"{what} is over {MAX_UPLOAD_BYTES:,} bytes: use a part of it")
    return text
