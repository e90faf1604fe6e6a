"""Tokenizers behind one interface (`TextTokenizer`: encode, decode, vocab_size, len, token_str, special_tokens).

`WordTokenizer` (words, for the sentence model and the word-level text models), `CharTokenizer` (one id
per character) and `BPETokenizer`, a byte-level BPE that trains like GPT-2's (`train_bpe` on text,
`train_bpe_file` on a file) and loads GPT-2's files. `to_json`/`from_json` turn any of them into one JSON
text and back (what a checkpoint stores). Every bad input raises `TokenizerError` (a `ValueError`).
"""

from lm.tokenizers.base import EOT, TextTokenizer, TokenizerError
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.bpe_train import BPETrainResult, read_training_text, train_bpe, train_bpe_detailed, train_bpe_file
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.pretokenize import GPT2_PATTERN
from lm.tokenizers.serialize import from_json, to_json
from lm.tokenizers.word import UnknownWordError, WordTokenizer

__all__ = [
    "BPETokenizer", "BPETrainResult", "CharTokenizer", "EOT", "GPT2_PATTERN", "TextTokenizer", "TokenizerError",
    "UnknownWordError", "WordTokenizer", "from_json", "read_training_text", "to_json",
    "train_bpe", "train_bpe_detailed", "train_bpe_file",
]  # fmt: skip
