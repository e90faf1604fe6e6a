"""Model files (lm.files, lm.checkpoint): a round trip keeps everything, writes are atomic, every file an
earlier release wrote still loads, and every bad or hostile file is explained, fast, without a crash."""

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lm import checkpoint, files
from lm.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load, save, to_bytes
from lm.config import ModelConfig, preset_config
from lm.files import FileFormatError, check_out_path, loads_json, read_regular_file
from lm.generate import generate
from lm.model import LanguageModel
from lm.optim import SGD, AdamW, decay_groups
from lm.tokenizers import CharTokenizer, WordTokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "files_released"  # written by fixtures/record_released_files.py
SHAKESPEARE = Path(checkpoint.__file__).parent / "data" / "shakespeare-char.safetensors"


def _model(seed: int = 2, **kw) -> LanguageModel:
    """A tiny classic model with a word tokenizer."""
    tok = WordTokenizer.from_sentences(["the red fox jumps", "a small bird"])
    config = ModelConfig(**{"vocab_size": len(tok), "context": 3, "d_model": 8, "d_ff": 8, "seed": seed, **kw})
    return LanguageModel(config, tokenizer=tok)


def _run(steps: int = 3, seed: int = 4) -> tuple[LanguageModel, AdamW]:
    """A tiny gpt model and an AdamW that took `steps` steps; the gains skip the first step, so the
    parameters' step counts differ (each keeps its own, as torch's AdamW does)."""
    tok = CharTokenizer.from_text("the quick brown fox", ["<|endoftext|>"])
    config = preset_config("gpt", len(tok), 4, d_model=8, n_heads=2, n_layers=1, dtype="float64", seed=seed)
    model = LanguageModel(config, tokenizer=tok)
    opt = AdamW(model.params, lr=0.01, betas=(0.9, 0.99), groups=decay_groups(model.params, 0.1))
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        grads = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.params.items()}
        opt.step({n: (None if i == 0 and p.dim() == 1 else grads[n]) for n, p in model.params.items()})
    return model, opt


def _ids(model: LanguageModel) -> torch.Tensor:
    return torch.tensor([[1, 2, 0][: model.config.context]])


def _logits(model: LanguageModel) -> torch.Tensor:
    return model.forward(_ids(model))["logits"]


def _assert_same_model(a: LanguageModel, b: LanguageModel) -> None:
    assert a.config == b.config and list(a.params) == list(b.params)
    for name, p in a.params.items():
        assert torch.equal(p, b.params[name]), name
    assert torch.equal(_logits(a), _logits(b))


# ---------------------------------------------------------------------------------------------- round trips


def test_a_weights_file_round_trips_through_a_file_a_bytesio_and_bytes(tmp_path):
    model = _model(n_heads=2)
    path = save(tmp_path / "sub" / "m.safetensors", model)
    buffer = io.BytesIO()
    assert save(buffer, model) is None
    for src in (path, io.BytesIO(buffer.getvalue()), to_bytes(model)):
        saved = load(src)
        _assert_same_model(saved.model, model)
        assert saved.model.tokenizer.vocab == model.tokenizer.vocab
        assert saved.optimizer_state is None and saved.iteration is None and saved.rng is None
        assert generate(saved.model, "the red").steps[0].probs.equal(generate(model, "the red").steps[0].probs)
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_a_run_round_trips_parameters_logits_and_optimizer_state(tmp_path):
    model, opt = _run(steps=3)
    rng = torch.Generator().manual_seed(7).get_state()
    settings = {"lr": 0.01, "steps": 3}
    path = save(tmp_path / "run", model, opt, 3, train_config=settings, rng=rng, data_id="tokens-abc")
    assert path == tmp_path / "run" / "checkpoint.safetensors"
    saved = load(tmp_path / "run")  # the folder means its checkpoint
    _assert_same_model(saved.model, model)
    assert (saved.iteration, saved.train_config, saved.data_id) == (3, settings, "tokens-abc")
    assert torch.equal(saved.rng, rng) and saved.optimizer_name == "AdamW"
    want = opt.state_dict()
    assert saved.optimizer_state["steps"] == want["steps"] and want["steps"]["layers.0.norm1"] == 2
    for key in ("m", "v"):
        assert list(saved.optimizer_state[key]) == list(want[key])
        assert all(torch.equal(saved.optimizer_state[key][n], t) for n, t in want[key].items())
    assert saved.optimizer_settings["betas"] == [0.9, 0.99] and saved.optimizer_settings["groups"] == opt.groups

    # restored into fresh objects, the run continues exactly as the original
    fresh, _ = _run(steps=0, seed=9)
    fresh_opt = AdamW(fresh.params, lr=0.01, betas=(0.9, 0.99), groups=decay_groups(fresh.params, 0.1))
    assert saved.restore(fresh, fresh_opt) == 3
    grads = {n: torch.full_like(p, 0.5) for n, p in model.params.items()}
    opt.step(grads), fresh_opt.step(grads)
    for name, p in model.params.items():
        assert torch.equal(p, fresh.params[name]), name


