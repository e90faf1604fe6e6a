"""A Train page run in the process that trains it: a `Runner` holds lm's Trainer, advances it a few
steps at a time within a time budget and measures what its mode asks for (memorization, samples), and
says what happened as a list of `Update`s. The page's session (logic.py) applies the updates to its
`Run`, whether the runner works in a worker process (worker.py, the app) or in the caller's (tests).

Measurements are taken at the steps a mode names (`due`, `on_stop`), never by the clock, so they do not
depend on how a run is cut into ticks.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

from lm import checkpoint
from lm.data import MemorizationRow, Sentences, memorization, reproduced
from lm.generate import STOP_REASONS, generate
from lm.tokenizers.word import split_words
from lm.train import TrainEvent
from playground.train.modes import LanguageModelSettings, MemorizeSettings

Settings = MemorizeSettings | LanguageModelSettings
MAX_TABLE_DECODES = 20  # missed sentences decoded step by step for the table (each costs a full decode)
SAMPLE_TOKENS = 80


@dataclass(frozen=True)
class Update:
    """One thing a run did: kind "step" (`event`), "score" (`step`, `value` sentences reproduced, at
    `elapsed_s` of compute), "val" (`step`, `value` validation loss), "sample" (`step`, `text`), "diverged"
    (`text`: why) or "time" (`value` training seconds and `elapsed_s` compute seconds so far)."""

    kind: str
    step: int = 0
    value: float = 0.0
    elapsed_s: float = 0.0
    text: str = ""
    event: TrainEvent | None = None


@dataclass(frozen=True)
class RunInfo:
    """What the session needs to know about a run once its Trainer is built."""

    steps: int  # planned steps (epochs in the Memorize mode)
    tokens_per_step: int
    unigram: float
    n_params: int
    n_sentences: int  # the Memorize mode's corpus (0 otherwise)


@dataclass(frozen=True)
class Snapshot:
    """A paused or finished run's model as files, and (Memorize) what it generates from each sentence."""

    step: int
    checkpoint: bytes  # lm.checkpoint: weights, optimizer state, configs, tokenizer
    weights: bytes  # the weights alone (the Memorize mode's download)
    table: list[MemorizationRow] | None


def sample_text(trace) -> str:
    """A sample as the page lists it: the continuation, or what happened when there is none (a young model
    often ends the text at once; a bare "step 50:" said nothing)."""
    if trace.continuation.strip():
        return trace.continuation
    return f"(nothing yet: {STOP_REASONS[trace.stop_reason]} at once)"


