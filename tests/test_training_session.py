"""Tests of the Train page's logic (playground/training.py): settings checked with clear messages,
training in bounded ticks, stop/resume/reset, divergence stopping itself, the memorization table."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest

from lm.train import memorization
from playground.training import SettingsError, TrainingSession, TrainSettings, make_trainer

SMALL = TrainSettings(d_model=16, d_ff=32, epochs=30)  # the default corpus, a model that trains fast


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_heads": 0}, "at least 1 attention head"),
        ({"n_heads": 3}, "3 heads do not divide d_model = 16"),
        ({"n_heads": 9}, "between 1 and 8"),
        ({"n_layers": 0}, "Layers must be between 1 and 4"),
        ({"d_model": 100_000}, "d_model must be between"),
        ({"epochs": 0}, "Epochs must be between"),
        ({"corpus": "  \n\n "}, "the corpus is empty"),
        ({"corpus": "one two"}, "at least 3"),
        ({"corpus": "a b c\n" * 101}, "at most 100"),
        # padded: 16 lines of up to 64 words are 1,024 words to train on (one long line pads the rest)
        ({"corpus": "a b c\n" * 15 + " ".join(["w"] * 64)}, "padded to the longest .64 words. make 1,024 words"),
        ({"corpus": "\n".join(f"w{i} w{i + 1} w{i + 2} w{i + 3}" for i in range(0, 504, 4))}, "at most 100"),
        ({"corpus": "\n".join(" ".join(f"w{i}{j}" for j in range(10)) for i in range(51))}, "510 distinct words"),
        ({"lr": 0.0}, "Learning rate"),
        ({"lr": math.nan}, "Learning rate"),
        ({"lr": 1e6}, "Learning rate"),
        ({"optimizer": "lbfgs"}, "Optimizer"),
    ],
)
def test_bad_settings_give_a_clear_message(change: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        make_trainer(replace(SMALL, **change))


def test_settings_reach_the_model() -> None:
    trainer = make_trainer(replace(SMALL, n_layers=2, n_heads=4, optimizer="adamw", lr=0.01, seed=3))
    cfg = trainer.model.config
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_ff, cfg.seed) == (2, 4, 16, 32, 3)
    assert trainer.config.optimizer == "adamw" and trainer.config.epochs == 30


def test_a_bad_start_leaves_the_session_as_it_was() -> None:
    session = TrainingSession()
    with pytest.raises(SettingsError):
        session.start(replace(SMALL, n_heads=0))
    assert session.status == "idle" and not session.running


def test_ticks_train_within_the_budget_until_finished() -> None:
    session = TrainingSession()
    session.start(SMALL)
    first = session.advance(budget_s=0.0)  # a zero budget still makes progress: one epoch
    assert len(first) == 1 and session.status == "running"
    while session.running:
        session.advance(budget_s=0.2)
    assert session.status == "finished" and session.epoch == 30
    history = session.history
    assert history.epochs == list(range(1, 31))
    assert history.losses[-1] < history.losses[0] and all(g > 0 for g in history.grad_norms)
    # memorization is scored once per tick, ending with the last epoch
    assert history.mem_epochs[0] == 1 and history.mem_epochs[-1] == 30
    assert len(history.mem_epochs) == len(history.mem_scores)
    assert session.elapsed_s > 0
    assert session.advance() == []  # nothing more to do


def test_stop_pauses_and_start_resumes_the_same_run() -> None:
    session = TrainingSession()
    session.start(SMALL)
    session.advance(budget_s=0.0)
    session.advance(budget_s=0.0)
    session.stop()
    assert session.status == "stopped" and session.advance() == []
    assert session.history.mem_epochs[-1] == 2  # stopping scores the weights as they are
    session.start(SMALL)  # same settings: resume
    session.advance(budget_s=0.0)
    assert session.epoch == 3 and session.history.epochs == [1, 2, 3]
    session.stop()
    session.start(replace(SMALL, seed=1))  # new settings: a new run
    assert session.epoch == 0 and session.history.epochs == []


def test_reset_forgets_the_run() -> None:
    session = TrainingSession()
    session.start(SMALL)
    session.advance(budget_s=0.0)
    session.reset()
    assert session.status == "idle" and session.model is None and session.history.losses == []


def test_default_recipe_memorizes_the_corpus() -> None:
    session = TrainingSession()
    session.start(TrainSettings(epochs=60))
    while session.running:
        session.advance(budget_s=1.0)
    table = session.memorization_table()
    assert len(table) == 10 and all(row[""] == "✅" for row in table)
    assert table[0]["prompt"] == "the red" and table[0]["model generates"] == "the red fox jumps high"
    assert session.first_full_epoch is not None and session.first_full_s is not None


def test_a_diverging_run_stops_itself_and_says_why() -> None:
    session = TrainingSession()
    session.start(replace(SMALL, optimizer="adamw", lr=10.0, epochs=200))
    while session.running:
        session.advance(budget_s=1.0)
    assert session.status == "diverged"
    assert "diverged" in session.message and "lower the learning rate" in session.message
    assert session.epoch < 200
    session.start(replace(SMALL, optimizer="adamw", lr=10.0, epochs=200))  # Start again: a fresh run
    assert session.epoch == 0 and session.message is None


def test_a_nan_loss_stops_the_run_with_lms_reason() -> None:
    session = TrainingSession()
    session.start(SMALL)
    session.model.params["w_out"].fill_(math.nan)  # what a huge learning rate ends in
    session.advance()
    assert session.status == "diverged" and "the loss became nan" in session.message
    assert session.history.losses == []  # a NaN is not drawn


def test_memorization_is_scored_at_the_first_and_last_epochs_and_between() -> None:
    session = TrainingSession()
    session.start(replace(SMALL, epochs=40))
    while session.running:
        session.advance(budget_s=0.05)
    epochs = session.history.mem_epochs
    assert epochs[0] == 1 and epochs[-1] == 40 and epochs == sorted(set(epochs))
    assert len(epochs) == len(session.history.mem_scores) >= 3
    assert len(session.memorization_table()) == 10


def test_max_epochs_paces_a_tick() -> None:
    session = TrainingSession()
    session.start(SMALL)
    assert len(session.advance(budget_s=60.0, max_epochs=3)) == 3 and session.running


def test_the_table_decodes_the_missed_sentences_like_lm() -> None:
    session = TrainingSession()
    session.start(replace(SMALL, epochs=200, optimizer="adamw", lr=0.01))
    for _ in range(10):  # 9 of 10 by now
        session.advance(budget_s=0.0)
    rows = session.memorization_table()
    assert 0 < sum(r[""] == "✅" for r in rows) < 10  # both kinds of rows
    lm_rows = memorization(session.model, session.trainer.sentences)
    assert [(r[""] == "✅", r["prompt"], r["model generates"]) for r in rows] == [
        (r.correct, r.prompt, r.generated) for r in lm_rows
    ]


def test_the_table_decodes_a_bounded_number_of_misses(monkeypatch) -> None:
    monkeypatch.setattr("playground.training.MAX_TABLE_DECODES", 2)
    session = TrainingSession()
    session.start(SMALL)
    session.advance(budget_s=0.0)  # one epoch: every sentence is missed
    generated = [row["model generates"] for row in session.memorization_table()]
    assert all(not g.startswith("(not decoded") for g in generated[:2])
    assert all(g.startswith("(not decoded") for g in generated[2:])


def test_the_biggest_corpus_and_model_allowed_keep_a_tick_short() -> None:
    """The reviewer's case (100 lines of 64 distinct words) took 6 s and 3.4 GB a tick: now refused,
    and the largest allowed run (1,000 word slots, 500 distinct words, the biggest model) stays quick."""
    big_model = {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 512}
    words = [f"w{i}" for i in range(6400)]
    hostile = "\n".join(" ".join(words[i * 64 : (i + 1) * 64]) for i in range(100))
    with pytest.raises(SettingsError, match="use fewer or shorter sentences"):
        make_trainer(TrainSettings(corpus=hostile, **big_model))
    largest = "\n".join(" ".join(words[(i * 10 + j) % 500] for j in range(10)) for i in range(100))
    session = TrainingSession()
    session.start(TrainSettings(corpus=largest, epochs=3, **big_model))
    start = time.process_time()  # CPU time of all threads: up to twice the wall time on 2 cores
    session.advance(budget_s=0.25)
    assert session.epoch >= 1 and time.process_time() - start < 3.0
