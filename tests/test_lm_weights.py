"""Weights on disk: a round trip keeps everything, writes are atomic, and every bad file is explained."""

import json
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from lm.generate import generate
from lm.model import LanguageModel, ModelConfig
from lm.tokenizer import Tokenizer
from lm.weights import DEFAULT_WEIGHTS, WeightsError, load, load_bytes, save, to_bytes


def _model(**kw):
    tok = Tokenizer.from_corpus(["the red fox jumps", "a small bird"])
    return LanguageModel.create(ModelConfig(vocab_size=len(tok), context=3, d_model=8, d_ff=8, **kw), tok, seed=2)


def test_round_trip_file_and_bytes(tmp_path):
    model = _model(n_heads=2)
    path = save(model, tmp_path / "sub" / "m.safetensors")
    for loaded in (load(path), load_bytes(to_bytes(model))):
        assert loaded.config == model.config and loaded.tokenizer.vocab == model.tokenizer.vocab
        assert list(loaded.params) == list(model.params)
        for name, p in model.params.items():
            assert torch.equal(loaded.params[name], p)
        assert generate(loaded, "the red").steps[0].probs.equal(generate(model, "the red").steps[0].probs)
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save(_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save(_model(n_heads=2), path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_default_weights_load_and_memorize():
    model = load(DEFAULT_WEIGHTS)
    assert model.config.d_model == 64 and model.num_parameters() == 38_912
    assert generate(model, "his new").text == "his new boat sails north"


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def _with_metadata(data: bytes, **changes) -> bytes:
    tensors = load_bytes(data).params
    meta = {**_header(data)["__metadata__"], **changes}
    return st_save(tensors, metadata=meta)


def test_bad_files_are_explained(tmp_path):
    good = to_bytes(_model())
    cases = {
        "missing": None,
        "empty": b"",
        "truncated": good[: len(good) - 10],
        "header cut": good[:20],
        "not safetensors": b"PK\x03\x04 this is a zip file, not weights",
        "pickle": b"\x80\x04\x95" + b"\x00" * 64,
        "foreign": st_save({"weight": torch.zeros(2, 2)}, metadata={"framework": "other"}),
        "shape mismatch": _with_metadata(good, config=json.dumps({**_model().config.to_dict(), "d_ff": 16})),
        "broken config": _with_metadata(good, config="{not json"),
        "vocab mismatch": _with_metadata(good, vocab=json.dumps(["<pad>", "a"])),
    }
    needles = {
        "missing": "does not exist", "empty": "empty or truncated", "truncated": "truncated",
        "header cut": "truncated", "not safetensors": "not a safetensors file", "pickle": "not a safetensors file",
        "foreign": "not an autodiff-playground", "shape mismatch": "has shape", "broken config": "broken config",
        "vocab mismatch": "vocabulary",
    }  # fmt: skip
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(WeightsError, match=needles[name]):
            load(path)
        if data is not None:
            with pytest.raises(WeightsError, match=needles[name]):
                load_bytes(data)
    with pytest.raises(WeightsError, match="not a file"):
        load(tmp_path)


def _raw(header: dict, body: bytes = b"") -> bytes:
    """Safetensors bytes from a hand-written header (for headers no writer would produce)."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def test_hostile_files_are_explained_not_crashed_on():
    good = to_bytes(_model())
    meta = _header(good)["__metadata__"]
    config = _model().config.to_dict()
    deep = "[" * 100_000 + "]" * 100_000
    cases = {
        "huge offsets": (_raw({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 1e400]}}), "header"),
        "deep header": (struct.pack("<Q", len(deep) + 6) + b'{"a":' + deep.encode() + b"}", "header is not JSON"),
        "metadata list": (_raw({"__metadata__": ["x"]}), "not an autodiff-playground"),
        "deep config": (_with_metadata(good, config=deep), "broken config"),
        "a billion layers": (_with_metadata(good, config=json.dumps({**config, "n_layers": 10**9})), "at most 64"),
        "number in vocab": (_with_metadata(good, vocab=json.dumps([*json.loads(meta["vocab"])[:-1], 1])), "entry 1"),
        "untypeable word": (_with_metadata(good, vocab=json.dumps([*json.loads(meta["vocab"])[:-1], "A b"])), "'A b'"),
    }
    for data, needle in cases.values():
        with pytest.raises(WeightsError, match=needle):
            load_bytes(data)
