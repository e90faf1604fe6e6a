"""The one file layer of lm: every model file is written and read through here. `atomic_write` (a reader
sees the old file or the new one, never half), `check_out_path` (an output path refused before any work),
`read_regular_file` (stat first: a FIFO or a device is never opened), `decode_text` (UTF-8 text, not
binary), `loads_json` (bounded: hostile JSON gets a message, never a RecursionError) and `read_safetensors`,
the one safetensors header reader: the data size a header declares must match the file's size before a
tensor byte is read.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors.torch import load as st_load

MAX_HEADER_BYTES = 64_000_000  # a safetensors JSON header: tensor table and metadata (GPT-2's tokenizer is ~2 MB)
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


def _stat(path: Path, where: str, error: type[ValueError] = ValueError) -> os.stat_result | None:
    """os.stat, or None when nothing is there (or a path component is a file)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise error(f"{where}cannot read '{path}': {err.strerror or err}") from None


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


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
    info = _stat(path, f"{where}: ")
    if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ValueError(f"{where} is {_kind(info.st_mode)}, not a file or folder: saving would replace it")
    # The folder the new file is made in: the path itself when it is a folder, else its nearest existing
    # ancestor (the missing folders between are created by the save).
    folder = path if info is not None and stat.S_ISDIR(info.st_mode) else path.parent
    while (folder_info := _stat(folder, f"{where}: ")) is None and folder != folder.parent:
        folder = folder.parent
    if folder_info is None or not stat.S_ISDIR(folder_info.st_mode):
        raise ValueError(f"{where}: '{folder}' is not a folder, so nothing can be saved under it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: the folder '{folder}' is not writable")
    return path


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
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
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
    # The rename itself survives a power cut once the folder is synced (some file systems cannot sync one).
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def remove_stale_temps(path: Path) -> None:
    """Delete temp files of `path` whose writer was killed (its process is gone, or the file is old)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].split(".")  # our own: [process id, token]
        try:
            if len(parts) == 2 and (time.time() - tmp.lstat().st_mtime > STALE_TMP_S or not _alive(int(parts[0]))):
                tmp.unlink(missing_ok=True)
        except (ValueError, OSError):  # not one of ours, or already gone
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's live process, or not a pid at all
        pass
    return True


# ---------------------------------------------------------------------------------------------- reading
def open_regular_file(
    path: str | os.PathLike, max_bytes: int, what: str, hint: str = "", error: type[ValueError] = FileFormatError,
    too_big: str = "",
) -> tuple[BinaryIO, int]:  # fmt: skip
    """`path` opened for reading and its size, once stat says it is a regular file of at most `max_bytes`
    (a FIFO would block, a device never ends). `hint` follows the message for a missing file, `too_big`
    the one for a file over the bound; `error` is the caller's error type (a tokenizer raises TokenizerError)."""
    path = Path(path)
    info = _stat(path, "", error)
    if info is None:
        raise error(f"no {what} at '{path}' (the file does not exist)" + (f": {hint}" if hint else ""))
    if not stat.S_ISREG(info.st_mode):
        raise error(f"'{path}' is {_kind(info.st_mode)}, not a file: give the path of a {what}")
    if info.st_size > max_bytes:
        advice = f": {too_big}" if too_big else ""
        raise error(f"'{path}' has {info.st_size:,} bytes; a {what} here is at most {max_bytes:,}{advice}")
    try:
        # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open does not hang
        f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb", buffering=0)
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
    """The bytes of a regular file of at most `max_bytes` (open_regular_file: checked by stat before it is
    opened); an `error` names the file when it is missing, special, too big, unreadable or changing."""
    f, size = open_regular_file(path, max_bytes, what, hint, error, too_big)
    with f:
        data = read_exact(f, size + 1, f"'{path}'", error)  # a byte more than stat said: a file that grew
    if len(data) != size:  # it changed under us, or is a /proc file (stat says 0 bytes)
        raise error(f"'{path}' changed size while it was read ({size:,} bytes, then {len(data):,}): try again")
    return data


