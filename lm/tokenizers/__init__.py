"""Tokenizers behind one interface (`TextTokenizer`: encode, decode, vocab_size, token_str, special_tokens).

`WordTokenizer` (the classic recipe's words, `lm.tokenizer.Tokenizer`), `CharTokenizer` (one id per
character) and, in `lm.tokenizers.bpe`, a byte-level BPE that trains like GPT-2's and loads GPT-2's files.
Every bad input raises `TokenizerError` (a `ValueError`) saying what was wrong.
"""

from lm.tokenizer import Tokenizer as WordTokenizer
from lm.tokenizer import UnknownWordError
from lm.tokenizers.base import TextTokenizer, TokenizerError
from lm.tokenizers.char import CharTokenizer

__all__ = ["CharTokenizer", "TextTokenizer", "TokenizerError", "UnknownWordError", "WordTokenizer"]
