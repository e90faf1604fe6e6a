"""lm: a decoder-only transformer language model whose forward and backward passes are autodiff graphs.

Train it (`Trainer`, an iterator of progress events), generate with a trace of probabilities and
attention (`generate`, with a KV cache), save and load it (`lm.weights`), or use the command line:
`python -m lm train` and `python -m lm generate`. Text models (presets classic, gpt, llama; any text,
any tokenizer): `TextTrainer` (lm.textrun), `generate_text` (lm.textgen), checkpoints in lm.checkpoint.
"""

from lm.corpus import DEFAULT_CORPUS, CorpusError, load_corpus, parse_corpus
from lm.generate import KVCache, Step, Trace, generate, sample_next_token
from lm.model import PRESETS, LanguageModel, ModelConfig, preset_config
from lm.optim import SGD, AdamW
from lm.textgen import generate_text
from lm.textrun import TextEvent, TextTrainConfig, TextTrainer
from lm.tokenizer import Tokenizer, UnknownWordError
from lm.train import MemorizationRow, TrainConfig, Trainer, TrainEvent, memorization
from lm.weights import DEFAULT_WEIGHTS, WeightsError, load, load_bytes, save, to_bytes

__all__ = [
    "DEFAULT_CORPUS", "DEFAULT_WEIGHTS", "AdamW", "CorpusError", "KVCache", "LanguageModel", "MemorizationRow",
    "ModelConfig", "SGD", "Step", "Tokenizer", "Trace", "TrainConfig", "TrainEvent", "Trainer", "UnknownWordError",
    "WeightsError", "generate", "load", "load_bytes", "load_corpus", "memorization", "parse_corpus",
    "sample_next_token", "save", "to_bytes", "PRESETS", "preset_config", "TextEvent", "TextTrainConfig", "TextTrainer",
    "generate_text",
]  # fmt: skip
