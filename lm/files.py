"""The one file layer of lm: every model file is written and read through here.

`atomic_write` (a reader sees the old file or the new one, never half), `check_out_path` (an output path
refused before any work), `read_regular_file` (stat first: a FIFO or a device is never opened), `loads_json`
(bounded: hostile JSON gets a message, never a RecursionError) and `read_safetensors`, the one safetensors
header reader, which matches the data size a header declares to the file's size before reading a tensor byte.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import secrets
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors.torch import load as st_load

MAX_HEADER_BYTES = 64_000_000  # a safetensors JSON header: tensor table and metadata (GPT-2's tokenizer is ~2 MB)
MAX_JSON_BYTES = MAX_HEADER_BYTES
MAX_JSON_DEPTH = 32  # our JSON nests 4 deep at most; json.loads recurses once per level
MAX_MESSAGE = 300  # characters of a hostile file's own text (names, values) quoted in an error
STALE_TMP_S = 3600  # a temp file this old is a killed writer's, even if its process id was reused
KERNEL_DIRS = (Path("/proc"), Path("/sys"))  # the kernel's files: never a place to save


class FileFormatError(ValueError):
    """A file (or upload) that cannot be used; the message names it and says what to do."""


def short(text: object) -> str:
    """Text cut to MAX_MESSAGE characters (a hostile file's names can be megabytes)."""
    text = str(text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"… ({len(text):,} characters)"


def names(items: list[str], shown: int = 5) -> str:
    """A few names and how many more."""
    listed = ", ".join(short(n)[:60] for n in items[:shown])
    return listed + (f" and {len(items) - shown:,} more" if len(items) > shown else "")


# ---------------------------------------------------------------------------------------------- writing


def check_out_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path` as a Path if a file or folder can be saved there, else a ValueError saying why. Called before
    any work, so a run is not trained for an hour to find that `--out /dev/full` cannot take it."""
    text = os.fspath(path)
    if not text.strip():
        raise ValueError(f"{what} is empty: give a file or folder to save to")
    path, where = Path(text), f"{what} '{text}'"
    for place in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):  # the link itself and its target
        if any(place == k or k in place.parents for k in KERNEL_DIRS):
            raise ValueError(f"{where} is under /proc or /sys, the kernel's files: give a path in a folder of yours")
    info = _stat(path, where)
    if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ValueError(f"{where} is {_kind(info.st_mode)}, not a file or folder: saving would replace it")
    # The folder the new file is made in: the path itself when it is a folder, else its nearest existing
    # ancestor (the missing folders between are created by the save).
    folder = path if info is not None and stat.S_ISDIR(info.st_mode) else path.parent
    while (folder_info := _stat(folder, where)) is None and folder != folder.parent:
        folder = folder.parent
    if folder_info is None or not stat.S_ISDIR(folder_info.st_mode):
        raise ValueError(f"{where}: '{folder}' is not a folder, so nothing can be saved under it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: the folder '{folder}' is not writable")
    return path


def _stat(path: Path, where: str) -> os.stat_result | None:
    """os.stat, or None when nothing is there (or a path component is a file)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ValueError(f"{where}: cannot check '{path}': {err.strerror or err}") from None


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically: a reader sees the old file or the new one, never half. Missing
    folders are created; temp files a killed writer left beside `path` are removed first."""
    path = check_out_path(path, "the path")
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder: give the file's name")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
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
    try:  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems cannot sync a folder; the file is written all the same
        pass
    return path


def remove_stale_temps(path: Path) -> None:
    """Delete temp files of `path` whose writer was killed (its process is gone, or the file is old)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].split(".")
        try:
            old = time.time() - tmp.lstat().st_mtime > STALE_TMP_S
            if len(parts) == 2 and (old or not _alive(int(parts[0]))):
                tmp.unlink(missing_ok=True)
        except (ValueError, OSError):  # not one of ours, or already gone
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's live process, or not a pid at all
        return True
    return True


# ---------------------------------------------------------------------------------------------- reading


def open_regular_file(
    path: str | os.PathLike, max_bytes: int, what: str, hint: str = "", error: type[ValueError] = FileFormatError,
    too_big: str = "",
) -> tuple[BinaryIO, int]:  # fmt: skip
    """`path` opened for reading and its size, once stat says it is a regular file of at most `max_bytes`
    (a FIFO would block, a device never ends). `hint` follows the message for a missing file; `error` is
    the caller's error type (a tokenizer raises TokenizerError)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"no {what} at '{path}' (the file does not exist)" + (f": {hint}" if hint else "")) from None
    except OSError as err:
        raise error(f"cannot read '{path}': {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"'{path}' is {_kind(info.st_mode)}, not a file: give the path of a {what}")
    if info.st_size > max_bytes:
        advice = f": {too_big}" if too_big else ""
        raise error(f"'{path}' has {info.st_size:,} bytes; a {what} here is at most {max_bytes:,}{advice}")
    try:
        # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        f = os.fdopen(fd, "rb", buffering=0)
    except OSError as err:
        raise error(f"cannot read '{path}': {err.strerror or err}") from None
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise error(f"'{path}' is not a regular file: give the path of a {what}")
    return f, info.st_size


def read_regular_file(
    path: str | os.PathLike, max_bytes: int, what: str, hint: str = "", error: type[ValueError] = FileFormatError,
    too_big: str = "",
) -> bytes:  # fmt: skip
    """The bytes of a regular file of at most `max_bytes` (checked by stat before it is opened); an
    `error` names the file when it is missing, special, too big, unreadable or changing."""
    f, size = open_regular_file(path, max_bytes, what, hint, error, too_big)
    where = f"'{path}'"
    with f:
        data = read_exact(f, size, where, error)
        _check_end(f, size, len(data), where, error)
    return data


def read_exact(f: BinaryIO, n: int, where: str, error: type[ValueError] = FileFormatError) -> bytes:
    """Up to `n` bytes of `f` (fewer only at its end); an OSError becomes a FileFormatError naming it."""
    chunks, left = [], n
    try:
        while left > 0:
            chunk = f.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:  # /proc/self/mem stats as a regular file but cannot be read
        raise error(f"cannot read {where}: {err.strerror or err}") from None
    return b"".join(chunks)


def _check_end(f: BinaryIO, size: int, got: int, where: str, error: type[ValueError] = FileFormatError) -> None:
    """The file held exactly `size` bytes (what stat said): else it changed under us (or is a /proc file)."""
    if got == size and not read_exact(f, 1, where, error):
        return
    raise error(f"{where} changed size while it was read ({size:,} bytes, then {got:,}+): try again")


# ---------------------------------------------------------------------------------------------- JSON

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(text: str | bytes) -> int:
    """How deep brackets nest outside JSON strings (a cheap scan; an unclosed `[[[[` counts as deep)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads_json(
    text: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES,
    error: type[ValueError] = FileFormatError,
):  # fmt: skip
    """`json.loads` with a size and nesting bound checked first, so `"[" * 200000` is a FileFormatError
    ("{what} is not JSON ..."), never a RecursionError; `what` names the text ("the model config")."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise error(f"{what} is not JSON text but {type(text).__name__}")
    if len(text) > max_bytes:
        raise error(f"{what} is not JSON we read: {len(text):,} characters, over the limit of {max_bytes:,}")
    if json_depth(text) > max_depth:
        raise error(f"{what} is not JSON we read: it nests arrays or objects over {max_depth} deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{what} is not JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{what} is not JSON: it is not UTF-8 text") from None
    except (ValueError, RecursionError) as err:  # an integer of 5,000 digits; the bound makes recursion unreachable
        raise error(f"{what} is not JSON we read: {short(err)}") from None


# ---------------------------------------------------------------------------------------------- safetensors


@dataclass
class SafetensorsFile:
    """A safetensors file whose header and size were checked: its metadata, tensor table and bytes."""

    source: str  # how messages name it: "'path'" or "the uploaded file"
    metadata: dict  # the header's __metadata__ (strings); {} when it has none
    entries: dict  # tensor name -> {"dtype", "shape", "data_offsets"}
    data: bytes  # the whole file

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors, decoded (safetensors checks each one's dtype, shape and extent)."""
        try:
            return st_load(self.data)
        except Exception as err:  # safetensors raises its own error type for corrupt data
            raise FileFormatError(f"{self.source} is corrupt: {short(err)}") from None


def read_safetensors(
    src: str | os.PathLike | bytes | bytearray | BinaryIO, *, what: str, max_bytes: int,
    source: str | None = None, hint: str = "", accept: Callable[[dict, str], None] | None = None,
) -> SafetensorsFile:  # fmt: skip
    """A safetensors file from a path, bytes (an upload) or a binary file object. The 8-byte length and
    the JSON header come first; the data size the header declares must equal the rest of the file before
    a tensor byte is read, so a huge or foreign file fails after its first bytes. `what` names the kind
    of file in messages ("checkpoint"); `hint` follows the message for a missing file; `accept(metadata,
    source)` may raise to refuse a file by its metadata before its tensors are read."""
    args = (what, max_bytes, accept)
    if isinstance(src, (str, os.PathLike)):
        f, size = open_regular_file(src, max_bytes, what, hint)
        with f:
            return _read(f, size, source or f"'{src}'", *args)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _read(io.BytesIO(src), len(src), source or "the uploaded file", *args)
    size = None
    if src.seekable():  # a file object: its size is what is left of it
        here = src.tell()
        size = src.seek(0, os.SEEK_END) - here
        src.seek(here)
    return _read(src, size, source or "the uploaded file", *args)


def _read(
    f: BinaryIO, size: int | None, source: str, what: str, max_bytes: int, accept: Callable[[dict, str], None] | None
) -> SafetensorsFile:
    """The checked file from a stream at its start; `size` is the stream's length (None: unknown)."""
    if size is not None and size > max_bytes:
        raise FileFormatError(f"{source} has {size:,} bytes; a {what} here is at most {max_bytes:,}")
    start = f.tell() if f.seekable() else None
    head = read_exact(f, 9, source)  # the length and the header's first byte
    n = _header_length(head, size, source)
    text = head[8:] + read_exact(f, n - 1, source)
    if len(text) < n:
        raise FileFormatError(f"{source} is truncated: its header needs {n:,} bytes but only {len(text):,} follow")
    entries, metadata, end = _parse_header(text, source)
    if accept is not None:
        accept(metadata, source)
    total = 8 + n + end  # what the file must hold: the length, the header, every tensor's bytes
    if total > max_bytes:
        raise FileFormatError(f"{source} declares {total:,} bytes; a {what} here is at most {max_bytes:,}")
    if size is not None and total > size:
        raise FileFormatError(
            f"{source} is truncated: it should hold {total:,} bytes but has {size:,}; save or download it again"
        )
    if size is not None and total < size:
        raise FileFormatError(
            f"{source} has {size - total:,} bytes after its last tensor ({total:,} of {size:,} are a safetensors "
            "file): it was damaged or is not one this program wrote; save or download it again"
        )
    if start is not None:  # the whole file in one read: no second copy of its bytes
        f.seek(start)
        data = read_exact(f, total, source)
    else:
        data = head[:8] + text + read_exact(f, end, source)
    if len(data) < total:
        raise FileFormatError(f"{source} is truncated or changed while it was read: save or download it again")
    if read_exact(f, 1, source):
        message = "changed size while it was read: try again" if size is not None else "has bytes after its last tensor"
        raise FileFormatError(f"{source} {message}")
    return SafetensorsFile(source, metadata, entries, data)


def _header_length(head: bytes, size: int | None, source: str) -> int:
    """The header length from a file's first 9 bytes (fewer when the file is shorter)."""
    if len(head) < 8:
        raise FileFormatError(f"{source} is not a safetensors file (only {len(head)} bytes): it is empty or truncated")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES or n < 2:  # "{}" is the shortest header
        raise FileFormatError(f"{source} is not a safetensors file (its first 8 bytes are not a header length)")
    if head[8:9] != b"{":  # the JSON header opens right after the length
        raise FileFormatError(f"{source} is not a safetensors file (no JSON header after the first 8 bytes)")
    if size is not None and n > size - 8:
        raise FileFormatError(f"{source} is truncated: its header needs {n:,} bytes but only {size - 8:,} follow")
    return n


def _parse_header(text: bytes, source: str) -> tuple[dict, dict, int]:
    """The tensor table, the metadata and the end of the last tensor's bytes of a JSON header."""
    try:
        header = loads_json(text, "its header")
    except FileFormatError as err:
        raise FileFormatError(f"{source} is not a safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{source} is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    try:
        offsets = [v["data_offsets"] for v in header.values()]
        end = 0
        for begin, stop in offsets:
            if not (type(begin) is type(stop) is int and 0 <= begin <= stop):
                raise ValueError
            end = max(end, stop)
    except (TypeError, KeyError, ValueError):
        raise FileFormatError(f"{source} is not a safetensors file (its header does not list tensors)") from None
    return header, metadata if isinstance(metadata, dict) else {}, end
