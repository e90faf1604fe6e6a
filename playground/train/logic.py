"""The Train page's logic, without Streamlit: one `TrainingSession` for both modes (modes.py) over lm's
one Trainer. It advances a run a few steps per tick within a time budget, keeps each run's curves and
measurements (a `Run`, the comparison table's row), and holds one status: idle -> running <-> stopped
-> finished, or diverged when lm stops a run.

The page keeps one session per mode in the browser session's state (`session_of`) and calls `advance`
from a fragment that reruns every fraction of a second, so training never blocks the page. What a mode
measures besides the loss is named by its settings (`due`, `on_stop`) and done here (`MEASURES`).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from lm import checkpoint
from lm.data import MemorizationRow, memorization, reproduced
from lm.generate import STOP_REASONS, generate
from lm.model import LanguageModel
from lm.tokenizers.word import split_words
from lm.train import Trainer, TrainEvent
from playground.common.state import kept
from playground.train.modes import LanguageModelSettings, MemorizeSettings

Settings = MemorizeSettings | LanguageModelSettings
MEMORIZE, LANGUAGE_MODEL = "Memorize sentences", "Language model"  # the page's modes, as its switch names them
SESSIONS = {MEMORIZE: "train_session", LANGUAGE_MODEL: "train_lm_session"}  # each mode's session, by state key
TRAIN_PAGE = "train"  # the Train page's url path: training runs only while it is shown
MAX_TABLE_DECODES = 20  # missed sentences decoded step by step for the table (each costs a full decode)
SAMPLE_TOKENS = 80


@dataclass
class Run:
    """One run: its settings, curves and measurements, and how it ended (the comparison table's row)."""

    number: int
    settings: Settings
    steps: list[int] = field(default_factory=list)  # one entry per step (an epoch, in the Memorize mode)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)  # validation loss, at the steps lm evaluated
    val_losses: list[float] = field(default_factory=list)
    mem_steps: list[int] = field(default_factory=list)  # sentences reproduced, at the steps it was scored
    mem_scores: list[int] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)  # (step, text)
    first_full_step: int | None = None  # the first scored step at which every sentence was reproduced
    first_full_s: float | None = None  # and the compute time it took
    tokens_per_step: int = 0
    seconds: float = 0.0  # training steps alone (tokens per second)
    busy_s: float = 0.0  # steps and measurements: the run's compute time (not the pauses between ticks)
    unigram: float = math.nan
    n_params: int = 0
    status: str = "running"

    def add_step(self, event: TrainEvent) -> None:
        self.steps.append(event.step)
        self.losses.append(event.loss)
        self.lrs.append(event.lr)
        self.grad_norms.append(event.grad_norm)

    def add_score(self, step: int, score: int) -> None:
        if self.mem_steps and self.mem_steps[-1] == step:
            self.mem_scores[-1] = score
        else:
            self.mem_steps.append(step)
            self.mem_scores.append(score)

    def label(self) -> str:
        """The run's short name in legends and pickers: its number and what it trained."""
        return f"run {self.number}: {self.settings.label()}"

    def row(self) -> dict:
        """The comparison table's columns."""
        return {
            "run": self.number, "status": self.status, **self.settings.columns(),
            "steps": self.steps[-1] if self.steps else 0, "train loss": self.losses[-1] if self.losses else None,
            "val loss": self.val_losses[-1] if self.val_losses else None, "unigram": self.unigram,
            "params": self.n_params, "seconds": round(self.seconds, 1),
        }  # fmt: skip


def sample_text(trace) -> str:
    """A sample as the page lists it: the continuation, or what happened when there is none (a young model
    often ends the text at once; a bare "step 50:" said nothing)."""
    if trace.continuation.strip():
        return trace.continuation
    return f"(nothing yet: {STOP_REASONS[trace.stop_reason]} at once)"


