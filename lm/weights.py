"""Weights on disk with safetensors: named tensors, plus the config and vocabulary as metadata.

Never a pickle: a weights file cannot run code. Writes are atomic (a temp file in the same folder,
then a rename; the file's mode follows the umask like any new file, and temp files left by a killed
writer are removed by the next save). Every way a file can be wrong (missing, huge, truncated, not
safetensors, another program's file, shapes that do not match the config) raises a short
`WeightsError` saying what is wrong, and a file is checked by its size and header before it is read.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lm.model import LanguageModel, ModelConfig, param_shapes
from lm.tokenizer import Tokenizer

FORMAT = "autodiff-playground-lm"  # metadata["format"]: marks our files among other safetensors files
VERSION = "1"
DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "default.safetensors"
MAX_HEADER = 16_000_000  # bytes of JSON header: ours hold a config and a vocabulary (1M words at most)
MAX_FILE_BYTES = 2_000_000_000  # far above any model trained here; a bigger file is refused before reading
MAX_MESSAGE = 300  # characters of a hostile file's own text (names, values) quoted in an error
STALE_TMP_S = 3600  # a temp file this old is a killed writer's, even if its process id was reused


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
    _remove_stale_temps(path)
    data = to_bytes(model)
    # Our own unique name opened with mode 0o666: the umask then applies as for any new file (mkstemp
    # would make it 0600). The process id in the name tells a later save whether its writer is alive.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of `path` whose writer was killed (its process is gone, or the file is old)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].split(".")
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_TMP_S
            if old or not _alive(int(parts[0])):
                tmp.unlink(missing_ok=True)
        except (ValueError, OSError):  # not one of ours, or already gone
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def load(path: str | Path = DEFAULT_WEIGHTS) -> LanguageModel:
    """A model from a file written by `save` (or the CLI). Its size and header are checked before the
    tensors are read, so a huge or foreign file fails at once."""
    path = Path(path)
    source = f"'{path}'"
    try:
        if not path.exists():
            raise WeightsError(
                f"weights file '{path}' does not exist: check the path or train one with `python -m lm train`"
            )
        if not path.is_file():
            raise WeightsError(f"'{path}' is not a file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WeightsError(f"{source} has {size:,} bytes; a weights file here is at most {MAX_FILE_BYTES:,}")
        with path.open("rb") as f:
            head = f.read(9)  # the length and the header's first byte
            n = _header_length(head, size, source)
            head += f.read(max(0, 8 + n - len(head)))
            _metadata(_read_header(head, source, size), source)  # extent, format, config: before the tensors
            data = head + f.read(size - len(head) + 1)
    except OSError as err:
        raise WeightsError(f"cannot read {source}: {err.strerror or err}") from None
    if len(data) != size:  # the file changed under us, or its size was not what stat said (/proc files)
        raise WeightsError(f"{source} changed size while it was read ({size:,} then {len(data):,} bytes): try again")
    return load_bytes(data, source=source)


def load_bytes(data: bytes, source: str = "the uploaded file") -> LanguageModel:
    """A model from safetensors bytes (an uploaded file); raises WeightsError if they are not ours."""
    config, tokenizer = _metadata(_read_header(data, source, len(data)), source)
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error type for corrupt data
        raise WeightsError(f"{source} is corrupt: {_short(err)}") from None
    return _model(config, tokenizer, tensors, source)


def _metadata(header: dict, source: str) -> tuple[ModelConfig, Tokenizer]:
    """The config and vocabulary of a header's metadata, checked."""
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
        raise WeightsError(f"{source} has a broken config or vocabulary in its metadata: {_short(err)}") from None
    if len(tokenizer) != config.vocab_size:
        raise WeightsError(
            f"{source}: the vocabulary has {len(tokenizer)} words but the config says {config.vocab_size}"
        )
    return config, tokenizer


def _model(config: ModelConfig, tokenizer: Tokenizer, tensors: dict[str, torch.Tensor], source: str) -> LanguageModel:
    """The model of checked metadata and loaded tensors, once the tensors match the config."""
    expected = param_shapes(config)
    missing = [n for n in expected if n not in tensors]
    extra = [n for n in tensors if n not in expected]
    if missing or extra:
        raise WeightsError(
            f"{source} does not match its config: " + "; ".join(
                part for part in (
                    f"missing tensors {_names(missing)}" if missing else "",
                    f"unexpected tensors {_names(extra)}" if extra else "",
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


def _short(err: object) -> str:
    """An error's text cut to MAX_MESSAGE characters (a hostile file's names can be megabytes)."""
    text = str(err)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"… ({len(text):,} characters)"


def _names(names: list[str], shown: int = 5) -> str:
    """A few names and how many more."""
    listed = ", ".join(_short(n)[:60] for n in names[:shown])
    return listed + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _header_length(head: bytes, size: int, source: str) -> int:
    """The header length from a file's first bytes (`head`: at least its first 8 when it has them)."""
    if size < 8 or len(head) < 8:
        raise WeightsError(f"{source} is empty or truncated ({size} bytes): it is not a safetensors file")
    if head[8:9] != b"{":  # the JSON header opens right after the length
        raise WeightsError(f"{source} is not a safetensors file (no JSON header after the first 8 bytes)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER:
        raise WeightsError(f"{source} is not a safetensors file of ours (its first 8 bytes are not a header length)")
    if n > size - 8:
        raise WeightsError(f"{source} is truncated: its header needs {n} bytes but only {size - 8} follow")
    return n


def _read_header(data: bytes, source: str, size: int) -> dict:
    """The JSON header of safetensors bytes (an 8-byte little-endian length, then the JSON), checked
    against the file's full `size` (`data` may hold only the length and the header)."""
    n = _header_length(data, size, source)
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
    if 8 + n + end > size:
        raise WeightsError(
            f"{source} is truncated: it should hold {8 + n + end} bytes but has {size}; save or download it again"
        )
    return header
