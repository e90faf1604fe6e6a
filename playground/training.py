"""The Train page's logic, without Streamlit: settings checked into an `lm` Trainer with clear
messages, and a `TrainingSession` that advances a few epochs per tick within a time budget.

The page keeps one TrainingSession per browser session (in `st.session_state`) and calls `advance`
from a fragment that reruns every fraction of a second, so training never blocks the page. The
session keeps the history the charts draw and the reason when lm stops a diverging run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from lm.corpus import DEFAULT_CORPUS, CorpusError, parse_corpus
from lm.model import LanguageModel
from lm.tokenizer import split_words
from lm.train import (
    DIVERGED_FACTOR,
    MemorizationRow,
    TrainConfig,
    Trainer,
    TrainEvent,
    default_model_config,
    memorization,
    reproduced,
)

# Bounds of every setting: with the corpus bounds below, they keep one epoch (and one tick) short on a
# shared CPU. Measured on 2 cores, the largest allowed run (4 layers, 8 heads, d_model 256, d_ff 512,
# 1,000 word slots, 500 distinct words) takes about 0.3 s an epoch and 0.5 s for `advance(0.25)`.
LIMITS: dict[str, tuple[float, float]] = {
    "n_layers": (1, 4),
    "n_heads": (1, 8),
    "d_model": (4, 256),
    "d_ff": (4, 512),
    "epochs": (1, 5000),
    "lr": (1e-6, 10.0),
    "seed": (0, 2**31 - 1),
}
MAX_TABLE_DECODES = 20  # missed sentences decoded step by step for the table (each costs a full decode)
MAX_CORPUS_LINES = 100  # the page's bound (lm allows more, but an epoch must stay a fraction of a tick)
# An epoch runs on every sentence padded to the longest one, so its work grows with sentences x longest
# sentence (the "word slots"), and the logits and one-hot targets with word slots x vocabulary: 100
# lines of 64 distinct words took 6 s and 3.4 GB a tick before these bounds.
MAX_CORPUS_WORDS = 1_000  # sentences x words of the longest sentence
MAX_VOCABULARY = 500  # distinct words


class SettingsError(ValueError):
    """A setting cannot be used; the message says which one and how to fix it."""


@dataclass
class TrainSettings:
    """What the Train page's widgets hold. Defaults are lm's classic recipe."""

    corpus: str = "\n".join(DEFAULT_CORPUS)  # one sentence per line
    n_layers: int = 1
    n_heads: int = 1
    d_model: int = 64
    d_ff: int = 128
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.05
    epochs: int = 150  # memorized by about epoch 25; the rest shows the loss settling
    seed: int = 0


def _check_int(name: str, value: object, label: str) -> int:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{label} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise SettingsError(f"{label} must be between {int(low)} and {int(high)}, got {value}")
    return value


def make_trainer(settings: TrainSettings) -> Trainer:
    """A fresh Trainer for the settings, or SettingsError saying what is wrong (never another error)."""
    try:
        sentences = parse_corpus(settings.corpus)
    except CorpusError as err:
        raise SettingsError(f"Corpus: {err}") from None
    if len(sentences) > MAX_CORPUS_LINES:
        raise SettingsError(f"Corpus: {len(sentences)} sentences; this page trains on at most {MAX_CORPUS_LINES}")
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
    if settings.n_heads == 0:
        raise SettingsError("Heads: a model needs at least 1 attention head (each head is a slice of d_model)")
    layers = _check_int("n_layers", settings.n_layers, "Layers")
    heads = _check_int("n_heads", settings.n_heads, "Heads")
    d_model = _check_int("d_model", settings.d_model, "d_model")
    d_ff = _check_int("d_ff", settings.d_ff, "d_ff")
    epochs = _check_int("epochs", settings.epochs, "Epochs")
    seed = _check_int("seed", settings.seed, "Seed")
    if d_model % heads:
        divisors = [h for h in range(1, int(LIMITS["n_heads"][1]) + 1) if d_model % h == 0]
        raise SettingsError(
            f"Heads: {heads} heads do not divide d_model = {d_model} (each head gets d_model / heads "
            f"dimensions); use {', '.join(map(str, divisors))} heads or change d_model"
        )
    if settings.optimizer not in ("sgd", "adamw"):
        raise SettingsError(f"Optimizer: choose 'sgd' or 'adamw', not {settings.optimizer!r}")
    low, high = LIMITS["lr"]
    lr = settings.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not low <= lr <= high:
        raise SettingsError(f"Learning rate: use a number between {low:g} and {high:g}, got {lr!r}")
    overrides = {"n_layers": layers, "n_heads": heads, "d_model": d_model, "d_ff": d_ff}
    # Memorization is scored once per tick by TrainingSession (eval_every=0: lm scores the last epoch only).
    train = TrainConfig(optimizer=settings.optimizer, lr=float(lr), epochs=epochs, seed=seed, eval_every=0)
    try:
        return Trainer(sentences, default_model_config(sentences, overrides), train)
    except ValueError as err:  # a config lm refuses: say it, do not crash the page
        raise SettingsError(str(err)) from None


@dataclass
class History:
    """What the charts draw: one entry per epoch, and memorization at the epochs it was measured."""

    epochs: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    mem_epochs: list[int] = field(default_factory=list)
    mem_scores: list[int] = field(default_factory=list)

    def add(self, event: TrainEvent) -> None:
        self.epochs.append(event.epoch)
        self.losses.append(event.loss)
        self.grad_norms.append(event.grad_norm)

    def add_memorization(self, epoch: int, score: int) -> None:
        if self.mem_epochs and self.mem_epochs[-1] == epoch:
            self.mem_scores[-1] = score
        else:
            self.mem_epochs.append(epoch)
            self.mem_scores.append(score)


class TrainingSession:
    """One browser session's training: idle -> running <-> stopped -> finished (or diverged).

    `start` builds the Trainer from the settings (or resumes a stopped run), `advance` runs epochs
    for up to a time budget, `stop` pauses, `reset` forgets the run."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.trainer: Trainer | None = None
        self.settings: TrainSettings | None = None
        self.history = History()
        self.running = False
        self.message: str | None = None  # why training stopped early, if it did
        self.first_full_epoch: int | None = None  # the first epoch at which every sentence was reproduced
        self.first_full_s: float | None = None  # and the compute time it took
        self.busy_s = 0.0  # time spent in advance(): epochs and memorization scoring
        self._table: tuple[int, list[MemorizationRow]] | None = None  # (epoch, rows) of the last table
        self._unscored_s = 0.0  # training time since memorization was last scored
        self._score_cost = 0.0  # what the last score took

    # -- state
    @property
    def status(self) -> str:
        """'idle', 'running', 'stopped', 'finished' or 'diverged'."""
        if self.trainer is None:
            return "idle"
        if self.running:
            return "running"
        if self.message:
            return "diverged"
        return "finished" if self.trainer.done else "stopped"

    @property
    def model(self) -> LanguageModel | None:
        return self.trainer.model if self.trainer else None

    @property
    def epoch(self) -> int:
        return self.trainer.epoch if self.trainer else 0

    @property
    def epochs(self) -> int:
        return self.trainer.config.epochs if self.trainer else (self.settings.epochs if self.settings else 0)

    @property
    def elapsed_s(self) -> float:
        """Compute time of the run so far: epochs and memorization scoring (not the pauses between ticks)."""
        return self.busy_s

    @property
    def n_sentences(self) -> int:
        return len(self.trainer.sentences) if self.trainer else 0

    # -- controls
    def start(self, settings: TrainSettings) -> None:
        """Start a new run with these settings, or resume the stopped run if they did not change.
        Raises SettingsError (and stays as it was) for bad settings."""
        if self.trainer is not None and not self.trainer.done and not self.message and settings == self.settings:
            self.running = True
            return
        trainer = make_trainer(settings)
        self.reset()
        self.trainer, self.settings, self.running = trainer, settings, True

    def stop(self) -> None:
        """Pause; the history ends with the memorization of the weights as they are now."""
        self.running = False
        if self.trainer is not None and self.trainer.history and self.message is None:
            if not self.history.mem_epochs or self.history.mem_epochs[-1] != self.epoch:
                self._score(self.trainer.history[-1], self.busy_s)

    def advance(self, budget_s: float = 0.3, max_epochs: int = 1000) -> list[TrainEvent]:
        """Train until `budget_s` seconds have passed (at least one epoch), `max_epochs` are done, the run
        ends or it diverges. Returns the new events (none when not running).

        Memorization (a greedy decode of every sentence) costs a few epochs, so it is scored after the
        first epoch, after the last, and whenever the training since the last score took twice what that
        score cost: at most about a third of the time, as often as that allows on any machine."""
        if not self.running or self.trainer is None:
            return []
        trainer, events = self.trainer, []
        start = time.perf_counter()
        deadline = start + budget_s
        while not trainer.done and len(events) < max_epochs:
            epoch_start = time.perf_counter()
            event = trainer.step()
            events.append(event)
            if self._diverged(event):
                break
            self.history.add(event)
            self._unscored_s += time.perf_counter() - epoch_start
            if trainer.done or not self.history.mem_epochs or self._unscored_s >= 2 * self._score_cost:
                score_start = time.perf_counter()
                self._score(event, self.busy_s + score_start - start)
                self._score_cost, self._unscored_s = time.perf_counter() - score_start, 0.0
            if time.perf_counter() >= deadline:
                break
        self.busy_s += time.perf_counter() - start
        if trainer.done or self.message:
            self.running = False
        return events

    def _diverged(self, event: TrainEvent) -> bool:
        """Record why lm stopped a diverging run (a loss not finite, or above DIVERGED_FACTOR x its first)."""
        if not event.stop_reason or event.stop_reason == "finished":
            return False
        self.message = (
            f"Training stopped itself — the run {event.stop_reason}. A loss that is not finite or more than "
            f"{DIVERGED_FACTOR:g}× its first value means the steps are too large."
        )
        if math.isfinite(event.loss):
            self.history.add(event)  # show the runaway loss on the curve
        return True

    def _score(self, event: TrainEvent, elapsed_s: float) -> None:
        """Memorization after this epoch (lm scored it already if it was the last one), `elapsed_s` into the run."""
        if self.trainer is None:
            return
        score = event.memorization
        if score is None:
            score = sum(reproduced(self.trainer.model, self.trainer.batch))
        self.history.add_memorization(event.epoch, score)
        if score == self.n_sentences and self.first_full_epoch is None:
            self.first_full_epoch, self.first_full_s = event.epoch, elapsed_s

    def memorization_table(self) -> list[dict]:
        """Each sentence with what the model generates from its first two words, for a table. Only the
        sentences it gets wrong are decoded step by step (a right one generates itself)."""
        if self.trainer is None:
            return []
        if self._table is None or self._table[0] != self.epoch:
            trainer = self.trainer
            right = reproduced(trainer.model, trainer.batch)
            missed = [s for s, ok in zip(trainer.sentences, right) if not ok][:MAX_TABLE_DECODES]
            wrong = iter(memorization(trainer.model, missed) if missed else [])
            rows = []
            for sentence, ok in zip(trainer.sentences, right):
                text = trainer.tokenizer.decode(trainer.tokenizer.encode(sentence))
                prompt = " ".join(text.split()[:2])
                if ok:
                    rows.append(MemorizationRow(sentence, prompt, text, True))
                else:
                    undecoded = f"(not decoded: only the first {MAX_TABLE_DECODES} misses are)"
                    rows.append(next(wrong, None) or MemorizationRow(sentence, prompt, undecoded, False))
            self._table = (self.epoch, rows)
        return [
            {
                "": "✅" if r.correct else "❌",
                "sentence": r.sentence,
                "prompt": r.prompt,
                "model generates": r.generated,
            }
            for r in self._table[1]
        ]