class TrainingSession:
    """One browser session's training in one mode: idle -> running <-> stopped -> finished (or diverged).

    `start` builds a Trainer from the settings, `advance` trains for up to a time budget, `stop` pauses,
    `resume` goes on, `reset` forgets the run. Every run that trained a step stays in `runs`."""

    def __init__(self) -> None:
        self.runs: list[Run] = []  # every run of the session, the current one last
        self.run: Run | None = None
        self._forget()

    def _forget(self) -> None:
        """No current run (its row stays in `runs` if it trained a step)."""
        if self.run is not None and not self.run.steps:
            self.runs.remove(self.run)
        self.trainer: Trainer | None = None
        self.run = None
        self.started_at = -math.inf  # which of the session's runs is the latest (the Generate page asks)
        self.running = False
        self.message: str | None = None  # why lm stopped the run, if it did
        self._events = None  # the trainer's events(), pulled a few at a time
        self._table: tuple[int, list[MemorizationRow]] | None = None  # (step, rows) of the last table

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
    def settings(self) -> Settings | None:
        return self.run.settings if self.run else None

    @property
    def model(self) -> LanguageModel | None:
        return self.trainer.model if self.trainer else None

    @property
    def trained_model(self) -> LanguageModel | None:
        """The model another page may use: a run paused or finished after at least one step."""
        return self.model if self.status in ("stopped", "finished") and self.step else None

    @property
    def step(self) -> int:
        return self.trainer.step if self.trainer else 0

    @property
    def steps(self) -> int:
        """The run's planned steps (0 before a run)."""
        return self.trainer.config.steps if self.trainer else 0

    @property
    def elapsed_s(self) -> float:
        """Compute time of the run so far: steps and measurements (not the pauses between ticks)."""
        return self.run.busy_s if self.run else 0.0

    @property
    def n_sentences(self) -> int:
        return len(self.trainer.source.sentences) if self.trainer else 0

    @property
    def tokens_per_s(self) -> float:
        run = self.run
        return 0.0 if run is None or not run.seconds else len(run.steps) * run.tokens_per_step / run.seconds

    # -- controls
    def start(self, settings: Settings, text: str | None = None, cache_dir=None, progress=None) -> None:
        """Start a new run with these settings (`text`: a pasted or uploaded corpus; `progress(done, total,
        stage)`: a BPE training's or a download's progress).

        A new run replaces the current one, so Start with settings the page refuses also forgets it (its
        results would otherwise stay on the page beside the error, as if they were the new run's); then
        SettingsError says what to fix."""
        self.stop()
        self._forget()
        trainer = settings.build(text, cache_dir, progress)
        cfg = trainer.config
        B, T = trainer.source.batch_shape(cfg.batch_size, trainer.context)
        run = Run(len(self.runs) + 1, settings, tokens_per_step=B * T * cfg.grad_accum)
        run.unigram, run.n_params = settings.baseline(trainer), trainer.model.num_parameters()
        self.trainer, self.run, self.running = trainer, run, True
        self.started_at = time.monotonic()
        self._events = trainer.events()
        self.runs.append(run)

    def resumable(self, settings: Settings) -> bool:
        """Whether Start with these settings goes on with the paused run (they did not change)."""
        return self.status == "stopped" and settings == self.settings

    def start_or_resume(self, settings: Settings) -> None:
        """Resume the paused run if the settings did not change, else start a new one."""
        if self.resumable(settings):
            self.resume()
        else:
            self.start(settings)

    def resume(self) -> None:
        if self.status == "stopped":
            self.running = True
            self.run.status = "running"

    def stop(self) -> None:
        """Pause; a mode that measures on stop (`on_stop`) measures the weights as they are now."""
        if not self.running:
            return
        self.running = False
        run = self.run
        for name in run.settings.on_stop:
            if run.steps and not self._measured(name, self.step):
                MEASURES[name](self, self.step, run.busy_s)
        run.status = self.status

    def reset(self) -> None:
        """Forget the current run (its row stays in the comparison table if it trained a step)."""
        self.stop()
        self._forget()

    # -- training
    def advance(self, budget_s: float = 0.3, max_steps: int = 1000) -> list[TrainEvent]:
        """Train until `budget_s` seconds have passed (at least one step), `max_steps` are done, the run
        ends or it diverges, measuring what the mode asks for at the steps it names (never by the clock, so
        the measurements do not depend on the ticks). Returns the new step events (none when not running)."""
        if not self.running:
            return []
        run, settings = self.run, self.run.settings
        events: list[TrainEvent] = []
        start = time.perf_counter()
        deadline = start + budget_s
        while len(events) < max_steps:
            began = time.perf_counter()
            event = next(self._events, None)  # a step; its evaluation, when due, follows
            if event is None:
                break
            run.seconds += time.perf_counter() - began
            events.append(event)
            if self._diverged(event):
                break
            run.add_step(event)
            done: set[str] = set()
            evaluation = next(self._events) if self._evaluated(event) else None  # pulled in the same tick
            if evaluation is not None:
                done = self._record(evaluation, run.busy_s + time.perf_counter() - start)
            for name in settings.due(event.step, event.total):
                if name not in done:
                    MEASURES[name](self, event.step, run.busy_s + time.perf_counter() - start)
            if evaluation is not None and self._diverged(evaluation):  # a run that ended no lower than it began
                break
            if time.perf_counter() >= deadline:
                break
        run.busy_s += time.perf_counter() - start
        if self.trainer.done or self.message:
            self.running = False
        run.status = self.status
        return events

    def _evaluated(self, event: TrainEvent) -> bool:
        """Whether lm evaluates right after this step (every eval_every steps and at the last)."""
        every = self.trainer.config.eval_every
        return event.step == event.total or bool(every and event.step % every == 0)

    def _record(self, evaluation: TrainEvent, elapsed_s: float) -> set[str]:
        """lm's evaluation of a step (memorization or validation loss); returns what it measured."""
        metrics = evaluation.metrics
        if "memorized" in metrics:
            self._score(evaluation.step, metrics["memorized"], elapsed_s)
        if "val_loss" in metrics:
            self.run.val_steps.append(evaluation.step)
            self.run.val_losses.append(metrics["val_loss"])
        return set(metrics)

    def _diverged(self, event: TrainEvent) -> bool:
        """Record why lm stopped a diverging run (its reason says what happened and what to do)."""
        if not (event.stop_reason or "").startswith("diverged"):
            return False
        self.message = f"Training stopped itself — the run {event.stop_reason}."
        if event.kind == "step" and math.isfinite(event.loss):
            self.run.add_step(event)  # show the runaway loss on the curve
        return True

    def _measured(self, name: str, step: int) -> bool:
        """Whether the run already has this measurement of this step."""
        run = self.run
        steps = run.mem_steps if name == "memorized" else [s for s, _ in run.samples]
        return bool(steps) and steps[-1] == step

    def _score(self, step: int, score: int, elapsed_s: float) -> None:
        run = self.run
        run.add_score(step, score)
        if score == self.n_sentences and run.first_full_step is None:
            run.first_full_step, run.first_full_s = step, elapsed_s

    # -- what a run gives
    def weights_bytes(self) -> bytes:
        """The trained model as a weights file (lm.checkpoint's format, without optimizer state)."""
        buffer = io.BytesIO()
        checkpoint.save(buffer, self.model)
        return buffer.getvalue()

    def checkpoint_bytes(self) -> bytes:
        """The run's checkpoint file (lm.checkpoint: weights, AdamW state, configs, tokenizer) as bytes."""
        buffer = io.BytesIO()
        self.trainer.save(buffer)
        return buffer.getvalue()

    def memorization_table(self) -> list[MemorizationRow]:
        """Each sentence with what the model generates from its first two words (lm's rows). Only the
        sentences it gets wrong are decoded step by step (a right one generates itself)."""
        if self.trainer is None:
            return []
        if self._table is None or self._table[0] != self.step:
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
            self._table = (self.step, rows)
        return self._table[1]


