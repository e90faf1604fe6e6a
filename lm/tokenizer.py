"""The old import path of the word tokenizer, kept while callers move to `lm.tokenizers.word`.

`Tokenizer` is `WordTokenizer` (one class for sentences and text); this module goes once nothing imports it.
"""

from lm.tokenizers.word import UnknownWordError, split_words
from lm.tokenizers.word import WordTokenizer as Tokenizer

__all__ = ["Tokenizer", "UnknownWordError", "split_words"]
