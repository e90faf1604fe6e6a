"""A word-level tokenizer whose vocabulary is built from the corpus.

Words are split on whitespace and lowercased; id 0 is `<pad>`, id 1 is `<eos>` (the end of a sentence,
which the model learns to predict after a sentence's last word, so generation knows where to stop), then
the corpus words in order of first appearance (so the vocabulary is deterministic). An unknown word
raises `UnknownWordError`, which names it, suggests close matches and lists the vocabulary, because a
prompt is typed by a person. (A vocabulary saved before `<eos>` existed still loads, without an end.)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class UnknownWordError(ValueError):
    """Words of a text are not in the vocabulary; `.words` lists them in order of appearance."""

    def __init__(self, words: list[str], vocab: Sequence[str]):
        self.words = words
        real = [v for v in vocab if v not in Tokenizer.SPECIALS]
        hints = []
        for word in words[:MAX_NAMED]:
            if word in Tokenizer.SPECIALS:
                hints.append(f"'{word}' (a special token, not a word)")
                continue
            close = difflib.get_close_matches(word, real, n=3)
            hints.append(f"'{word}'" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
        if len(words) > MAX_NAMED:
            hints.append(f"and {len(words) - MAX_NAMED:,} more")
        plural = "s are" if len(words) > 1 else " is"
        super().__init__(
            f"the word{plural} not in the vocabulary: {', '.join(hints)}; use words of the corpus. "
            f"The vocabulary ({len(real)} words): {vocabulary_hint(real)}"
        )


MAX_NAMED = 10  # unknown words named one by one in a message
VOCAB_SHOWN = 120  # words of the vocabulary listed in a message


def vocabulary_hint(words: Sequence[str]) -> str:
    """The words for a message, sorted: all of them, or the first VOCAB_SHOWN and a count."""
    words = sorted(words)
    shown = ", ".join(words[:VOCAB_SHOWN])
    return shown + (f", … ({len(words) - VOCAB_SHOWN} more)" if len(words) > VOCAB_SHOWN else "")


def split_words(text: str) -> list[str]:
    """The words of a text: whitespace-separated, lowercased."""
    return text.lower().split()


class Tokenizer:
    """Maps words to ids and back; `<pad>` is id 0 and `<eos>` (when the vocabulary has it) id 1."""

    PAD = "<pad>"
    PAD_ID = 0
    EOS = "<eos>"
    EOS_ID = 1
    SPECIALS = (PAD, EOS)

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if not vocab or vocab[0] != self.PAD:
            raise ValueError(f"a vocabulary must start with '{self.PAD}' (id 0)")
        if len(set(vocab)) != len(vocab):
            raise ValueError("a vocabulary must not repeat a word")
        has_eos = len(vocab) > 1 and vocab[1] == self.EOS
        for word in vocab[2 if has_eos else 1 :]:  # every word must be one a prompt can spell
            if not isinstance(word, str) or split_words(word) != [word] or word in self.SPECIALS:
                raise ValueError(f"vocabulary entry {word!r} is not a lowercase word without spaces")
        self.vocab = vocab
        self.ids = {word: i for i, word in enumerate(vocab)}
        self.eos_id: int | None = self.EOS_ID if has_eos else None  # None: a vocabulary saved before <eos>

    @property
    def words(self) -> list[str]:
        """The vocabulary without its special tokens: what a prompt may use."""
        return [w for w in self.vocab if w not in self.SPECIALS]

    @classmethod
    def from_corpus(cls, sentences: Iterable[str]) -> Tokenizer:
        """`<pad>`, `<eos>`, then every word of the sentences, in order of first appearance."""
        vocab = [cls.PAD, cls.EOS]
        seen = set(vocab)
        for sentence in sentences:
            for word in split_words(sentence):
                if word in cls.SPECIALS:
                    raise ValueError(f"'{word}' is a special token and cannot be a word of the corpus")
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
        unknown = [w for w in dict.fromkeys(words) if w not in self.ids or w in self.SPECIALS]
        if unknown:
            raise UnknownWordError(unknown, self.vocab)
        return [self.ids[w] for w in words]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The word of each id."""
        return [self.vocab[int(i)] for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ids, words joined by spaces, padding and the end token left out."""
        return " ".join(w for w in (self.vocab[int(i)] for i in ids) if w not in self.SPECIALS)
