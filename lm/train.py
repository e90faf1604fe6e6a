"""The one trainer: any preset on either batch source, as an iterator of progress events.

A batch source (lm.data) is *sentences* (the classic recipe: one padded full batch, scored by how many
sentences greedy decoding reproduces) or *windows* (random windows of a token stream, scored by the loss
on fixed held-out windows). Evaluations are hooks (`validation_loss`, `memorized`, `samples`) run every
`eval_every` steps and at the last; the schedule (warmup, cosine, floor; "constant"), clipping, gradient
accumulation, the divergence stop and exact resume (lm.checkpoint) hold for both. `events()` yields a
`TrainEvent` per step and one per evaluation, and can be stopped at any event and resumed later.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

import torch

from autodiff import Evaluator
from autodiff.memory import keep_freed_memory
from lm import checkpoint, data
from lm.config import PART_FIELDS, param_shapes, preset_config
from lm.model import LanguageModel
from lm.optim import SGD, AdamW, clip_grad_norm_, decay_groups, grad_norm, lr_schedule
from lm.tokenizers import TokenizerError

Tensor = torch.Tensor
DIVERGED_FACTOR = 10.0  # a loss above its first and this many times its best so far (or not finite) diverged


@dataclass
class TrainConfig:
    """A run. Defaults are nanoGPT's CPU quickstart on Tiny Shakespeare characters (gpt preset);
    `TrainConfig.recipe("classic")` is this project's first model on its ten sentences."""

    data: str = "shakespeare"  # sentences[:FILE] | shakespeare | stories | tinystories | a text file
    tokenizer: str = "char"  # char | word | bpe:N | gpt2 (sentences: word)
    preset: str = "gpt"  # classic | gpt | llama
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 128
    d_ff: int | None = None  # None: the preset's width (gpt 4·d, llama 8/3·d rounded up to 64)
    context: int | None = 64  # tokens per window; None (sentences): the longest sentence's words
    batch_size: int = 12  # windows per micro-batch (sentences: every sentence, always)
    grad_accum: int = 1  # micro-batches per step (their gradients averaged)
    steps: int = 2000  # optimizer steps (sentences: full-batch epochs)
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3  # peak learning rate, after warmup
    min_lr: float = 1e-4  # the floor the cosine reaches at the last step
    warmup: int = 100  # linear warmup steps
    schedule: str = "cosine"  # cosine (warmup, cosine, floor) | constant (lr every step)
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.1  # AdamW, on matrices only
    clip: float = 1.0  # global gradient norm; 0 = no clipping
    eval_every: int = 250  # steps between evaluations (and at the last step); 0 = only at the end
    eval_batches: int = 20  # fixed held-out batches per validation
    seed: int = 1337  # the initialization and the batches
    dtype: str = "float32"
    n_stories: int = 20_000  # for data=tinystories: how many stories to download
    parts: dict | None = None  # the preset's parts overridden (lm.config.PART_FIELDS), e.g. {"positions": "rope"}
    remat: bool = False  # activation checkpointing: each block's forward recomputed in the backward pass (less memory)

    @classmethod
    def recipe(cls, name: str, **overrides) -> TrainConfig:
        """A named recipe (RECIPES) with some fields changed."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    @property
    def is_sentences(self) -> bool:
        return self.data == "sentences" or self.data.startswith("sentences:")

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad field and its allowed range."""
        bounds = {
            "n_layers": (1, 64), "n_heads": (1, 128), "d_model": (1, 8192), "batch_size": (1, 4096),
            "grad_accum": (1, 1024), "steps": (1, 10_000_000), "warmup": (0, 10_000_000),
            "eval_every": (0, 10_000_000), "eval_batches": (1, 10_000), "n_stories": (1, 1_000_000),
            "seed": (0, 2**63 - 1),
        }  # fmt: skip
        if self.context is not None or not self.is_sentences:
            bounds["context"] = (2, 8192)
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}, got {value!r}")
        for name in ("lr", "min_lr", "weight_decay", "clip", "beta1", "beta2", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
                raise ValueError(f"{name} must be a number from 0 to 10, got {value!r}")
        for name, allowed in (("optimizer", ("adamw", "sgd")), ("schedule", ("cosine", "constant"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer == "adamw" and self.eps <= 0:  # AdamW divides by sqrt(v) + eps: 0/0 for a zero gradient
            raise ValueError(f"eps must be a positive number (0 turns a zero gradient into NaN), got {self.eps!r}")
        unknown = sorted(set(self.parts or {}) - set(PART_FIELDS))
        if unknown or (self.parts is not None and not isinstance(self.parts, dict)):
            raise ValueError(f"parts: unknown model part(s) {', '.join(unknown)}; known: {', '.join(PART_FIELDS)}")
        if self.schedule == "cosine" and self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.optimizer == "adamw" and self.lr * self.weight_decay >= 1:  # p <- p (1 - lr wd) would flip signs
            raise ValueError(f"weight_decay x lr must be below 1, got {self.weight_decay!r} x {self.lr!r}")
        if not isinstance(self.remat, bool):
            raise ValueError(f"remat must be true or false, got {self.remat!r}")
        if self.is_sentences and self.tokenizer != "word":
            raise ValueError(f"the sentences source is words: use tokenizer 'word', not {self.tokenizer!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from a dict (a checkpoint's); fields added since it was written take their defaults."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values).validate()


RECIPES = {
    # nanoGPT's CPU quickstart ("baby GPT" on Tiny Shakespeare characters, sized for a laptop).
    "nanogpt": {},
    # This project's first model: one post-norm layer memorizing ten sentences with plain SGD, full batch.
    "classic": dict(
        data="sentences", tokenizer="word", preset="classic", n_layers=1, n_heads=1, d_model=64, d_ff=128,
        context=None, steps=500, optimizer="sgd", lr=0.05, min_lr=0.005, warmup=0, schedule="constant",
        beta2=0.999, weight_decay=0.01, clip=0.0, eval_every=50, seed=0, dtype="float64",
    ),
}  # fmt: skip


@dataclass
class TrainEvent:
    """One step's progress (kind "step") or an evaluation after it (kind "eval")."""

    kind: str
    step: int  # steps done
    total: int
    loss: float  # this step's training loss, before its update (the last one for an eval)
    lr: float
    grad_norm: float  # global L2 norm of the gradients, before clipping
    tokens_per_s: float  # training tokens per second over this session's steps
    elapsed: float  # seconds of training in this session (evaluations not counted)
    metrics: dict = field(default_factory=dict)  # an eval's results: val_loss, val_perplexity, memorized, sample
    done: bool = False  # the run is over (its last event)
    stop_reason: str | None = None  # "finished", or why the run stopped early ("diverged: ...")


def divergence(loss: float, grad_norm: float, first: float, best: float) -> str | None:
    """Why a run has diverged at this loss, or None. Not finite; or above both its first loss and
    DIVERGED_FACTOR x its best: a run that climbed far from where it got (a noisy run near its best,
    or one still far below its start, is not stopped)."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return f"the loss became {loss:.4g}"
    if loss > first and loss > DIVERGED_FACTOR * best:
        return (
            f"the loss climbed to {loss:.4g}, above its first value {first:.4g} and {DIVERGED_FACTOR:g}× its best "
            f"{best:.4g}"
        )
    return None


def memory_estimate(model_config, batch: int, T: int, eval_batches: int, optimizer: str) -> dict[str, int]:
    """Bytes a training step will hold, estimated before anything is allocated: parameters and their
    gradients, AdamW's two moments, the activations a step keeps for its backward pass (per layer about
    10 (N, D) and 3 (N, F) tensors plus the attention scores and weights (B, H, T, T) twice, then the
    logits (N, V) three times, N = B * T), and the fixed validation batches (int64)."""
    c, size = model_config, model_config.torch_dtype.itemsize
    n_params = sum(math.prod(shape) for shape in param_shapes(c).values())
    N = batch * T
    per_layer = N * (10 * c.d_model + 3 * c.d_ff) + 2 * batch * c.n_heads * T * T
    return {
        "parameters and gradients": 2 * n_params * size,
        "optimizer state": (2 * n_params * size) if optimizer == "adamw" else 0,
        "activations": (c.n_layers * per_layer + 3 * N * c.vocab_size) * size,
        "validation batches": eval_batches * 2 * N * 8,
    }


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(model_config, config: TrainConfig, batch: int, T: int, available: int | None) -> None:
    """ValueError naming the estimate and the settings to lower when a step cannot fit in memory."""
    parts = memory_estimate(model_config, batch, T, config.eval_batches if batch == config.batch_size else 0,
                            config.optimizer)  # fmt: skip
    total = sum(parts.values())
    if available is not None and total > available:
        biggest = max(parts, key=parts.get)
        lower = {
            "activations": "--batch or --context (or --layers, --d-model)",
            "validation batches": "--eval-batches or --batch",
        }.get(biggest, "--d-model, --layers or the vocabulary")
        shown = ", ".join(f"{name} {value / 1e9:.1f} GB" for name, value in parts.items() if value)
        raise ValueError(
            f"a training step would need about {total / 1e9:.1f} GB ({shown}) but this machine has "
            f"{available / 1e9:.1f} GB available: lower {lower}"
        )


# --------------------------------------------------------------------------------- evaluations

Evaluation = Callable[["Trainer"], dict]


def validation_loss(trainer: Trainer) -> dict:
    """Mean loss over the source's fixed held-out batches (the forward alone)."""
    loss = trainer.evaluate()
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700.0))}


