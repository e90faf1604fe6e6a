"""A training step's memory in lm: the step graph's timeline (lm.profile.step_memory, autodiff/timeline.py,
whose peak tests/autodiff/test_autodiff_timeline.py checks against real steps), activation checkpointing
as a training setting (TrainConfig.remat: the very same steps, less memory) and in `python -m lm profile`.
"""

from __future__ import annotations

import json

import pytest
import torch

import lm.profile as lm_profile
from lm.cli import build_parser, main, train_config
from lm.train import TrainConfig, Trainer

SIZES = dict(n_layers=2, n_heads=2, d_model=16, context=8, batch_size=3, eval_every=0)
ARGS = ["--layers", "2", "--heads", "2", "--d-model", "16", "--context", "8", "--batch", "3", "--steps", "1"]


def test_training_with_remat_takes_the_very_same_steps_in_less_memory(tmp_path):
    trainers = [Trainer(TrainConfig(**SIZES, remat=remat, steps=10), cache_dir=tmp_path) for remat in (False, True)]
    plain, remat = trainers
    for _ in range(3):
        assert plain.train_step() == remat.train_step()
    assert all(torch.equal(plain.model.params[n], remat.model.params[n]) for n in plain.model.params)

    before, after = (lm_profile.step_memory(t) for t in trainers)
    assert after.peak_of("activations") < before.peak_of("activations") and after.peak < before.peak
    storages = {p.untyped_storage()._cdata: p.untyped_storage().nbytes() for p in plain.model.params.values()}
    parameters = sum(storages.values())  # (AdamW may keep them all in one flat buffer: one storage)
    assert before.at_peak["parameters"] == after.at_peak["parameters"] == parameters


def test_remat_is_a_yes_or_no_setting_of_training():
    with pytest.raises(ValueError, match="remat must be true or false"):
        TrainConfig(remat="yes").validate()
    assert TrainConfig.from_dict({k: v for k, v in TrainConfig().to_dict().items() if k != "remat"}).remat is False
    parser = build_parser()
    assert train_config(parser.parse_args(["train", "--data", "shakespeare", "--remat"])).remat is True
    assert train_config(parser.parse_args(["train", "--data", "shakespeare"])).remat is False


def test_the_profile_command_prints_the_memory_and_takes_remat(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("LM_CACHE_DIR", str(tmp_path))
    quick = lm_profile.profile_training
    monkeypatch.setattr(lm_profile, "profile_training", lambda **kw: quick(**kw, probe_seconds=0.001))
    assert main(["profile", *ARGS, "--remat"]) == 0
    out = capsys.readouterr().out
    assert "activation checkpointing on: peak" in out and "largest values alive at the peak" in out
    assert main(["profile", *ARGS, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["profile", *ARGS, "--remat", "--json"]) == 0
    remat = json.loads(capsys.readouterr().out)
    assert (plain["settings"]["remat"], remat["settings"]["remat"]) == (False, True)
    assert remat["memory"]["peak"] < plain["memory"]["peak"]
    assert sum(plain["memory"]["at_peak"].values()) == plain["memory"]["peak"]
