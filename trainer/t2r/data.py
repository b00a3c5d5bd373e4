"""Token-id files written by the TypeScript side (scripts/prepare-corpus.ts): uint16 ids."""
from __future__ import annotations

import json
import os

import numpy as np
import torch


class DataError(Exception):
    pass


def load_split(data_dir: str, split: str) -> np.ndarray:
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; run `npm run corpus` to write the token-id files")
    return np.fromfile(path, dtype=np.uint16).astype(np.int64)


def load_meta(data_dir: str) -> dict:
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing")
    with open(path) as f:
        return json.load(f)


class BatchSampler:
    """Random windows of seq+1 tokens. Batch `step` depends only on (seed, step), so a resumed
    run sees exactly the batches an uninterrupted one would."""

    def __init__(self, ids: np.ndarray, batch: int, seq: int, seed: int):
        if len(ids) < seq + 2:
            raise DataError(f"corpus has {len(ids)} tokens; one window of {seq + 1} needs more")
        self.ids, self.batch, self.seq, self.seed = ids, batch, seq, seed

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.ids) - self.seq - 1, size=self.batch)
        windows = np.stack([self.ids[s:s + self.seq + 1] for s in starts])
        t = torch.from_numpy(windows)
        return t[:, :-1], t[:, 1:]


def eval_windows(ids: np.ndarray, seq: int, limit: int | None = None):
    """Non-overlapping windows covering the split; every model is scored on the same tokens."""
    n = (len(ids) - 1) // seq
    if limit is not None:
        n = min(n, limit)
    for i in range(n):
        w = torch.from_numpy(ids[i * seq:i * seq + seq + 1])
        yield w[:-1].unsqueeze(0), w[1:].unsqueeze(0)