def _memorized(session: TrainingSession, step: int, elapsed_s: float) -> None:
    """How many sentences greedy decoding reproduces from their first two words (one forward pass)."""
    trainer = session.trainer
    session._score(step, sum(reproduced(trainer.model, trainer.source)), elapsed_s)


def _sample(session: TrainingSession, step: int, elapsed_s: float) -> None:
    """A continuation of the run's fixed prompt (seeded: samples differ only as the model does)."""
    prompt = session.run.settings.sample_prompt
    try:
        text = sample_text(generate(session.model, prompt, SAMPLE_TOKENS, temperature=0.8, top_k=40, seed=0))
    except ValueError as err:
        text = f"(no sample: {err})"
    session.run.samples.append((step, text))


MEASURES = {"memorized": _memorized, "sample": _sample}  # what a mode's `due` and `on_stop` may name


def session_of(state: MutableMapping, mode: str) -> TrainingSession:
    """This browser session's training in a mode (made on first use)."""
    return kept(state, SESSIONS[mode], TrainingSession)


def pause_training_off_page(state: MutableMapping, url_path: str) -> bool:
    """The one rule for leaving the Train page: showing any other page pauses a running run (its ticks
    run only on the Train page; Resume goes on). Called by the router for every page; True if it paused."""
    if url_path == TRAIN_PAGE:
        return False
    paused = False
    for key in SESSIONS.values():
        session = state.get(key)
        if session is not None and session.running:
            session.stop()
            paused = True
    return paused


def latest_trained(*sessions) -> TrainingSession | None:
    """The Generate page's "trained in this session": of the session's runs (one session per mode), the
    one started last that has a trained model; None when none has."""
    ready = [s for s in sessions if s.trained_model is not None]
    return max(ready, key=lambda s: s.started_at, default=None)
