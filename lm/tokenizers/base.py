"""The one tokenizer interface every tokenizer of the project fits, and the error they raise.

A tokenizer turns text into integer ids and back; `token_str(i)` is how a page or a CLI shows one
token; `special_tokens` are the strings kept whole (never split, never merged). `TokenizerError` is a
`ValueError`, so callers that already turn `ValueError` into a message handle every tokenizer alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

EOT = "<|endoftext|>"  # separates documents (and a word corpus's sentences); a token of every text tokenizer here


class TokenizerError(ValueError):
    """Bad input to a tokenizer (text, ids, files); the message says what was wrong and how to fix it."""


@runtime_checkable
class TextTokenizer(Protocol):
    """What the word, character and BPE tokenizers all provide."""

    @property
    def vocab_size(self) -> int:
        """Number of ids: valid ids are 0 .. vocab_size - 1."""
        ...

    @property
    def special_tokens(self) -> list[str]:
        """Strings encoded as one id each, never split or merged."""
        ...

    def __len__(self) -> int:
        """The same as vocab_size (so `len(tokenizer)` reads naturally)."""
        ...

    def encode(self, text: str) -> list[int]:
        """The ids of `text`."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`."""
        ...

    def token_str(self, token_id: int) -> str:
        """A readable form of one token (for chips, tables and the CLI)."""
        ...


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


def check_unicode(text: str, where: str) -> str:
    """`text` if it is valid Unicode (UTF-8 can encode it), else a TokenizerError: a lone surrogate such as
    '\\ud800' (JSON's escapes can spell one) cannot be written to a file or matched in real text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise TokenizerError(
            f"{where} {text[:40]!r} is not valid Unicode (a lone surrogate {text[err.start]!r} at {err.start})"
        ) from None
    return text


def special_pattern(special_tokens: Iterable[str]) -> str | None:
    """A regex alternation matching the special tokens, longest first (so overlapping specials work), or None."""
    import re

    specials = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    return "|".join(re.escape(s) for s in specials) if specials else None


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
