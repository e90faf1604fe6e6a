"""The one tokenizer base the word, character and BPE tokenizers extend, the error they raise, and their checks.

A tokenizer turns text into integer ids and back; `token_str(i)` is how a page or a CLI shows one token;
`special_tokens` are the strings kept whole (never split, never merged). `TokenizerError` is a `ValueError`,
so callers that already turn `ValueError` into a message handle every tokenizer alike. Tokenizer files go
through lm's one file layer (lm/files.py), its errors raised as TokenizerError naming the file.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

import regex

from lm import files

EOT = "<|endoftext|>"  # separates documents (and a word corpus's sentences); a token of every text tokenizer here
Vocab = dict[int, bytes]  # a byte-level BPE's vocabulary: id -> the token's bytes
Merges = list[tuple[bytes, bytes]]  # a BPE's merges in rank order: the first is applied first
MAX_JSON_CHARS = 256 * 2**20  # a 1M-token BPE in hex with its merges is ~60 MB


class TokenizerError(ValueError):
    """Bad input to a tokenizer (text, ids, files); the message says what was wrong and how to fix it."""


class TextTokenizer(ABC):
    """What the word, character and BPE tokenizers all provide. A subclass sets `kind` (its JSON "type") and
    `_specials`, writes `_fields` (what its JSON holds) and `_from_fields` (that read back), and for the shared
    `encode` keeps its specials with `_keep_special_tokens`, sets `special_ids` and writes `_encode_ordinary`."""

    kind: str
    _specials: list[str]
    special_ids: dict[str, int]
    _special_re: regex.Pattern | None

    @abstractmethod
    def __len__(self) -> int:
        """Number of ids: valid ids are 0 .. len - 1."""

    @property
    def vocab_size(self) -> int:
        """The same as len(tokenizer)."""
        return len(self)

    @property
    def special_tokens(self) -> list[str]:
        """Strings encoded as one id each, never split or merged."""
        return list(self._specials)

    def _keep_special_tokens(self, special_tokens: Iterable[str]) -> list[str]:
        """Check and keep the special tokens and the regex that splits text on them; returns them."""
        self._specials = validate_special_tokens(special_tokens)
        self._special_re = special_splitter(self._specials)
        return self._specials

    def encode(self, text: str) -> list[int]:
        """The ids of `text`: each special token (longest first) one id, the stretches between `_encode_ordinary`'s."""
        check_str(text, "text to encode")
        ids: list[int] = []
        pieces = self._special_re.split(text) if self._special_re else [text]
        for i, piece in enumerate(pieces):
            if i % 2:  # odd pieces are the captured special tokens
                ids.append(self.special_ids[piece])
            elif piece:
                self._encode_ordinary(piece, ids)
        return ids

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`."""

    @abstractmethod
    def token_str(self, token_id: int) -> str:
        """A readable form of one token (for chips, tables and the CLI)."""

    def to_json(self) -> str:
        """The tokenizer as one JSON text (what a checkpoint stores); `from_json` reads it back."""
        return json.dumps({"type": self.kind, **self._fields()}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        """The tokenizer of `to_json`'s text; malformed text gets a TokenizerError saying what is wrong."""
        return cls.from_dict(load_json(text, f"a {cls.kind} tokenizer's JSON"))

    @classmethod
    def from_dict(cls, data: dict) -> TextTokenizer:
        """The tokenizer of `to_json`'s text once parsed."""
        if not isinstance(data, dict) or data.get("type") != cls.kind:
            raise TokenizerError(f'a {cls.kind} tokenizer\'s JSON must be an object with "type": "{cls.kind}"')
        return cls._from_fields(data)


def check_str(value: object, what: str) -> None:
    """A TokenizerError unless `value` is a str; `what` names it ("text to encode")."""
    if not isinstance(value, str):
        raise TokenizerError(f"{what} must be a string, not {type(value).__name__}")


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """`ids` as a list of ints, each in 0 .. vocab_size - 1, or a TokenizerError naming the first bad one."""
    out = []
    for position, token_id in enumerate(ids):
        try:
            value = int(token_id)
        except (TypeError, ValueError):
            raise TokenizerError(f"id {token_id!r} at position {position} is not an integer") from None
        if not 0 <= value < vocab_size or value != token_id:
            raise TokenizerError(
                f"id {token_id!r} at position {position} is not a token id: ids are integers 0..{vocab_size - 1}"
            )
        out.append(value)
    return out


def check_unicode(text: str, where: str) -> None:
    """A TokenizerError unless `text` is valid Unicode (UTF-8 can encode it): a lone surrogate such as
    '\\ud800' (JSON's escapes can spell one) cannot be written to a file or matched in real text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise TokenizerError(
            f"{where} {text[:40]!r} is not valid Unicode (a lone surrogate {text[err.start]!r} at {err.start})"
        ) from None


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A regex capturing each special token, longest first (so overlapping specials work), or None if there are
    none: its `split` gives the stretches between them at even positions and the tokens at odd ones."""
    specials = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    return regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")") if specials else None


def visible(token: bytes) -> str:
    """Bytes as readable text: spaces as `␣`, newlines and tabs as `\\n` `\\t`, broken UTF-8 as `\\xNN`."""
    out = []
    for ch in token.decode("utf-8", errors="backslashreplace"):
        if ch == " ":
            out.append("\u2423")
        elif ch.isprintable() or ch == "\\":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def validate_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    """The special tokens as a list, each a non-empty string appearing once, or a TokenizerError."""
    if isinstance(special_tokens, str):
        raise TokenizerError("special_tokens must be a list of strings, not one string")
    out: list[str] = []
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"special token {token!r} must be a non-empty string")
        check_unicode(token, "special token")
        if len(token) > 256:
            raise TokenizerError(f"special token {token[:20]!r}... is {len(token)} characters long; at most 256")
        if token in out:
            raise TokenizerError(f"special token {token!r} is given twice")
        out.append(token)
    return out


# -- files, through lm/files.py ----------------------------------------------------------------------------
def read_text_file(path: str | os.PathLike, max_bytes: int, what: str, hint: str = "") -> str:
    """A regular file of at most `max_bytes` (stat'ed before it is opened) as UTF-8 text; `hint` says what
    to do when it does not exist."""
    raw = files.read_regular_file(path, max_bytes, what, hint, error=TokenizerError)
    return files.decode_text(raw, str(path), TokenizerError)


def load_json(text: str, what: str):
    """JSON with a size and nesting bound (lm.files.loads_json), so hostile JSON gets a TokenizerError."""
    check_str(text, f"{what} (JSON text)")
    return files.loads_json(text, what, max_bytes=MAX_JSON_CHARS, error=TokenizerError)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (lm.files.atomic_write: a reader never sees half a file, and the
    temp files a killed writer left are removed first)."""
    files.atomic_write(path, text.encode("utf-8"))
