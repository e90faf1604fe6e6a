"""The Train page's logic, without Streamlit: settings turned into an `lm` Trainer (the page adds only
its own limits; lm checks the rest and its messages are shown as they are), and a `TrainingSession`
that advances a few epochs per tick within a time budget.

The page keeps one TrainingSession per browser session (in `st.session_state`) and calls `advance`
from a fragment that reruns every fraction of a second, so training never blocks the page. The
session keeps the history the charts draw and the reason when lm stops a diverging run.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field

from lm import checkpoint
from lm.data import DEFAULT_CORPUS, DataError, MemorizationRow, Sentences, memorization, parse_corpus, reproduced
from lm.model import LanguageModel
from lm.tokenizers.word import split_words
from lm.train import TrainConfig, Trainer, TrainEvent

CLASSIC = TrainConfig.recipe("classic")  # the page's defaults are lm's classic recipe

# The page's own upper bounds (lm checks the rest: at least one head, heads dividing d_model, a
# positive learning rate, an optimizer it knows). With the corpus bounds below they keep one epoch
# (and one tick) short on a shared CPU: measured on 2 cores, the largest allowed run (4 layers, 8
# heads, d_model 256, d_ff 512, 1,000 word slots, 500 distinct words) takes about 0.3 s an epoch.
LIMITS: dict[str, float] = {
    "n_layers": 4,
    "n_heads": 8,
    "d_model": 256,
    "d_ff": 512,
    "epochs": 5000,
    "lr": 10.0,
    "seed": 2**31 - 1,
}
LABELS = {"n_layers": "Layers", "n_heads": "Heads", "d_model": "d_model", "d_ff": "d_ff", "epochs": "Epochs"}
MAX_TABLE_DECODES = 20  # missed sentences decoded step by step for the table (each costs a full decode)
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
    epochs: int = CLASSIC.steps  # the command line's too; memorized by epoch 25, the rest shows the loss settle
    seed: int = 0


def score_every(epochs: int) -> int:
    """Epochs between memorization scores after the first MAX_SCORES: evenly spaced over the run."""
    return max(1, math.ceil(epochs / MAX_SCORES))


def scored(epoch: int, epochs: int) -> bool:
    """Whether memorization is scored after this epoch (see MAX_SCORES)."""
    return epoch <= MAX_SCORES or epoch % score_every(epochs) == 0 or epoch == epochs


def _page_limits(settings: TrainSettings) -> None:
    """The page's own bounds; SettingsError naming the first one broken."""
    for name, label in LABELS.items():
        value = getattr(settings, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > LIMITS[name]:
            raise SettingsError(f"{label}: this page allows at most {int(LIMITS[name]):,}, got {value:,}")
    lr = settings.lr
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > LIMITS["lr"]:
        raise SettingsError(f"Learning rate: this page allows at most {LIMITS['lr']:g}, got {lr:g}")
    if isinstance(settings.seed, int) and not 0 <= settings.seed <= LIMITS["seed"]:
        raise SettingsError(f"Seed: use a whole number from 0 to {int(LIMITS['seed']):,}, got {settings.seed}")


def make_trainer(settings: TrainSettings) -> Trainer:
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


@dataclass
class History:
    """What the charts draw: one entry per epoch, and memorization at the epochs it was measured."""

    epochs: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    mem_epochs: list[int] = field(default_factory=list)
    mem_scores: list[int] = field(default_factory=list)

    def add(self, event: TrainEvent) -> None:
        self.epochs.append(event.step)
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
        self.started_at = -math.inf
        self._events = None  # the trainer's events(), pulled a few at a time
        self._last: TrainEvent | None = None  # the last step's event
        self.settings: TrainSettings | None = None
        self.history = History()
        self.running = False
        self.message: str | None = None  # why training stopped early, if it did
        self.first_full_epoch: int | None = None  # the first scored epoch at which every sentence was reproduced
        self.first_full_s: float | None = None  # and the training time it took
        self.busy_s = 0.0  # time spent in advance(): epochs and memorization scoring
        self._table: tuple[int, list[MemorizationRow]] | None = None  # (epoch, rows) of the last table

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
        return self.trainer.step if self.trainer else 0

    @property
    def epochs(self) -> int:
        return self.trainer.config.steps if self.trainer else (self.settings.epochs if self.settings else 0)

    @property
    def elapsed_s(self) -> float:
        """Compute time of the run so far: epochs and memorization scoring (not the pauses between ticks)."""
        return self.busy_s

    @property
    def n_sentences(self) -> int:
        return len(self.trainer.source.sentences) if self.trainer else 0

    # -- controls
    def start(self, settings: TrainSettings) -> None:
        """Start a new run with these settings, or resume the stopped run if they did not change.

        A new run replaces the old one, so Start with settings the page refuses also forgets the old run
        (its results would otherwise stay on the page beside the error, as if they were the new run's);
        then SettingsError says what to fix."""
        if self.trainer is not None and not self.trainer.done and not self.message and settings == self.settings:
            self.running = True
            return
        self.reset()
        trainer = make_trainer(settings)
        self.trainer, self.settings, self.running = trainer, settings, True
        self.started_at = time.monotonic()  # which of the session's runs is the latest (the Generate page asks)
        self._events = trainer.events()

    def stop(self) -> None:
        """Pause; the history ends with the memorization of the weights as they are now."""
        self.running = False
        if self.trainer is not None and self._last is not None and self.message is None:
            if not self.history.mem_epochs or self.history.mem_epochs[-1] != self.epoch:
                self._score(self._last, self.elapsed_s)

    def advance(self, budget_s: float = 0.3, max_epochs: int = 1000) -> list[TrainEvent]:
        """Train until `budget_s` seconds have passed (at least one epoch), `max_epochs` are done, the run
        ends or it diverges. Returns the new events (none when not running). lm scores memorization
        at the epochs the settings fix (see `scored`), so the scores do not depend on the clock."""
        if not self.running or self.trainer is None:
            return []
        trainer, events = self.trainer, []
        start = time.perf_counter()
        deadline = start + budget_s
        while len(events) < max_epochs:
            event = next(self._events, None)  # a step; its evaluation (memorization), when due, follows
            if event is None:
                break
            events.append(event)
            self._last = event
            if self._diverged(event):
                break
            self.history.add(event)
            if self._eval_due(event):  # lm's evaluation of the last step, pulled in the same tick
                evaluation = next(self._events)
                self._score(evaluation, self.busy_s + time.perf_counter() - start)
                if self._diverged(evaluation):  # a run that ended no lower than it began
                    break
            elif scored(event.step, event.total):
                self._score(event, self.busy_s + time.perf_counter() - start)
            if time.perf_counter() >= deadline:
                break
        self.busy_s += time.perf_counter() - start
        if trainer.done or self.message:
            self.running = False
        return events

    def _eval_due(self, event: TrainEvent) -> bool:
        """Whether lm scores memorization right after this step (pulled in the same tick)."""
        every = self.trainer.config.eval_every
        return event.step == event.total or bool(every and event.step % every == 0)

    def _diverged(self, event: TrainEvent) -> bool:
        """Record why lm stopped a diverging run (its reason says what happened and what to do)."""
        if not (event.stop_reason or "").startswith("diverged"):
            return False
        self.message = f"Training stopped itself — the run {event.stop_reason}."
        if event.kind == "step" and math.isfinite(event.loss):
            self.history.add(event)  # show the runaway loss on the curve
        return True

    def _score(self, event: TrainEvent, elapsed_s: float) -> None:
        """Memorization after this epoch (lm's score when it made one), `elapsed_s` into the run."""
        if self.trainer is None:
            return
        score = event.metrics.get("memorized")
        if score is None:
            score = sum(reproduced(self.trainer.model, self.trainer.source))
        self.history.add_memorization(event.step, score)
        if score == self.n_sentences and self.first_full_epoch is None:
            self.first_full_epoch, self.first_full_s = event.step, elapsed_s

    def weights_bytes(self) -> bytes:
        """The trained model as a weights file (lm.checkpoint's format, without optimizer state)."""
        buffer = io.BytesIO()
        checkpoint.save(buffer, self.model)
        return buffer.getvalue()

    def memorization_table(self) -> list[MemorizationRow]:
        """Each sentence with what the model generates from its first two words (lm's rows). Only the
        sentences it gets wrong are decoded step by step (a right one generates itself)."""
        if self.trainer is None:
            return []
        if self._table is None or self._table[0] != self.epoch:
            trainer = self.trainer
            sentences = trainer.source.sentences
            right = reproduced(trainer.model, trainer.source)
            missed = [s for s, ok in zip(sentences, right) if not ok][:MAX_TABLE_DECODES]
            wrong = iter(memorization(trainer.model, missed) if missed else [])
            rows = []
            for sentence, ok in zip(sentences, right):
                prompt = " ".join(split_words(sentence)[:2])
                if ok:
                    rows.append(MemorizationRow(sentence, prompt, " ".join(split_words(sentence)), True))
                else:
                    undecoded = f"(not decoded: only the first {MAX_TABLE_DECODES} misses are)"
                    rows.append(next(wrong, None) or MemorizationRow(sentence, prompt, undecoded, False))
            self._table = (self.epoch, rows)
        return self._table[1]