def decode_text(raw: bytes, name: str, error: type[ValueError] = FileFormatError) -> str:
    """`raw` as UTF-8 text, or an `error` naming `name` (and the line) when it is empty or only whitespace,
    holds a NUL byte (a binary file) or is not UTF-8: the one text check of every file lm reads."""
    if not raw.strip():
        raise error(f"{name} is empty (or only whitespace): give some text")
    if (nul := raw.find(b"\x00")) >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise error(f"{name} holds a NUL byte (line {line}): it looks binary, not text; give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise error(
            f"{name} is not UTF-8 text (byte {err.start} is {raw[err.start : err.start + 1]!r}, line {line}): "
            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def read_exact(f: BinaryIO, n: int, where: str, error: type[ValueError] = FileFormatError) -> bytes:
    """Up to `n` bytes of `f` (fewer only at its end); an OSError becomes an `error` naming it."""
    chunks, left = [], n
    try:
        while left > 0 and (chunk := f.read(left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:  # /proc/self/mem stats as a regular file but cannot be read
        raise error(f"cannot read {where}: {err.strerror or err}") from None
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------- JSON
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def loads_json(
    text: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_HEADER_BYTES,
    error: type[ValueError] = FileFormatError,
):  # fmt: skip
    """`json.loads` with a size and nesting bound checked first, so `"[" * 200000` is a FileFormatError
    ("{what} is not JSON ..."), never a RecursionError; `what` names the text ("the model config")."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise error(f"{what} is not JSON text but {type(text).__name__}")
    if len(text) > max_bytes:
        raise error(f"{what} is not JSON we read: {len(text):,} characters, over the limit of {max_bytes:,}")
    # How deep brackets nest outside JSON strings: a cheap scan (an unclosed `[[[[` counts as deep).
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth:
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
    metadata: dict[str, str]  # the header's __metadata__ (its text values); {} when it has none
    entries: dict  # tensor name -> {"dtype", "shape", "data_offsets"}
    data: bytes  # the whole file

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors, decoded (safetensors checks each one's dtype, shape and extent). Clones: a decoded
        tensor views the file's bytes, which must not be written through."""
        try:
            return {name: t.clone() for name, t in st_load(self.data).items()}
        except Exception as err:  # safetensors raises its own error type for corrupt data
            raise FileFormatError(f"{self.source} is corrupt: {short(err)}") from None


def read_safetensors(
    src: str | os.PathLike | bytes | bytearray | BinaryIO, *, what: str, max_bytes: int,
    source: str | None = None, hint: str = "", accept: Callable[[dict, str], None] | None = None,
) -> SafetensorsFile:  # fmt: skip
    """A safetensors file from a path, bytes (an upload) or a binary file object, checked from its first
    bytes: the data size its header declares must equal the rest of the file before a tensor byte is read.
    `what` names the file's kind in messages ("checkpoint"), `hint` follows the one for a missing file;
    `accept(metadata, source)` may refuse the file by its metadata (by raising) before its tensors are read."""
    if isinstance(src, (str, os.PathLike)):
        f, size = open_regular_file(src, max_bytes, what, hint)
        with f:
            return _read(f, size, source or f"'{src}'", what, max_bytes, accept)
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(src)
    size = None
    if src.seekable():  # a file object: its size is what is left of it
        here = src.tell()
        size = src.seek(0, os.SEEK_END) - here
        src.seek(here)
    return _read(src, size, source or "the uploaded file", what, max_bytes, accept)


def _read(
    f: BinaryIO, size: int | None, source: str, what: str, max_bytes: int, accept: Callable[[dict, str], None] | None
) -> SafetensorsFile:
    """The checked file from a stream at its start; `size` is the stream's length (None: unknown)."""
    not_ours, again = f"{source} is not a safetensors file", "save or download it again"
    if size is not None and size > max_bytes:
        raise FileFormatError(f"{source} has {size:,} bytes; a {what} here is at most {max_bytes:,}")
    start = f.tell() if f.seekable() else None
    head = read_exact(f, 9, source)  # the header's 8-byte length and its first byte
    if len(head) < 8:
        raise FileFormatError(f"{not_ours} (only {len(head)} bytes): it is empty or truncated")
    n = int.from_bytes(head[:8], "little")
    if not 2 <= n <= MAX_HEADER_BYTES or head[8:] != b"{":  # "{}" is the shortest header
        raise FileFormatError(f"{not_ours} (it does not open with a header length and a JSON header)")
    text = head[8:] + read_exact(f, n - 1, source)
    if len(text) < n:
        raise FileFormatError(f"{source} is truncated: its header needs {n:,} bytes but only {len(text):,} follow")
    try:
        header = loads_json(text, "its header")
    except FileFormatError as err:
        raise FileFormatError(f"{not_ours} ({err})") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{not_ours} (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    # the format's metadata is text only: anything else is no metadata of ours
    metadata = {k: v for k, v in metadata.items() if isinstance(v, str)} if isinstance(metadata, dict) else {}
    end = 0  # where the last tensor's bytes end
    try:
        for entry in header.values():
            begin, stop = entry["data_offsets"]
            if not (type(begin) is type(stop) is int and 0 <= begin <= stop):
                raise ValueError
            end = max(end, stop)
    except (TypeError, KeyError, ValueError):
        raise FileFormatError(f"{not_ours} (its header does not list tensors)") from None
    if accept is not None:
        accept(metadata, source)
    total = 8 + n + end  # what the file must hold: the length, the header, every tensor's bytes
    if total > max_bytes:
        raise FileFormatError(f"{source} declares {total:,} bytes; a {what} here is at most {max_bytes:,}")
    if size is not None and total != size:  # damaged, or not a file this program wrote
        found = "is truncated" if total > size else f"has {size - total:,} bytes after its last tensor"
        raise FileFormatError(f"{source} {found} ({size:,} bytes; its header declares {total:,}): {again}")
    if start is not None:  # the whole file in one read: no second copy of its bytes
        f.seek(start)
        data = read_exact(f, total + 1, source)
    else:
        data = head[:8] + text + read_exact(f, end + 1, source)
    if len(data) != total:  # a byte short, or one more: it changed while it was read, or a stream goes on
        raise FileFormatError(f"{source} does not hold the {total:,} bytes its header declares: {again}")
    return SafetensorsFile(source, metadata, header, data)
