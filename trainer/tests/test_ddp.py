"""`--processes 2` (DistributedDataParallel, gloo on CPU) trains exactly what one process trains:
the same loss at every step and the same final weights, within float rounding (gradients of two
half-batches averaged instead of one whole batch's). Rank 0 alone reports; an interrupted
two-process run resumes from its checkpoint and continues the single-process curve."""
import os
import signal
import subprocess
import sys

from conftest import TRAINER, write_data
from t2r import safetensors
from test_cli import TINY_MODEL, assert_fails, json_lines, t2r

# Loss events carry 5 decimals. Weights: AdamW turns the gradients' rounding differences into update
# differences that grow with the steps; measured here 3e-7 after 4 steps, 1.2e-5 after 20.
LOSS_TOL = 1e-4
WEIGHT_TOL = 1e-4
RUN = ["--batch", "4", "--seq", "16", "--warmup", "1", "--log-every", "1", "--threads", "1", "--eval-windows", "2"]


def losses(events: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def assert_same_weights(a, b):
    wa, _ = safetensors.load(str(a))
    wb, _ = safetensors.load(str(b))
    assert sorted(wa) == sorted(wb)
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= WEIGHT_TOL, f"weights differ by {worst}"


def assert_same_curve(one: dict[int, float], two: dict[int, float]):
    assert sorted(two) == sorted(one)
    for step, loss in one.items():
        assert abs(two[step] - loss) <= LOSS_TOL, f"step {step}: {two[step]} (2 processes) vs {loss} (1)"


def test_two_processes_train_what_one_trains(tmp_path):
    data = write_data(tmp_path / "data")
    pretrain = ["pretrain", "--data", data, "--steps", "4", *RUN, *TINY_MODEL]
    one = t2r(*pretrain, "--run", tmp_path / "one")
    two = t2r(*pretrain, "--run", tmp_path / "two", "--processes", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    events = json_lines(two.stdout)  # rank 0 only: one start, one line per step
    assert [e["event"] for e in events] == ["start", "step", "step", "step", "step", "checkpoint"]
    assert_same_curve(losses(json_lines(one.stdout)), losses(events))
    assert_same_weights(tmp_path / "one" / "final.safetensors", tmp_path / "two" / "final.safetensors")


def test_an_interrupted_two_process_conversion_resumes_on_the_single_process_curve(tmp_path):
    data = write_data(tmp_path / "data")
    base = t2r("pretrain", "--data", data, "--run", tmp_path / "run-base", "--steps", "2", *RUN, *TINY_MODEL,
               "--out", tmp_path / "base")
    assert base.returncode == 0, base.stderr
    # Attention transfer, then finetuning: the phase change re-wraps the model for DDP.
    convert = ["convert", "--teacher", tmp_path / "base", "--data", data, "--steps", "8", "--transfer-steps", "2",
               "--feature-dim", "8", "--checkpoint-every", "2", *RUN]
    one = t2r(*convert, "--run", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    curve = losses(json_lines(one.stdout))

    # Stopped the way the server cancels a job: SIGTERM to the trainer it started, here right after
    # the first checkpoint (the launcher passes it on to both ranks).
    cmd = [sys.executable, "-m", "t2r", *map(str, convert), "--run", str(tmp_path / "two"), "--processes", "2"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, cwd=TRAINER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = []
    for line in proc.stdout:
        first.append(line)
        if '"checkpoint"' in line:
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    proc.wait(timeout=60)
    first = losses(json_lines("".join(first)))

    resumed = t2r(*convert, "--run", tmp_path / "two", "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr
    events = json_lines(resumed.stdout)
    at = [e["step"] for e in events if e["event"] == "resume"]
    assert len(at) == 1 and 2 <= at[0] < 10, events[:3]
    second = losses(events)
    assert min(second) == at[0] + 1
    assert_same_curve({s: curve[s] for s in first}, first)
    assert_same_curve({s: curve[s] for s in second}, second)
    assert_same_weights(tmp_path / "one" / "final.safetensors", tmp_path / "two" / "final.safetensors")


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    proc = t2r("pretrain", "--data", write_data(tmp_path / "data"), "--run", tmp_path / "run", "--steps", "2",
               *RUN[:-2], "--batch", "3", "--processes", "2")
    assert_fails(proc, "--batch 3 does not split evenly over --processes 2")
