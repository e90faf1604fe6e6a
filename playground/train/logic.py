"""The Train page's logic, without Streamlit: one `TrainingSession` for both modes (modes.py) over lm's
one Trainer. A session's run trains in a worker process it owns (worker.py: the Trainer and its
measurements live there, runner.py), under the server's bound on trainers at once (scheduler.py: past it,
the run waits in a queue and starts by itself). The session keeps each run's curves and measurements (a
`Run`, the comparison table's row), the paused or finished model the worker sent, and one status:
idle -> queued -> running <-> stopped -> finished, or diverged when lm stops a run, or failed when the
worker died.

The page keeps one session per mode in the browser session's state (`session_of`) and calls `advance`
from a fragment that reruns every fraction of a second: it applies what the worker sent since. A session
that is collected (its browser session ended) ends its worker.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from lm import checkpoint
from lm.data import MemorizationRow
from lm.model import LanguageModel
from lm.train import TrainEvent
from playground.common.state import kept
from playground.train.modes import LanguageModelSettings, MemorizeSettings, SettingsError
from playground.train.runner import RunInfo, Snapshot, Update
from playground.train.scheduler import Scheduler, server_scheduler, threads_per_trainer
from playground.train.worker import HEARD_LIMIT_S, Worker, WorkerGone

Settings = MemorizeSettings | LanguageModelSettings
MEMORIZE, LANGUAGE_MODEL = "Memorize sentences", "Language model"  # the page's modes, as its switch names them
SESSIONS = {MEMORIZE: "train_session", LANGUAGE_MODEL: "train_lm_session"}  # each mode's session, by state key
TRAIN_PAGE = "train"  # the Train page's url path: training runs only while it is shown
MIN_UPDATES = 15  # a run sends at least this many batches, however fast the machine: its fall is visible
PAUSE_WAIT_S = 60.0  # Stop waits this long for the worker to pause (it does between steps: well under a second)


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
    n_sentences: int = 0  # the Memorize mode's corpus: a score of this many is "all memorized"

    def apply(self, update: Update) -> None:
        """Record what the run's trainer did (runner.py's updates, from whichever process trains it)."""
        if update.kind == "step":
            self.add_step(update.event)
        elif update.kind == "score":
            self.add_score(update.step, int(update.value))
            if update.value == self.n_sentences and self.first_full_step is None:
                self.first_full_step, self.first_full_s = update.step, update.elapsed_s
        elif update.kind == "val":
            self.val_steps.append(update.step)
            self.val_losses.append(update.value)
        elif update.kind == "sample":
            self.samples.append((update.step, update.text))
        elif update.kind == "time":
            self.seconds, self.busy_s = update.value, update.elapsed_s

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


def _end_worker(box: list) -> None:
    """A collected session's last act: end its worker (the finalizer holds this box, never the session)."""
    if box and box[0] is not None:
        box[0].close()


