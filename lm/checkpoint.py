"""Checkpoints, the one model file: a safetensors file with a model's config, parameters and tokenizer and,
for a training run, its optimizer state, iteration, training settings, batch generator state and data id.
A weights file is a checkpoint without optimizer state; a run folder holds `checkpoint.safetensors`.

Never a pickle: a file cannot run code. Written and read through lm.files (atomic, bounded, checked
before a tensor byte is read); every bad file raises `CheckpointError` saying what is wrong, and the files
of earlier versions (the classic weights v1, checkpoint v1) still load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
MAX_FILE_BYTES = 4_000_000_000  # a 100M-parameter float64 model with AdamW's two moments is 2.4 GB
MAX_HEADER = files.MAX_HEADER_BYTES
MISSING_HINT = "check the path, or train one with `python -m lm train`"
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

    def restore(self, model: LanguageModel, optimizer=None) -> int | None:
        """Copy the parameters (and the optimizer state, when the file has one) into existing objects;
        returns the iteration. The model must have the checkpoint's shape and dtype."""
        saved, mine = self.model.config.to_dict(), model.config.to_dict()
        differ = [k for k in saved if k != "seed" and saved[k] != mine[k]]  # the seed only drew the init
        if differ:
            raise CheckpointError(
                "the checkpoint's model differs from this one in " + ", ".join(
                    f"{k} ({saved[k]!r}, not {mine[k]!r})" for k in differ
                )
            )  # fmt: skip
        with torch.no_grad():
            for name, p in model.params.items():
                p.copy_(self.model.params[name])
        if optimizer is not None and self.optimizer_state is not None:
            if type(optimizer).__name__ != self.optimizer_name:
                raise CheckpointError(
                    f"the checkpoint holds {self.optimizer_name}'s state, not {type(optimizer).__name__}'s"
                )
            optimizer.load_state_dict(self.optimizer_state)
        return self.iteration


def resolve(path: str | os.PathLike) -> Path:
    """The file a path means when reading: a run folder means its checkpoint file."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def save_path(dest: str | os.PathLike) -> Path:
    """The file a path means when saving: a folder (existing, or a new path not ending in .safetensors,
    such as `runs/run`) means `folder/checkpoint.safetensors`; an existing file or `x.safetensors` itself."""
    path = Path(dest)
    if path.is_dir() or (not path.exists() and path.suffix != ".safetensors"):
        return path / FILE_NAME
    return path


def save(
    dest: str | os.PathLike | BinaryIO, model: LanguageModel, optimizer=None, iteration: int | None = None, *,
    train_config: dict | None = None, rng: torch.Tensor | None = None, data_id: str = "",
) -> Path | None:  # fmt: skip
    """Write a checkpoint to `dest`: a path (atomically; returns the file written) or a binary file object
    such as io.BytesIO (returns None). Without an optimizer it is a weights file."""
    if hasattr(dest, "write"):
        dest.write(to_bytes(model, optimizer, iteration, train_config=train_config, rng=rng, data_id=data_id))
        return None
    path = files.check_out_path(save_path(dest), "the checkpoint path")  # before the work of serializing
    return files.atomic_write(
        path, to_bytes(model, optimizer, iteration, train_config=train_config, rng=rng, data_id=data_id)
    )


def to_bytes(
    model: LanguageModel, optimizer=None, iteration: int | None = None, *,
    train_config: dict | None = None, rng: torch.Tensor | None = None, data_id: str = "",
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
    return st_save(tensors, metadata=metadata)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def load(
    src: str | os.PathLike | bytes | bytearray | BinaryIO, *, source: str | None = None, max_bytes: int = MAX_FILE_BYTES
) -> Checkpoint:
    """A checkpoint from a path (a run folder means its checkpoint file), bytes (an upload) or a binary
    file object; `source` names it in messages (default: the path, or "the uploaded file"). Its size and
    header are checked before the tensors are read; every file this program ever wrote loads."""
    if isinstance(src, (str, os.PathLike)):
        src = resolve(src)
    f = files.read_safetensors(
        src, what="checkpoint", max_bytes=max_bytes, source=source, hint=MISSING_HINT, accept=_check_format
    )
    if f.metadata.get("format") == WEIGHTS_V1_FORMAT:
        return _weights_v1(f)
    return _checkpoint_v1(f) if f.metadata.get("version") == "1" else _checkpoint_v2(f)


def _check_format(metadata: dict, source: str) -> None:
    """Refuse a file that is not ours, or of a version this program cannot read, from its header alone."""
    kind, version = metadata.get("format"), metadata.get("version")
    if kind == WEIGHTS_V1_FORMAT:
        if version != "1":
            raise CheckpointError(f"{source} has weights format version {short(version)!r}; this program reads '1'")
    elif kind != FORMAT:
        raise CheckpointError(
            f"{source} is a safetensors file but not a checkpoint of this program (its metadata has no format "
            f"'{FORMAT}'): use a file saved by `python -m lm train`"
        )
    elif version not in ("1", VERSION):
        raise CheckpointError(
            f"{source} has checkpoint version {short(version)!r}; this program reads versions '1' and '2': "
            "a newer program wrote it"
        )


# ------------------------------------------------------------------------------- the three layouts


def _weights_v1(f: files.SafetensorsFile) -> Checkpoint:
    """The classic model's weights file: `config` and `vocab` metadata, tensors by parameter name."""
    config = _config(f, "config")
    tokenizer = _tokenizer(f, "vocab", config, "vocabulary")
    params, _ = _tensors(f, config, prefix="", moments=set(), rng=False)
    return Checkpoint(LanguageModel(config, params=params, tokenizer=tokenizer))


