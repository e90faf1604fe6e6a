"""Word-level tokens of running text (`--tokenizer word`): the text models' word tokenizer.

Id 0 is `<|endoftext|>`, then the lowercased whitespace-separated words of the corpus in order of first
appearance (the classic model's rule for words). A word corpus holds one sentence per line, so a line
break ends a sentence: it becomes `<|endoftext|>`, as the literal `<|endoftext|>` between documents does,
and a model learns where a sentence ends and its generation stops there. Text without a line break (a
prompt) gets no end token. Decoding writes each end token as a line break, so a decoded text reads as
the corpus did (lowercased, one sentence per line).
"""

from __future__ import annotations

import difflib

from lm.tokenizer import split_words
from lm.tokenizers.base import EOT, TokenizerError

MAX_WORD_VOCAB = 200_000  # distinct words of a word-level corpus


class WordTextTokenizer:
    """Words of running text; a line break or `<|endoftext|>` ends a sentence (one end token)."""

    def __init__(self, words: list[str]):
        if not words or words[0] != EOT or len(set(words)) != len(words):
            raise TokenizerError(f"a word vocabulary starts with {EOT} and repeats no word")
        self.vocab = list(words)
        self.ids = {w: i for i, w in enumerate(words)}

    @classmethod
    def from_text(cls, text: str) -> WordTextTokenizer:
        words = dict.fromkeys(w for doc in text.split(EOT) for w in split_words(doc))
        if len(words) > MAX_WORD_VOCAB:
            raise TokenizerError(f"the text has {len(words):,} distinct words, over {MAX_WORD_VOCAB:,}: use bpe:N")
        return cls([EOT, *words])

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_tokens(self) -> list[str]:
        return [EOT]

    def encode(self, text: str) -> list[int]:
        """Ids of the words of `text`, with one end token (id 0) after each sentence that a line break or
        `<|endoftext|>` ends (blank lines add none); an unknown word is named, with close matches."""
        unknown = [w for w in dict.fromkeys(split_words(text.replace(EOT, " "))) if w not in self.ids]
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.vocab[1:], n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise TokenizerError(f"word(s) not in the vocabulary: {', '.join(unknown[:10])}{hint}")
        ids: list[int] = []
        for k, doc in enumerate(text.split(EOT)):
            if k and (not ids or ids[-1] != 0):  # the literal end token, unless a line break just ended
                ids.append(0)
            lines = doc.split("\n")
            for j, line in enumerate(lines):
                words = split_words(line)
                ids.extend(self.ids[w] for w in words)
                if words and j < len(lines) - 1:  # a sentence that a line break ends
                    ids.append(0)
        return ids

    def decode(self, ids) -> str:
        """Words joined by spaces, each end token written as a line break."""
        lines, words = [], []
        for i in ids:
            if int(i) == 0:
                lines.append(" ".join(words))
                words = []
            else:
                words.append(self.vocab[int(i)])
        return "\n".join([*lines, " ".join(words)])

    def token_str(self, token_id: int) -> str:
        return self.vocab[int(token_id)]