class TrainingSession:
    """One browser session's training in one mode: idle -> queued -> running <-> stopped -> finished (or
    diverged, or failed).

    `start` asks the scheduler for a trainer and starts a worker that builds the Trainer from the settings
    (or queues the run), `advance` applies what the worker sent, `stop` pauses it (the worker sends the
    model as it is), `resume` goes on, `reset` forgets the run. Every run that trained a step stays in
    `runs`."""

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self.runs: list[Run] = []  # every run of the session, the current one last
        self.run: Run | None = None
        self._scheduler = scheduler
        self._box: list[Worker | None] = [None]  # the current run's worker (a box the finalizer can hold)
        weakref.finalize(self, _end_worker, self._box)
        self._forget()

    def _forget(self) -> None:
        """No current run (its row stays in `runs` if it trained a step); its worker ends."""
        if self.run is not None and not self.run.steps:
            self.runs.remove(self.run)
        self._end_worker()
        self.run = None
        self._state = "idle"
        self._pending: tuple | None = None  # (settings, text, cache_dir): a queued run's, for its launch
        self._resuming = False  # a queued resume of the paused run (not a new run)
        self.started_at = -math.inf  # which of the session's runs is the latest (the Generate page asks)
        self.message: str | None = None  # why the run stopped itself, or why its worker ended
        self.progress: tuple[int, int, str] | None = None  # a BPE training's or a download's, while starting
        self._step = 0
        self._steps = 0
        self._last_read = time.monotonic()  # when the page last read what the worker sent
        self._snapshot: Snapshot | None = None  # the model the worker last sent (paused or finished)
        self._model: LanguageModel | None = None
        self._refused = False  # the worker refused the settings (a message for Start, not a failure)

    def _end_worker(self) -> None:
        worker, self._box[0] = self._box[0], None
        if worker is not None:
            worker.close()
        if self._scheduler is not None:
            self._scheduler.release(self)

    @property
    def worker(self) -> Worker | None:
        return self._box[0]

    # -- state
    @property
    def status(self) -> str:
        """'idle', 'queued', 'running', 'stopped', 'finished', 'diverged' or 'failed'."""
        return "running" if self._state == "starting" else self._state

    @property
    def running(self) -> bool:
        """The run is under way: training, being prepared, or waiting for a trainer."""
        return self._state in ("queued", "starting", "running")

    @property
    def settings(self) -> Settings | None:
        return self.run.settings if self.run else None

    @property
    def model(self) -> LanguageModel | None:
        """The model as the worker last sent it (when the run paused or finished)."""
        if self._snapshot is None:
            return None
        if self._model is None:
            self._model = checkpoint.load(self._snapshot.checkpoint).model
        return self._model

    @property
    def trained_model(self) -> LanguageModel | None:
        """The model another page may use: a run paused or finished after at least one step."""
        return self.model if self.status in ("stopped", "finished") and self.step else None

    @property
    def step(self) -> int:
        return self._step

    @property
    def steps(self) -> int:
        """The run's planned steps (0 before a run)."""
        return self._steps

    @property
    def elapsed_s(self) -> float:
        """Compute time of the run so far: steps and measurements (not the pauses between them)."""
        return self.run.busy_s if self.run else 0.0

    @property
    def n_sentences(self) -> int:
        return self.run.n_sentences if self.run else 0

    @property
    def tokens_per_s(self) -> float:
        run = self.run
        return 0.0 if run is None or not run.seconds else len(run.steps) * run.tokens_per_step / run.seconds

    def queue_position(self) -> int | None:
        """The run's place in the queue for a trainer (1: next), or None when it is not waiting."""
        if self._state != "queued" or self._scheduler is None:
            return None
        return self._scheduler.position(self)

    # -- the scheduler's side
    def holds_slot(self) -> bool:
        """Whether this session trains now (a trainer slot is taken). Not once its page has stopped reading
        for HEARD_LIMIT_S (a closed or hidden tab): its worker pauses itself, and the slot goes to the next
        in line meanwhile (a page that reads again queues to resume, `advance`)."""
        worker = self.worker
        unread = time.monotonic() - self._last_read > HEARD_LIMIT_S
        return self._state in ("starting", "running") and worker is not None and worker.alive and not unread

    def launch(self) -> None:
        """The session's turn has come (the scheduler calls this): resume the paused run or start the new one."""
        if self._state != "queued":
            return
        threads = threads_per_trainer(self._scheduler.limit)
        self._last_read = time.monotonic()  # its page may not have read while it waited
        if self._resuming:
            self._resuming = False
            self._state = "running"
            self.run.status = "running"
            self.worker.send("resume")
            return
        settings, text, cache_dir = self._pending
        self._pending = None
        max_steps = max(1, math.ceil(settings.planned / MIN_UPDATES))
        self._box[0] = Worker(settings, text, cache_dir, threads=threads, max_steps=max_steps)
        self._state = "starting"

    # -- controls
    def start(self, settings: Settings, text: str | None = None, cache_dir=None, progress=None) -> None:
        """Start a new run with these settings (`text`: a pasted or uploaded corpus; `progress(done, total,
        stage)`: a BPE training's or a download's progress, while this waits for the worker to be ready).

        With a trainer free, this returns once the worker has built the run (SettingsError says what to
        fix); else the run is queued and starts by itself. A new run replaces the current one, so Start with
        settings the page refuses also forgets it (its results would otherwise stay on the page beside the
        error, as if they were the new run's)."""
        self.stop()
        self._forget()
        if self._scheduler is None:
            try:
                self._scheduler = server_scheduler()
            except ValueError as err:
                raise SettingsError(str(err)) from None
        self.run = Run(len(self.runs) + 1, settings)
        self.runs.append(self.run)
        self._steps = settings.planned
        self._pending = (settings, text, cache_dir)
        self.started_at = time.monotonic()
        self._state = "queued"
        if self._scheduler.request(self):
            self.launch()
        if self._state == "starting":
            self._await_ready(progress)

    def _await_ready(self, progress=None) -> None:
        """Wait for the worker to build the run, passing on its progress; SettingsError if it refused."""
        while self._state == "starting":
            self._read(timeout=0.2)
            if progress is not None and self.progress is not None:
                progress(*self.progress)
        if self._state == "failed" and self.run is not None and not self.run.steps and self._refused:
            message = self.message
            self._forget()
            raise SettingsError(message)

    def resumable(self, settings: Settings) -> bool:
        """Whether Start with these settings goes on with the paused run (they did not change)."""
        worker = self.worker
        return self.status == "stopped" and settings == self.settings and worker is not None and worker.alive

    def start_or_resume(self, settings: Settings) -> None:
        """Resume the paused run if the settings did not change, else start a new one."""
        if self.resumable(settings):
            self.resume()
        else:
            self.start(settings)

    def resume(self) -> None:
        """Go on with the paused run (in the queue first, when every trainer is busy)."""
        if not self.resumable(self.settings):
            return
        self._state, self._resuming = "queued", True
        self.run.status = "queued"
        self._last_read = time.monotonic()
        if self._scheduler.request(self):
            self.launch()

    def stop(self) -> None:
        """Pause: the worker measures what the mode measures on stop, sends its model and waits. A queued
        run leaves the queue (a paused one stays paused; a new one is forgotten)."""
        if self._state == "queued":
            self._scheduler.release(self)
            if self._resuming:
                self._state, self._resuming = "stopped", False
                self.run.status = "stopped"
            else:
                self._forget()
            return
        if self._state == "starting":  # still building the run: nothing trained to keep
            self._forget()
            return
        if self._state != "running":
            return
        self.worker.send("pause")
        deadline = time.monotonic() + PAUSE_WAIT_S
        while self._state == "running" and time.monotonic() < deadline:
            self._read(timeout=0.2)
        if self._state == "running":  # it did not answer: end it, keep what it sent
            self._failed("it did not pause within a minute")
        self._scheduler.release(self)

    def reset(self) -> None:
        """Forget the current run (its row stays in the comparison table if it trained a step)."""
        self._forget()

    def close(self) -> None:
        """End the worker now (the browser session is over); the session keeps what it has."""
        self._end_worker()

    # -- what the worker sends
    def advance(self, wait_s: float = 0.0) -> list[TrainEvent]:
        """Apply what the worker sent since the last call (waiting up to `wait_s` for something); returns
        the new step events. A queued run checks its place (the scheduler starts it when its turn comes)."""
        if self._state == "queued":
            self.queue_position()
            return []
        if self._state not in ("starting", "running"):
            return []
        if self._state == "running" and not self._scheduler.holds(self):  # its slot went on while unread
            self.stop()
            self.resume()  # at the back of the queue, or at once when a slot is free
            return []
        return self._read(timeout=wait_s)

    def _read(self, timeout: float) -> list[TrainEvent]:
        events: list[TrainEvent] = []
        worker = self.worker
        if worker is None:
            return events
        self._last_read = time.monotonic()
        try:
            messages = worker.messages(timeout)
        except WorkerGone as gone:
            self._failed(str(gone))
            return events
        batches = 0
        for kind, *body in messages:
            if kind == "progress":
                self.progress = tuple(body)
            elif kind == "ready":
                self._ready(body[0])
            elif kind == "error":
                self._refused = True
                self.message = body[0]
                self._state = "failed"
                self._end_worker()
            elif kind == "updates":
                batches += 1
                events += self._apply(body[0])
            elif kind == "paused":  # asked for (Stop), or the worker's own when its page stopped reading
                events += self._apply(body[0])
                self._keep(body[1])
                self._state = "stopped"
                self._scheduler.release(self)
            elif kind == "finished":
                self._keep(body[0])
                self._state = "finished"
            elif kind == "diverged":
                self._state = "diverged"
        if batches:
            worker.send("ack", batches)
        if self.run is not None:
            self.run.status = self.status
        if self._state in ("finished", "diverged"):
            self._end_worker()
        return events

    def _ready(self, info: RunInfo) -> None:
        run = self.run
        run.tokens_per_step, run.unigram, run.n_params, run.n_sentences = (
            info.tokens_per_step, info.unigram, info.n_params, info.n_sentences
        )  # fmt: skip
        self._steps, self.progress, self._state = info.steps, None, "running"

    def _apply(self, updates: list[Update]) -> list[TrainEvent]:
        events = []
        for update in updates:
            self.run.apply(update)
            if update.kind in ("step", "diverged"):
                self._step = max(self._step, update.step)
            if update.kind == "step":
                events.append(update.event)
            elif update.kind == "diverged":
                self.message = update.text
        return events

    def _keep(self, snapshot: Snapshot) -> None:
        self._snapshot, self._model = snapshot, None

    def _failed(self, why: str) -> None:
        """The worker died or hung: say so on the page; the curves it sent stay."""
        unit = self.run.settings.unit if self.run else "step"
        self.message = (
            f"The process training this run ended unexpectedly: {why}. The results up to {unit} {self._step} "
            "stay on the page; press Start to train again (a smaller model or batch needs less memory)."
        )
        self._refused = False
        self._state = "failed"
        self._snapshot = self._model = None
        self._end_worker()

    # -- what a run gives
    def weights_bytes(self) -> bytes:
        """The trained model as a weights file (lm.checkpoint's format, without optimizer state)."""
        return self._snapshot.weights

    def checkpoint_bytes(self) -> bytes:
        """The run's checkpoint file (lm.checkpoint: weights, AdamW state, configs, tokenizer) as bytes."""
        return self._snapshot.checkpoint

    def memorization_table(self) -> list[MemorizationRow]:
        """Each sentence with what the paused or finished model generates from its first two words."""
        return list(self._snapshot.table or []) if self._snapshot is not None else []


def session_of(state: MutableMapping, mode: str) -> TrainingSession:
    """This browser session's training in a mode (made on first use)."""
    return kept(state, SESSIONS[mode], TrainingSession)


def pause_training_off_page(state: MutableMapping, url_path: str) -> bool:
    """The one rule for leaving the Train page: showing any other page pauses a running run (and a queued
    one leaves the queue: nobody would watch it); Resume goes on. Called by the router for every page;
    True if it paused."""
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
