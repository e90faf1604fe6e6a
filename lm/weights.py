"""The classic model's old weights API, kept while its callers move to lm.checkpoint (playground/
generation.py, playground/tokenizing.py and a few tests); delete it once nothing imports it. A weights
file is now a checkpoint without optimizer state; these are thin calls into lm.checkpoint and lm.files.
"""

from __future__ import annotations

import os
from pathlib import Path

from lm import checkpoint, files
from lm.checkpoint import DEFAULT_WEIGHTS
from lm.checkpoint import CheckpointError as WeightsError
from lm.model import LanguageModel

__all__ = ["DEFAULT_WEIGHTS", "WeightsError", "load", "load_bytes", "save", "to_bytes"]


def load(path: str | os.PathLike = DEFAULT_WEIGHTS) -> LanguageModel:
    return checkpoint.load(path).model


def load_bytes(data: bytes, source: str = "the uploaded file") -> LanguageModel:
    return checkpoint.load(data, source=source).model


def save(model: LanguageModel, path: str | os.PathLike) -> Path:
    """The file as given (`model.bin` too, as before), not a run folder."""
    return files.atomic_write(path, checkpoint.to_bytes(model))


def to_bytes(model: LanguageModel) -> bytes:
    return checkpoint.to_bytes(model)
