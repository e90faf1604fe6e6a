"""The Train page's "Language model" mode, without Streamlit: settings turned into an lm Trainer
(corpus, tokenizer, preset and its parts), a session that trains a few steps per tick within a time
budget, validates, samples from a fixed prompt every N steps, and keeps every finished or stopped run
for the comparison table. lm checks every setting it knows; this module adds the page's own bounds.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field

from lm.data import DataError, Windows, load_source, load_tokens, make_tokenizer, unigram_loss
from lm.generate import STOP_REASONS, generate
from lm.tokenizers import BPETokenizer
from lm.train import TrainConfig, Trainer

CORPORA = {"shakespeare": "Tiny Shakespeare", "stories": "TinyStories sample", "pasted": "Pasted text",
           "upload": "Uploaded .txt", "tinystories": "TinyStories (download)"}  # fmt: skip
MAX_UPLOAD_BYTES = 5_000_000  # a text is encoded whole in the page's process: a few MB is plenty on a CPU
MIN_TEXT_CHARS = 1_000  # train and validation parts must each hold windows
# The page's bounds: one tick (a few steps) stays well under a second on a shared 2-core CPU.
LIMITS = {"n_layers": 6, "n_heads": 8, "d_model": 256, "context": 256, "batch_size": 64, "steps": 20_000}
MAX_BPE_VOCAB = 4_096  # BPE trained here, in the page: larger takes minutes on this text
SAMPLE_TOKENS = 80
N_STORIES = 2_000  # TinyStories downloaded from the page: enough for a CPU run, a short wait


class LMSettingsError(ValueError):
    """A setting the page cannot use; the message says which and how to fix it."""


@dataclass
class LMSettings:
    """What the page's widgets hold. Defaults: a run that beats the unigram baseline within a minute."""

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

    def check(self) -> None:
        for name, high in LIMITS.items():
            value = getattr(self, name)
            if value > high:
                raise LMSettingsError(f"{name}: this page allows at most {high:,}, got {value:,}")
        if (
            self.tokenizer.startswith("bpe:")
            and self.tokenizer[4:].isdigit()
            and int(self.tokenizer[4:]) > MAX_BPE_VOCAB
        ):
            raise LMSettingsError(f"BPE vocabulary: this page trains at most {MAX_BPE_VOCAB:,} tokens")
        if self.corpus not in CORPORA:
            raise LMSettingsError(f"unknown corpus {self.corpus!r}")

    def train_config(self) -> TrainConfig:
        """The lm config (lm validates it); the min learning rate is a tenth of the peak."""
        data = self.corpus if self.corpus in ("shakespeare", "stories", "tinystories") else self.corpus + " text"
        return TrainConfig(
            data=data, tokenizer=self.tokenizer, preset=self.preset, parts=dict(self.parts) or None,
            n_layers=self.n_layers, n_heads=self.n_heads, d_model=self.d_model, context=self.context,
            batch_size=self.batch_size, steps=self.steps, lr=self.lr, min_lr=self.lr / 10, warmup=self.warmup,
            eval_every=self.eval_every, eval_batches=4, seed=self.seed, n_stories=N_STORIES,
        )  # fmt: skip


def check_text_upload(data: bytes, name: str) -> str:
    """An uploaded file's text, or LMSettingsError: too large, binary, not UTF-8, too short."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise LMSettingsError(
            f"'{name}' has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}: upload a part of it"
        )
    if b"\x00" in data[:65536]:
        raise LMSettingsError(f"'{name}' holds NUL bytes: it looks binary, not text; upload a UTF-8 .txt file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LMSettingsError(f"'{name}' is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    return check_text(text, f"'{name}'")


def check_text(text: str, what: str = "the pasted text") -> str:
    if len(text) < MIN_TEXT_CHARS:
        raise LMSettingsError(f"{what} has {len(text):,} characters; give at least {MIN_TEXT_CHARS:,}")
    if len(text.encode("utf-8")) > MAX_UPLOAD_BYTES:
        raise LMSettingsError(f"{what} is over {MAX_UPLOAD_BYTES:,} bytes: use a part of it")
    return text


def build_trainer(settings: LMSettings, text: str | None = None, cache_dir=None, progress=None) -> Trainer:
    """A Trainer for the settings; `text` for a pasted or uploaded corpus. `progress(done, total, stage)`
    reports BPE training and a download. Every bad setting is an LMSettingsError with lm's message."""
    settings.check()
    try:
        config = settings.train_config().validate()
        if settings.corpus in ("pasted", "upload"):
            if text is None:
                raise LMSettingsError("no text yet: paste or upload a text first")
            source = text
        else:
            source = load_source(
                config.data, cache_dir, config.n_stories, lambda d, t: progress and progress(d, t, "download")
            )
        if config.tokenizer.startswith("bpe:"):
            size = int(config.tokenizer[4:]) if config.tokenizer[4:].isdigit() else -1
            if not 257 <= size:
                raise LMSettingsError("BPE vocabulary: at least 257 (the 256 bytes and <|endoftext|>)")
            tokenizer = BPETokenizer.train(source, size, ["<|endoftext|>"], progress=progress, workers=1)[0]
        else:
            tokenizer = make_tokenizer(config.tokenizer, source)
        tokens = load_tokens(source, tokenizer, config.context, cache_dir)
        return Trainer(config, source=Windows(tokens, tokenizer), cache_dir=cache_dir)
    except (DataError, ValueError) as err:
        if isinstance(err, LMSettingsError):
            raise
        raise LMSettingsError(str(err)) from None


