"""Shared set-up for the trainer tests: `import t2r` from the source tree, one CPU thread, tiny models."""
import json
import os
import sys

import numpy as np
import pytest
import torch

TRAINER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TRAINER not in sys.path:
    sys.path.insert(0, TRAINER)

torch.set_num_threads(1)

from t2r.model import ModelConfig  # noqa: E402

VOCAB = 64


def tiny_config(**overrides) -> ModelConfig:
    """dim 32, 2 layers, 2 heads (head_dim 16): big enough to exercise every path, fast on one core."""
    base = dict(vocab_size=VOCAB, dim=32, layers=2, heads=2, ffn_dim=64, max_positions=32,
                attention="softmax", feature_dim=8)
    base.update(overrides)
    return ModelConfig(**base).validate()


def write_data(folder, vocab=VOCAB, train_tokens=4000, eval_tokens=600, seed=0) -> str:
    """A synthetic data folder in the layout scripts/prepare-corpus.ts writes (uint16 token ids)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_tokens), ("validation", eval_tokens), ("test", eval_tokens)):
        # A little structure (next token often = previous + 1) so training has something to learn.
        ids = rng.integers(0, vocab, n)
        follow = rng.random(n) < 0.5
        for i in range(1, n):
            if follow[i]:
                ids[i] = (ids[i - 1] + 1) % vocab
        ids.astype(np.uint16).tofile(os.path.join(folder, f"{split}.bin"))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"vocab_size": vocab, "eos_token_id": vocab - 1, "splits": {}}, f)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "test", "vocab_size": vocab}}, f)
    return str(folder)


@pytest.fixture
def data_dir(tmp_path):
    return write_data(tmp_path / "data")
