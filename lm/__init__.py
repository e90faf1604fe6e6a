"""lm: a decoder-only transformer language model whose forward and backward passes are autodiff graphs.

Train it (`lm.train.Trainer`, an iterator of progress events), generate with a trace of probabilities
and attention (`lm.generate.generate`, with a KV cache), save and load it (`lm.weights`), or use the
command line: `python -m lm train` and `python -m lm generate`.
"""

from lm.corpus import DEFAULT_CORPUS, CorpusError, load_corpus, parse_corpus
from lm.model import LanguageModel, ModelConfig
from lm.tokenizer import Tokenizer, UnknownWordError

__all__ = [
    "DEFAULT_CORPUS",
    "CorpusError",
    "LanguageModel",
    "ModelConfig",
    "Tokenizer",
    "UnknownWordError",
    "load_corpus",
    "parse_corpus",
]
