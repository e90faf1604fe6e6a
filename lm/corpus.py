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

MAX_SENTENCES = 500  # keeps a full-batch epoch fast enough for a live page
MAX_WORDS = 64  # words per sentence; the context grows with the longest sentence
MIN_WORDS = 3  # two prompt words for the memorization score, and at least one word to predict
MAX_CHARS = 100_000  # a bound on the text read before any parsing


class CorpusError(ValueError):
    """The corpus text cannot be used; the message says what is wrong and how to fix it."""


def parse_corpus(text: str) -> list[str]:
    """Sentences from text, one per line: blank lines dropped, words re-joined by single spaces."""
    if len(text) > MAX_CHARS:
        raise CorpusError(f"the corpus has {len(text):,} characters; the limit is {MAX_CHARS:,}: use a shorter text")
    sentences = [" ".join(line.split()) for line in text.splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise CorpusError("the corpus is empty: write one sentence per line (for example 'the red fox jumps high')")
    if len(sentences) > MAX_SENTENCES:
        raise CorpusError(f"the corpus has {len(sentences)} sentences; the limit is {MAX_SENTENCES}: remove some lines")
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
    """Sentences of a UTF-8 text file, one per line (see `parse_corpus`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"corpus file '{path}' does not exist: check the path") from None
    except UnicodeDecodeError:
        raise CorpusError(f"corpus file '{path}' is not UTF-8 text: save it as plain UTF-8 text") from None
    except OSError as err:
        raise CorpusError(f"cannot read corpus file '{path}': {err.strerror or err}") from None
    return parse_corpus(text)