def _checkpoint_v1(f: files.SafetensorsFile) -> Checkpoint:
    """A text run before v2: AdamW's one step count `adam_t` for every parameter, `step`, `tokens`."""
    _require(f, "model_config", "train_config", "tokenizer", "step", "adam_t")
    config = _config(f, "model_config")
    tokenizer = _tokenizer(f, "tokenizer", config, "tokenizer")
    step, adam_t = _count(f, "step"), _count(f, "adam_t")
    moments = list(param_shapes(config)) if adam_t else []  # the released AdamW moved every parameter at once
    params, extra = _tensors(f, config, prefix="param/", moments=moments, rng=True)
    state = {"steps": {n: adam_t for n in moments}, "m": extra["m"], "v": extra["v"]}
    return Checkpoint(
        LanguageModel(config, params=params, tokenizer=tokenizer), "AdamW", state, None, step,
        _train_config(f), extra["rng"], str(f.metadata.get("tokens", "")),
    )  # fmt: skip


def _checkpoint_v2(f: files.SafetensorsFile) -> Checkpoint:
    """This version: everything but the model config optional (a weights file has no optimizer)."""
    _require(f, "model_config")
    config = _config(f, "model_config")
    tokenizer = _tokenizer(f, "tokenizer", config, "tokenizer") if "tokenizer" in f.metadata else None
    iteration = _count(f, "iteration") if "iteration" in f.metadata else None
    name, steps, settings = _optimizer(f, config) if "optimizer" in f.metadata else (None, None, None)
    params, extra = _tensors(f, config, prefix="param/", moments=list(steps or ()), rng=None)
    state = None if name is None else {} if steps is None else {"steps": steps, "m": extra["m"], "v": extra["v"]}
    train_config = _train_config(f) if "train_config" in f.metadata else None
    data_id = f.metadata.get("data_id", "")
    if not isinstance(data_id, str):
        raise CheckpointError(f"{f.source} has a broken data id in its metadata: {short(data_id)}")
    return Checkpoint(
        LanguageModel(config, params=params, tokenizer=tokenizer), name, state, settings, iteration,
        train_config, extra["rng"], data_id,
    )  # fmt: skip


# ------------------------------------------------------------------------------- checked pieces


def _broken(f: files.SafetensorsFile, part: str, detail: object) -> CheckpointError:
    return CheckpointError(f"{f.source} has a broken {part} in its metadata: {short(detail)}")


def _require(f: files.SafetensorsFile, *keys: str) -> None:
    for key in keys:
        if key not in f.metadata:
            raise CheckpointError(f"{f.source} lacks {key!r} in its metadata: save the file again with this program")


def _json(f: files.SafetensorsFile, key: str, part: str):
    text = f.metadata.get(key)
    if not isinstance(text, str):
        raise CheckpointError(f"{f.source} lacks {key!r} in its metadata: save the file again with this program")
    try:
        return loads_json(text, f"the {part}")
    except FileFormatError as err:
        raise _broken(f, part, err) from None


def _config(f: files.SafetensorsFile, key: str) -> ModelConfig:
    data = _json(f, key, "config")
    if not isinstance(data, dict):
        raise _broken(f, "config", "it is not a JSON object")
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise _broken(f, "config", err) from None


