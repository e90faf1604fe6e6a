"""Any tokenizer as one JSON text and back: what a checkpoint stores and the token cache keys on.

Types: "word" (`WordTokenizer`), "char", "bpe". Older forms still load as `WordTokenizer`: the text
models' "word-text" (`{"type": "word-text", "lines": true, "vocab": [...]}`) and a bare vocabulary list
(the classic weights files' metadata, `["<pad>", "<eos>", ...]`). The JSON is parsed with a size and
nesting bound, so a hostile text gets a TokenizerError.
"""

from __future__ import annotations

from lm.tokenizers.base import TextTokenizer, TokenizerError, load_json
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.word import WordTokenizer

CLASSES = {"word": WordTokenizer, "char": CharTokenizer, "bpe": BPETokenizer}  # by their JSON "type"


def to_json(tokenizer: TextTokenizer) -> str:
    """The tokenizer as JSON text; `from_json` reads it back."""
    if not isinstance(tokenizer, TextTokenizer):
        raise TokenizerError(f"cannot save a {type(tokenizer).__name__}: expected a word, char or bpe tokenizer")
    return tokenizer.to_json()


def from_json(text: str) -> WordTokenizer | CharTokenizer | BPETokenizer:
    """The tokenizer of `to_json`'s text (or of an older form); a TokenizerError says what is wrong."""
    data = load_json(text, "the tokenizer's JSON")
    if isinstance(data, list):  # a classic weights file's vocabulary
        data = {"type": "word", "vocab": data}
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "word-text":  # the text models' tokenizer before there was one class
        data, kind = {**data, "type": "word"}, "word"
    if not isinstance(kind, str) or kind not in CLASSES:
        raise TokenizerError(f"unknown tokenizer type {kind!r} (expected word, char or bpe)")
    return CLASSES[kind].from_dict(data)
