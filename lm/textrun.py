"""Step-based training of a text language model: random batches of a token file, AdamW with warmup,
cosine decay and a floor, global-norm clipping, gradient accumulation, and validation on fixed
held-out batches; progress as an iterator of events (a CLI or a page consumes a few at a time).

Everything that decides the next step (parameters, AdamW's moments, the step, the batch generator's
state) is in `state_tensors()`, so a run saved by lm.checkpoint and resumed continues bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

import torch

from autodiff.memory import keep_freed_memory
from lm import checkpoint
from lm.data import DataError, TokenData, get_batch, load_source, load_tokens, make_tokenizer
from lm.model import PART_FIELDS, LanguageModel, preset_config
from lm.optim import AdamW, clip_grad_norm_, lr_schedule, matrices_only

Tensor = torch.Tensor


@dataclass
class TextTrainConfig:
    """A run. Defaults are nanoGPT's CPU quickstart on Tiny Shakespeare characters (gpt preset)."""

    data: str = "shakespeare"  # shakespeare | stories | tinystories | a path to a text file
    tokenizer: str = "char"  # char | word | bpe:N | gpt2
    preset: str = "gpt"  # classic | gpt | llama
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 128
    d_ff: int | None = None  # None: the preset's width (gpt 4·d, llama 8/3·d rounded up to 64)
    context: int = 64  # tokens per training window
    batch_size: int = 12  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per step (their gradients averaged)
    steps: int = 2000
    lr: float = 1e-3  # peak learning rate, after warmup
    min_lr: float = 1e-4  # the floor the cosine reaches at the last step
    warmup: int = 100
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1  # on matrices only
    clip: float = 1.0  # global gradient norm; 0 = no clipping
    eval_every: int = 250  # steps between validations (and at the last step); 0 = only at the end
    eval_batches: int = 20  # fixed held-out batches per validation
    seed: int = 1337
    dtype: str = "float32"
    n_stories: int = 20_000  # for data=tinystories: how many stories to download
    parts: dict | None = None  # the preset's parts overridden (lm.model.PART_FIELDS), e.g. {"positions": "rope"}

    def validate(self) -> TextTrainConfig:
        """Raise ValueError naming the first bad field and its allowed range."""
        bounds = {
            "n_layers": (1, 64), "n_heads": (1, 128), "d_model": (1, 8192), "context": (2, 8192),
            "batch_size": (1, 4096), "grad_accum": (1, 1024), "steps": (1, 10_000_000), "warmup": (0, 10_000_000),
            "eval_every": (0, 10_000_000), "eval_batches": (1, 10_000), "n_stories": (1, 1_000_000),
        }  # fmt: skip
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}, got {value!r}")
        for name in ("lr", "min_lr", "weight_decay", "clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10:
                raise ValueError(f"{name} must be a number from 0 to 10, got {value!r}")
        unknown = sorted(set(self.parts or {}) - set(PART_FIELDS))
        if unknown or (self.parts is not None and not isinstance(self.parts, dict)):
            raise ValueError(f"parts: unknown model part(s) {', '.join(unknown)}; known: {', '.join(PART_FIELDS)}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TextTrainConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data).validate()


@dataclass
class TextEvent:
    """One step's progress (kind "step") or a validation (kind "eval")."""

    kind: str
    step: int  # steps done
    total: int
    loss: float  # this step's training loss (the last one for an eval)
    lr: float
    grad_norm: float
    tokens_per_s: float  # training tokens per second over the run so far (this session)
    elapsed: float  # seconds of training in this session
    val_loss: float | None = None
    val_perplexity: float | None = None


class TextTrainer:
    """A text model, its data and optimizer, trained step by step. `events()` runs the rest of the run."""

    def __init__(
        self, config: TextTrainConfig, cache_dir=None, tokenizer=None, data: TokenData | None = None,
        device=None, parallel=None, progress=None,
    ):  # fmt: skip
        """`progress(done, total)` reports a download's stories (data=tinystories, first use only)."""
        self.config = config.validate()
        keep_freed_memory()  # each step reuses the last one's pages (autodiff/memory.py: 17% of a step)
        if data is None or tokenizer is None:
            text = load_source(config.data, cache_dir, config.n_stories, progress)
            if tokenizer is None:
                tokenizer = make_tokenizer(config.tokenizer, text)
            data = load_tokens(text, tokenizer, config.context, cache_dir)
        self.tokenizer, self.data = tokenizer, data
        fields_ = dict(d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads, **(config.parts or {}))
        model_config = preset_config(
            config.preset, len(tokenizer), config.context, config.d_ff, seed=config.seed, dtype=config.dtype, **fields_
        )
        self.model = LanguageModel.create(model_config, tokenizer)
        # parameters, AdamW's moments and every feed live on `device`; under torchrun `parallel` (an
        # lm.distributed.DataParallel) splits the batches and averages the gradients over the ranks
        self.device, self.parallel = torch.device(device or "cpu"), parallel
        self.model.params.update({n: p.to(self.device) for n, p in self.model.params.items()})
        if parallel is not None:
            parallel.broadcast_(list(self.model.params.values()))  # every rank starts from rank 0's weights
        self.params = list(self.model.params.values())
        self.optimizer = AdamW(
            config.lr, (config.beta1, config.beta2), 1e-8, config.weight_decay, matrices_only(self.model.params)
        )
        self.step = 0
        self.batches = torch.Generator().manual_seed(config.seed)  # the training windows
        held_out = torch.Generator().manual_seed(config.seed + 1)  # fixed: every validation sees the same
        self.val_batches = [
            get_batch(data.val, config.batch_size, config.context, held_out) for _ in range(config.eval_batches)
        ]
        self.graph = self.model.loss_graph(config.batch_size, config.context, sparse=True)
        self._feed = self.model.param_feed()  # parameters are updated in place: fed once
        self.last_loss = math.nan
        self.last_grad_norm = math.nan

    @classmethod
    def resume(cls, path, cache_dir=None, steps: int | None = None, batch_size: int | None = None, **kwargs):
        """The run saved at `path` (a run folder or checkpoint file), ready to continue exactly;
        `steps` extends (or shortens) the run's total, which the schedule's cosine follows; `batch_size`
        changes the windows per rank (keep batch x ranks when the number of ranks changes)."""
        saved = checkpoint.load(path)
        given = {"steps": steps, "batch_size": batch_size}
        settings = {**saved.train_config, **{k: v for k, v in given.items() if v is not None}}
        try:
            config = TextTrainConfig.from_dict(settings)
        except (TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"the checkpoint's training settings are broken: {err}") from None
        trainer = cls(config, cache_dir, tokenizer=saved.tokenizer, **kwargs)  # kwargs: device, parallel
        if trainer.model.config != saved.model_config:
            raise checkpoint.CheckpointError("the checkpoint's model config does not match its training settings")
        if saved.tokens and saved.tokens != trainer.data.path.stem:  # the text changed: batches would differ
            raise checkpoint.CheckpointError(
                f"the data '{config.data}' is not the text this run was trained on (it changed since): "
                "restore it to resume, or start a new run"
            )
        trainer.load_state(saved.trainer_state())
        return trainer

    def save(self, path) -> object:
        """Write a checkpoint of this run (lm.checkpoint.save); returns its path. Under torchrun only rank 0
        writes (the ranks hold the same state); the others return None."""
        if self.parallel is not None and not self.parallel.is_main:
            return None
        return checkpoint.save(self, path)

    # -- one step ---------------------------------------------------------------------------------
    def _feed_batch(self, x: Tensor, y: Tensor) -> None:
        self._feed.update({k: v.to(self.device) for k, v in self.graph.forward.inputs(x).items()})
        self._feed[self.graph.targets] = y.reshape(-1).to(self.device)

    def _loss_and_grads(self, x: Tensor, y: Tensor, ready=None) -> tuple[Tensor, list[Tensor]]:
        self._feed_batch(x, y)
        loss, *grads = self.graph.evaluator.run(self._feed, ready=ready)
        return loss, grads

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean training loss. Under torchrun
        the last micro-batch's gradients go to the all-reduce as the backward pass computes them."""
        cfg = self.config
        total_loss, grads = 0.0, None
        draw = get_batch if self.parallel is None else self.parallel.batch  # a rank: its share of the global batch
        for m in range(cfg.grad_accum):
            x, y = draw(self.data.train, cfg.batch_size, cfg.context, self.batches)
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
        self.last_grad_norm = clip_grad_norm_(grads, cfg.clip) if cfg.clip else math.nan
        self.optimizer.lr = lr_schedule(self.step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
        self.optimizer.step(self.params, grads)
        self.step += 1
        self.last_loss = total_loss / cfg.grad_accum
        return self.last_loss

    def evaluate(self) -> float:
        """Mean loss over the fixed held-out batches (the forward alone)."""
        ev = self._eval_evaluator()
        losses = []
        for x, y in self.val_batches:
            self._feed_batch(x, y)
            (loss,) = ev.run(self._feed)
            losses.append(float(loss))
        return sum(losses) / len(losses)

    def _eval_evaluator(self):
        if not hasattr(self, "_eval"):
            from autodiff import Evaluator  # noqa: PLC0415

            self._eval = Evaluator([self.graph.loss])
        return self._eval

    # -- the run as events ----------------------------------------------------------------------------
    def events(self, until: int | None = None) -> Iterator[TextEvent]:
        """Train up to step `until` (default: the config's steps), yielding an event per step and one
        per validation (every eval_every steps and at the last step)."""
        cfg = self.config
        until = cfg.steps if until is None else min(until, cfg.steps)
        start, start_step = time.perf_counter(), self.step
        while self.step < until:
            loss = self.train_step()
            elapsed = time.perf_counter() - start
            tokens = (self.step - start_step) * cfg.batch_size * cfg.context * cfg.grad_accum * self.world_size
            event = TextEvent(
                "step", self.step, cfg.steps, loss, self.optimizer.lr, self.last_grad_norm, tokens / elapsed, elapsed
            )
            yield event
            due = (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps
            if due and (self.parallel is None or self.parallel.is_main):  # rank 0 alone validates
                val = self.evaluate()
                yield TextEvent(**{**asdict(event), "kind": "eval", "val_loss": val, "val_perplexity": math.exp(val)})
                start += time.perf_counter() - start - elapsed  # validation time is not training time

    @property
    def world_size(self) -> int:
        """Processes training together (1 without torchrun); a step sees batch_size x world_size windows."""
        return 1 if self.parallel is None else self.parallel.world_size

    # -- state for checkpoints ------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly."""
        return {
            "step": self.step,
            "params": self.model.params,
            "optimizer": self.optimizer.state_dict(),
            "rng": self.batches.get_state(),
        }

    def load_state(self, state: dict) -> None:
        """Continue from `state()`'s values (copied into this trainer's tensors)."""
        for name, value in state["params"].items():
            self.model.params[name].copy_(value)
        opt, to_device = state["optimizer"], lambda xs: None if xs is None else [x.to(self.device) for x in xs]
        self.optimizer.load_state_dict({**opt, "m": to_device(opt["m"]), "v": to_device(opt["v"])})
        self.batches.set_state(state["rng"])
        self.step = int(state["step"])


def unigram_loss(tokens, vocab_size: int, train) -> float:
    """Cross-entropy of a model that ignores context: each token's training frequency (add-one smoothed)
    scored on `tokens`. The baseline a language model must beat to have learned anything from order."""
    counts = torch.bincount(torch.as_tensor(train.astype("int64")), minlength=vocab_size).double() + 1
    logp = torch.log(counts / counts.sum())
    return float(-logp[torch.as_tensor(tokens.astype("int64"))].mean())


__all__ = ["DataError", "TextEvent", "TextTrainConfig", "TextTrainer", "unigram_loss"]
