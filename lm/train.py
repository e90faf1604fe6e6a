"""Training as an iterator of progress events, so a UI can draw it live and a CLI can show a bar.

`Trainer.events()` yields one `TrainEvent` per full-batch epoch and can be stopped at any event and
resumed later; the same seed gives the same run. The loss graph is built once and its Evaluator is
reused every epoch. `memorization` scores how many corpus sentences greedy decoding reproduces, end
included: every sentence is followed by `<eos>`, so a model learns where a sentence stops.
A run that diverges stops itself with the reason (see `divergence`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from lm.corpus import DEFAULT_CORPUS, parse_corpus
from lm.model import LanguageModel, ModelConfig
from lm.optim import make_optimizer
from lm.tokenizer import Tokenizer

Tensor = torch.Tensor

DIVERGED_FACTOR = 10.0  # a loss above its first and this many times its best so far (or not finite) diverged


@dataclass
class TrainConfig:
    """How to train. Defaults are the classic recipe: SGD, lr 0.05, 500 full-batch epochs."""

    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.05  # learning rate (peak learning rate with a schedule)
    epochs: int = 500  # full-batch epochs (one step per epoch)
    seed: int = 0  # seed of the model initialization: the same seed gives the same run
    eval_every: int = 50  # epochs between memorization scores (0: only after the last epoch)
    schedule: str = "constant"  # "constant" or "cosine" (decays to 10% of lr by the last epoch)
    weight_decay: float = 0.01  # AdamW only: decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only: moment decay rates
    eps: float = 1e-8  # AdamW only: added to sqrt(v)
    clip_grad_norm: float | None = None  # rescale gradients whose global norm is above this

    def validate(self) -> TrainConfig:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be 0 or a positive integer, got {self.eval_every!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        betas = self.betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be 0 or a positive number, got {self.weight_decay!r}")
        if self.optimizer == "adamw" and self.lr * self.weight_decay >= 1:  # p <- p (1 - lr wd) would flip signs
            raise ValueError(f"weight_decay x lr must be below 1, got {self.weight_decay!r} x {self.lr!r}")
        if not (_finite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a positive number, got {self.eps!r}")
        if self.clip_grad_norm is not None and not (_finite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}")
        return self


def _finite(value: object) -> bool:
    """A real number that is not NaN or infinite (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def get_lr(epoch: int, config: TrainConfig) -> float:
    """The learning rate of `epoch` (1-based): constant, or cosine from lr down to lr / 10."""
    if config.schedule == "constant" or config.epochs == 1:
        return config.lr
    progress = (epoch - 1) / (config.epochs - 1)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainEvent:
    """Progress after one epoch."""

    epoch: int  # epochs done, 1-based
    epochs: int  # epochs planned
    loss: float  # the loss before this epoch's update
    lr: float
    grad_norm: float  # global L2 norm of all gradients (before clipping)
    elapsed_s: float  # training time so far (not counting time spent between events)
    memorization: int | None  # sentences reproduced, on eval epochs; else None
    n_sentences: int
    done: bool = False
    stop_reason: str | None = None  # "finished" or why training stopped early


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


@dataclass
class Batch:
    """The whole corpus as one padded batch."""

    ids: Tensor  # (B, T) inputs: each sentence's words, padded with 0
    targets: Tensor  # (B, T) next tokens (the last word's is <eos>), 0 where padded
    weights: Tensor  # (B * T, V) one-hot of each target / number of real targets; zero rows at pads
    n_targets: int


def encode_sentence(tokenizer: Tokenizer, sentence: str) -> list[int]:
    """A sentence's ids, ended by <eos> when the vocabulary has one."""
    ids = tokenizer.encode(sentence)
    return ids + [tokenizer.eos_id] if tokenizer.eos_id is not None else ids


def longest_sentence(sentences: Sequence[str]) -> int:
    """Words of the longest sentence: with <eos> after it, the positions a model must read."""
    return max(len(s.split()) for s in sentences)


def make_batch(tokenizer: Tokenizer, sentences: Sequence[str], dtype: torch.dtype = torch.float64) -> Batch:
    """Pad every sentence (and its <eos>) to the longest and build the masked targets of the loss."""
    encoded = [encode_sentence(tokenizer, s) for s in sentences]
    T = max(len(e) for e in encoded) - 1
    ids = torch.zeros(len(encoded), T, dtype=torch.long)  # (B, T)
    targets = torch.zeros(len(encoded), T, dtype=torch.long)  # (B, T)
    for row, e in enumerate(encoded):
        ids[row, : len(e) - 1] = torch.tensor(e[:-1])
        targets[row, : len(e) - 1] = torch.tensor(e[1:])
    real = (targets != Tokenizer.PAD_ID).reshape(-1)  # (N,) padded targets are masked out
    weights = torch.zeros(real.numel(), len(tokenizer), dtype=dtype)  # (N, V)
    weights[real, targets.reshape(-1)[real]] = 1.0 / int(real.sum())
    return Batch(ids, targets, weights, int(real.sum()))


def default_model_config(sentences: Sequence[str], overrides: dict | None = None) -> ModelConfig:
    """A ModelConfig fitted to the corpus (vocab size; context = the longest sentence's words, all of
    which are read to predict its <eos>) plus overrides."""
    tokenizer = Tokenizer.from_corpus(sentences)
    values = {"vocab_size": len(tokenizer), "context": longest_sentence(sentences), **(overrides or {})}
    return ModelConfig.from_dict(values)


class Trainer:
    """Trains a fresh model on a corpus; `events()` yields a TrainEvent per epoch.

    `model_config` is a ModelConfig, or a dict of overrides over `default_model_config`, or None."""

    def __init__(
        self,
        corpus: Sequence[str] | str | None = None,
        model_config: ModelConfig | dict | None = None,
        train_config: TrainConfig | None = None,
    ):
        if corpus is None:
            corpus = DEFAULT_CORPUS
        self.sentences = parse_corpus(corpus if isinstance(corpus, str) else "\n".join(corpus))
        self.tokenizer = Tokenizer.from_corpus(self.sentences)
        if not isinstance(model_config, ModelConfig):
            model_config = default_model_config(self.sentences, model_config)
        self.config = (train_config or TrainConfig()).validate()
        longest = longest_sentence(self.sentences)
        if model_config.vocab_size != len(self.tokenizer):
            raise ValueError(f"vocab_size is {model_config.vocab_size} but the corpus has {len(self.tokenizer)} words")
        if model_config.context < longest:
            raise ValueError(
                f"context {model_config.context} is too short for the longest sentence ({longest} words, each read "
                f"to predict the next and the last to predict the end): use a context of at least {longest}"
            )
        self.model = LanguageModel.create(model_config, self.tokenizer, seed=self.config.seed)
        self.batch = make_batch(self.tokenizer, self.sentences, self.model.config.torch_dtype)
        self.optimizer = make_optimizer(
            self.config.optimizer, self.config.lr, self.config.weight_decay, self.config.betas, self.config.eps
        )
        B, T = self.batch.ids.shape
        self.graph = self.model.loss_graph(B, T)
        # The feed is built once: parameters are updated in place, so the same tensors stay fed.
        self._feed = self.model.param_feed()
        fwd = self.graph.forward
        self._feed.update({
            fwd.ids: self.batch.ids.reshape(-1),  # (N,)
            fwd.pos: torch.arange(T).repeat(B),  # (N,)
            fwd.mask: fwd.mask_for(B, T, self.model.config.torch_dtype),  # (N, N) packed or (T, T)
            self.graph.targets: -self.batch.weights,  # (N, V) minus: see LossGraph
        })  # fmt: skip
        self._params = list(self.model.params.values())
        self.epoch = 0
        self._first_loss = math.inf
        self.best_loss = math.inf
        self.elapsed_s = 0.0
        self.done = False
        self.history: list[TrainEvent] = []

    def step(self) -> TrainEvent:
        """One epoch: loss and gradients from the graph, one optimizer step, one event."""
        if self.done:
            raise StopIteration("training is done")
        start = time.perf_counter()
        self.epoch += 1
        cfg = self.config
        lr = get_lr(self.epoch, cfg)
        loss, *grads = self.graph.evaluator.run(self._feed)
        loss = float(loss)
        grad_norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        stop_reason, memorization = None, None
        if self.epoch == 1:
            self._first_loss = loss
        why = divergence(loss, grad_norm, self._first_loss, self.best_loss)
        self.best_loss = min(self.best_loss, loss)
        if why is None and self.epoch == cfg.epochs and self.epoch > 1 and loss >= self._first_loss:
            why = f"the run ended at loss {loss:.4g}, no lower than its first {self._first_loss:.4g}"
        if why is not None:
            stop_reason = f"diverged: {why} (epoch {self.epoch}); lower the learning rate"
        else:
            if cfg.clip_grad_norm is not None and grad_norm > cfg.clip_grad_norm:
                torch._foreach_mul_(grads, cfg.clip_grad_norm / grad_norm)
            self.optimizer.lr = lr
            self.optimizer.step(self._params, grads)
            if self.epoch == cfg.epochs:
                stop_reason = "finished"
            if self.epoch == cfg.epochs or (cfg.eval_every and self.epoch % cfg.eval_every == 0):
                memorization = sum(reproduced(self.model, self.batch))
        self.done = stop_reason is not None
        self.elapsed_s += time.perf_counter() - start
        event = TrainEvent(
            self.epoch, cfg.epochs, loss, lr, grad_norm, self.elapsed_s, memorization, len(self.sentences),
            self.done, stop_reason,
        )  # fmt: skip
        self.history.append(event)
        return event

    def events(self) -> Iterator[TrainEvent]:
        """Events until training is done; stop and call again to resume where it stopped."""
        while not self.done:
            yield self.step()


@dataclass
class MemorizationRow:
    sentence: str
    prompt: str  # the first two words
    generated: str  # prompt + greedy continuation, as long as the sentence at most
    correct: bool


def memorization(model: LanguageModel, sentences: Sequence[str], prompt_words: int = 2) -> list[MemorizationRow]:
    """Greedy-decode each sentence from its first words (all sentences in one batch) and compare, the
    end included: a sentence is reproduced when its words come back and then <eos>. Decoding goes one
    token past each sentence's end, so a model that runs on shows the word it adds."""
    tok = model.tokenizer
    encoded = [encode_sentence(tok, s) for s in sentences]  # words (+ <eos>)
    longest = max(len(e) for e in encoded)
    seqs = torch.tensor([e[:prompt_words] for e in encoded])  # (B, prompt_words)
    for _ in range(longest - prompt_words):
        if seqs.shape[1] > model.config.context:
            break
        logits = model.forward(seqs)["logits"][:, -1]  # (B, V) at the last position
        seqs = torch.cat([seqs, logits.argmax(-1, keepdim=True)], 1)  # (B, t + 1)
    rows = []
    for sentence, e, seq in zip(sentences, encoded, seqs.tolist()):
        generated = seq[: len(e)]
        ends = [i for i, t in enumerate(generated) if t in (Tokenizer.PAD_ID, tok.eos_id)]
        if ends:  # decoding stops at the end (or <pad>)
            generated = generated[: ends[0] + 1]
        rows.append(MemorizationRow(sentence, tok.decode(e[:prompt_words]), tok.decode(generated), generated == e))
    return rows


def reproduced(model: LanguageModel, batch: Batch, prompt_words: int = 2) -> list[bool]:
    """Which sentences greedy decoding reproduces from their first words, in ONE forward pass.

    Greedy decoding reproduces a sentence exactly when, fed the sentence's own words, the model's argmax
    at every position after the prompt is the next word: then each greedy step sees the true prefix, and
    at the first miss it does not. So this equals `memorization` (a test checks it), which decodes step
    by step: one forward over the training batch instead of one per generated word."""
    logits = model.forward(batch.ids)["logits"]  # (B, T, V); position t predicts word t + 1
    predicted = logits.argmax(-1)  # (B, T)
    T = batch.targets.shape[1]
    checked = (batch.targets != Tokenizer.PAD_ID) & (torch.arange(T) >= prompt_words - 1)  # (B, T)
    return ((predicted == batch.targets) | ~checked).all(1).tolist()


def memorization_score(model: LanguageModel, sentences: Sequence[str]) -> int:
    """How many sentences greedy decoding reproduces exactly from their first two words."""
    return sum(reproduced(model, make_batch(model.tokenizer, sentences, model.config.torch_dtype)))


__all__ = [
    "Batch", "MemorizationRow", "TrainConfig", "TrainEvent", "Trainer", "default_model_config", "divergence",
    "encode_sentence", "get_lr", "longest_sentence", "make_batch", "memorization", "memorization_score", "reproduced",
]  # fmt: skip
