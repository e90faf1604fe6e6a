"""A character-level tokenizer: one id per distinct character of a corpus, plus optional special tokens.

Ids 0 .. n-1 are the corpus's characters in sorted (code point) order, as in nanoGPT's `shakespeare_char`,
so Tiny Shakespeare maps to the familiar 65 ids; special tokens such as `<|endoftext|>` follow. Saved as
one small JSON file (`char_tokenizer.json` in a directory); `to_json`/`from_json` let a checkpoint embed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from lm.tokenizers.base import (
    TextTokenizer,
    TokenizerError,
    atomic_write_text,
    check_ids,
    check_str,
    check_unicode,
    load_json,
    read_text_file,
    special_splitter,
    validate_special_tokens,
    visible,
)

FILE_NAME = "char_tokenizer.json"
MAX_CHARS = 100_000  # distinct characters; Unicode has ~150k assigned, a real corpus a few hundred
MAX_FILE_BYTES = 1_000_000  # a saved tokenizer is at most ~MAX_CHARS * 8 bytes of JSON


class CharTokenizer(TextTokenizer):
    """Maps each character (and each special token) to one id; unknown characters are an error naming them."""

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Iterable[str] = ()):
        chars = list(chars)
        for position, ch in enumerate(chars):
            if not isinstance(ch, str) or len(ch) != 1:
                raise TokenizerError(f"character entry {position} ({ch!r}) must be a single character")
            check_unicode(ch, f"character entry {position}")
        if len(set(chars)) != len(chars):
            repeated = next(c for c in chars if chars.count(c) > 1)
            raise TokenizerError(f"character {repeated!r} appears twice in the vocabulary")
        if len(chars) > MAX_CHARS:
            raise TokenizerError(f"{len(chars):,} distinct characters is over the limit of {MAX_CHARS:,}")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        specials = self._keep_special_tokens(special_tokens)
        self.special_ids = {tok: len(chars) + i for i, tok in enumerate(specials)}
        self.itos = chars + specials

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> CharTokenizer:
        """The sorted distinct characters of `text` (special tokens' occurrences removed first) plus the specials."""
        check_str(text, "the corpus")
        specials = validate_special_tokens(special_tokens)
        splitter = special_splitter(specials)
        plain = "".join(splitter.split(text)[::2]) if splitter else text
        if not plain:
            raise TokenizerError("the corpus has no characters (other than special tokens): give it some text")
        return cls(sorted(set(plain)), specials)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """One id per character; special tokens (longest first) one id each. Unknown characters are named."""
        try:
            return super().encode(text)
        except KeyError:  # from _encode_ordinary: named here, where the whole text is known
            unknown = [ch for ch in dict.fromkeys(text) if ch not in self.stoi]
            shown = ", ".join(repr(ch) for ch in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise TokenizerError(
                f"{len(unknown)} character(s) not in the vocabulary: {shown} (first at position "
                f"{text.index(unknown[0])}); the tokenizer knows only the {len(self.chars)} characters of its corpus"
            ) from None

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        stoi = self.stoi
        out.extend([stoi[ch] for ch in text])

    def decode(self, ids: Iterable[int]) -> str:
        """The characters (and special tokens) of `ids` joined; an id out of range is an error."""
        itos = self.itos
        return "".join(itos[i] for i in check_ids(ids, len(itos)))

    def token_str(self, token_id: int) -> str:
        """The character itself (a space as `␣`, other whitespace escaped: `\\n`), or the special token."""
        (token_id,) = check_ids([token_id], len(self.itos))
        token = self.itos[token_id]
        return token if token_id >= len(self.chars) else visible(token.encode("utf-8"))

    # -- files ---------------------------------------------------------------------------------
    def _fields(self) -> dict:
        return {"chars": self.chars, "special_tokens": self._specials}

    @classmethod
    def _from_fields(cls, data: dict) -> CharTokenizer:
        chars, specials = data.get("chars"), data.get("special_tokens", [])
        if not isinstance(chars, list) or not isinstance(specials, list):
            raise TokenizerError('a character tokenizer file needs "chars" and "special_tokens" lists')
        return cls(chars, specials)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `char_tokenizer.json` into `directory` (created if needed) atomically; returns its path."""
        path = Path(directory) / FILE_NAME
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Load from a directory holding `char_tokenizer.json`, or from that file itself."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        hint = "save one with CharTokenizer.save(directory)"
        data = load_json(read_text_file(path, MAX_FILE_BYTES, "character tokenizer file", hint), str(path))
        try:
            return cls.from_dict(data)
        except TokenizerError as err:
            raise TokenizerError(f"{path}: {err}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer({len(self.chars)} characters, special_tokens={self._specials})"