def _tokenizer(f: files.SafetensorsFile, key: str, config: ModelConfig, part: str):
    text = f.metadata.get(key)
    if not isinstance(text, str):
        raise _broken(f, part, "it is not JSON text")
    try:
        tokenizer = from_json(text)  # a bare list is a classic vocabulary
    except ValueError as err:  # TokenizerError, or the JSON's own error
        raise _broken(f, part, err) from None
    if len(tokenizer) != config.vocab_size:
        raise CheckpointError(
            f"{f.source}: the tokenizer's vocabulary has {len(tokenizer)} tokens but the config says "
            f"{config.vocab_size}"
        )
    return tokenizer


def _count(f: files.SafetensorsFile, key: str) -> int:
    text = f.metadata[key]
    # digits only: no sign, no 5,000-digit number for int() to chew on
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _broken(f, key, f"{key} {short(text)!r} is not a whole number >= 0")
    return int(text)


def _train_config(f: files.SafetensorsFile) -> dict:
    data = _json(f, "train_config", "training settings")
    if not isinstance(data, dict):
        raise _broken(f, "training settings", "they are not a JSON object")
    return data


def _optimizer(f: files.SafetensorsFile, config: ModelConfig) -> tuple[str, dict[str, int] | None, dict]:
    """The optimizer's name, the steps each parameter took (None: it keeps none) and its settings."""
    data = _json(f, "optimizer", "optimizer record")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].isidentifier():
        raise _broken(f, "optimizer record", "it needs a name")
    settings = data.get("settings", {})
    steps = data.get("steps")
    if not isinstance(settings, dict) or not (steps is None or isinstance(steps, dict)):
        raise _broken(f, "optimizer record", "its settings and steps must be JSON objects")
    shapes = param_shapes(config)
    for name, t in (steps or {}).items():
        if name not in shapes:
            raise _broken(f, "optimizer record", f"it has steps of an unknown parameter {name!r}")
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise _broken(f, "optimizer record", f"{name!r} took {t!r} steps, not a whole number >= 1")
    return data["name"], steps, settings


def _tensors(
    f: files.SafetensorsFile, config: ModelConfig, prefix: str, moments: list[str], rng: bool | None
) -> tuple[dict[str, torch.Tensor], dict]:
    """The parameters (in the config's order) and {"m", "v", "rng"}, once the file's tensors are exactly
    the expected names (checked from the header, before decoding) with the config's shapes and dtype.
    `moments`: the parameters with AdamW moments, in the optimizer's order; `rng`: the generator state
    required (True), absent (False) or optional (None)."""
    shapes = param_shapes(config)
    expected = {f"{prefix}{n}" for n in shapes} | {f"{k}/{n}" for k in ("adam_m", "adam_v") for n in moments}
    if rng or (rng is None and "rng/batches" in f.entries):
        expected.add("rng/batches")
    missing = [n for n in sorted(expected) if n not in f.entries]
    extra = [n for n in f.entries if n not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{f.source} does not match its config: " + "; ".join(
                part for part in (
                    f"missing tensors {names(missing)}" if missing else "",
                    f"unexpected tensors {names(extra)}" if extra else "",
                ) if part
            )
        )  # fmt: skip
    tensors = f.tensors()
    for key in sorted(expected - {"rng/batches"}):
        t, shape = tensors[key], shapes[key.split("/", 1)[1] if "/" in key else key]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{f.source}: tensor '{key}' has shape {tuple(t.shape)} but the config needs {shape}")
        if t.dtype != config.torch_dtype:
            raise CheckpointError(f"{f.source}: tensor '{key}' is {t.dtype} but the config needs {config.dtype}")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{f.source}: tensor '{key}' holds NaN or infinite values")
    state = tensors.get("rng/batches")
    if state is not None and (state.dtype != torch.uint8 or state.dim() != 1):
        raise CheckpointError(f"{f.source}: the generator state (rng/batches) must be uint8 bytes")
    # clones: the decoded tensors view the file's bytes, which must not be written through
    params = {n: tensors[f"{prefix}{n}"].clone() for n in shapes}
    m = {n: tensors[f"adam_m/{n}"].clone() for n in moments}
    v = {n: tensors[f"adam_v/{n}"].clone() for n in moments}
    return params, {"m": m, "v": v, "rng": None if state is None else state.clone()}
