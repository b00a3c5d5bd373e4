"""Held-out perplexity, what it costs (so ETAs include evaluation), and a cache of teachers' figures
(a conversion job's teacher is scored once per teacher checkpoint and evaluation tokens, not per job)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import eval_windows, window_starts
from .model import Transformer

EVAL_BATCH = 8


@dataclass
class Evaluation:
    perplexity: float
    tokens: int
    windows: int
    seconds: float

    def fields(self) -> dict:
        """The figures progress events carry."""
        return {"perplexity": round(self.perplexity, 4), "tokens": self.tokens, "windows": self.windows}


@torch.no_grad()
def evaluate(model: Transformer, ids: np.ndarray, seq: int, limit: int | None = None,
             sample: int | None = None) -> Evaluation:
    """Perplexity on non-overlapping windows of `ids` (data.window_starts: `limit`, `sample`)."""
    t0 = time.time()
    was_training = model.training
    model.eval()
    starts = window_starts(ids, seq, limit, sample)
    windows = list(eval_windows(ids, seq, starts))
    nll, count = 0.0, 0
    device = next(model.parameters()).device  # a GPU rank evaluates mid-training where it trains
    for i in range(0, len(windows), EVAL_BATCH):
        x = torch.cat([w[0] for w in windows[i:i + EVAL_BATCH]]).to(device)
        y = torch.cat([w[1] for w in windows[i:i + EVAL_BATCH]]).to(device)
        logits, _ = model(x)
        nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return Evaluation(math.exp(nll / count), count, len(windows), time.time() - t0)


class EvalCost:
    """Seconds per evaluation window: measured by the latest evaluation; before any, estimated from
    the training step time (one window's forward pass is about a third of its share of a step)."""

    def __init__(self) -> None:
        self.per_window: float | None = None

    def observe(self, ev: Evaluation) -> None:
        if ev.windows:
            self.per_window = ev.seconds / ev.windows

    def seconds(self, windows: int, step_seconds: float, batch: int) -> float:
        per = self.per_window if self.per_window is not None else step_seconds / (3 * batch)
        return windows * per


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def teacher_evaluation(teacher: Transformer, checkpoint: str, ids: np.ndarray, seq: int, limit: int | None,
                       cache_dir: str | None) -> tuple[Evaluation, bool]:
    """The teacher's perplexity on `ids`, from `cache_dir` when this checkpoint was scored on these
    tokens with these windows before; -> (evaluation, whether it came from the cache)."""
    if cache_dir is None:
        return evaluate(teacher, ids, seq, limit), False
    key = hashlib.sha256(json.dumps([_sha256_file(checkpoint), hashlib.sha256(ids.astype("<i8").tobytes()).hexdigest(),
                                     seq, limit]).encode()).hexdigest()
    path = os.path.join(cache_dir, f"teacher-{key}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return Evaluation(**json.load(f)), True
    ev = evaluate(teacher, ids, seq, limit)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(ev), f)
    os.replace(tmp, path)
    return ev, False
