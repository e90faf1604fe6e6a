"""Checkpoints, the one model file: a safetensors file with a model's config, parameters and tokenizer and,
for a training run, its optimizer state, iteration, training settings, batch generator state and data id.
A weights file is a checkpoint without optimizer state; a run folder holds `checkpoint.safetensors`. Never
a pickle (a file cannot run code); read through lm.files (bounded, checked before a tensor byte is read),
every bad file is a `CheckpointError` saying what is wrong, and the files of earlier versions still load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import save as st_save

from lm import files
from lm.config import ModelConfig, param_shapes
from lm.files import FileFormatError, loads_json, names, short
from lm.model import LanguageModel
from lm.tokenizers import from_json, to_json

FORMAT = "autodiff-playground-checkpoint"  # metadata["format"]: marks our files among other safetensors files
VERSION = "2"
WEIGHTS_V1_FORMAT = "autodiff-playground-lm"  # the classic model's weights files before checkpoint v2
FILE_NAME = "checkpoint.safetensors"  # inside a run folder
DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "default.safetensors"  # the bundled classic model
SHAKESPEARE_WEIGHTS = Path(__file__).parent / "data" / "shakespeare-char.safetensors"  # the bundled text model
MAX_FILE_BYTES = 4_000_000_000  # a 100M-parameter float64 model with AdamW's two moments is 2.4 GB
CheckpointError = FileFormatError  # one error for every bad file; this name reads better at the call sites


@dataclass
class Checkpoint:
    """What a checkpoint file holds. `optimizer_state` is the dict the optimizer's load_state_dict takes
    (None when the file has no optimizer: a weights file); `iteration` is None when none was saved."""

    model: LanguageModel  # with its tokenizer when the file has one
    optimizer_name: str | None = None  # the optimizer's class name ("AdamW", "SGD")
    optimizer_state: dict | None = None
    optimizer_settings: dict | None = None  # lr, betas, eps, groups as saved (not restored: the caller's choice)
    iteration: int | None = None
    train_config: dict | None = None
    rng: torch.Tensor | None = None  # a torch.Generator's state (uint8): the batches to come
    data_id: str = ""  # names the data a run was trained on (its token file), to refuse another text
    metrics: dict | None = None  # the last evaluation's results when saved (val_loss, memorized, ...)

    def restore(self, model: LanguageModel, optimizer=None) -> int | None:
        """Copy the parameters (and the optimizer state, when the file has one) into existing objects;
        returns the iteration. The model must have the checkpoint's shape and dtype."""
        saved, mine = self.model.config.to_dict(), model.config.to_dict()
        # the seed only drew the initial parameters
        differ = [f"{k} ({saved[k]!r}, not {mine[k]!r})" for k in saved if k != "seed" and saved[k] != mine[k]]
        if differ:
            raise CheckpointError("the checkpoint's model differs from this one in " + ", ".join(differ))
        with torch.no_grad():
            for name, p in model.params.items():
                p.copy_(self.model.params[name])
        if optimizer is not None and self.optimizer_state is not None:
            given = type(optimizer).__name__
            if given != self.optimizer_name:
                raise CheckpointError(f"the checkpoint holds {self.optimizer_name}'s state, not {given}'s")
            optimizer.load_state_dict(self.optimizer_state)
        return self.iteration


def resolve(path: str | os.PathLike, saving: bool = False) -> Path:
    """The file a path means: a run folder means its checkpoint file. When saving, so does a new path not
    ending in .safetensors (`runs/run`: a folder to make); an existing file or `x.safetensors` is itself."""
    path = Path(path)
    new_folder = saving and not path.exists() and path.suffix != ".safetensors"
    return path / FILE_NAME if path.is_dir() or new_folder else path


def save(
    dest: str | os.PathLike | BinaryIO, model: LanguageModel, optimizer=None, iteration: int | None = None, *,
    train_config: dict | None = None, rng: torch.Tensor | None = None, data_id: str = "", metrics: dict | None = None,
) -> Path | None:  # fmt: skip
    """Write a checkpoint to `dest`: a path (atomically; returns the file written) or a binary file object
    such as io.BytesIO (returns None). Without an optimizer it is a weights file."""
    if not hasattr(dest, "write"):  # a path: checked before the work of serializing
        dest = files.check_out_path(resolve(dest, saving=True), "the checkpoint path")
    data = to_bytes(model, optimizer, iteration, train_config=train_config, rng=rng, data_id=data_id, metrics=metrics)
    if isinstance(dest, Path):
        return files.atomic_write(dest, data)
    dest.write(data)
    return None


