"""The bundled text model (lm/data/shakespeare-char.safetensors): what its file records is what it measures.

Its metadata holds the run's settings and the validation loss measured when it was made (docs/lm.md gives
the command); rebuilding the run's fixed held-out batches from those settings and evaluating the bundled
weights must give that loss again, and it must be within issue 18's bound (1.60 nats per character).
"""

import pytest
import torch

from lm import checkpoint
from lm.train import TrainConfig, Trainer


def test_the_bundled_shakespeare_model_has_its_recorded_validation_loss(tmp_path):
    saved = checkpoint.load(checkpoint.SHAKESPEARE_WEIGHTS)
    recorded = saved.metrics["val_loss"]
    assert recorded <= 1.60
    config = TrainConfig.from_dict(saved.train_config)
    trainer = Trainer(config, tokenizer=saved.model.tokenizer, cache_dir=tmp_path)  # the same held-out batches
    assert trainer.source.data_id == saved.data_id  # the same text, tokenized the same way
    saved.restore(trainer.model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as it was measured: a matmul's sums follow the threads
    try:
        measured = trainer.evaluate()
    finally:
        torch.set_num_threads(threads)
    assert len(trainer.val_batches) == saved.metrics["eval_batches"] == config.eval_batches
    assert measured == pytest.approx(recorded, abs=1e-4)
