"""The old import path of the text models' word tokenizer, kept while callers move to `lm.tokenizers.word`.

`WordTextTokenizer` is `WordTokenizer`: `WordTextTokenizer(vocab)` and `.from_text(text)` work as before.
"""

from lm.tokenizers.word import MAX_WORD_VOCAB
from lm.tokenizers.word import WordTokenizer as WordTextTokenizer

__all__ = ["MAX_WORD_VOCAB", "WordTextTokenizer"]
