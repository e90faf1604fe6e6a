"""Checkpoints of text-model runs: one safetensors file with the model, AdamW's moments, the step, the
batch generator's state, the model and training configs and the tokenizer, so `--resume` continues
bit for bit and `generate` needs nothing else. Written atomically; every bad file gets a clear error.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lm.data import tokenizer_from_json, tokenizer_to_json
from lm.model import LanguageModel, ModelConfig, param_shapes

FORMAT = "autodiff-playground-checkpoint"
WEIGHTS_FORMAT = "autodiff-playground-lm"  # lm.weights' files: a model, not a run
VERSION = "1"
FILE_NAME = "checkpoint.safetensors"  # inside a run folder
MAX_FILE_BYTES = 4_000_000_000
MAX_HEADER = 64_000_000  # JSON header: tensor table and metadata (a GPT-2 tokenizer is ~2 MB)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@dataclass
class Checkpoint:
    model_config: ModelConfig
    train_config: dict
    tokenizer: object
    step: int
    params: dict[str, torch.Tensor]
    adam_t: int
    adam_m: list[torch.Tensor] | None
    adam_v: list[torch.Tensor] | None
    rng: torch.Tensor  # the batch generator's state (uint8)
    tokens: str = ""  # the token file's name: hashes of the text and the tokenizer it was trained on

    def model(self) -> LanguageModel:
        return LanguageModel(self.model_config, self.tokenizer, self.params)

    def trainer_state(self) -> dict:
        """The dict TextTrainer.load_state takes."""
        return {
            "step": self.step,
            "params": self.params,
            "optimizer": {"t": self.adam_t, "m": self.adam_m, "v": self.adam_v},
            "rng": self.rng,
        }


def resolve(path: str | os.PathLike) -> Path:
    """A run folder means its checkpoint file."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def save(trainer, path: str | os.PathLike) -> Path:
    """Write the trainer's run to `path` (a run folder or a .safetensors file) atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    state = trainer.state()
    names = list(state["params"])
    tensors = {f"param/{n}": p.contiguous() for n, p in state["params"].items()}
    opt = state["optimizer"]
    if opt["m"] is not None:
        tensors.update({f"adam_m/{n}": m.contiguous() for n, m in zip(names, opt["m"])})
        tensors.update({f"adam_v/{n}": v.contiguous() for n, v in zip(names, opt["v"])})
    tensors["rng/batches"] = state["rng"].contiguous()
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "step": str(state["step"]),
        "adam_t": str(opt["t"]),
        "model_config": json.dumps(trainer.model.config.to_dict()),
        "train_config": json.dumps(trainer.config.to_dict()),
        "tokenizer": tokenizer_to_json(trainer.tokenizer),
        "tokens": trainer.data.path.stem,
    }
    data = st_save(tensors, metadata=metadata)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a reader sees the old checkpoint or the new one, never half of one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint written by `save`; its size and header are checked before the tensors are read."""
    path = resolve(path)
    where = f"'{path}'"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {where}: train one with `python -m lm train --data ... --out DIR`")
    if not path.is_file():
        raise CheckpointError(f"{where} is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{where} has {size:,} bytes; a checkpoint here is at most {MAX_FILE_BYTES:,}")
    data = path.read_bytes()
    metadata = _metadata(data, where)
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors has its own error type for corrupt data
        raise CheckpointError(f"{where} is corrupt: {str(err)[:200]}") from None
    return _checkpoint(metadata, tensors, where)


def _metadata(data: bytes, where: str) -> dict:
    if len(data) < 8:
        raise CheckpointError(f"{where} is not a safetensors file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise CheckpointError(f"{where} is not a safetensors file (its header length {n:,} does not fit the file)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{where} is not a safetensors file (its header is not JSON)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    kind = metadata.get("format") if isinstance(metadata, dict) else None
    if kind == WEIGHTS_FORMAT:
        raise CheckpointError(
            f"{where} is a weights file of the classic model, not a training checkpoint: "
            "generate from it with `python -m lm generate --weights FILE`; --resume needs a run's checkpoint"
        )
    if kind != FORMAT:
        raise CheckpointError(f"{where} is not a checkpoint of this program (no format '{FORMAT}' in its metadata)")
    if metadata.get("version") != VERSION:
        raise CheckpointError(
            f"{where} has checkpoint version {metadata.get('version')!r}; this program reads {VERSION!r}"
        )
    return metadata


def _checkpoint(metadata: dict, tensors: dict, where: str) -> Checkpoint:
    try:
        config = ModelConfig.from_dict(json.loads(metadata["model_config"]))
        train_config = json.loads(metadata["train_config"])
        tokenizer = tokenizer_from_json(metadata["tokenizer"])
        step, adam_t = int(metadata["step"]), int(metadata["adam_t"])
    except KeyError as err:
        raise CheckpointError(f"{where} lacks {err.args[0]!r} in its metadata") from None
    except (TypeError, ValueError, RecursionError, AttributeError) as err:
        raise CheckpointError(f"{where} has broken metadata: {str(err)[:200]}") from None
    if step < 0 or adam_t < 0 or not isinstance(train_config, dict):
        raise CheckpointError(f"{where} has broken metadata: step {step}, adam_t {adam_t}")
    if len(tokenizer) != config.vocab_size:
        raise CheckpointError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model {config.vocab_size}")
    shapes = param_shapes(config)
    expected = {f"param/{n}" for n in shapes} | {"rng/batches"}
    if adam_t:
        expected |= {f"{k}/{n}" for k in ("adam_m", "adam_v") for n in shapes}
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        raise CheckpointError(f"{where} does not match its config: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in shapes.items():
        for kind in ("param", "adam_m", "adam_v") if adam_t else ("param",):
            t = tensors[f"{kind}/{name}"]
            if tuple(t.shape) != shape or t.dtype != config.torch_dtype:
                raise CheckpointError(
                    f"{where}: {kind}/{name} is {t.dtype} {tuple(t.shape)}, the config needs {config.dtype} {shape}"
                )
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{where}: {kind}/{name} holds NaN or infinite values")
    if tensors["rng/batches"].dtype != torch.uint8:
        raise CheckpointError(f"{where}: the generator state must be uint8 bytes")
    params = {n: tensors[f"param/{n}"] for n in shapes}
    m = [tensors[f"adam_m/{n}"] for n in shapes] if adam_t else None
    v = [tensors[f"adam_v/{n}"] for n in shapes] if adam_t else None
    tokens = str(metadata.get("tokens", ""))
    return Checkpoint(config, train_config, tokenizer, step, params, adam_t, m, v, tensors["rng/batches"], tokens)
