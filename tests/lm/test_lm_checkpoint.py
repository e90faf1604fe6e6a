"""Checkpoints of training runs: a resumed run equals an uninterrupted one bit for bit (2 x 50 steps ==
100 steps, for every preset), and a run folder's file holds everything generation needs. The file format
itself (every field, every bad file) is tested in test_lm_files.py."""

import pytest
import torch

from lm import checkpoint
from lm.checkpoint import CheckpointError
from lm.train import TrainConfig, Trainer

TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}." for i in range(300))


def small_config(tmp_path, **kw) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT)
    fields = dict(data=str(corpus), n_layers=1, n_heads=2, d_model=16, context=8, batch_size=4, steps=100,
                  warmup=10, eval_every=0, eval_batches=2, dtype="float64", seed=5)  # fmt: skip
    return TrainConfig(**{**fields, **kw})


@pytest.mark.parametrize("preset", ["gpt", "llama", "classic"])
def test_two_halves_equal_one_run_bit_for_bit(tmp_path, preset):
    cfg = small_config(tmp_path, preset=preset)
    whole = Trainer(cfg, cache_dir=tmp_path)
    for _ in whole.events():
        pass

    first = Trainer(cfg, cache_dir=tmp_path)
    for _ in first.events(until=50):
        pass
    first.save(tmp_path / "run")
    del first
    second = Trainer.resume(tmp_path / "run", cache_dir=tmp_path)
    assert second.step == 50
    for _ in second.events():
        pass
    assert second.step == whole.step == 100
    for name, p in whole.model.params.items():
        assert torch.equal(p, second.model.params[name]), name
    for name, m in whole.optimizer.state_dict()["m"].items():
        assert torch.equal(m, second.optimizer.state_dict()["m"][name]), name


def test_checkpoint_holds_the_model_and_tokenizer(tmp_path):
    trainer = Trainer(small_config(tmp_path, steps=3), cache_dir=tmp_path)
    for _ in trainer.events():
        pass
    path = trainer.save(tmp_path / "run")
    assert path == tmp_path / "run" / "checkpoint.safetensors" and not list(path.parent.glob("*.tmp"))
    saved = checkpoint.load(tmp_path / "run")
    model = saved.model
    assert saved.iteration == 3 and model.config == trainer.model.config and saved.train_config is not None
    assert model.tokenizer.encode("the fox") == trainer.model.tokenizer.encode("the fox")
    ids = torch.tensor([model.tokenizer.encode("line 1:")])
    assert torch.equal(model.forward(ids)["logits"], trainer.model.forward(ids)["logits"])


def test_resume_refuses_a_changed_text(tmp_path):
    cfg = small_config(tmp_path, steps=4)
    trainer = Trainer(cfg, cache_dir=tmp_path)
    for _ in trainer.events(until=2):
        pass
    trainer.save(tmp_path / "run")
    (tmp_path / "corpus.txt").write_text(TEXT.replace("lazy", "sleepy"))  # same characters, other text
    with pytest.raises(CheckpointError, match="not the text this run was trained on"):
        Trainer.resume(tmp_path / "run", cache_dir=tmp_path)
