"""Tokenizers behind one interface (`TextTokenizer`: encode, decode, vocab_size, token_str, special_tokens).

`WordTokenizer` (the classic recipe's words, `lm.tokenizer.Tokenizer`), `WordTextTokenizer` (the text
models' words, a line break ending a sentence), `CharTokenizer` (one id per
character) and `BPETokenizer`, a byte-level BPE that trains like GPT-2's (`train_bpe`) and loads GPT-2's
files.
Every bad input raises `TokenizerError` (a `ValueError`) saying what was wrong.
"""

from lm.tokenizer import Tokenizer as WordTokenizer
from lm.tokenizer import UnknownWordError
from lm.tokenizers.base import EOT, TextTokenizer, TokenizerError
from lm.tokenizers.bpe import BPETokenizer
from lm.tokenizers.bpe_train import BPETrainResult, train_bpe, train_bpe_detailed
from lm.tokenizers.char import CharTokenizer
from lm.tokenizers.pretokenize import GPT2_PATTERN
from lm.tokenizers.word_text import WordTextTokenizer

__all__ = [
    "BPETokenizer", "BPETrainResult", "CharTokenizer", "EOT", "GPT2_PATTERN", "TextTokenizer", "TokenizerError",
    "UnknownWordError", "WordTextTokenizer", "WordTokenizer", "train_bpe", "train_bpe_detailed",
]  # fmt: skip