def test_a_checkpoint_written_to_a_bytesio_loads():
    model, opt = _run()
    buffer = io.BytesIO()
    assert save(buffer, model, opt, 3) is None
    buffer.seek(0)
    for src in (buffer, buffer.getvalue()):
        saved = load(src)
        assert saved.iteration == 3 and saved.optimizer_state["steps"] == opt.state_dict()["steps"]
        _assert_same_model(saved.model, model)


def test_a_weights_only_save_restores_into_a_fresh_model(tmp_path):
    model = _model()
    save(tmp_path / "w.safetensors", model)
    saved = load(tmp_path / "w.safetensors")
    fresh = _model(seed=11)  # another initialization of the same shape
    assert not torch.equal(_logits(fresh), _logits(model))
    opt = AdamW(fresh.params)
    assert saved.restore(fresh, opt) is None
    assert torch.equal(_logits(fresh), _logits(model)) and opt.state_dict()["m"] == {}  # no state: untouched
    with pytest.raises(CheckpointError, match="differs from this one in d_model"):
        saved.restore(_model(d_model=4, d_ff=8))


def test_sgd_has_no_state_and_a_state_goes_only_to_its_optimizer():
    model = _model()
    saved = load(to_bytes(model, SGD(model.params, lr=0.1), 5))
    assert (saved.optimizer_name, saved.optimizer_state, saved.iteration) == ("SGD", {}, 5)
    assert saved.optimizer_settings == {"lr": 0.1}
    run, opt = _run()
    with pytest.raises(CheckpointError, match="holds AdamW's state, not SGD's"):
        load(to_bytes(run, opt)).restore(run, SGD(run.params))


# ---------------------------------------------------------------------------------------------- old files


def test_the_released_checkpoint_v1_loads_with_its_optimizer_state():
    path = FIXTURES / "checkpoint_v1.safetensors"
    raw, logits = st_load(path.read_bytes()), st_load((FIXTURES / "logits.safetensors").read_bytes())
    saved = load(path)
    for name, p in saved.model.params.items():
        assert torch.equal(p, raw[f"param/{name}"]), name
    assert torch.equal(_logits_of(saved.model, 3), logits["checkpoint_v1"])
    assert saved.iteration == 2 and saved.optimizer_name == "AdamW" and saved.data_id
    state = saved.optimizer_state
    assert state["steps"] == {n: 2 for n in saved.model.params}  # adam_t: one count for every parameter
    assert all(torch.equal(state["m"][n], raw[f"adam_m/{n}"]) for n in saved.model.params)
    assert all(torch.equal(state["v"][n], raw[f"adam_v/{n}"]) for n in saved.model.params)
    assert torch.equal(saved.rng, raw["rng/batches"]) and saved.train_config["steps"] == 2
    assert saved.model.tokenizer.decode(saved.model.tokenizer.encode("a cab")) == "a cab"
    opt = AdamW(saved.model.params)
    saved.restore(saved.model, opt)  # the state goes into today's AdamW
    assert opt.state_dict()["steps"] == state["steps"]


@pytest.mark.parametrize("name", ["weights_v1", "weights_v1_no_eos"])
def test_released_weights_v1_load(name):
    path = FIXTURES / f"{name}.safetensors"
    raw, logits = st_load(path.read_bytes()), st_load((FIXTURES / "logits.safetensors").read_bytes())
    saved = load(path)
    assert set(saved.model.params) == set(raw)
    for param, p in saved.model.params.items():
        assert torch.equal(p, raw[param]), param
    assert torch.equal(_logits_of(saved.model, 2), logits[name])
    assert saved.optimizer_state is None and saved.iteration is None
    vocab = json.loads(_header(path.read_bytes())["__metadata__"]["vocab"])
    assert saved.model.tokenizer.vocab == vocab


def _logits_of(model: LanguageModel, T: int) -> torch.Tensor:
    return model.forward(torch.tensor([[1, 2, 3][:T]]))["logits"]