def to_bytes(
    model: LanguageModel, optimizer=None, iteration: int | None = None, *,
    train_config: dict | None = None, rng: torch.Tensor | None = None, data_id: str = "", metrics: dict | None = None,
) -> bytes:  # fmt: skip
    """The checkpoint as safetensors bytes (what `save` writes and a download button serves)."""
    tensors = {f"param/{n}": _cpu(p) for n, p in model.params.items()}
    metadata = {"format": FORMAT, "version": VERSION, "model_config": json.dumps(model.config.to_dict())}
    if model.tokenizer is not None:
        metadata["tokenizer"] = to_json(model.tokenizer)
    if iteration is not None:
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise ValueError(f"the iteration must be a whole number >= 0, got {iteration!r}")
        metadata["iteration"] = str(iteration)
    if optimizer is not None:
        state = optimizer.state_dict()
        unknown = sorted(set(state.get("m", {})) - set(model.params))
        if unknown:
            raise ValueError(f"the optimizer's state names parameters the model lacks: {names(unknown)}")
        tensors.update({f"adam_m/{n}": _cpu(m) for n, m in state.get("m", {}).items()})
        tensors.update({f"adam_v/{n}": _cpu(v) for n, v in state.get("v", {}).items()})
        settings = {k: getattr(optimizer, k) for k in ("lr", "betas", "eps", "groups") if hasattr(optimizer, k)}
        record = {"name": type(optimizer).__name__, "settings": settings}
        if "steps" in state:  # AdamW's: the steps each parameter took (its bias correction)
            record["steps"] = {n: int(t) for n, t in state["steps"].items()}
        metadata["optimizer"] = json.dumps(record)
    if train_config is not None:
        metadata["train_config"] = json.dumps(train_config)
    if rng is not None:
        if rng.dtype != torch.uint8 or rng.dim() != 1:
            raise ValueError("rng must be a generator's state: a 1-D uint8 tensor (torch.Generator.get_state())")
        tensors["rng/batches"] = _cpu(rng)
    if data_id:
        metadata["data_id"] = data_id
    if metrics:
        metadata["metrics"] = json.dumps(metrics)
    return st_save(tensors, metadata=metadata)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def load(
    src: str | os.PathLike | bytes | bytearray | BinaryIO, *, source: str | None = None, max_bytes: int = MAX_FILE_BYTES
) -> Checkpoint:
    """A checkpoint from a path (a run folder means its checkpoint file), bytes (an upload) or a binary file
    object; `source` names it in messages (default: the path, or "the uploaded file"). Its size and header
    are checked before the tensors are read. Every layout this program wrote loads: weights v1 (the classic
    model's `config`, `vocab` and bare parameter names), checkpoint v1 (a text run: every key required,
    `step` and `tokens` for `iteration` and `data_id`) and v2 (all but the model config optional)."""
    if isinstance(src, (str, os.PathLike)):
        src = resolve(src)
    hint = "check the path, or train one with `python -m lm train`"
    f = files.read_safetensors(
        src, what="checkpoint", max_bytes=max_bytes, source=source, hint=hint, accept=_check_format
    )
    meta = f.metadata
    if meta["format"] == WEIGHTS_V1_FORMAT:
        config = _config(f, "config")
        params, *_ = _tensors(f, config, prefix="", moments=[], rng=False)
        return Checkpoint(LanguageModel(config, params=params, tokenizer=_tokenizer(f, "vocab", config)))
    v1 = meta["version"] == "1"
    # v2 keeps only what a file has; a v1 run has every key (reading a missing one refuses the file)
    has = (set(meta) | {"tokenizer", "train_config", "step", "adam_t"}) if v1 else set(meta)
    iteration_key, data_key = ("step", "tokens") if v1 else ("iteration", "data_id")
    config = _config(f, "model_config")
    tokenizer = _tokenizer(f, "tokenizer", config) if "tokenizer" in has else None
    iteration = _field(f, iteration_key, iteration_key, _whole_number) if iteration_key in has else None
    train_config = _field(f, "train_config", "training settings", _json_object) if "train_config" in has else None
    if v1:  # the released AdamW: one step count `adam_t` for every parameter (none before its first step)
        adam_t = _field(f, "adam_t", "adam_t", _whole_number)
        name, settings = "AdamW", None
        steps = dict.fromkeys(param_shapes(config), adam_t) if adam_t else {}
    elif "optimizer" in has:
        record = _field(f, "optimizer", "optimizer record", lambda text: _optimizer(text, param_shapes(config)))
        name, steps, settings = record
    else:
        name = steps = settings = None
    params, m, v, rng = _tensors(f, config, prefix="param/", moments=list(steps or ()), rng=True if v1 else None)
    state = None if name is None else {} if steps is None else {"steps": steps, "m": m, "v": v}
    model = LanguageModel(config, params=params, tokenizer=tokenizer)
    metrics = _field(f, "metrics", "metrics", _json_object) if "metrics" in has else None
    return Checkpoint(model, name, state, settings, iteration, train_config, rng, meta.get(data_key, ""), metrics)


