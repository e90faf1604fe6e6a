"""Checkpoints: a resumed run equals an uninterrupted one bit for bit (2 x 50 steps == 100 steps, for
every preset), the file holds everything generation needs, and every bad file gets a clear error."""

import json
import struct

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lm import checkpoint
from lm.checkpoint import CheckpointError
from lm.textrun import TextTrainConfig, TextTrainer

TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}." for i in range(300))


def small_config(tmp_path, **kw) -> TextTrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT)
    fields = dict(data=str(corpus), n_layers=1, n_heads=2, d_model=16, context=8, batch_size=4, steps=100,
                  warmup=10, eval_every=0, eval_batches=2, dtype="float64", seed=5)  # fmt: skip
    return TextTrainConfig(**{**fields, **kw})


@pytest.mark.parametrize("preset", ["gpt", "llama", "classic"])
def test_two_halves_equal_one_run_bit_for_bit(tmp_path, preset):
    cfg = small_config(tmp_path, preset=preset)
    whole = TextTrainer(cfg, cache_dir=tmp_path)
    for _ in whole.events():
        pass

    first = TextTrainer(cfg, cache_dir=tmp_path)
    for _ in first.events(until=50):
        pass
    first.save(tmp_path / "run")
    del first
    second = TextTrainer.resume(tmp_path / "run", cache_dir=tmp_path)
    assert second.step == 50
    for _ in second.events():
        pass
    assert second.step == whole.step == 100
    for name, p in whole.model.params.items():
        assert torch.equal(p, second.model.params[name]), name
    for a, b in zip(whole.optimizer.m, second.optimizer.m):
        assert torch.equal(a, b)
    assert whole.evaluate() == second.evaluate()


def test_checkpoint_holds_the_model_and_tokenizer(tmp_path):
    trainer = TextTrainer(small_config(tmp_path, steps=3), cache_dir=tmp_path)
    for _ in trainer.events():
        pass
    path = trainer.save(tmp_path / "run")
    assert path == tmp_path / "run" / "checkpoint.safetensors" and not list(path.parent.glob("*.tmp"))
    saved = checkpoint.load(tmp_path / "run")
    model = saved.model()
    assert saved.step == 3 and model.config == trainer.model.config
    assert saved.tokenizer.encode("the fox") == trainer.tokenizer.encode("the fox")
    ids = torch.tensor([trainer.tokenizer.encode("line 1:")])
    assert torch.equal(model.forward(ids)["logits"], trainer.model.forward(ids)["logits"])


def _saved(tmp_path):
    trainer = TextTrainer(small_config(tmp_path, steps=2), cache_dir=tmp_path)
    for _ in trainer.events():
        pass
    path = trainer.save(tmp_path / "good.safetensors")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return path, data, json.loads(data[8 : 8 + n])["__metadata__"], st_load(data)


def _rewrite(tmp_path, tensors, metadata):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(st_save(tensors, metadata=metadata))
    return bad


def test_bad_checkpoints_get_clear_errors(tmp_path):
    path, data, meta, tensors = _saved(tmp_path)
    cases = []
    cases.append((tmp_path / "nothing-here", "no checkpoint at"))
    (tmp_path / "empty-run").mkdir()
    cases.append((tmp_path / "empty-run", "no checkpoint at .*checkpoint.safetensors"))
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    cases.append((short, "not a safetensors file \\(only 3 bytes\\)"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 10**12) + b"x" * 100)
    cases.append((junk, "header length"))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    cases.append((truncated, "corrupt|does not fit"))
    for file, message in cases:
        with pytest.raises(CheckpointError, match=message):
            checkpoint.load(file)

    bad_meta = [
        ({**meta, "format": "autodiff-playground-lm"}, "weights file of the classic model"),
        ({**meta, "format": "something-else"}, "not a checkpoint of this program"),
        ({**meta, "version": "99"}, "checkpoint version '99'"),
        ({k: v for k, v in meta.items() if k != "tokenizer"}, "lacks 'tokenizer'"),
        ({**meta, "model_config": "{not json"}, "broken metadata"),
        ({**meta, "step": "-4"}, "broken metadata"),
        ({**meta, "model_config": meta["model_config"].replace('"n_heads": 2', '"n_heads": 3')}, "n_heads"),
    ]
    for metadata, message in bad_meta:
        with pytest.raises(CheckpointError, match=message):
            checkpoint.load(_rewrite(tmp_path, tensors, metadata))

    name = "param/layers.0.wq"
    bad_tensors = [
        ({k: v for k, v in tensors.items() if k != name}, "missing \\['param/layers.0.wq'\\]"),
        ({**tensors, "param/extra": torch.zeros(1)}, "unexpected \\['param/extra'\\]"),
        ({**tensors, name: torch.zeros(3, 3, dtype=torch.float64)}, "layers.0.wq is torch.float64 \\(3, 3\\)"),
        ({**tensors, name: tensors[name].float()}, "needs float64"),
        ({**tensors, name: tensors[name] * float("nan")}, "NaN or infinite"),
        ({**tensors, "rng/batches": torch.zeros(4)}, "uint8"),
    ]
    for bad, message in bad_tensors:
        with pytest.raises(CheckpointError, match=message):
            checkpoint.load(_rewrite(tmp_path, bad, meta))


def test_resume_refuses_a_changed_text(tmp_path):
    cfg = small_config(tmp_path, steps=4)
    trainer = TextTrainer(cfg, cache_dir=tmp_path)
    for _ in trainer.events(until=2):
        pass
    trainer.save(tmp_path / "run")
    (tmp_path / "corpus.txt").write_text(TEXT.replace("lazy", "sleepy"))  # same characters, other text
    with pytest.raises(CheckpointError, match="not the text this run was trained on"):
        TextTrainer.resume(tmp_path / "run", cache_dir=tmp_path)
