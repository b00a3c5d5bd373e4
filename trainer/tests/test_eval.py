"""Evaluation windows, samples of them, and ETAs that count the evaluations still to come."""
import json

import numpy as np

from conftest import VOCAB, tiny_config
from t2r.data import window_starts
from t2r.evaluation import EvalCost, Evaluation
from t2r.model import Transformer
from t2r.train import TrainSpec, train


def test_window_starts_cover_limit_or_spread_a_sample():
    ids = np.zeros(16 * 10 + 1)
    assert window_starts(ids, 16) == [16 * i for i in range(10)]
    assert window_starts(ids, 16, limit=3) == [0, 16, 32]
    assert window_starts(ids, 16, sample=4) == [0, 32, 80, 112]
    assert window_starts(ids, 16, limit=4, sample=2) == [0, 32]
    assert window_starts(ids, 16, sample=50) == window_starts(ids, 16)


def test_eval_cost_is_measured_once_an_evaluation_ran():
    cost = EvalCost()
    assert cost.seconds(8, step_seconds=0.6, batch=2) == 8 * 0.6 / 6
    cost.observe(Evaluation(perplexity=2.0, tokens=64, windows=4, seconds=2.0))
    assert cost.seconds(8, step_seconds=0.6, batch=2) == 4.0


class TenSecondsAWindow(EvalCost):
    """A fixed evaluation cost, so the ETA's evaluation share is exact whatever this machine's speed."""

    def __init__(self):
        super().__init__()
        self.per_window = 10.0

    def observe(self, ev):
        pass


def test_eta_includes_the_evaluations_still_to_come(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, 2000).astype(np.int64)
    eval_ids = rng.integers(0, VOCAB, 16 * 6 + 1).astype(np.int64)
    spec = TrainSpec(steps=4, batch=2, seq=16, lr=1e-3, seed=0, warmup=1, log_every=1, checkpoint_every=10,
                     eval_at=[2, 4], eval_sample=3, after_windows=5, eval_cost=TenSecondsAWindow())
    train(Transformer(tiny_config()), ids, eval_ids, spec, str(tmp_path), {"what": "eta"})
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    eta = {e["step"]: e["eta_s"] for e in events if e["event"] == "step"}
    evals = [e for e in events if e["event"] == "eval"]
    assert [(e["step"], e["windows"], e["sample"]) for e in evals] == [(2, 3, True), (4, 3, True)]
    # Steps 1 and 2 still have both sampled evaluations (3 windows each) and the 5 windows scored
    # after training ahead of them; the last step only its own evaluation and those 5.
    assert eta[1] >= 110 and eta[2] >= 110
    assert 80 <= eta[3] < eta[2]
    assert eta[4] == 80.0
