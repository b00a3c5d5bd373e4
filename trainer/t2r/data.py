"""Corpus folders written by the TypeScript side (scripts/prepare-corpus.ts, conversion jobs) in the
layout of contract/corpus-files.json: one token-id file per split and meta.json."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from .contract import CORPUS_FILES, check

TOKEN_DTYPE = np.dtype(CORPUS_FILES["token_dtype"]).newbyteorder("<" if CORPUS_FILES["byte_order"] == "little" else ">")


class DataError(Exception):
    pass


def load_split(data_dir: str, split: str) -> np.ndarray:
    path = os.path.join(data_dir, CORPUS_FILES["token_file"].format(split=split))
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; run `npm run corpus` to write the token-id files")
    return np.fromfile(path, dtype=TOKEN_DTYPE).astype(np.int64)


def load_meta(data_dir: str) -> dict:
    path = os.path.join(data_dir, CORPUS_FILES["meta_file"])
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing")
    try:
        with open(path) as f:
            meta = json.load(f)
        check(meta, "corpus-meta.schema.json", path)
    except ValueError as e:  # not JSON, or not the contract's meta.json (ContractError)
        raise DataError(str(e)) from None
    return meta


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


def window_starts(ids: np.ndarray, seq: int, limit: int | None = None, sample: int | None = None) -> list[int]:
    """Starts of the non-overlapping windows an evaluation scores (every model on the same tokens):
    the first `limit` windows of the split, or `sample` of those spread evenly across it."""
    n = (len(ids) - 1) // seq
    if limit is not None:
        n = min(n, limit)
    picked = range(n) if sample is None or sample >= n else sorted({i * n // sample for i in range(sample)})
    return [i * seq for i in picked]


def eval_windows(ids: np.ndarray, seq: int, starts: list[int]):
    for s in starts:
        w = torch.from_numpy(ids[s:s + seq + 1])
        yield w[:-1].unsqueeze(0), w[1:].unsqueeze(0)
