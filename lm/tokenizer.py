"""A word-level tokenizer whose vocabulary is built from the corpus.

Words are split on whitespace and lowercased; id 0 is `<pad>`, then the corpus words in order of first
appearance (so the vocabulary is deterministic). An unknown word raises `UnknownWordError`, which names
it and suggests close matches, because a prompt is typed by a person.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class UnknownWordError(ValueError):
    """Words of a text are not in the vocabulary; `.words` lists them in order of appearance."""

    def __init__(self, words: list[str], vocab: Sequence[str]):
        self.words = words
        hints = []
        for word in words:
            if word == Tokenizer.PAD:
                hints.append(f"'{word}' (the padding token, not a word)")
                continue
            close = difflib.get_close_matches(word, [v for v in vocab if v != Tokenizer.PAD], n=3)
            hints.append(f"'{word}'" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
        plural = "s are" if len(words) > 1 else " is"
        super().__init__(f"the word{plural} not in the vocabulary: {', '.join(hints)}; use words of the corpus")


def split_words(text: str) -> list[str]:
    """The words of a text: whitespace-separated, lowercased."""
    return text.lower().split()


class Tokenizer:
    """Maps words to ids and back; `<pad>` is id 0."""

    PAD = "<pad>"
    PAD_ID = 0

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if not vocab or vocab[0] != self.PAD:
            raise ValueError(f"a vocabulary must start with '{self.PAD}' (id 0)")
        if len(set(vocab)) != len(vocab):
            raise ValueError("a vocabulary must not repeat a word")
        for word in vocab[1:]:  # every word must be one a prompt can spell: split_words makes no others
            if not isinstance(word, str) or split_words(word) != [word]:
                raise ValueError(f"vocabulary entry {word!r} is not a lowercase word without spaces")
        self.vocab = vocab
        self.ids = {word: i for i, word in enumerate(vocab)}

    @classmethod
    def from_corpus(cls, sentences: Iterable[str]) -> Tokenizer:
        """`<pad>` then every word of the sentences, in order of first appearance."""
        vocab = [cls.PAD]
        seen = {cls.PAD}
        for sentence in sentences:
            for word in split_words(sentence):
                if word == cls.PAD:
                    raise ValueError(f"'{cls.PAD}' is reserved for padding and cannot be a word of the corpus")
                if word not in seen:
                    seen.add(word)
                    vocab.append(word)
        return cls(vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    # The common tokenizer interface (lm.tokenizers.TextTokenizer): size, specials, display string.
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_tokens(self) -> list[str]:
        return [self.PAD]

    def token_str(self, token_id: int) -> str:
        """The word of one id."""
        return self.vocab[int(token_id)]

    def encode(self, text: str) -> list[int]:
        """Ids of the words of `text`; raises UnknownWordError naming every unknown word."""
        words = split_words(text)
        unknown = [w for w in dict.fromkeys(words) if w not in self.ids or w == self.PAD]
        if unknown:
            raise UnknownWordError(unknown, self.vocab)
        return [self.ids[w] for w in words]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The word of each id."""
        return [self.vocab[int(i)] for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ids, words joined by spaces, padding left out."""
        return " ".join(self.vocab[int(i)] for i in ids if int(i) != self.PAD_ID)
