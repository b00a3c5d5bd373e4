"""A killed run resumes from run_dir/state.safetensors and finishes exactly where an uninterrupted one does."""
import json
import os

import numpy as np
import pytest
import torch

import t2r.train as train_mod
from conftest import VOCAB, tiny_config
from t2r.model import Transformer, swap_attention
from t2r.train import TrainSpec, train

RUN_INFO = {"steps": 6, "what": "test"}


def corpus(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, n)
    ids[1::2] = (ids[0::2][: len(ids[1::2])] + 1) % VOCAB  # something learnable
    return ids.astype(np.int64)


TRAIN_IDS, EVAL_IDS = corpus(), corpus(400, seed=1)


def fresh_model(kind: str, seed: int) -> Transformer:
    torch.manual_seed(seed)
    if kind == "softmax":
        return Transformer(tiny_config(attention="softmax"))
    teacher = Transformer(tiny_config(attention="softmax"))
    return swap_attention(teacher, "t2r", 8, seed)


SPECS = {
    # pretraining: warmup then cosine, an evaluation in the middle, checkpoints every 2 steps
    "softmax": TrainSpec(steps=6, batch=2, seq=16, lr=3e-3, seed=7, warmup=2, checkpoint_every=2, log_every=1,
                         eval_at=[3], eval_windows=2),
    # swap-then-finetune with 2 attention-transfer steps (own optimizer over phi) before 4 finetune steps
    "t2r": TrainSpec(steps=4, batch=2, seq=16, lr=3e-3, seed=7, warmup=2, transfer_steps=2, checkpoint_every=1,
                     log_every=1),
}


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def step_losses(evs) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in evs if e["event"] == "step"}


def run(kind, run_dir, capsys, model_seed=0):
    os.makedirs(run_dir, exist_ok=True)
    model, _ = train(fresh_model(kind, model_seed), TRAIN_IDS, EVAL_IDS, SPECS[kind], str(run_dir), RUN_INFO)
    return model, events(capsys.readouterr().out)


def interrupt_at(monkeypatch, event, step):
    """Raise KeyboardInterrupt (what a kill looks like to Python) right after `event` for `step`
    is emitted: after a checkpoint is written, or after a step that no checkpoint covers yet."""
    real = train_mod.emit

    def emit(name, **fields):
        real(name, **fields)
        if name == event and fields.get("step") == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "emit", emit)


def assert_same_weights(a: Transformer, b: Transformer):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-7, msg=lambda m: f"{k}: {m}")


CASES = [
    ("softmax", "step", 3),        # killed between checkpoints: step 3 is lost and redone from step 2
    ("softmax", "checkpoint", 4),  # killed right after a checkpoint
    ("t2r", "checkpoint", 1),      # mid attention-transfer
    ("t2r", "checkpoint", 2),      # on the transfer -> finetune boundary
    ("t2r", "step", 4),            # mid finetune, one step past the last checkpoint
]


@pytest.mark.parametrize("kind,event,step", CASES)
def test_resume_matches_uninterrupted_run(kind, event, step, tmp_path, capsys, monkeypatch):
    spec = SPECS[kind]
    total = spec.transfer_steps + spec.steps
    straight, straight_ev = run(kind, tmp_path / "straight", capsys)
    losses = step_losses(straight_ev)
    assert sorted(losses) == list(range(1, total + 1))

    interrupt_at(monkeypatch, event, step)
    with pytest.raises(KeyboardInterrupt):
        run(kind, tmp_path / "resumed", capsys)
    first_ev = events(capsys.readouterr().out)
    assert max(step_losses(first_ev)) == step < total
    monkeypatch.undo()

    # Resume with a differently initialised model: the run folder's state must win.
    resumed, resumed_ev = run(kind, tmp_path / "resumed", capsys, model_seed=99)
    # A step's progress line comes before its checkpoint, so a kill there loses that step too.
    saved = step if event == "checkpoint" else (step - 1) // spec.checkpoint_every * spec.checkpoint_every
    assert resumed_ev[0] == {"event": "resume", "step": saved}
    resumed_losses = step_losses(resumed_ev)
    assert sorted(resumed_losses) == list(range(saved + 1, total + 1))

    # Same final loss (the last progress line), the same loss at every redone step, the same weights.
    last = [e for e in resumed_ev if e["event"] == "step"][-1]
    assert last["step"] == total
    assert last["loss"] == losses[total]
    for s, loss in resumed_losses.items():
        assert loss == losses[s], f"step {s}: resumed {loss} != uninterrupted {losses[s]}"
    assert_same_weights(resumed, straight)
    if kind == "softmax":
        evs = [e for e in resumed_ev if e["event"] == "eval"] + [e for e in first_ev if e["event"] == "eval"]
        ref = [e for e in straight_ev if e["event"] == "eval"]
        assert ref and all(e["perplexity"] == ref[0]["perplexity"] for e in evs)


def test_training_changes_weights_and_lowers_loss(tmp_path, capsys):
    """Guards the comparison above against vacuous success (e.g. a run that never updates)."""
    init = fresh_model("softmax", 0)
    model, evs = run("softmax", tmp_path / "r", capsys)
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), model.state_dict().values()))
    losses = step_losses(evs)
    assert losses[6] < losses[1]


def test_finished_run_is_not_retrained(tmp_path, capsys):
    first, _ = run("softmax", tmp_path / "r", capsys)
    again, evs = run("softmax", tmp_path / "r", capsys, model_seed=5)
    assert evs[0] == {"event": "resume", "step": 6}
    assert not [e for e in evs if e["event"] == "step"]
    assert_same_weights(again, first)


def test_resume_refuses_a_different_run(tmp_path, capsys):
    run("softmax", tmp_path / "r", capsys)
    with pytest.raises(ValueError, match="different run"):
        train(fresh_model("softmax", 0), TRAIN_IDS, None, SPECS["softmax"], str(tmp_path / "r"),
              {**RUN_INFO, "steps": 7})
