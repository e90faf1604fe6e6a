"""Reading and writing tokenizer files safely: one bounded reader, one atomic writer, one bounded JSON parser.

A path is opened only after `os.stat` says it is a regular file (a FIFO would block, a device never ends),
and every read is bounded and turns an OSError into a TokenizerError naming the file (`/proc/self/mem`
stats as a regular file but fails to read). Writes go through a temporary file and a rename; the temporary
file's name holds the writer's pid, so the next save can remove what a killed writer left behind.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from itertools import accumulate
from pathlib import Path

from lm.tokenizers.base import TokenizerError

MAX_JSON_DEPTH = 32  # our tokenizer JSON nests 3 deep; the parser recurses once per level
MAX_JSON_CHARS = 256 * 2**20  # a 1M-token BPE in hex with its merges is ~60 MB


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str, too_big: str = "") -> bytes:
    """The bytes of `path`, or a TokenizerError naming it when it is missing, not a regular file, over
    `max_bytes`, or unreadable. `what` says what the file is for the message ("vocabulary file"), `too_big`
    what to do about a file over the bound."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TokenizerError(f"no {what} at {path}") from None
    except OSError as err:
        raise TokenizerError(f"cannot read the {what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenizerError(f"{path} is not a regular file (a folder, a device or a pipe?): give the {what} itself")
    if info.st_size > max_bytes:
        raise TokenizerError(f"{path} is {info.st_size:,} bytes, over the limit of {max_bytes:,} for a {what}{too_big}")
    try:
        # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise TokenizerError(f"{path} is not a regular file: give the {what} itself")
            raw = f.read(max_bytes + 1)  # +1: a file that grew (or a /proc file that stats as 0) is caught
    except OSError as err:
        raise TokenizerError(f"cannot read the {what} {path}: {err.strerror or err}") from None
    if len(raw) > max_bytes:
        raise TokenizerError(f"{path} holds over {max_bytes:,} bytes, the limit for a {what}{too_big}")
    return raw


def read_text_file(path: str | os.PathLike, max_bytes: int, what: str) -> str:
    """`read_regular_file` decoded as UTF-8; bad bytes are a TokenizerError naming the line."""
    return decode_utf8(read_regular_file(path, max_bytes, what), path)


def decode_utf8(raw: bytes, path: str | os.PathLike) -> str:
    """A file's bytes as text, or a TokenizerError naming the file and the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TokenizerError(f"{path} line {line}: not UTF-8 text (byte {err.start}); is it a binary file?") from None


def load_json(text: str, what: str, max_chars: int = MAX_JSON_CHARS):
    """`json.loads(text)` with a size and nesting bound, so hostile JSON gets a TokenizerError, never a
    RecursionError or an hour of parsing; `what` names the text in the message."""
    if not isinstance(text, str):
        raise TokenizerError(f"{what} must be JSON text (str), not {type(text).__name__}")
    if len(text) > max_chars:
        raise TokenizerError(f"{what} is {len(text):,} characters of JSON, over the limit of {max_chars:,}")
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise TokenizerError(f"{what} nests JSON arrays or objects over {MAX_JSON_DEPTH} deep: it is not a tokenizer")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TokenizerError(f"{what} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})") from None
    except RecursionError:  # the bound above makes this unreachable; kept so no traceback can escape
        raise TokenizerError(f"{what} nests JSON too deeply: it is not a tokenizer") from None


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting_depth(text: str) -> int:
    """How deep brackets nest outside JSON strings (an unclosed `[[[[` counts as deep)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a saved tokenizer is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: Path, names: tuple[str, ...]) -> None:
    """Delete the temporary files of `atomic_write_text` for `names` in `directory` whose writer is dead (a
    killed save); a live writer's (another process saving right now) are left alone."""
    pattern = re.compile(rf"\.({'|'.join(re.escape(n) for n in names)})\.(\d+)\..+\.tmp")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match.group(2))):
            Path(entry.path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or an odd number: leave its file
    return True
