"""Weights on disk: a round trip keeps everything, writes are atomic, and every bad file is explained."""

import json
import os
import struct
import subprocess
import sys
import time

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
    V, C, D, F = 47, 5, 64, 128  # 45 words + <pad> + <eos>; five positions: four words and the one before <eos>
    assert model.config.d_model == D and model.num_parameters() == 2 * V * D + C * D + 4 * D * D + 2 * D * F
    trace = generate(model, "his new")
    assert trace.text == "his new boat sails north" and trace.stop_reason == "end"  # it knows where to stop


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


def test_a_huge_file_is_refused_from_its_size_without_reading_it(tmp_path):
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:  # sparse: 3 GB on paper, nothing on disk
        f.truncate(3_000_000_000)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="3,000,000,000 bytes; a weights file here is at most"):
        load(path)
    assert time.perf_counter() - start < 1.0


def test_a_file_is_checked_by_its_header_before_its_tensors_are_read(tmp_path, monkeypatch):
    """A foreign file with a big body fails on its header: the body is never read."""
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(st_save({"weight": torch.zeros(1000, 100)}, metadata={"framework": "other"}))
    sizes = []
    real_open = type(path).open

    def counting_open(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        read = f.read
        f.read = lambda n=-1: sizes.append(n) or read(n)
        return f

    monkeypatch.setattr(type(path), "open", counting_open)
    with pytest.raises(WeightsError, match="not an autodiff-playground"):
        load(path)
    assert sum(sizes) < 1000 and -1 not in sizes  # the 800 kB of tensors were not read


@pytest.mark.parametrize("special", ["/proc/self/mem", "/dev/zero"])
def test_special_files_get_a_clear_error(special):
    if not os.path.exists(special):
        pytest.skip(f"{special} does not exist here")
    with pytest.raises(WeightsError, match=f"'{special}'"):
        load(special)


def test_a_header_with_150000_names_gives_a_short_error():
    good = to_bytes(_model())
    header = _header(good)
    body_end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    for i in range(150_000):
        header[f"extra.{i}"] = {"dtype": "F64", "shape": [0], "data_offsets": [body_end, body_end]}
    text = json.dumps(header).encode()
    data = struct.pack("<Q", len(text)) + text + good[8 + struct.unpack("<Q", good[:8])[0] :]
    with pytest.raises(WeightsError) as info:
        load_bytes(data)
    message = str(info.value)
    assert "unexpected tensors extra." in message and "149,995 more" in message and len(message) < 500


def test_a_saved_file_follows_the_umask_like_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = save(_model(), tmp_path / "m.safetensors")
        plain = tmp_path / "plain.txt"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_temp_files_of_a_killed_writer_are_cleaned_up(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".m.safetensors.{dead_pid}.abcd1234.tmp"
    live = tmp_path / f".m.safetensors.{os.getpid()}.abcd1234.tmp"  # a writer still at work: kept
    old = tmp_path / f".m.safetensors.{os.getpid()}.00000000.tmp"
    for f in (stale, live, old):
        f.write_bytes(b"half a file")
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # two hours old: its writer is long gone
    other = tmp_path / ".other.safetensors.1.x.tmp"  # another file's temp: not ours to judge
    other.write_bytes(b"")
    save(_model(), tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.safetensors", live.name, other.name])