@dataclass
class RunRecord:
    """One run of the session: its settings, curves and outcome (the comparison table's row)."""

    number: int
    settings: dict
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)
    tokens_per_step: int = 0
    seconds: float = 0.0
    unigram: float = math.nan
    n_params: int = 0
    status: str = "running"

    def row(self) -> dict:
        """The comparison table's columns."""
        s = self.settings
        parts = ", ".join(f"{k}={v}" for k, v in sorted(s["parts"].items())) or "-"
        return {
            "run": self.number, "status": self.status, "corpus": s["corpus"], "tokenizer": s["tokenizer"],
            "preset": s["preset"], "changed parts": parts, "layers": s["n_layers"], "heads": s["n_heads"],
            "d_model": s["d_model"], "context": s["context"], "batch": s["batch_size"], "lr": s["lr"],
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


class LMSession:
    """A language-model run advanced tick by tick, and the session's finished or stopped runs."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.started_at = -math.inf
        self.run: RunRecord | None = None
        self.runs: list[RunRecord] = []  # every run of the session, the current one last
        self.running = False
        self.error = ""

    @property
    def model(self):
        return None if self.trainer is None or self.trainer.step == 0 else self.trainer.model

    @property
    def step(self) -> int:
        return 0 if self.trainer is None else self.trainer.step

    @property
    def status(self) -> str:
        if self.trainer is None:
            return "idle"
        if self.running:
            return "running"
        return "finished" if self.trainer.step >= self.trainer.config.steps else "stopped"

    def start(self, settings: LMSettings, text: str | None = None, cache_dir=None, progress=None) -> None:
        """Build a new run (the previous one stays in `runs`) and let the ticks train it."""
        self.stop()
        trainer = build_trainer(settings, text, cache_dir, progress)
        cfg = trainer.config
        record = RunRecord(len(self.runs) + 1, asdict(settings), tokens_per_step=cfg.batch_size * cfg.context)
        tokens = trainer.source.tokens
        record.unigram = unigram_loss(tokens.val, len(trainer.tokenizer), tokens.train)
        record.n_params = trainer.model.num_parameters()
        self.trainer, self.run, self.running, self.error = trainer, record, True, ""
        self.started_at = time.monotonic()  # which of the session's runs is the latest (the Generate page asks)
        self.runs.append(record)

    def stop(self) -> None:
        if self.running and self.run is not None:
            self.run.status = self.status_after_stop()
        self.running = False

    def status_after_stop(self) -> str:
        return "finished" if self.trainer.step >= self.trainer.config.steps else "stopped"

    def resume(self) -> None:
        if self.trainer is not None and self.trainer.step < self.trainer.config.steps:
            self.running = True
            self.run.status = "running"

    def reset(self) -> None:
        """Forget the current run (its row stays in the comparison table if it trained a step)."""
        self.stop()
        if self.run is not None and not self.run.steps:
            self.runs.remove(self.run)
        self.trainer, self.run, self.error = None, None, ""

    def advance(self, budget_s: float = 0.5) -> int:
        """Train steps until the budget is spent (at least one); validate and sample when due. Returns
        the steps done. A non-finite loss stops the run with a message."""
        if not self.running or self.trainer is None:
            return 0
        trainer, run, cfg = self.trainer, self.run, self.trainer.config
        start, done = time.perf_counter(), 0
        settings = run.settings
        while trainer.step < cfg.steps and (done == 0 or time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            loss = trainer.train_step()
            run.seconds += time.perf_counter() - t0
            done += 1
            run.steps.append(trainer.step)
            run.losses.append(loss)
            run.lrs.append(trainer.optimizer.lr)
            if trainer.done and trainer.step < cfg.steps:  # lm stopped a diverging run
                self.error = f"the run {trainer.stop_reason}; start again"
                run.status, self.running = "diverged", False
                return done
            last = trainer.step == cfg.steps
            if last or trainer.step % cfg.eval_every == 0:
                run.val_steps.append(trainer.step)
                run.val_losses.append(trainer.evaluate())
            if last or trainer.step % settings["sample_every"] == 0:
                run.samples.append((trainer.step, self.sample(settings["sample_prompt"])))
        if trainer.step >= cfg.steps:
            self.running, run.status = False, "finished"
        return done

    def sample(self, prompt: str) -> str:
        """A continuation of the fixed prompt (seeded: samples differ only as the model does)."""
        try:
            return sample_text(generate(self.trainer.model, prompt, SAMPLE_TOKENS, temperature=0.8, top_k=40, seed=0))
        except ValueError as err:
            return f"(no sample: {err})"

    def checkpoint_bytes(self) -> bytes:
        """The run's checkpoint file (lm.checkpoint: weights, AdamW state, configs, tokenizer) as bytes."""
        buffer = io.BytesIO()
        self.trainer.save(buffer)
        return buffer.getvalue()

    @property
    def tokens_per_s(self) -> float:
        run = self.run
        return 0.0 if run is None or not run.seconds else len(run.steps) * run.tokens_per_step / run.seconds


def measure_default_run(seconds: float = 60.0) -> None:
    """Print what the page's default run reaches in `seconds` of training (one torch thread, as the app):
    validation loss against the unigram baseline, and the samples. `python -m playground.textrun_session`."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    session = LMSession()
    session.start(LMSettings())
    wall = time.perf_counter()
    while session.running and time.perf_counter() - wall < seconds:
        session.advance(0.5)
    run = session.run
    print(f"unigram baseline {run.unigram:.3f}; {run.steps[-1]} steps in {time.perf_counter() - wall:.1f} s wall")
    for step, val in zip(run.val_steps, run.val_losses):
        print(f"step {step:>4}  validation loss {val:.3f}")
    for step, text in run.samples:
        print(f"sample at step {step}: {text!r}")


if __name__ == "__main__":
    measure_default_run()