def memorized(trainer: Trainer) -> dict:
    """How many sentences greedy decoding reproduces from their first two words, in one forward pass."""
    source = trainer.source
    return {"memorized": sum(data.reproduced(trainer.model, source)), "n_sentences": len(source.sentences)}


def samples(
    prompt: str = "", max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = 40
) -> Evaluation:
    """A hook writing a sample of the model from `prompt` (seed 0, so samples differ only by training)."""
    from lm.generate import generate  # noqa: PLC0415  (generation is not needed to train)

    def sample(trainer: Trainer) -> dict:
        model = trainer.cpu_model()
        trace = generate(model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, seed=0)
        return {"sample": trace.text}

    return sample


# ------------------------------------------------------------------------------------- trainer


class Trainer:
    """A model, its batch source and optimizer, trained step by step. `events()` runs the rest of the run.

    `source` (lm.data.Sentences or Windows) is built from config.data when not given; `tokenizer` reuses
    a trained one (a resumed run's). `evaluations` default to the source's (validation loss or
    memorization). Under torchrun `parallel` (lm.distributed.DataParallel) splits the windows and
    averages the gradients over the ranks; `device` holds parameters, optimizer state and batches."""

    def __init__(
        self, config: TrainConfig | None = None, *, source=None, tokenizer=None, evaluations=None, cache_dir=None,
        device=None, parallel=None, progress=None,
    ):  # fmt: skip
        """`progress(done, total)` reports a download's stories (data=tinystories, first use only)."""
        self.config = config = (config or TrainConfig()).validate()
        keep_freed_memory()  # each step reuses the last one's pages (autodiff/memory.py: 17% of a step)
        if source is None:
            source = data.make_source(config, cache_dir, tokenizer, progress)
        if parallel is not None and isinstance(source, data.Sentences):
            raise ValueError("the sentences source is one full batch: it cannot be split over ranks")
        self.source, self.tokenizer = source, source.tokenizer
        context = source.context if config.context is None else config.context
        if context < source.min_context:
            raise ValueError(
                f"context {context} is too short for the longest sentence ({source.min_context} words, each read "
                f"to predict the next and the last to predict the end): use a context of at least {source.min_context}"
            )
        sizes = dict(d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads, **(config.parts or {}))
        model_config = preset_config(
            config.preset, len(self.tokenizer), context, config.d_ff, seed=config.seed, dtype=config.dtype, **sizes
        )
        B, T = source.batch_shape(config.batch_size, context)
        check_memory(model_config, config, B, T, available_memory())  # before anything big is allocated
        self.model = LanguageModel(model_config, tokenizer=self.tokenizer)
        self.device, self.parallel = torch.device(device or "cpu"), parallel
        self.model.params.update({n: p.to(self.device) for n, p in self.model.params.items()})
        if parallel is not None:
            parallel.broadcast_(list(self.model.params.values()))  # every rank starts from rank 0's weights
        self.names, self.params = list(self.model.params), list(self.model.params.values())
        if config.optimizer == "sgd":
            self.optimizer = SGD(self.model.params, config.lr)
        else:
            groups = decay_groups(self.model.params, config.weight_decay)
            betas = (config.beta1, config.beta2)
            self.optimizer = AdamW(self.model.params, config.lr, betas, config.eps, groups=groups)
        default = [memorized] if isinstance(source, data.Sentences) else [validation_loss]
        self.evaluations = list(default if evaluations is None else evaluations)
        self.step = 0
        self.batches = torch.Generator().manual_seed(config.seed)  # the training windows
        self.val_batches = source.validation(config.batch_size, context, config.eval_batches, config.seed + 1)
        self.graph = self.model.loss_graph(B, T, remat=config.remat)
        self._feed = self.model.param_feed()  # parameters are updated in place: fed once
        self._eval: Evaluator | None = None
        self.last_loss = self.last_grad_norm = math.nan
        self.first_loss = self.best_loss = math.inf
        self.done, self.stop_reason = False, None
        self.last_metrics: dict = {}  # the last evaluation's results (a checkpoint records them)

    @property
    def context(self) -> int:
        return self.model.config.context

    @property
    def world_size(self) -> int:
        """Processes training together (1 without torchrun); a step sees batch_size x world_size windows."""
        return 1 if self.parallel is None else self.parallel.world_size

    # -- one step ---------------------------------------------------------------------------------
    def _loss_and_grads(self, x: Tensor, y: Tensor, ready=None) -> tuple[Tensor, list[Tensor]]:
        self._feed.update({k: v.to(self.device) for k, v in self.graph.forward.inputs(x).items()})
        self._feed[self.graph.targets] = y.reshape(-1).to(self.device)
        loss, *grads = self.graph.evaluator.run(self._feed, ready=ready)
        return loss, grads

    def _draw(self) -> tuple[Tensor, Tensor]:
        if self.parallel is not None:  # a rank: its share of the global batch
            return self.parallel.batch(self.source.train, self.config.batch_size, self.context, self.batches)
        return self.source.batch(self.config.batch_size, self.context, self.batches)

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean training loss (before the
        update). Under torchrun the last micro-batch's gradients go to the all-reduce as the backward pass
        computes them. A diverged loss stops the run before its update (`done`, `stop_reason`)."""
        if self.done:
            raise RuntimeError(f"the run is over ({self.stop_reason}): start a new one or raise the steps")
        cfg = self.config
        total_loss, grads = 0.0, None
        for m in range(cfg.grad_accum):
            x, y = self._draw()
            if self.parallel is not None and m == cfg.grad_accum - 1:  # sums of the micro-batches, then the mean
                sync = self.parallel.overlapped_mean(None if grads is None else [total_loss, *grads])
                self._loss_and_grads(x, y, ready=sync.ready)
                loss_sum, *grads = sync.wait(1 + len(self.params))
                total_loss = float(loss_sum)
                break
            loss, micro = self._loss_and_grads(x, y)
            total_loss += float(loss)
            if grads is None:
                grads = micro
            else:
                torch._foreach_add_(grads, micro)
        if cfg.grad_accum > 1:
            torch._foreach_div_(grads, float(cfg.grad_accum))
        self.last_loss = loss = total_loss / cfg.grad_accum
        norm = clip_grad_norm_(grads, cfg.clip) if cfg.clip else float(grad_norm(grads))
        self.last_grad_norm = norm
        self.optimizer.lr = self.lr_at(self.step)
        self.step += 1
        if not self._diverged(loss, norm):  # a diverged step is not applied: the model stays as it was
            self.optimizer.step(dict(zip(self.names, grads)))
        return loss

    def _diverged(self, loss: float, norm: float) -> bool:
        """Record whether the run is over after this step's loss: diverged (True: skip the update),
        finished, or finished no lower than it started (also reported as diverged, after the update)."""
        if self.step == 1:
            self.first_loss = loss
        why = divergence(loss, norm, self.first_loss, self.best_loss)
        self.best_loss = min(self.best_loss, loss)
        if why is not None:
            self.done, self.stop_reason = True, f"diverged: {why} (step {self.step}); lower the learning rate"
            return True
        if self.step == self.config.steps:
            self.done, self.stop_reason = True, "finished"
            if self.step > 1 and loss >= self.first_loss:
                first = self.first_loss
                why = f"the run ended at loss {loss:.4g}, no lower than its first {first:.4g}"
                self.stop_reason = f"diverged: {why} (step {self.step}); lower the learning rate"
        return False

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based) by the config's schedule."""
        cfg = self.config
        if cfg.schedule == "constant":
            return cfg.lr
        return lr_schedule(step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)

    def evaluate(self) -> float:
        """Mean loss over the fixed held-out batches (the forward alone)."""
        if not self.val_batches:
            raise ValueError("this source has no held-out batches")
        if self._eval is None:
            self._eval = Evaluator([self.graph.loss])
        losses = []
        for x, y in self.val_batches:
            self._feed.update({k: v.to(self.device) for k, v in self.graph.forward.inputs(x).items()})
            self._feed[self.graph.targets] = y.reshape(-1).to(self.device)
            (loss,) = self._eval.run(self._feed)
            losses.append(float(loss))
        return sum(losses) / len(losses)

    def evaluate_all(self) -> dict:
        """Every evaluation hook's results, merged."""
        results: dict = {}
        for evaluation in self.evaluations:
            results.update(evaluation(self))
        return results

    def cpu_model(self) -> LanguageModel:
        """The model with CPU parameters (generation feeds CPU tensors); itself when already on the CPU."""
        if self.device.type == "cpu":
            return self.model
        params = {n: p.cpu() for n, p in self.model.params.items()}
        return LanguageModel(self.model.config, params=params, tokenizer=self.tokenizer)

    # -- the run as events ----------------------------------------------------------------------------
    def events(self, until: int | None = None) -> Iterator[TrainEvent]:
        """Train up to step `until` (default: the config's steps), yielding an event per step and one per
        evaluation (every eval_every steps and at the last step)."""
        cfg = self.config
        until = cfg.steps if until is None else min(until, cfg.steps)
        start, start_step = time.perf_counter(), self.step
        B, T = self.source.batch_shape(cfg.batch_size, self.context)
        while self.step < until and not self.done:
            loss = self.train_step()
            elapsed = time.perf_counter() - start
            tokens = (self.step - start_step) * B * T * cfg.grad_accum * self.world_size
            diverged = self.done and self.step < cfg.steps  # stopped early: no evaluation follows
            event = TrainEvent(
                "step", self.step, cfg.steps, loss, self.optimizer.lr, self.last_grad_norm, tokens / elapsed, elapsed,
                done=diverged, stop_reason=self.stop_reason if diverged else None,
            )  # fmt: skip
            yield event
            due = (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps
            if due and not diverged and (self.parallel is None or self.parallel.is_main):  # rank 0 alone evaluates
                metrics = self.last_metrics = self.evaluate_all()
                yield TrainEvent(**{
                    **asdict(event), "kind": "eval", "metrics": metrics, "done": self.done,
                    "stop_reason": self.stop_reason,
                })  # fmt: skip
                start += time.perf_counter() - start - elapsed  # evaluation time is not training time

    # -- checkpoints ----------------------------------------------------------------------------------
    def save(self, path) -> object:
        """Write a checkpoint of this run (lm.checkpoint.save: the model, the optimizer, the step, the batch
        generator and the settings); returns its path. Under torchrun only rank 0 writes (the ranks hold the
        same state); the others return None."""
        if self.parallel is not None and not self.parallel.is_main:
            return None
        return checkpoint.save(
            path, self.model, self.optimizer, self.step, train_config=self.config.to_dict(),
            rng=self.batches.get_state(), data_id=self.source.data_id, metrics=self.last_metrics,
        )  # fmt: skip

    @classmethod
    def resume(cls, path, steps: int | None = None, batch_size: int | None = None, source=None, **kwargs) -> Trainer:
        """The run saved at `path` (a run folder or checkpoint file), ready to continue exactly; `steps`
        extends (or shortens) the run's total, which the schedule's cosine follows; `batch_size` changes the
        windows per rank (keep batch x ranks when the number of ranks changes). kwargs: as Trainer's."""
        saved = checkpoint.load(path)
        if saved.train_config is None:
            raise checkpoint.CheckpointError(
                f"'{path}' holds a model but no training run (no training settings): it cannot be resumed"
            )
        given = {"steps": steps, "batch_size": batch_size}
        settings = {**saved.train_config, **{k: v for k, v in given.items() if v is not None}}
        try:
            config = TrainConfig.from_dict(settings)
        except (TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"the checkpoint's training settings are broken: {err}") from None
        changed = (
            f"the data '{config.data}' is not the text this run was trained on (it changed since): "
            "restore it to resume, or start a new run"
        )
        try:
            trainer = cls(config, source=source, tokenizer=saved.model.tokenizer, **kwargs)
        except TokenizerError as err:  # the run's tokenizer cannot read the data: it changed (new words, chars)
            raise checkpoint.CheckpointError(f"{changed} ({err})") from None
        if trainer.model.config != saved.model.config:
            raise checkpoint.CheckpointError("the checkpoint's model config does not match its training settings")
        if saved.data_id and saved.data_id != trainer.source.data_id:  # the text changed: batches would differ
            raise checkpoint.CheckpointError(changed)
        trainer.step = saved.restore(trainer.model, trainer.optimizer) or 0
        if saved.rng is not None:
            trainer.batches.set_state(saved.rng)
        return trainer


__all__ = [
    "DIVERGED_FACTOR", "RECIPES", "TrainConfig", "TrainEvent", "Trainer", "divergence", "memorized", "samples",
    "validation_loss",
]  # fmt: skip