def test_the_bundled_files_load():
    model = load(DEFAULT_WEIGHTS).model
    V, C, D, F = 47, 5, 64, 128  # 45 words + <pad> + <eos>; five positions: four words and the one before <eos>
    assert model.config.d_model == D and model.num_parameters() == 2 * V * D + C * D + 4 * D * D + 2 * D * F
    trace = generate(model, "his new")
    assert trace.text == "his new boat sails north" and trace.stop_reason == "end"  # it knows where to stop
    text = load(SHAKESPEARE)  # a weights file of a text run: its settings and measured loss, no optimizer state
    assert text.iteration == 10_000 and text.model.config.dtype == "float32" and len(text.model.tokenizer) == 66
    assert text.optimizer_state is None and text.train_config["data"] == "shakespeare"
    assert text.metrics["val_loss"] <= 1.60  # checked against its validation batches in test_lm_bundled.py


def test_a_file_saved_today_reads_the_same_after_a_second_save(tmp_path):
    """v1 -> v2: the old file saved again in today's format keeps the model, the state and the rest."""
    old = load(FIXTURES / "checkpoint_v1.safetensors")
    opt = AdamW(old.model.params)
    old.restore(old.model, opt)
    save(tmp_path / "run", old.model, opt, old.iteration, train_config=old.train_config, rng=old.rng,
         data_id=old.data_id)  # fmt: skip
    new = load(tmp_path / "run")
    _assert_same_model(new.model, old.model)
    assert (new.iteration, new.train_config, new.data_id) == (old.iteration, old.train_config, old.data_id)
    assert new.optimizer_state["steps"] == old.optimizer_state["steps"] and torch.equal(new.rng, old.rng)


# ---------------------------------------------------------------------------------------------- writing


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save(tmp_path / "m.safetensors", _model())
    before = path.read_bytes()
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save(path, _model(n_heads=2))
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_a_saved_file_follows_the_umask_like_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = save(tmp_path / "m.safetensors", _model())
        plain = tmp_path / "plain.txt"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("dest", ["run", "m.safetensors"])  # a run folder's checkpoint, a weights file
def test_temp_files_of_a_killed_writer_are_cleaned_up(tmp_path, dest):
    """Issue 19 item 3: one writer, one rule, for checkpoints too."""
    folder, name = (tmp_path / "run", "checkpoint.safetensors") if dest == "run" else (tmp_path, dest)
    folder.mkdir(exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".{name}.{int(dead.stdout)}.abcd1234.tmp"  # its process has exited
    live = folder / f".{name}.{os.getpid()}.abcd1234.tmp"  # a writer still at work: kept
    old = folder / f".{name}.{os.getpid()}.00000000.tmp"
    for f in (stale, live, old):
        f.write_bytes(b"half a file")
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # two hours old: its writer is long gone
    other = folder / ".other.safetensors.1.x.tmp"  # another file's temp: not ours to judge
    other.write_bytes(b"")
    save(tmp_path / dest, _model())
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, live.name, other.name])


def test_out_paths_are_refused_before_any_work(tmp_path):
    """Issue 19 item 1: every way an output path is wrong is a ValueError saying what, up front."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = {"": "is empty", "  ": "is empty", str(fifo): "a FIFO", "/proc/self/x": "/proc or /sys",
             "/sys/kernel/x": "/proc or /sys", str(a_file / "model.safetensors"): "is not a folder"}  # fmt: skip
    if os.path.exists("/dev/full"):
        cases["/dev/full"] = "a character device, not a file or folder"
    for out, message in cases.items():
        with pytest.raises(ValueError, match=message):
            check_out_path(out)
    link = tmp_path / "link"
    link.symlink_to("/proc/self/status")
    with pytest.raises(ValueError, match="/proc or /sys"):
        check_out_path(link, "--weights-out")
    for fine in (a_file, tmp_path, tmp_path / "new" / "deeper" / "m.safetensors", "m.safetensors"):
        assert check_out_path(fine) == Path(fine)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_save_never_replaces_a_device():
    with pytest.raises(ValueError, match="character device"):
        save("/dev/full", _model())
    assert Path("/dev/full").is_char_device()


# ---------------------------------------------------------------------------------------------- bad files


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def _raw(header: dict, body: bytes = b"") -> bytes:
    """Safetensors bytes from a hand-written header (for headers no writer would produce)."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _with(data: bytes, tensors: dict | None = None, **changes) -> bytes:
    """`data` rewritten with other tensors and metadata (a value None drops its key)."""
    meta = {k: v for k, v in {**_header(data)["__metadata__"], **changes}.items() if v is not None}
    return st_save(st_load(data) if tensors is None else tensors, metadata=meta)


