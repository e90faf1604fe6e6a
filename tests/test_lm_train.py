"""Training: the default recipe memorizes 10/10, runs are deterministic, padding is masked out of the
loss, divergence stops with a reason, and the event iterator can be paused and resumed."""

import math

import pytest
import torch

from lm.corpus import DEFAULT_CORPUS
from lm.model import LanguageModel
from lm.tokenizer import Tokenizer
from lm.train import TrainConfig, Trainer, default_model_config, get_lr, make_batch, memorization, reproduced


def test_default_recipe_memorizes_all_ten_sentences():
    # The classic recipe (SGD, lr 0.05, seed 0); scored every 10 epochs, it is 10/10 long before
    # epoch 500, so the test stops at the first perfect score (the CLI run of all 500 ends at 10/10 too).
    trainer = Trainer(train_config=TrainConfig(eval_every=10))
    event = _first_perfect(trainer)
    assert event is not None and event.memorization == 10 and event.epoch <= 500
    assert trainer.history[-1].loss < trainer.history[0].loss
    rows = memorization(trainer.model, trainer.sentences)
    assert all(r.correct for r in rows) and rows[0].prompt == "the red"


def _first_perfect(trainer):
    for event in trainer.events():
        if event.memorization == event.n_sentences:
            return event
    return None


def test_same_seed_same_run_and_resumable_iterator():
    a = Trainer(train_config=TrainConfig(epochs=6, eval_every=3))
    b = Trainer(train_config=TrainConfig(epochs=6, eval_every=3))
    events = a.events()
    first = [next(events) for _ in range(2)]  # a UI takes a few events per refresh...
    rest = list(a.events())  # ...and later resumes
    assert [e.epoch for e in first + rest] == [1, 2, 3, 4, 5, 6]
    assert [e.loss for e in first + rest] == [e.loss for e in b.events()]
    assert rest[-1].done and rest[-1].stop_reason == "finished" and rest[-1].memorization is not None
    assert rest[0].memorization is not None and first[0].memorization is None
    assert all(e.grad_norm > 0 and e.lr == 0.05 and e.n_sentences == 10 for e in rest)
    assert list(a.events()) == []
    c = Trainer(train_config=TrainConfig(epochs=2, seed=1))
    assert next(c.events()).loss != first[0].loss


def test_padding_is_masked_out_of_the_loss():
    # Sentences of different lengths in one padded batch: the loss is the mean over real targets,
    # i.e. the per-sentence losses (each computed alone, without padding) weighted by their targets.
    corpus = ["a b c d e f", "g h i", "a c e g"]
    trainer = Trainer(corpus, {"d_model": 8, "d_ff": 8}, TrainConfig(epochs=1))
    model = trainer.model
    batch = trainer.batch
    assert batch.ids.shape == (3, 5) and batch.n_targets == 5 + 2 + 3
    assert batch.targets[1].tolist() == [8, 9, 0, 0, 0] and batch.weights[5 + 2 :][:3].sum() == 0
    batched = trainer.step().loss
    fresh = LanguageModel.create(model.config, model.tokenizer, seed=0)
    total = 0.0
    for sentence in corpus:
        ids = torch.tensor([model.tokenizer.encode(sentence)])
        logp = torch.log_softmax(fresh.forward(ids[:, :-1])["logits"][0], -1)  # (T, V)
        total += -logp.gather(1, ids[0, 1:, None]).sum().item()
    assert batched == pytest.approx(total / batch.n_targets, abs=1e-12)


def test_divergence_stops_with_a_reason():
    trainer = Trainer(train_config=TrainConfig(lr=1e6, epochs=50))
    events = list(trainer.events())
    assert (
        events[-1].done and "diverged" in events[-1].stop_reason and "lower the learning rate" in events[-1].stop_reason
    )
    assert len(events) < 50
    trainer = Trainer(train_config=TrainConfig(epochs=5))
    trainer.model.params["w_out"][0, 0] = math.nan  # a non-finite loss stops at once, without a step
    event = next(trainer.events())
    assert event.done and not math.isfinite(event.loss) and "diverged" in event.stop_reason
    assert list(trainer.events()) == []


def test_adamw_and_cosine_schedule_train():
    trainer = Trainer(train_config=TrainConfig(optimizer="adamw", lr=3e-3, epochs=30, schedule="cosine"))
    events = list(trainer.events())
    assert events[-1].loss < events[0].loss / 2
    assert events[0].lr == 3e-3 and events[-1].lr == pytest.approx(3e-4)
    cfg = TrainConfig(lr=1.0, epochs=3, schedule="cosine")
    assert [get_lr(e, cfg) for e in (1, 2, 3)] == pytest.approx([1.0, 0.55, 0.1])


def test_bad_configs_are_explained():
    with pytest.raises(ValueError, match="divide d_model"):
        Trainer(None, {"n_heads": 3})
    with pytest.raises(ValueError, match="at least 1"):
        Trainer(None, {"n_heads": 0})
    with pytest.raises(ValueError, match="at least 4"):
        Trainer(None, {"context": 2})
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(None, None, TrainConfig(optimizer="adam"))
    with pytest.raises(ValueError, match="lr"):
        Trainer(None, None, TrainConfig(lr=-1))


def test_make_batch_targets_are_one_hot_over_real_targets():
    tok = Tokenizer.from_corpus(["a b c", "d e"])
    batch = make_batch(tok, ["a b c", "d e"])
    assert batch.ids.tolist() == [[1, 2], [4, 0]] and batch.targets.tolist() == [[2, 3], [5, 0]]
    assert batch.weights.sum().item() == pytest.approx(1.0) and batch.weights[3].sum() == 0


@pytest.mark.parametrize("epochs", [0, 8, 25, 60])
def test_one_pass_score_equals_step_by_step_greedy_decoding(epochs: int):
    """`reproduced` (teacher forcing, one forward) agrees with greedy decoding (`memorization`), row by
    row, at every stage of training, also on sentences of different lengths."""
    corpus = [*DEFAULT_CORPUS[:6], "the red fox jumps over the wall", "a b c"]
    overrides = {"d_model": 32, "d_ff": 64}
    trainer = Trainer(corpus, default_model_config(corpus, overrides), TrainConfig(optimizer="adamw", lr=0.01))
    for _ in range(epochs):
        trainer.step()
    expected = [row.correct for row in memorization(trainer.model, trainer.sentences)]
    assert reproduced(trainer.model, trainer.batch) == expected