class Runner:
    """One run's Trainer and its measurements, in the process that trains it."""

    def __init__(self, settings: Settings, text: str | None = None, cache_dir=None, progress=None) -> None:
        """Build the Trainer (SettingsError says what to fix; `progress(done, total, stage)`: a BPE
        training's or a download's progress)."""
        self.settings = settings
        self.trainer = trainer = settings.build(text, cache_dir, progress)
        self._events = trainer.events()
        self.seconds = 0.0  # training steps alone
        self.busy_s = 0.0  # steps and measurements
        self.message: str | None = None  # why lm stopped the run, if it did
        self._measured: dict[str, int] = {}  # the last step each measurement was taken at
        cfg = trainer.config
        B, T = trainer.source.batch_shape(cfg.batch_size, trainer.context)
        sentences = trainer.source.sentences if isinstance(trainer.source, Sentences) else []
        self.info = RunInfo(
            cfg.steps, B * T * cfg.grad_accum, settings.baseline(trainer), trainer.model.num_parameters(),
            len(sentences),
        )  # fmt: skip

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def over(self) -> bool:
        """Finished or diverged: nothing more to train."""
        return self.trainer.done or self.message is not None

    def advance(self, budget_s: float = 0.3, max_steps: int = 1000) -> list[Update]:
        """Train until `budget_s` seconds have passed (at least one step), `max_steps` are done, the run
        ends or it diverges, measuring what the mode asks for at the steps it names."""
        updates: list[Update] = []
        if self.over:
            return updates
        start = time.perf_counter()
        deadline, steps = start + budget_s, 0
        while steps < max_steps:
            began = time.perf_counter()
            event = next(self._events, None)  # a step; its evaluation, when due, follows
            if event is None:
                break
            self.seconds += time.perf_counter() - began
            steps += 1
            if self._diverged(event, updates):
                break
            updates.append(Update("step", event.step, event=event))
            done: set[str] = set()
            evaluation = next(self._events) if self._evaluated(event) else None  # pulled in the same tick
            if evaluation is not None:
                done = self._record(evaluation, updates, self.busy_s + time.perf_counter() - start)
            for name in self.settings.due(event.step, event.total):
                if name not in done:
                    self._measure(name, updates, self.busy_s + time.perf_counter() - start)
            if evaluation is not None and self._diverged(evaluation, updates):  # ended no lower than it began
                break
            if time.perf_counter() >= deadline:
                break
        self.busy_s += time.perf_counter() - start
        updates.append(Update("time", value=self.seconds, elapsed_s=self.busy_s))
        return updates

    def pause(self) -> list[Update]:
        """What a mode measures when a run is paused (`on_stop`): the weights as they are now."""
        updates: list[Update] = []
        for name in self.settings.on_stop:
            if self.step and self._measured.get(name) != self.step:
                self._measure(name, updates, self.busy_s)
        return updates

    def _evaluated(self, event: TrainEvent) -> bool:
        """Whether lm evaluates right after this step (every eval_every steps and at the last)."""
        every = self.trainer.config.eval_every
        return event.step == event.total or bool(every and event.step % every == 0)

    def _record(self, evaluation: TrainEvent, updates: list[Update], elapsed_s: float) -> set[str]:
        """lm's evaluation of a step (memorization or validation loss); returns what it measured."""
        metrics, step = evaluation.metrics, evaluation.step
        if "memorized" in metrics:
            updates.append(Update("score", step, metrics["memorized"], elapsed_s))
            self._measured["memorized"] = step
        if "val_loss" in metrics:
            updates.append(Update("val", step, metrics["val_loss"]))
        return set(metrics)

    def _diverged(self, event: TrainEvent, updates: list[Update]) -> bool:
        """Record why lm stopped a diverging run (its reason says what happened and what to do)."""
        if not (event.stop_reason or "").startswith("diverged"):
            return False
        self.message = f"Training stopped itself — the run {event.stop_reason}."
        if event.kind == "step" and math.isfinite(event.loss):
            updates.append(Update("step", event.step, event=event))  # show the runaway loss on the curve
        updates.append(Update("diverged", event.step, text=self.message))
        return True

    def _measure(self, name: str, updates: list[Update], elapsed_s: float) -> None:
        self._measured[name] = self.step
        trainer = self.trainer
        if name == "memorized":  # greedy decoding from each sentence's first two words (one forward pass)
            updates.append(Update("score", self.step, sum(reproduced(trainer.model, trainer.source)), elapsed_s))
        elif name == "sample":  # a continuation of the run's fixed prompt (seeded: samples differ as the model)
            try:
                trace = generate(trainer.model, self.settings.sample_prompt, SAMPLE_TOKENS, temperature=0.8,
                                 top_k=40, seed=0)  # fmt: skip
                text = sample_text(trace)
            except ValueError as err:
                text = f"(no sample: {err})"
            updates.append(Update("sample", self.step, text=text))
        else:
            raise ValueError(f"unknown measurement {name!r}")

    # -- what a run gives
    def snapshot(self) -> Snapshot:
        """The model as it is now, as files (and the Memorize mode's table)."""
        buffer = io.BytesIO()
        self.trainer.save(buffer)
        weights = checkpoint.to_bytes(self.trainer.model)
        table = self.memorization_table() if isinstance(self.trainer.source, Sentences) else None
        return Snapshot(self.step, buffer.getvalue(), weights, table)

    def memorization_table(self) -> list[MemorizationRow]:
        """Each sentence with what the model generates from its first two words (lm's rows). Only the
        sentences it gets wrong are decoded step by step (a right one generates itself)."""
        model, source = self.trainer.model, self.trainer.source
        right = reproduced(model, source)
        missed = [s for s, ok in zip(source.sentences, right) if not ok][:MAX_TABLE_DECODES]
        wrong = iter(memorization(model, missed) if missed else [])
        rows = []
        for sentence, ok in zip(source.sentences, right):
            prompt = " ".join(split_words(sentence)[:2])
            if ok:
                rows.append(MemorizationRow(sentence, prompt, " ".join(split_words(sentence)), True))
            else:
                undecoded = f"(not decoded: only the first {MAX_TABLE_DECODES} misses are)"
                rows.append(next(wrong, None) or MemorizationRow(sentence, prompt, undecoded, False))
        return rows
