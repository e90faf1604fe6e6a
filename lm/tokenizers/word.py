"""The word tokenizer of both the classic sentence model and the word-level text models.

A vocabulary is a few leading special tokens (`<pad>`, `<eos>`, `<|endoftext|>`), then lowercase words.
Text is split on whitespace and lowercased; a line break that ends a sentence adds the end token (`<eos>`
or `<|endoftext|>`, whichever the vocabulary has), as the literal `<|endoftext|>` does, and decoding writes
the end token back as a line break. Unknown words raise `UnknownWordError`, naming close matches and the
vocabulary, because a prompt is typed by a person.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from lm.tokenizers.base import EOT, TextTokenizer, TokenizerError, check_ids, check_str, check_unicode

PAD, EOS = "<pad>", "<eos>"
SPECIALS = (PAD, EOS, EOT)  # every special token a word vocabulary may start with
ENDS = (EOS, EOT)  # the end token: the sentence model's <eos>, the text models' <|endoftext|>
MAX_WORD_VOCAB = 200_000  # distinct words of a word-level text
MAX_NAMED = 10  # unknown words named one by one in a message
VOCAB_SHOWN = 120  # words of the vocabulary listed in a message


def split_words(text: str) -> list[str]:
    """The words of a text: whitespace-separated, lowercased."""
    return text.lower().split()


class UnknownWordError(TokenizerError):
    """Words of a text are not in the vocabulary; `.words` lists them in order of appearance."""

    def __init__(self, words: list[str], vocab: Sequence[str]):
        self.words = words
        real = [v for v in vocab if v not in SPECIALS]
        hints = []
        for word in words[:MAX_NAMED]:
            if word in SPECIALS:
                hints.append(f"'{word}' (a special token, not a word)")
                continue
            close = difflib.get_close_matches(word, real, n=3)
            hints.append(f"'{word}'" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
        if len(words) > MAX_NAMED:
            hints.append(f"and {len(words) - MAX_NAMED:,} more")
        plural = "s are" if len(words) > 1 else " is"
        listed = ", ".join(sorted(real)[:VOCAB_SHOWN])
        if len(real) > VOCAB_SHOWN:
            listed += f", … ({len(real) - VOCAB_SHOWN} more)"
        super().__init__(
            f"the word{plural} not in the vocabulary: {', '.join(hints)}; use words of the corpus. "
            f"The vocabulary ({len(real)} words): {listed}"
        )


class WordTokenizer(TextTokenizer):
    """Maps words to ids and back; the leading special tokens take the first ids."""

    kind = "word"

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        n_specials = next((i for i, token in enumerate(vocab) if token not in SPECIALS), len(vocab))
        if n_specials == 0:
            raise TokenizerError(f"a word vocabulary must start with a special token: {', '.join(SPECIALS)}")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("a vocabulary must not repeat a word")
        specials = vocab[:n_specials]
        if sum(token in ENDS for token in specials) > 1:
            raise TokenizerError(f"a word vocabulary has one end token, {EOS} or {EOT}, not both")
        for word in vocab[n_specials:]:  # every word must be one a prompt can spell
            if isinstance(word, str):
                check_unicode(word, "vocabulary entry")
            if not isinstance(word, str) or split_words(word) != [word] or word in SPECIALS:
                where = " (special tokens come before the words)" if word in SPECIALS else ""
                raise TokenizerError(f"vocabulary entry {word!r} is not a lowercase word without spaces{where}")
        self.vocab = vocab
        self.ids = {word: i for i, word in enumerate(vocab)}
        self._specials = specials
        self.pad_id: int | None = self.ids.get(PAD)  # None: no padding (a text model's vocabulary)
        # None: no end token (a sentence vocabulary saved before <eos> existed)
        self.end_id: int | None = next((self.ids[t] for t in ENDS if t in self.ids), None)

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> WordTokenizer:
        """`<pad>`, `<eos>`, then every word of the sentences in order of first appearance (deterministic:
        the classic model's saved weights and seeded runs depend on this order)."""
        return cls([PAD, EOS, *_distinct_words(sentences, "corpus")])

    @classmethod
    def from_text(cls, text: str) -> WordTokenizer:
        """`<|endoftext|>`, then every word of the text (documents split on `<|endoftext|>`) in order of first
        appearance; at most MAX_WORD_VOCAB words."""
        check_str(text, "the text")
        words = _distinct_words(text.split(EOT), "text")
        if len(words) > MAX_WORD_VOCAB:
            raise TokenizerError(f"the text has {len(words):,} distinct words, over {MAX_WORD_VOCAB:,}: use bpe:N")
        return cls([EOT, *words])

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def words(self) -> list[str]:
        """The vocabulary without its special tokens: what a prompt may use."""
        return self.vocab[len(self._specials) :]

    def token_str(self, token_id: int) -> str:
        """The word (or special token) of one id."""
        return self.tokens([token_id])[0]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The word (or special token) of each id."""
        return [self.vocab[i] for i in check_ids(ids, len(self.vocab))]

    def encode(self, text: str) -> list[int]:
        """Ids of the words of `text`, with one end token after each sentence that a line break or the literal
        `<|endoftext|>` ends (blank lines add none; without an end token in the vocabulary, none at all).
        Raises UnknownWordError naming every unknown word (a special token typed as a word is one)."""
        check_str(text, "text to encode")
        end = self.end_id
        docs = text.split(EOT) if end is not None else [text]
        words = dict.fromkeys(w for doc in docs for w in split_words(doc))
        unknown = [w for w in words if w not in self.ids or w in SPECIALS]
        if unknown:
            raise UnknownWordError(unknown, self.vocab)
        ids: list[int] = []
        for k, doc in enumerate(docs):
            if k and (not ids or ids[-1] != end):  # the literal end token, unless a line break just ended
                ids.append(end)
            lines = doc.split("\n")
            for j, line in enumerate(lines):
                words = split_words(line)
                ids.extend(self.ids[w] for w in words)
                if words and j < len(lines) - 1 and end is not None:  # a sentence that a line break ends
                    ids.append(end)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces, each end token written as a line break, padding left out."""
        lines, words = [], []
        for i in check_ids(ids, len(self.vocab)):
            if i == self.end_id:
                lines.append(" ".join(words))
                words = []
            elif i != self.pad_id:
                words.append(self.vocab[i])
        return "\n".join([*lines, " ".join(words)])

    def _fields(self) -> dict:
        return {"vocab": self.vocab}

    @classmethod
    def _from_fields(cls, data: dict) -> WordTokenizer:
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise TokenizerError("a word tokenizer's vocab must be a list of strings")
        return cls(vocab)

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self.words):,} words, special_tokens={self._specials})"


def _distinct_words(texts: Iterable[str], what: str) -> list[str]:
    """The words of `texts` in order of first appearance; a special token among them is an error (the other
    checks of a word are WordTokenizer's)."""
    words = list(dict.fromkeys(word for text in texts for word in split_words(text)))
    special = next((word for word in words if word in SPECIALS), None)
    if special is not None:
        raise TokenizerError(f"'{special}' is a special token and cannot be a word of the {what}")
    return words
