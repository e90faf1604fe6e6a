"""The one trainer (lm.train.Trainer) on both batch sources, sentences (the classic recipe) and windows.

Bit for bit against the released trainers' curves (tests/lm/fixtures/released_curves.json); events on
schedule (steps, evaluations, learning rate, validation, memorization); runs deterministic and the event
iterator resumable; save -> load -> resume equal to an uninterrupted run for both sources (also through an
io.BytesIO); padding out of the loss and every sentence ending with <eos>; the divergence stop; gradient
accumulation equal to one big batch; the one-pass memorization score equal to greedy decoding; bad
settings named before any work.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from lm import checkpoint, data
from lm.data import DEFAULT_CORPUS, Sentences
from lm.generate import generate
from lm.model import LanguageModel
from lm.nn import IGNORE_INDEX
from lm.optim import lr_schedule
from lm.tokenizers import WordTokenizer
from lm.train import TrainConfig, Trainer, divergence, memorized, memory_estimate, samples, validation_loss

FIXTURES = Path(__file__).parent / "fixtures"
RELEASED = json.loads((FIXTURES / "released_curves.json").read_text())
TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}." for i in range(300))


@pytest.fixture
def corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def classic(**overrides) -> TrainConfig:
    return TrainConfig.recipe("classic", **overrides)


def text_config(corpus: str, **overrides) -> TrainConfig:
    """A tiny windows run: character tokens of `corpus`, AdamW, warmup and cosine, float64."""
    fields = dict(data=corpus, n_layers=1, n_heads=2, d_model=16, context=8, batch_size=4, steps=20, warmup=2,
                  eval_every=5, eval_batches=2, dtype="float64", seed=3)  # fmt: skip
    return TrainConfig(**{**fields, **overrides})


def steps_of(events) -> list:
    return [e for e in events if e.kind == "step"]


def evals_of(events) -> list:
    return [e for e in events if e.kind == "eval"]


# ------------------------------------------------------------------- bit for bit against the release


def test_the_short_text_run_equals_the_released_trainer_bit_for_bit(tmp_path: Path):
    released = RELEASED["text"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the recording's (this 2-core machine's default): a matmul's sums follow the threads
    try:
        trainer = Trainer(TrainConfig(**released["config"]), cache_dir=tmp_path)  # its settings; the rest: defaults
        events = list(trainer.events())
    finally:
        torch.set_num_threads(threads)
    assert [e.loss.hex() for e in steps_of(events)] == released["losses"]
    assert [e.metrics["val_loss"].hex() for e in evals_of(events)] == released["val_losses"]


def test_the_classic_recipe_equals_the_released_trainer():
    """The same first 10/10 epoch (25), the same memorized count at each of the first 60 epochs and at every
    50th, and the same loss curve: within 1e-12, not bit for bit, because the one loss form is now the fused
    sparse cross-entropy (softmax - one-hot over the count) where the released trainer fed a dense one-hot
    weight matrix; the two round differently, by at most ~1.3e-15 over the 500 epochs."""
    released = RELEASED["classic"]
    events = list(Trainer(classic(eval_every=1)).events())  # scored every epoch; training is unchanged by it
    steps, evals = steps_of(events), evals_of(events)
    assert len(steps) == 500 and events[-1].stop_reason == "finished"
    losses = [float.fromhex(h) for h in released["losses"]]
    assert max(abs(e.loss - r) for e, r in zip(steps, losses)) < 1e-12
    norms = [float.fromhex(h) for h in released["grad_norms"]]
    assert max(abs(e.grad_norm - r) for e, r in zip(steps, norms)) < 1e-12
    counts = {e.step: e.metrics["memorized"] for e in evals}
    assert [counts[epoch] for epoch in range(1, 61)] == released["memorized_each_epoch"]
    assert min(epoch for epoch, n in counts.items() if n == 10) == released["first_memorized_10"] == 25
    assert {str(epoch): counts[epoch] for epoch in range(50, 501, 50)} == released["memorized"]


# ------------------------------------------------------------------------------ events and schedule


def test_classic_runs_are_deterministic_and_the_iterator_resumable():
    a = Trainer(classic(steps=6, eval_every=3))
    b = Trainer(classic(steps=6, eval_every=3))
    events = a.events()
    first = [next(events) for _ in range(2)]  # a UI takes a few events per refresh...
    rest = list(a.events())  # ...and later resumes
    steps = steps_of(first + rest)
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6] and [e.step for e in evals_of(rest)] == [3, 6]
    assert [e.loss for e in steps] == [e.loss for e in steps_of(b.events())]
    assert rest[-1].kind == "eval" and rest[-1].done and rest[-1].stop_reason == "finished"
    assert all(e.metrics == {} and not e.done for e in steps)
    assert all(e.metrics["n_sentences"] == 10 and 0 <= e.metrics["memorized"] <= 10 for e in evals_of(rest))
    assert all(e.grad_norm > 0 and e.lr == 0.05 and e.total == 6 for e in steps)
    assert list(a.events()) == []
    with pytest.raises(RuntimeError, match="the run is over"):
        a.train_step()
    c = Trainer(classic(steps=2, seed=1))
    assert next(c.events()).loss != steps[0].loss


def test_the_classic_recipe_memorizes_all_ten_sentences():
    trainer = Trainer(classic(eval_every=5))
    losses, event = [], None
    for event in trainer.events():
        losses.append(event.loss)
        if event.kind == "eval" and event.metrics["memorized"] == event.metrics["n_sentences"]:
            break
    assert event.metrics["memorized"] == 10 and event.step <= 500 and losses[-1] < losses[0]
    rows = data.memorization(trainer.model, trainer.source.sentences)
    assert all(r.correct for r in rows) and rows[0].prompt == "the red" and rows[0].generated == DEFAULT_CORPUS[0]


def test_text_events_report_progress_and_validation(corpus: str, tmp_path: Path):
    trainer = Trainer(text_config(corpus), cache_dir=tmp_path)
    events = list(trainer.events())
    steps, evals = steps_of(events), evals_of(events)
    assert [e.step for e in steps] == list(range(1, 21)) and [e.step for e in evals] == [5, 10, 15, 20]
    assert steps[0].lr == pytest.approx(1e-3 / 3) and steps[2].lr == pytest.approx(1e-3)  # warmup, then peak
    assert steps[-1].lr == lr_schedule(19, 1e-3, 1e-4, 2, 20) > 1e-4  # just above the floor it reaches at 20
    assert all(e.tokens_per_s > 0 and math.isfinite(e.loss) and e.grad_norm > 0 for e in steps)
    last = evals[-1].metrics
    assert set(last) == {"val_loss", "val_perplexity"} and last["val_perplexity"] == pytest.approx(
        math.exp(last["val_loss"])
    )
    assert last["val_loss"] < evals[0].metrics["val_loss"]  # it learns
    assert trainer.evaluate() == last["val_loss"]  # fixed held-out batches
    assert evals[-1].done and evals[-1].stop_reason == "finished"


def test_adamw_and_the_cosine_schedule_train_the_sentences():
    trainer = Trainer(classic(optimizer="adamw", lr=3e-3, min_lr=3e-4, steps=30, schedule="cosine"))
    events = steps_of(trainer.events())
    assert events[-1].loss < events[0].loss / 2
    assert events[0].lr == 3e-3 and events[-1].lr == pytest.approx(lr_schedule(29, 3e-3, 3e-4, 0, 30))
    assert Trainer(classic(lr=1.0, min_lr=0.1, steps=3, schedule="cosine")).lr_at(1) == pytest.approx(0.775)
    assert {Trainer(classic()).lr_at(s) for s in (0, 250, 499)} == {0.05}  # the recipe's constant schedule


def test_evaluations_are_hooks(corpus: str, tmp_path: Path):
    """Any callable taking the trainer; the built-in ones work on either source where they apply."""
    seen = []

    def custom(trainer: Trainer) -> dict:
        seen.append(trainer.step)
        return {"step_seen": trainer.step}

    hooks = [validation_loss, samples("line", max_new_tokens=5), custom]
    trainer = Trainer(text_config(corpus, steps=4, eval_every=2), cache_dir=tmp_path, evaluations=hooks)
    evals = evals_of(trainer.events())
    assert seen == [2, 4] and [e.metrics["step_seen"] for e in evals] == [2, 4]
    assert evals[-1].metrics["sample"].startswith("line") and "val_loss" in evals[-1].metrics
    sentences = Trainer(classic(steps=2, eval_every=1), evaluations=[memorized, custom])
    assert [e.metrics["n_sentences"] for e in evals_of(sentences.events())] == [10, 10]
    with pytest.raises(ValueError, match="no held-out batches"):
        validation_loss(sentences)


# ------------------------------------------------------------------------------ save, load, resume


def run_and_resume(config: TrainConfig, tmp_path: Path, stop: int, dest, **kwargs):
    """(uninterrupted trainer and its events, resumed trainer and its events after `stop`)."""
    whole = Trainer(config, **kwargs)
    whole_events = list(whole.events())
    first = Trainer(config, **kwargs)
    list(first.events(until=stop))
    assert first.step == stop and not first.done
    first.save(dest)
    if isinstance(dest, io.BytesIO):
        dest.seek(0)
    resumed = Trainer.resume(dest, **kwargs)
    assert resumed.step == stop
    return whole, whole_events, resumed, list(resumed.events())


def assert_same_run(whole, whole_events, resumed, resumed_events, stop: int) -> None:
    """The resumed events equal the uninterrupted run's after `stop`, and so do the final parameters and
    the optimizer state: bit for bit."""
    after = [e for e in whole_events if e.step > stop]
    strip = lambda e: (e.kind, e.step, e.loss, e.lr, e.grad_norm, e.metrics, e.done, e.stop_reason)  # noqa: E731
    assert [strip(e) for e in resumed_events] == [strip(e) for e in after]
    for name, p in whole.model.params.items():
        assert torch.equal(resumed.model.params[name], p), name
    state, mine = whole.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert state.keys() == mine.keys() and state.get("steps") == mine.get("steps")
    for kind in ("m", "v"):
        assert all(torch.equal(mine[kind][n], t) for n, t in state.get(kind, {}).items())
    assert torch.equal(resumed.batches.get_state(), whole.batches.get_state())


SOURCES = {
    "sentences-sgd": lambda corpus: classic(steps=12, eval_every=4),  # the classic recipe
    "sentences-adamw": lambda corpus: classic(
        steps=12, eval_every=4, optimizer="adamw", lr=0.01, min_lr=0.001, schedule="cosine", warmup=2, clip=1.0
    ),
    "windows": lambda corpus: text_config(corpus, steps=12, eval_every=4, grad_accum=2),
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_save_load_resume_equals_an_uninterrupted_run(source: str, corpus: str, tmp_path: Path):
    run = tmp_path / "runs" / "run"  # a run folder (created), its file checkpoint.safetensors
    kwargs = {} if source.startswith("sentences") else {"cache_dir": tmp_path / "cache"}
    results = run_and_resume(SOURCES[source](corpus), tmp_path, 5, run, **kwargs)
    assert (run / checkpoint.FILE_NAME).is_file()
    assert_same_run(*results, stop=5)


def test_a_checkpoint_written_to_a_binary_file_object_loads_and_resumes(corpus: str, tmp_path: Path):
    buffer = io.BytesIO()
    kwargs = {"cache_dir": tmp_path / "cache"}
    whole, whole_events, resumed, resumed_events = run_and_resume(
        SOURCES["windows"](corpus), tmp_path, 7, buffer, **kwargs
    )
    assert_same_run(whole, whole_events, resumed, resumed_events, stop=7)
    saved = checkpoint.load(io.BytesIO(buffer.getvalue()))
    assert saved.iteration == 7 and saved.train_config["data"] == corpus and saved.data_id
    assert saved.model.config == whole.model.config and saved.model.tokenizer.encode("line") == whole.tokenizer.encode(
        "line"
    )
    assert set(saved.optimizer_state["m"]) == set(whole.model.params)


def test_resume_extends_the_run_and_refuses_changed_data_or_a_weights_file(tmp_path: Path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(DEFAULT_CORPUS[:4]))
    first = Trainer(classic(data=f"sentences:{sentences}", steps=4))
    list(first.events())
    first.save(tmp_path / "run")
    longer = Trainer.resume(tmp_path / "run", steps=6)  # the constant schedule: as if it had asked for 6
    assert longer.step == 4 and not longer.done and [e.step for e in steps_of(longer.events())] == [5, 6]
    whole = Trainer(classic(data=f"sentences:{sentences}", steps=6))
    list(whole.events())
    assert all(torch.equal(longer.model.params[n], p) for n, p in whole.model.params.items())

    sentences.write_text("\n".join(DEFAULT_CORPUS[:4][::-1]))  # the data changed: its batches would differ
    with pytest.raises(checkpoint.CheckpointError, match="not the text this run was trained on"):
        Trainer.resume(tmp_path / "run")
    sentences.write_text("\n".join(DEFAULT_CORPUS[4:8]))  # words the run's tokenizer never saw: the same message
    with pytest.raises(checkpoint.CheckpointError, match="not the text this run was trained on .*'green'"):
        Trainer.resume(tmp_path / "run")
    checkpoint.save(tmp_path / "weights.safetensors", first.model)  # a model alone: no run to continue
    with pytest.raises(checkpoint.CheckpointError, match="no training run"):
        Trainer.resume(tmp_path / "weights.safetensors")


def test_resume_refuses_a_changed_text(corpus: str, tmp_path: Path):
    first = Trainer(text_config(corpus, steps=4), cache_dir=tmp_path / "cache")
    list(first.events(until=2))
    first.save(tmp_path / "run")
    Path(corpus).write_text(TEXT.replace("quick", "quack"))  # the same characters, another text
    with pytest.raises(checkpoint.CheckpointError, match="not the text this run was trained on"):
        Trainer.resume(tmp_path / "run", cache_dir=tmp_path / "cache")
    Path(corpus).write_text(TEXT.upper())  # characters the run's tokenizer never saw
    with pytest.raises(checkpoint.CheckpointError, match="not the text this run was trained on"):
        Trainer.resume(tmp_path / "run", cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------------------ the sentences source


def test_every_sentence_ends_with_eos_and_padding_is_ignored():
    tok = WordTokenizer.from_sentences(["a b c", "d e"])  # <pad> 0, <eos> 1, a 2, b 3, c 4, d 5, e 6
    source = Sentences(["a b c", "d e"], tok)
    assert source.ids.tolist() == [[2, 3, 4], [5, 6, 0]]
    assert source.targets.tolist() == [[3, 4, 1], [6, 1, IGNORE_INDEX]]  # each sentence's last word -> <eos>
    assert source.context == source.min_context == 3 and source.batch_shape(99, 99) == (2, 3)
    assert source.validation(4, 3, 2, 0) == [] and source.data_id.startswith("sentences-")


def test_padding_is_out_of_the_loss():
    """Sentences of different lengths in one padded batch: the loss is the mean over real targets, i.e.
    the per-sentence losses (each computed alone, without padding) weighted by their targets."""
    corpus = ["a b c d e f", "g h i", "a c e g"]
    trainer = Trainer(classic(d_model=8, d_ff=8, steps=1), source=Sentences(corpus))
    source, tok = trainer.source, trainer.tokenizer
    assert source.ids.shape == (3, 6) and int((source.targets != IGNORE_INDEX).sum()) == 6 + 3 + 4
    assert source.targets[1].tolist() == [*tok.encode("h i"), tok.end_id, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    fresh = LanguageModel(trainer.model.config, tokenizer=tok)  # the same seeded initialization
    batched = trainer.train_step()
    total = 0.0
    for sentence in corpus:
        ids = torch.tensor([tok.encode(sentence) + [tok.end_id]])
        logp = torch.log_softmax(fresh.forward(ids[:, :-1])["logits"][0], -1)  # (T, V)
        total += -logp.gather(1, ids[0, 1:, None]).sum().item()
    assert batched == pytest.approx(total / 13, abs=1e-12)


def small_sentences_trainer(corpus: list[str]) -> Trainer:
    return Trainer(classic(d_model=32, d_ff=64, optimizer="adamw", lr=0.01), source=Sentences(corpus))


@pytest.mark.parametrize("epochs", [0, 8, 25, 60])
def test_the_one_pass_score_equals_step_by_step_greedy_decoding(epochs: int):
    """`reproduced` (teacher forcing, one forward) agrees with greedy decoding (`memorization`), row by
    row, at every stage of training, also on sentences of different lengths."""
    trainer = small_sentences_trainer([*DEFAULT_CORPUS[:6], "the red fox jumps over the wall", "a b c"])
    for _ in range(epochs):
        trainer.train_step()
    expected = [row.correct for row in data.memorization(trainer.model, trainer.source.sentences)]
    assert data.reproduced(trainer.model, trainer.source) == expected
    if epochs == 60:
        assert any(expected)


@pytest.mark.parametrize("epochs", [0, 15, 60])
def test_the_score_and_generation_agree_on_where_a_sentence_ends(epochs: int):
    """5- and 6-word sentences mixed, where one continues past the other's last word ('night east'):
    a sentence counts as reproduced exactly when `generate` returns it and then stops at <eos>."""
    trainer = small_sentences_trainer(["the moon glows at night", "my sun glows at night east", *DEFAULT_CORPUS[:4]])
    for _ in range(epochs):
        trainer.train_step()
    rows = data.memorization(trainer.model, trainer.source.sentences)
    for row in rows:
        trace = generate(trainer.model, row.prompt, max_new_tokens=10)
        assert row.correct == (trace.text == row.sentence and trace.stop_reason == "end"), (row, trace.text)
    if epochs == 60:  # learned: the 5-word sentence stops at 'night', the 6-word one goes on
        assert all(r.correct for r in rows)
        assert generate(trainer.model, "the moon").text == "the moon glows at night"


# -------------------------------------------------------------------------------- the divergence stop


@pytest.mark.parametrize("source", ["sentences", "windows"])
def test_a_non_finite_loss_stops_at_once_without_a_step(source: str, corpus: str, tmp_path: Path):
    config = classic(steps=5) if source == "sentences" else text_config(corpus, steps=5)
    trainer = Trainer(config, cache_dir=tmp_path)
    trainer.model.params["tok_emb"][:] = math.nan
    event = next(trainer.events())
    assert event.done and not math.isfinite(event.loss) and "diverged" in event.stop_reason
    assert "lower the learning rate" in event.stop_reason and list(trainer.events()) == []


def test_a_run_that_climbs_far_above_its_best_is_stopped():
    """The reviewer's run (SGD, lr 3) climbed from its best loss to many times it; it stops as diverged,
    with no evaluation after the diverged step."""
    events = list(Trainer(classic(lr=3.0)).events())
    best = min(e.loss for e in events)
    assert events[-1].kind == "step" and events[-1].loss > 10 * best and events[-1].loss > events[0].loss
    assert events[-1].done and "diverged" in events[-1].stop_reason and len(events) < 500
    assert list(Trainer(classic(lr=9.0, steps=50)).events())[-1].stop_reason.startswith("diverged")
    # the rule itself, on the numbers: far above its best and its start diverged; a noisy run
    # near its best, or one above its best but still under its start, did not
    assert "climbed to 24" in divergence(24.0, 1.0, first=4.13, best=0.61)
    assert divergence(0.05, 1.0, first=4.13, best=0.002) is None
    assert divergence(5.0, 1.0, first=4.13, best=0.61) is None
    assert "nan" in divergence(math.nan, 1.0, first=4.13, best=0.61)


def test_a_run_that_ends_no_lower_than_it_began_did_not_finish(monkeypatch):
    trainer = Trainer(classic(lr=1e-3, steps=3))
    trainer.train_step()
    monkeypatch.setattr(trainer, "lr_at", lambda step: 0.0)  # no learning: the loss stays put
    trainer.model.params["w_out"].mul_(1.5)  # and a little worse than it began
    events = list(trainer.events())
    assert events[-1].done and "ended at loss" in events[-1].stop_reason and "no lower than" in events[-1].stop_reason


# ------------------------------------------------------------------------- accumulation and clipping


def test_accumulated_micro_batches_equal_one_big_batch(corpus: str, tmp_path: Path, monkeypatch):
    accum = Trainer(text_config(corpus, batch_size=3, grad_accum=2, clip=0.0), cache_dir=tmp_path)
    big = Trainer(text_config(corpus, batch_size=6, clip=0.0), cache_dir=tmp_path)
    # The same six windows: two micro-batches of 3 for one, one batch of 6 for the other.
    x, y = data.get_batch(accum.source.train, 6, 8, torch.Generator().manual_seed(0))
    windows = iter([(x[:3], y[:3]), (x[3:], y[3:])])
    monkeypatch.setattr(accum.source, "batch", lambda *a: next(windows))
    monkeypatch.setattr(big.source, "batch", lambda *a: (x, y))
    assert accum.train_step() == pytest.approx(big.train_step(), abs=1e-12)
    assert accum.last_grad_norm == pytest.approx(big.last_grad_norm, abs=1e-12)
    for name, p in big.model.params.items():
        torch.testing.assert_close(accum.model.params[name], p, rtol=0, atol=1e-12, msg=name)


def test_accumulating_the_full_batch_of_sentences_changes_nothing():
    """Every micro-batch of the sentences source is the whole batch: (g + g) / 2 is g, exactly."""
    once, twice = Trainer(classic(steps=3)), Trainer(classic(steps=3, grad_accum=2))
    assert [e.loss for e in steps_of(once.events())] == [e.loss for e in steps_of(twice.events())]
    assert all(torch.equal(twice.model.params[n], p) for n, p in once.model.params.items())


@pytest.mark.parametrize("source", ["sentences", "windows"])
def test_clipping_bounds_the_update_and_reports_the_norm_before(source: str, corpus: str, tmp_path: Path):
    """A tiny clip with SGD: each step moves the parameters by exactly lr x clip (the clipped gradient's
    norm), and the event reports the norm before clipping."""
    common = dict(optimizer="sgd", lr=0.1, schedule="constant", clip=1e-3, steps=3)
    config = classic(**common) if source == "sentences" else text_config(corpus, **common)
    trainer = Trainer(config, cache_dir=tmp_path)
    for _ in range(3):
        before = [p.clone() for p in trainer.params]
        trainer.train_step()
        moved = torch.linalg.vector_norm(torch.cat([(p - b).reshape(-1) for p, b in zip(trainer.params, before)]))
        assert trainer.last_grad_norm > 1e-2 and float(moved) == pytest.approx(0.1 * 1e-3, rel=1e-6)


# ------------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"n_heads": 3}, "divide d_model"),
        ({"n_heads": 0}, "n_heads must be a whole number from 1"),
        ({"context": 4}, "at least 5"),  # five words: each read, the last to predict <eos>
        ({"optimizer": "adam"}, "optimizer must be one of adamw, sgd"),
        ({"lr": -1.0}, "lr must be a number from 0 to 10"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"optimizer": "adamw", "weight_decay": math.nan}, "weight_decay must be a number"),
        ({"optimizer": "adamw", "weight_decay": -1.0}, "weight_decay must be a number"),
        ({"optimizer": "adamw", "eps": 0.0}, "eps must be a positive number"),
        ({"beta1": 1.0}, "beta1 must be in"),
        ({"tokenizer": "char"}, "the sentences source is words"),
        ({"schedule": "linear"}, "schedule must be one of cosine, constant"),
    ],
)
def test_bad_sentence_settings_are_explained(overrides: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Trainer(classic(**overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"steps": 0}, "steps must be a whole number from 1"),
        ({"context": 1}, "context must be a whole number from 2"),
        ({"lr": -1.0}, "lr must be a number from 0 to 10"),
        ({"min_lr": 0.1, "lr": 0.01}, "min_lr .* must not exceed lr"),
        ({"beta2": 1.0}, "beta2 must be in"),
        ({"batch_size": True}, "batch_size must be a whole number"),
        ({"parts": {"colour": "red"}}, "unknown model part"),
        ({"lr": 1.0, "weight_decay": 1.0}, "weight_decay x lr must be below 1"),
    ],
)
def test_bad_text_settings_are_explained(overrides: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        TrainConfig.recipe("fast")


def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(corpus: str, tmp_path: Path, monkeypatch):
    config = text_config(corpus)  # float64, AdamW, 4 windows of 8, 2 validation batches
    model = Trainer(config, cache_dir=tmp_path).model
    n, model_config = model.num_parameters(), model.config
    parts = memory_estimate(model_config, 4, 8, 2, "adamw")
    assert parts["parameters and gradients"] == parts["optimizer state"] == 2 * n * 8
    assert parts["validation batches"] == 2 * 2 * (4 * 8) * 8  # inputs and targets, int64
    assert memory_estimate(model_config, 4, 8, 2, "sgd")["optimizer state"] == 0
    monkeypatch.setattr("lm.train.available_memory", lambda: sum(parts.values()) - 1)
    with pytest.raises(ValueError, match=r"a training step would need about .* GB \(parameters and gradients"):
        Trainer(config, cache_dir=tmp_path)
    monkeypatch.setattr("lm.train.available_memory", lambda: sum(parts.values()))
    assert Trainer(config, cache_dir=tmp_path).step == 0  # exactly enough


def test_the_sentences_source_is_one_batch_and_cannot_be_split_over_ranks():
    with pytest.raises(ValueError, match="cannot be split over ranks"):
        Trainer(classic(), parallel=object())


# ----------------------------------------------------------------------------- learning real text


def shakespeare_run(tmp_path: Path, **overrides) -> tuple[float, float, float, float]:
    """(unigram baseline, uniform loss, validation loss before, after) of a gpt run on Tiny Shakespeare."""
    fields = dict(data="shakespeare", preset="gpt", lr=3e-3, min_lr=3e-4, eval_every=0, eval_batches=8, seed=0)
    trainer = Trainer(TrainConfig(**{**fields, **overrides}), cache_dir=tmp_path)
    source = trainer.source
    baseline = data.unigram_loss(source.tokens.val, len(trainer.tokenizer), source.tokens.train)
    before = trainer.evaluate()
    list(trainer.events())
    return baseline, math.log(len(trainer.tokenizer)), before, trainer.evaluate()


@pytest.mark.slow
def test_gpt_learns_shakespeare_characters_past_the_unigram_baseline(tmp_path: Path):
    baseline, uniform, before, after = shakespeare_run(
        tmp_path, n_layers=2, n_heads=4, d_model=64, context=32, batch_size=16, steps=100, warmup=10
    )
    assert 3.2 < baseline < 3.4  # character frequencies alone: ~3.3 nats
    assert before == pytest.approx(uniform, abs=0.1)  # uniform at the start
    assert after < baseline - 0.4, f"validation loss {after:.3f} vs unigram {baseline:.3f}"  # measured: 2.61 vs 3.35


def test_gpt_learns_shakespeare_characters_short_form(tmp_path: Path):
    """The slow test's short form: a smaller model for fewer steps gets well below the uniform loss."""
    baseline, uniform, before, after = shakespeare_run(
        tmp_path, n_layers=1, n_heads=2, d_model=32, context=16, batch_size=8, steps=30, warmup=3, lr=1e-2
    )
    assert before == pytest.approx(uniform, abs=0.1)
    assert after < uniform - 0.7, f"validation loss {after:.3f} vs uniform {uniform:.3f}, unigram {baseline:.3f}"
