"""Any tokenizer as one JSON text and back: what a checkpoint stores and the token cache keys on.

Types: "word" (`WordTokenizer`), "char", "bpe". Older forms still load as `WordTokenizer`: the text
models' "word-text" (`{"type": "word-text", "lines": true, "vocab": [...]}`) and a bare vocabulary list
(the classic weights files' metadata, `["<pad>", "<eos>", ...]`). The JSON is parsed with a size and
nesting bound, so a hostile text gets a TokenizerError.
"""

from __future__ import annotations

import json

from lm.tokenizers.base import TextTokenizer, TokenizerError
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.files import load_json
from lm.tokenizers.word import WordTokenizer


def to_json(tokenizer: TextTokenizer) -> str:
    """The tokenizer as JSON text; `from_json` reads it back."""
    if isinstance(tokenizer, WordTokenizer):
        return json.dumps({"type": "word", "vocab": tokenizer.vocab}, ensure_ascii=False)
    if isinstance(tokenizer, (CharTokenizer, BPETokenizer)):
        return tokenizer.to_json()
    raise TokenizerError(f"cannot save a {type(tokenizer).__name__}: expected a word, char or bpe tokenizer")


def from_json(text: str) -> WordTokenizer | CharTokenizer | BPETokenizer:
    """The tokenizer of `to_json`'s text (or of an older form); a TokenizerError says what is wrong."""
    data = load_json(text, "the tokenizer's JSON")
    if isinstance(data, list):  # a classic weights file's vocabulary
        return WordTokenizer(_word_list(data))
    kind = data.get("type") if isinstance(data, dict) else None
    if kind in ("word", "word-text"):  # word-text: the text models' tokenizer before there was one class
        return WordTokenizer(_word_list(data.get("vocab")))
    if kind == "char":
        return CharTokenizer.from_json(text)
    if kind == "bpe":
        return BPETokenizer.from_json(text)
    raise TokenizerError(f"unknown tokenizer type {kind!r} (expected word, char or bpe)")


def _word_list(vocab) -> list[str]:
    if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
        raise TokenizerError("a word tokenizer's vocab must be a list of strings")
    return vocab
