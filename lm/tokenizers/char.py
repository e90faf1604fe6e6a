"""A character-level tokenizer: one id per distinct character of a corpus, plus optional special tokens.

Ids 0 .. n-1 are the corpus's characters in sorted (code point) order, as in nanoGPT's `shakespeare_char`,
so Tiny Shakespeare maps to the familiar 65 ids; special tokens such as `<|endoftext|>` follow. Saved as
one small JSON file (`char_tokenizer.json` in a directory); `to_json`/`from_json` let a checkpoint embed it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from lm.tokenizers.base import TokenizerError, check_ids, check_unicode, special_pattern, validate_special_tokens
from lm.tokenizers.files import atomic_write_text, load_json, read_text_file, remove_stale_temps

FILE_NAME = "char_tokenizer.json"
MAX_CHARS = 100_000  # distinct characters; Unicode has ~150k assigned, a real corpus a few hundred
MAX_FILE_BYTES = 1_000_000  # a saved tokenizer is at most ~MAX_CHARS * 8 bytes of JSON


class CharTokenizer:
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
        self._specials = validate_special_tokens(special_tokens)
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.special_ids = {tok: len(chars) + i for i, tok in enumerate(self._specials)}
        self.itos = chars + self._specials
        pattern = special_pattern(self._specials)
        self._special_re = re.compile(f"({pattern})") if pattern else None

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> CharTokenizer:
        """The sorted distinct characters of `text` (special tokens' occurrences removed first) plus the specials."""
        if not isinstance(text, str):
            raise TokenizerError(f"the corpus must be a string, not {type(text).__name__}")
        specials = validate_special_tokens(special_tokens)
        pattern = special_pattern(specials)
        plain = re.sub(pattern, "", text) if pattern else text
        if not plain:
            raise TokenizerError("the corpus has no characters (other than special tokens): give it some text")
        return cls(sorted(set(plain)), specials)

    # -- the common interface ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def special_tokens(self) -> list[str]:
        return list(self._specials)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """One id per character; special tokens (longest first) one id each. Unknown characters are named."""
        if not isinstance(text, str):
            raise TokenizerError(f"text to encode must be a string, not {type(text).__name__}")
        pieces = self._special_re.split(text) if self._special_re else [text]
        ids: list[int] = []
        stoi = self.stoi
        for i, piece in enumerate(pieces):
            if i % 2:  # odd pieces are the captured special tokens
                ids.append(self.special_ids[piece])
                continue
            try:
                ids.extend([stoi[ch] for ch in piece])
            except KeyError:
                self._raise_unknown(text)
        return ids

    def _raise_unknown(self, text: str) -> None:
        unknown = [ch for ch in dict.fromkeys(text) if ch not in self.stoi]
        first = text.index(unknown[0])
        shown = ", ".join(repr(ch) for ch in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise TokenizerError(
            f"{len(unknown)} character(s) not in the vocabulary: {shown} (first at position {first}); "
            f"the tokenizer knows only the {len(self.chars)} characters of its corpus"
        )

    def decode(self, ids: Iterable[int]) -> str:
        """The characters (and special tokens) of `ids` joined; an id out of range is an error."""
        itos = self.itos
        return "".join(itos[i] for i in check_ids(ids, len(itos)))

    def token_str(self, token_id: int) -> str:
        """The character itself, or the special token; whitespace shown escaped (`'\\n'`) so it is visible."""
        (token_id,) = check_ids([token_id], len(self.itos))
        token = self.itos[token_id]
        if token_id >= len(self.chars):
            return token
        if token == " ":
            return "␣"  # the open box: a space you can see
        return token if token.isprintable() else repr(token)[1:-1]

    # -- files ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"type": "char", "chars": self.chars, "special_tokens": self._specials}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CharTokenizer:
        """The tokenizer of `to_json`'s text; malformed text gets a TokenizerError saying what is wrong."""
        return cls.from_dict(load_json(text, "a character tokenizer file"))

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        """The tokenizer of `to_json`'s text once parsed."""
        if not isinstance(data, dict) or data.get("type") != "char":
            raise TokenizerError('a character tokenizer file must be a JSON object with "type": "char"')
        chars, specials = data.get("chars"), data.get("special_tokens", [])
        if not isinstance(chars, list) or not isinstance(specials, list):
            raise TokenizerError('a character tokenizer file needs "chars" and "special_tokens" lists')
        return cls(chars, specials)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `char_tokenizer.json` into `directory` (created if needed) atomically; returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(directory, (FILE_NAME,))  # what a killed save left
        path = directory / FILE_NAME
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Load from a directory holding `char_tokenizer.json`, or from that file itself."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        if not path.exists():
            raise TokenizerError(f"no character tokenizer at {path}: save one with CharTokenizer.save(directory)")
        data = load_json(read_text_file(path, MAX_FILE_BYTES, "character tokenizer file"), str(path))
        try:
            return cls.from_dict(data)
        except TokenizerError as err:
            raise TokenizerError(f"{path}: {err}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer({len(self.chars)} characters, special_tokens={self._specials})"
