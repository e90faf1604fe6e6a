"""Weights on disk with safetensors: named tensors, plus the config and vocabulary as metadata.

Never a pickle: a weights file cannot run code. Writes are atomic (a temp file in the same folder,
then a rename), and every way a file can be wrong (missing, truncated, not safetensors, another
program's file, shapes that do not match the config) raises `WeightsError` saying what is wrong.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lm.model import LanguageModel, ModelConfig, param_shapes
from lm.tokenizer import Tokenizer

FORMAT = "autodiff-playground-lm"  # metadata["format"]: marks our files among other safetensors files
VERSION = "1"
DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "default.safetensors"
MAX_HEADER = 100_000_000  # safetensors' own bound on the JSON header


class WeightsError(ValueError):
    """A weights file cannot be loaded; the message says why."""


def to_bytes(model: LanguageModel) -> bytes:
    """The model as safetensors bytes (what a download button serves)."""
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(model.config.to_dict()),
        "vocab": json.dumps(model.tokenizer.vocab),
    }
    return st_save({name: t.contiguous() for name, t in model.params.items()}, metadata=metadata)


def save(model: LanguageModel, path: str | Path) -> Path:
    """Write the model to `path` atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(model)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path = DEFAULT_WEIGHTS) -> LanguageModel:
    """A model from a file written by `save` (or the CLI)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(
            f"weights file '{path}' does not exist: check the path or train one with `python -m lm train`"
        )
    if not path.is_file():
        raise WeightsError(f"'{path}' is not a file")
    return load_bytes(path.read_bytes(), source=str(path))


def load_bytes(data: bytes, source: str = "the uploaded file") -> LanguageModel:
    """A model from safetensors bytes (an uploaded file); raises WeightsError if they are not ours."""
    header = _read_header(data, source)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{source} is a safetensors file but not an autodiff-playground language model "
            f"(its metadata has no format '{FORMAT}'): use a file saved by `python -m lm train`"
        )
    if metadata.get("version") != VERSION:
        raise WeightsError(f"{source} has format version {metadata.get('version')!r}; this program reads {VERSION!r}")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        tokenizer = Tokenizer(json.loads(metadata["vocab"]))
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        raise WeightsError(f"{source} has a broken config or vocabulary in its metadata: {err}") from None
    if len(tokenizer) != config.vocab_size:
        raise WeightsError(
            f"{source}: the vocabulary has {len(tokenizer)} words but the config says {config.vocab_size}"
        )
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error type for corrupt data
        raise WeightsError(f"{source} is corrupt: {err}") from None
    expected = param_shapes(config)
    missing = [n for n in expected if n not in tensors]
    extra = [n for n in tensors if n not in expected]
    if missing or extra:
        raise WeightsError(
            f"{source} does not match its config: " + "; ".join(
                part for part in (
                    f"missing tensors {', '.join(missing)}" if missing else "",
                    f"unexpected tensors {', '.join(extra)}" if extra else "",
                ) if part
            )
        )  # fmt: skip
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise WeightsError(f"{source}: tensor '{name}' has shape {tuple(t.shape)} but the config needs {shape}")
        if t.dtype != config.torch_dtype:
            raise WeightsError(f"{source}: tensor '{name}' is {t.dtype} but the config says {config.dtype}")
        if not torch.isfinite(t).all():
            raise WeightsError(f"{source}: tensor '{name}' holds NaN or infinite values")
    return LanguageModel(config, tokenizer, {name: tensors[name].clone() for name in expected})


def _read_header(data: bytes, source: str) -> dict:
    """The JSON header of safetensors bytes: an 8-byte little-endian length, then the JSON."""
    if len(data) < 8:
        raise WeightsError(f"{source} is empty or truncated ({len(data)} bytes): it is not a safetensors file")
    if data[8:9] != b"{":  # the JSON header opens right after the length
        raise WeightsError(f"{source} is not a safetensors file (no JSON header after the first 8 bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or n > len(data) - 8:
        if n > MAX_HEADER:
            raise WeightsError(f"{source} is not a safetensors file (its first 8 bytes are not a header length)")
        raise WeightsError(f"{source} is truncated: its header needs {n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WeightsError(f"{source} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{source} is not a safetensors file (its header is not a JSON object)")
    try:  # the end of the last tensor's bytes
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError, OverflowError):
        raise WeightsError(f"{source} is not a safetensors file (its header does not list tensors)") from None
    if 8 + n + end > len(data):
        raise WeightsError(
            f"{source} is truncated: it should hold {8 + n + end} bytes but has {len(data)}; save or download it again"
        )
    return header