V1_WEIGHTS = (FIXTURES / "weights_v1.safetensors").read_bytes()
V1_CHECKPOINT = (FIXTURES / "checkpoint_v1.safetensors").read_bytes()


def test_bad_files_are_explained(tmp_path):
    good = to_bytes(_model())
    config = _model().config.to_dict()
    cases = {
        "missing": (None, "no checkpoint at .* does not exist"),
        "empty": (b"", "empty or truncated"),
        "short": (b"abc", "not a safetensors file \\(only 3 bytes\\)"),
        "truncated": (good[: len(good) - 10], "truncated"),
        "half": (good[: len(good) // 2], "truncated"),
        "header cut": (good[:20], "truncated"),
        "junk length": (struct.pack("<Q", 10**12) + b"x" * 100, "header length"),
        "not safetensors": (b"PK\x03\x04 this is a zip file, not weights", "not a safetensors file"),
        "pickle": (b"\x80\x04\x95" + b"\x00" * 64, "not a safetensors file"),
        "foreign": (st_save({"weight": torch.zeros(2, 2)}, metadata={"framework": "other"}), "not a checkpoint of"),
        "newer": (_with(good, version="99"), "checkpoint version '99'"),
        "weights v9": (_with(V1_WEIGHTS, version="9"), "weights format version '9'"),
        "shape mismatch": (_with(good, model_config=json.dumps({**config, "d_ff": 16})), "has shape"),
        "broken config": (_with(good, model_config="{not json"), "broken config"),
        "v1 broken config": (_with(V1_WEIGHTS, config="{not json"), "broken config"),
        "config list": (_with(good, model_config="[1]"), "broken config.*not a JSON object"),
        "vocab mismatch": (_with(V1_WEIGHTS, vocab=json.dumps(["<pad>", "a"])), "vocabulary has 2 tokens"),
        "tokenizer mismatch": (_with(good, tokenizer=json.dumps(["<pad>", "a"])), "vocabulary has 2 tokens"),
        "no config": (_with(good, model_config=None), "lacks 'model_config'"),
        "v1 lacks tokenizer": (_with(V1_CHECKPOINT, tokenizer=None), "lacks 'tokenizer'"),
        "v1 negative step": (_with(V1_CHECKPOINT, step="-4"), "broken step"),
        "negative iteration": (_with(good, iteration="-4"), "broken iteration"),
        "huge iteration": (_with(good, iteration="9" * 5000), "broken iteration"),
        "n_heads": (_with(good, model_config=json.dumps({**config, "n_heads": 3})), "n_heads"),
        "train config": (_with(good, train_config="[1]"), "broken training settings"),
        "optimizer": (_with(good, optimizer='{"steps": {}}'), "broken optimizer record.*needs a name"),
        "steps of nothing": (_with(good, optimizer='{"name": "AdamW", "steps": {"x": 1}}'), "unknown parameter 'x'"),
        "zero steps": (_with(good, optimizer='{"name": "AdamW", "steps": {"tok_emb": 0}}'), "whole number >= 1"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(CheckpointError, match=message):
            load(path)
        if data is not None:
            with pytest.raises(CheckpointError, match=message):
                load(data)
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint at .*empty-run/checkpoint.safetensors"):
        load(tmp_path / "empty-run")


def test_bad_tensors_are_explained():
    model, opt = _run()
    good = to_bytes(model, opt, 3, rng=torch.Generator().get_state())
    tensors = st_load(good)
    name = "param/layers.0.wq"
    cases = [
        ({k: v for k, v in tensors.items() if k != name}, "missing tensors param/layers.0.wq"),
        ({**tensors, "param/extra": torch.zeros(1)}, "unexpected tensors param/extra"),
        ({**tensors, name: torch.zeros(3, 3, dtype=torch.float64)}, "'param/layers.0.wq' has shape \\(3, 3\\)"),
        ({**tensors, name: tensors[name].float()}, "is torch.float32 but the config needs float64"),
        ({**tensors, name: tensors[name] * float("nan")}, "'param/layers.0.wq' holds NaN or infinite"),
        ({**tensors, "adam_v/tok_emb": tensors["adam_v/tok_emb"] / 0}, "'adam_v/tok_emb' holds NaN or infinite"),
        ({k: v for k, v in tensors.items() if k != "adam_m/tok_emb"}, "missing tensors adam_m/tok_emb"),
        ({**tensors, "rng/batches": torch.zeros(4)}, "uint8"),
    ]
    for bad, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load(_with(good, bad))
    v1 = st_load(V1_CHECKPOINT)
    with pytest.raises(CheckpointError, match="missing tensors rng/batches"):  # v1 runs always had one
        load(_with(V1_CHECKPOINT, {k: t for k, t in v1.items() if k != "rng/batches"}))


def test_hostile_files_are_explained_not_crashed_on():
    """Issue 19 item 6 among them: deep JSON in a header or its metadata is a message, not a RecursionError."""
    config = _model().config.to_dict()
    vocab = json.loads(_header(V1_WEIGHTS)["__metadata__"]["vocab"])
    deep = "[" * 100_000 + "]" * 100_000
    deep_object = '{"a":' * 200_000 + "1" + "}" * 200_000
    cases = {
        "huge offsets": (_raw({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 1e400]}}), "header"),
        "deep header": (struct.pack("<Q", len(deep) + 6) + b'{"a":' + deep.encode() + b"}", "header is not JSON"),
        "deep object header": (struct.pack("<Q", len(deep_object)) + deep_object.encode(), "nests .* over 32 deep"),
        "unclosed header": (struct.pack("<Q", 200_001) + b"{" + b"[" * 200_000, "header is not JSON"),
        "metadata list": (_raw({"__metadata__": ["x"]}), "not a checkpoint of this program"),
        "deep config": (_with(V1_WEIGHTS, config=deep), "broken config"),
        "a billion layers": (_with(V1_WEIGHTS, config=json.dumps({**config, "n_layers": 10**9})), "at most 64"),
        "number in vocab": (_with(V1_WEIGHTS, vocab=json.dumps([*vocab[:-1], 1])), "list of strings"),
        "untypeable word": (_with(V1_WEIGHTS, vocab=json.dumps([*vocab[:-1], "A b"])), "'A b'"),
        "deep tokenizer": (_with(V1_CHECKPOINT, tokenizer=deep), "broken tokenizer"),
        "trailing bytes": (to_bytes(_model()) + b"\x00" * 10, "10 bytes after its last tensor"),
    }
    for data, needle in cases.values():
        with pytest.raises(CheckpointError, match=needle):
            load(data)


def test_json_is_bounded():
    for text in ("[" * 200_000, '{"a":' * 200_000, "[" * 33 + "]" * 33):
        with pytest.raises(FileFormatError, match="the thing is not JSON we read: it nests"):
            loads_json(text, "the thing")
    assert loads_json('["[[[[", {"a": [1]}]', "x") == ["[[[[", {"a": [1]}]  # brackets in strings do not count
    with pytest.raises(FileFormatError, match="over the limit"):
        loads_json("[]" * 10, "x", max_bytes=10)


def test_a_header_with_150000_names_gives_a_short_error():
    good = to_bytes(_model())
    header = _header(good)
    body_end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    for i in range(150_000):
        header[f"extra.{i}"] = {"dtype": "F64", "shape": [0], "data_offsets": [body_end, body_end]}
    text = json.dumps(header).encode()
    data = struct.pack("<Q", len(text)) + text + good[8 + struct.unpack("<Q", good[:8])[0] :]
    with pytest.raises(CheckpointError) as info:
        load(data)
    message = str(info.value)
    assert "unexpected tensors extra." in message and "149,995 more" in message and len(message) < 500


# ---------------------------------------------------------------------------------------------- big and special files


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes on paper that takes no disk: `head`, then zeros."""
    with path.open("wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _counting_reads(monkeypatch) -> list[int]:
    sizes = []
    real = files.read_exact
    monkeypatch.setattr(files, "read_exact", lambda f, n, where: sizes.append(n) or real(f, n, where))
    return sizes


def test_a_file_over_the_bound_is_refused_from_its_size_without_reading_it(tmp_path, monkeypatch):
    path = _sparse(tmp_path / "huge.safetensors", 5_000_000_000)
    sizes = _counting_reads(monkeypatch)
    with pytest.raises(CheckpointError, match="5,000,000,000 bytes; a checkpoint here is at most 4,000,000,000"):
        load(path)
    assert sizes == []
    with pytest.raises(CheckpointError, match="has 100 bytes; a checkpoint here is at most 50"):
        load(b"\x00" * 100, max_bytes=50)


def test_big_files_fail_after_their_first_bytes(tmp_path, monkeypatch):
    """Issue 19 item 5: a 3 GB garbage file, and a 2 GB file behind a valid small header, fail at once."""
    garbage = _sparse(tmp_path / "garbage.safetensors", 3_000_000_000)
    good = to_bytes(_model())
    padded = _sparse(tmp_path / "padded.safetensors", 2_000_000_000, head=good)
    sizes = _counting_reads(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load(garbage)
    with pytest.raises(CheckpointError, match=f"{2_000_000_000 - len(good):,} bytes after its last tensor"):
        load(padded)
    assert time.perf_counter() - start < 2.0 and sum(sizes) < 2 * len(good)


def test_a_file_is_checked_by_its_header_before_its_tensors_are_read(tmp_path, monkeypatch):
    """A foreign file with a big body fails on its header: the body is never read."""
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(st_save({"weight": torch.zeros(1000, 100)}, metadata={"framework": "other"}))
    sizes = _counting_reads(monkeypatch)
    with pytest.raises(CheckpointError, match="not a checkpoint of this program"):
        load(path)
    assert sum(sizes) < 1000  # the 800 kB of tensors were not read


@pytest.mark.parametrize("special", ["/proc/self/mem", "/dev/zero", "/dev/null"])
def test_special_files_get_a_clear_error(special):
    """Issue 19 item 7: /proc/self/mem stats as a regular file of 0 bytes but cannot be read."""
    if not os.path.exists(special):
        pytest.skip(f"{special} does not exist here")
    with pytest.raises(CheckpointError, match=f"'{special}'"):
        load(special)
    with pytest.raises(FileFormatError, match=f"'{special}'"):
        read_regular_file(special, 1000, "text file")


def test_a_fifo_fails_at_once_and_never_hangs(tmp_path):
    """Issue 19 item 4: nothing is opened until stat says it is a regular file."""
    fifo = tmp_path / "checkpoint.safetensors"
    os.mkfifo(fifo)
    errors = []

    def try_load():
        try:
            load(fifo)
        except CheckpointError as err:
            errors.append(str(err))

    thread = threading.Thread(target=try_load, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # it blocked in open(): a writer releases it so the test can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("loading a FIFO hung")
    assert errors and "a FIFO (named pipe), not a file" in errors[0] and str(fifo) in errors[0]
    with pytest.raises(CheckpointError, match="a FIFO"):
        load(tmp_path)  # the run folder's checkpoint is the FIFO


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "'f' is empty"),
        (b" \n\t\n", "'f' is empty"),
        (b"one\ntwo\x00", r"'f' holds a NUL byte \(line 2\): it looks binary"),
        (b"one\ntwo\nt\xe9", r"'f' is not UTF-8 text \(byte 9 is b'\\xe9', line 3\): save it as UTF-8"),
    ],
)
def test_decode_text_names_the_file_the_line_and_the_fix(raw, message):
    """The one text check behind the corpus, training-text, tokenizer and page readers, in the caller's error."""
    with pytest.raises(CheckpointError, match=message):
        files.decode_text(raw, "'f'", CheckpointError)
    assert files.decode_text("café\n".encode(), "'f'") == "café\n"


def test_read_regular_file_reads_exactly_what_stat_says(tmp_path):
    text = tmp_path / "a.txt"
    text.write_bytes(b"hello")
    assert read_regular_file(text, 5, "text file") == b"hello"
    with pytest.raises(FileFormatError, match="has 5 bytes; a text file here is at most 4"):
        read_regular_file(text, 4, "text file")
    with pytest.raises(FileFormatError, match="no text file at .*does not exist\\): make one"):
        read_regular_file(tmp_path / "nothing", 4, "text file", hint="make one")
    with pytest.raises(FileFormatError, match="is a folder, not a file"):
        read_regular_file(tmp_path, 4, "text file")
    if os.path.exists("/proc/self/status"):  # stat says 0 bytes, reading gives more
        with pytest.raises(FileFormatError, match="'/proc/self/status' changed size while it was read"):
            read_regular_file("/proc/self/status", 10_000, "text file")


def test_the_last_evaluation_travels_with_a_checkpoint(tmp_path):
    """A checkpoint records what its last evaluation measured (the bundled models carry their loss)."""
    path = save(tmp_path / "m.safetensors", _model(), iteration=7, metrics={"val_loss": 1.5, "sample": "to be"})
    saved = load(path)
    assert saved.metrics == {"val_loss": 1.5, "sample": "to be"} and saved.iteration == 7
    assert load(save(tmp_path / "bare.safetensors", _model())).metrics is None
