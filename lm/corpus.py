"""The training corpus: the default ten sentences and the parser for a user's own corpus.

A corpus is a list of sentences, one per line in text form. Each sentence is a list of words split on
whitespace; sentences may differ in length (the trainer pads them and masks the padding out).
"""

from __future__ import annotations

from pathlib import Path

# Ten sentences of five words, our own. No two share their first two words, so each sentence is
# determined by its first two words: a model that memorized the corpus completes every one exactly.
DEFAULT_CORPUS: list[str] = [
    "the red fox jumps high",
    "a small bird sings softly",
    "my old cat sleeps often",
    "the blue whale swims slowly",
    "a green frog hops away",
    "our young dog runs fast",
    "the tall tree grows quietly",
    "a bright star shines above",
    "his new boat sails north",
    "the cold wind blows hard",
]

MAX_SENTENCES = 500  # lm's bound (a caller such as the Train page may pass a lower one)
MAX_WORDS = 64  # words per sentence; the context grows with the longest sentence
MIN_WORDS = 3  # two prompt words for the memorization score, and at least one word to predict
MAX_CHARS = 100_000  # a bound on the text read before any parsing


class CorpusError(ValueError):
    """The corpus text cannot be used; the message says what is wrong and how to fix it."""


def parse_corpus(text: str, max_sentences: int = MAX_SENTENCES) -> list[str]:
    """Sentences from text, one per line: blank lines dropped, words re-joined by single spaces.
    `max_sentences` (at most MAX_SENTENCES) is the limit the message names: one limit, one message."""
    max_sentences = min(max_sentences, MAX_SENTENCES)
    if len(text) > MAX_CHARS:
        raise CorpusError(f"the corpus has {len(text):,} characters; the limit is {MAX_CHARS:,}: use a shorter text")
    sentences = [" ".join(line.split()) for line in text.splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise CorpusError("the corpus is empty: write one sentence per line (for example 'the red fox jumps high')")
    if len(sentences) > max_sentences:
        raise CorpusError(
            f"the corpus has {len(sentences):,} sentences; the limit is {max_sentences}: remove some lines"
        )
    for number, sentence in enumerate(sentences, start=1):
        n_words = len(sentence.split())
        if n_words < MIN_WORDS:
            raise CorpusError(
                f"sentence {number} ('{sentence}') has {n_words} word(s); each sentence needs at least {MIN_WORDS} "
                "(two prompt words and one to predict): lengthen it or remove the line"
            )
        if n_words > MAX_WORDS:
            raise CorpusError(
                f"sentence {number} has {n_words} words; the limit is {MAX_WORDS}: split it into shorter lines"
            )
    return sentences


def load_corpus(path: str | Path) -> list[str]:
    """Sentences of a UTF-8 text file, one per line (see `parse_corpus`). Only a regular file is read,
    and never more than the bound allows (`/dev/zero` or a huge file fails at once, not after reading)."""
    path = Path(path)
    limit = 4 * MAX_CHARS  # UTF-8 bytes of MAX_CHARS characters at most
    try:
        if not path.exists():
            raise CorpusError(f"corpus file '{path}' does not exist: check the path")
        if not path.is_file():
            raise CorpusError(f"'{path}' is not a regular file: give a text file, one sentence per line")
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise CorpusError(f"cannot read corpus file '{path}': {err.strerror or err}") from None
    if len(data) > limit:
        raise CorpusError(f"corpus file '{path}' is over {limit:,} bytes; the limit is {MAX_CHARS:,} characters")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorpusError(f"corpus file '{path}' is not UTF-8 text: save it as plain UTF-8 text") from None
    return parse_corpus(text)
