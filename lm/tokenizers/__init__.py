"""Tokenizers behind one interface (`TextTokenizer`: encode, decode, vocab_size, len, token_str, special_tokens).

`WordTokenizer` (words, for the sentence model and the word-level text models), `CharTokenizer` (one id
per character) and `BPETokenizer`, a byte-level BPE that trains like GPT-2's (`train_bpe` on text,
`train_bpe_file` on a file) and loads GPT-2's files. `to_json`/`from_json` (here, as they need every class)
turn any of them into one JSON text and back. Every bad input raises `TokenizerError` (a `ValueError`).
"""

from lm.tokenizers.base import EOT, TextTokenizer, TokenizerError, load_json
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.bpe_train import BPETrainResult, read_training_text, train_bpe, train_bpe_detailed, train_bpe_file
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.pretokenize import GPT2_PATTERN
from lm.tokenizers.word import UnknownWordError, WordTokenizer

__all__ = [
    "BPETokenizer", "BPETrainResult", "CharTokenizer", "EOT", "GPT2_PATTERN", "TextTokenizer", "TokenizerError",
    "UnknownWordError", "WordTokenizer", "from_json", "read_training_text", "to_json",
    "train_bpe", "train_bpe_detailed", "train_bpe_file",
]  # fmt: skip

CLASSES = {"word": WordTokenizer, "char": CharTokenizer, "bpe": BPETokenizer}  # by their JSON "type"


def to_json(tokenizer: TextTokenizer) -> str:
    """The tokenizer as JSON text (what a checkpoint stores and the token cache keys on); `from_json` reads it."""
    if not isinstance(tokenizer, TextTokenizer):
        raise TokenizerError(f"cannot save a {type(tokenizer).__name__}: expected a word, char or bpe tokenizer")
    return tokenizer.to_json()


def from_json(text: str) -> WordTokenizer | CharTokenizer | BPETokenizer:
    """The tokenizer of `to_json`'s text, parsed with a size and nesting bound. Older forms load as a
    WordTokenizer: the text models' "word-text" (`{"type": "word-text", "lines": true, "vocab": [...]}`) and a
    bare vocabulary list (the classic weights files' metadata, `["<pad>", "<eos>", ...]`)."""
    data = load_json(text, "the tokenizer's JSON")
    if isinstance(data, list):  # a classic weights file's vocabulary
        data = {"type": "word", "vocab": data}
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "word-text":  # the text models' tokenizer before there was one class
        data, kind = {**data, "type": "word"}, "word"
    if not isinstance(kind, str) or kind not in CLASSES:
        raise TokenizerError(f"unknown tokenizer type {kind!r} (expected word, char or bpe)")
    return CLASSES[kind].from_dict(data)