def _check_format(metadata: dict, source: str) -> None:
    """Refuse a file that is not ours, or of a version this program cannot read, from its header alone."""
    kind, version = metadata.get("format"), metadata.get("version")
    if kind not in (FORMAT, WEIGHTS_V1_FORMAT):
        raise CheckpointError(f"{source} is not a checkpoint of this program: use a file saved by `python -m lm train`")
    what, versions = ("weights format", ("1",)) if kind == WEIGHTS_V1_FORMAT else ("checkpoint", ("1", VERSION))
    if version not in versions:
        raise CheckpointError(
            f"{source} has {what} version {short(version)!r}; this program reads {' and '.join(versions)}: is it newer?"
        )


# ------------------------------------------------------------------------------- checked pieces
def _field(f: files.SafetensorsFile, key: str, part: str, parse: Callable[[str], Any]) -> Any:
    """`parse(metadata[key])`: a missing key, or a ValueError or TypeError of `parse`, is a CheckpointError
    naming the `part` ("config") that is broken."""
    if key not in f.metadata:
        raise CheckpointError(f"{f.source} lacks {key!r} in its metadata: save the file again with this program")
    try:
        return parse(f.metadata[key])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{f.source} has a broken {part} in its metadata: {short(err)}") from None


def _json_object(text: str) -> dict:
    data = loads_json(text, "it")
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    return data


def _whole_number(text: str) -> int:
    # digits only: no sign, no 5,000-digit number for int() to chew on
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"{short(text)!r} is not a whole number >= 0")
    return int(text)


def _config(f: files.SafetensorsFile, key: str) -> ModelConfig:
    return _field(f, key, "config", lambda text: ModelConfig.from_dict(_json_object(text)))


def _tokenizer(f: files.SafetensorsFile, key: str, config: ModelConfig):
    tokenizer = _field(f, key, key, from_json)  # a bare list is a classic vocabulary
    if len(tokenizer) != config.vocab_size:
        raise CheckpointError(f"{f.source}: its vocabulary has {len(tokenizer)} tokens, the config {config.vocab_size}")
    return tokenizer


def _optimizer(text: str, shapes: dict[str, tuple[int, ...]]) -> tuple[str, dict[str, int] | None, dict]:
    """An optimizer record: its name, the steps each parameter took (None: it keeps none) and its settings."""
    data = _json_object(text)
    name, steps, settings = data.get("name"), data.get("steps"), data.get("settings", {})
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError("it needs a name")
    if not isinstance(settings, dict) or not (steps is None or isinstance(steps, dict)):
        raise ValueError("its settings and steps must be JSON objects")
    for param, t in (steps or {}).items():
        if param not in shapes:
            raise ValueError(f"it has steps of an unknown parameter {param!r}")
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"{param!r} took {t!r} steps, not a whole number >= 1")
    return name, steps, settings


def _tensors(
    f: files.SafetensorsFile, config: ModelConfig, prefix: str, moments: list[str], rng: bool | None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor | None]:
    """The parameters (in the config's order), AdamW's moments of `moments` and the generator state (`rng`:
    required (True), absent (False) or optional (None)), once the tensors' names (from the header, before decoding)
    are exactly those expected, and their shapes and dtype the config's."""
    shapes = param_shapes(config)
    expected = {f"{prefix}{n}" for n in shapes} | {f"{k}/{n}" for k in ("adam_m", "adam_v") for n in moments}
    if rng or (rng is None and "rng/batches" in f.entries):
        expected.add("rng/batches")
    missing = [n for n in sorted(expected) if n not in f.entries]
    extra = [n for n in f.entries if n not in expected]
    if missing or extra:
        listed = "; ".join(
            f"{kind} tensors {names(ns)}" for kind, ns in (("missing", missing), ("unexpected", extra)) if ns
        )
        raise CheckpointError(f"{f.source} does not match its config: {listed}")
    tensors = f.tensors()
    for key in sorted(expected - {"rng/batches"}):
        t, shape = tensors[key], shapes[key.rsplit("/", 1)[-1]]  # a moment has its parameter's shape
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{f.source}: tensor '{key}' has shape {tuple(t.shape)} but the config needs {shape}")
        if t.dtype != config.torch_dtype:
            raise CheckpointError(f"{f.source}: tensor '{key}' is {t.dtype} but the config needs {config.dtype}")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{f.source}: tensor '{key}' holds NaN or infinite values")
    state = tensors.get("rng/batches")
    if state is not None and (state.dtype != torch.uint8 or state.dim() != 1):
        raise CheckpointError(f"{f.source}: the generator state (rng/batches) must be uint8 bytes")
    params = {n: tensors[f"{prefix}{n}"] for n in shapes}
    m = {n: tensors[f"adam_m/{n}"] for n in moments}
    v = {n: tensors[f"adam_v/{n}"] for n in moments}
    return params, m, v, state
