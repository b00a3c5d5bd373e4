"""`python3 -m t2r` end to end: clear one-line errors with a non-zero exit, and a tiny happy path."""
import base64
import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import TRAINER, VOCAB, write_data
from t2r.checkpoint import load_model
from t2r.export import reference

TINY = ["--batch", "2", "--seq", "16", "--warmup", "1", "--log-every", "1", "--checkpoint-every", "10",
        "--eval-windows", "4", "--threads", "1"]
TINY_MODEL = ["--dim", "32", "--layers", "2", "--heads", "2", "--ffn-dim", "64"]


def t2r(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "t2r", *map(str, args)], cwd=TRAINER, env=env,
                          capture_output=True, text=True, timeout=240)


def json_lines(stdout: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every stdout line is a JSON progress record


def assert_fails(proc, *needles, rc=1):
    assert proc.returncode == rc, f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    err = proc.stderr.strip()
    assert err, "no message on stderr"
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr: {err}"
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data(work):
    return write_data(work / "data")


@pytest.fixture(scope="module")
def teacher(work, data):
    """Pretrain a tiny softmax teacher through the CLI; -> its model folder."""
    out = work / "models" / "tiny-base"
    out.parent.mkdir()
    proc = t2r("pretrain", "--data", data, "--run", work / "runs" / "base", "--steps", "3", *TINY, *TINY_MODEL,
               "--out", out)
    assert proc.returncode == 0, proc.stderr
    evs = json_lines(proc.stdout)
    assert evs[0]["event"] == "start" and evs[-1] == {"event": "packaged", "out": str(out), "name": "tiny-base"}
    assert [e["step"] for e in evs if e["event"] == "step"] == [1, 2, 3]
    return out


def convert_args(work, teacher, data, name):
    return ["convert", "--teacher", teacher, "--data", data, "--run", work / "runs" / name, "--steps", "3",
            "--transfer-steps", "0", "--feature-dim", "8", *TINY]


def test_pretrain_packages_a_model_folder(teacher):
    files = sorted(os.listdir(teacher))
    assert files == ["checkpoint.safetensors", "decode.onnx", "model.json", "model.onnx", "parity.json", "tokenizer.json"]
    manifest = json.load(open(teacher / "model.json"))
    assert manifest["architecture"] == "softmax" and manifest["name"] == "tiny-base"
    assert manifest["vocab_size"] == VOCAB and manifest["eos_token_id"] == VOCAB - 1
    assert manifest["training"]["kind"] == "pretrain" and manifest["training"]["steps"] == 3
    ppl = manifest["metrics"]["test_perplexity"]
    assert math.isfinite(ppl) and 1 < ppl < 10 * VOCAB
    assert not [p for p in os.listdir(teacher.parent) if ".partial-" in p], "temporary folder left behind"


def test_convert_happy_path(work, teacher, data):
    out = work / "models" / "tiny-t2r"
    proc = t2r(*convert_args(work, teacher, data, "t2r"), "--out", out)
    assert proc.returncode == 0, proc.stderr
    evs = json_lines(proc.stdout)
    assert evs[0]["event"] == "start" and evs[0]["config"]["attention"] == "t2r"
    assert evs[-1]["event"] == "packaged"

    assert sorted(os.listdir(out)) == ["checkpoint.safetensors", "decode.onnx", "model.json", "model.onnx", "parity.json",
                                       "tokenizer.json"]
    manifest = json.load(open(out / "model.json"))
    teacher_manifest = json.load(open(teacher / "model.json"))
    assert manifest["architecture"] == "t2r"
    assert manifest["name"] == "tiny-t2r" and manifest["teacher"] == "tiny-base"
    assert manifest["feature_dim"] == 8 and manifest["max_positions"] is None
    assert [s["name"] for s in manifest["state"]] == ["state_kv", "state_k"]
    assert manifest["state"][0]["shape"] == [2, "batch", 2, 8, 16]
    assert manifest["training"]["kind"] == "convert" and manifest["training"]["method"] == "t2r-swap"
    assert manifest["training"]["fraction_of_pretraining_steps"] == 1.0
    metrics = manifest["metrics"]
    assert math.isfinite(metrics["test_perplexity"])
    # The teacher is scored on the same windows as at pretraining time, so the numbers agree.
    assert metrics["teacher_test_perplexity"] == pytest.approx(teacher_manifest["metrics"]["test_perplexity"],
                                                               rel=1e-4)
    assert open(out / "tokenizer.json").read() == open(teacher / "tokenizer.json").read()
    onnx = open(out / "model.onnx", "rb").read()
    assert len(onnx) > 10_000 and b"state_kv_out" in onnx and b"position_offset" in onnx

    # The checkpoint is the swapped, finetuned student, and parity.json holds its logits and state.
    model = load_model(str(out / "checkpoint.safetensors"))
    assert model.cfg.attention == "t2r" and model.cfg.feature_dim == 8
    parity = json.load(open(out / "parity.json"))
    test_ids = np.fromfile(os.path.join(data, "test.bin"), dtype=np.uint16)
    assert parity["input_ids"] == [int(t) for t in test_ids[:12]]
    ref = reference(model, parity["input_ids"])
    for key in ("logits_f32_b64", "state_kv_f32_b64", "state_k_f32_b64"):
        got = np.frombuffer(base64.b64decode(parity[key]), dtype="<f4")
        want = np.frombuffer(base64.b64decode(ref[key]), dtype="<f4")
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-6), key
    assert np.frombuffer(base64.b64decode(parity["logits_f32_b64"]), "<f4").size == 12 * VOCAB
    # Everything that is not attention is still the teacher's (3 steps at the recipe's lr move it, but only a little),
    # and the run folder holds the resumable state and the final weights.
    t_model = load_model(str(teacher / "checkpoint.safetensors"))
    diff = (model.embed.weight - t_model.embed.weight).abs().max().item()
    assert 0 < diff < 0.05
    assert {"state.safetensors", "final.safetensors"} <= set(os.listdir(work / "runs" / "t2r"))


def test_unknown_flag(work, data):
    proc = t2r("pretrain", "--data", data, "--run", work / "runs" / "x", "--steps", "1", "--bogus-flag", "3")
    assert_fails(proc, "unrecognized arguments: --bogus-flag", rc=2)
    assert not (work / "runs" / "x").exists()


def test_bad_flag_value(work, data):
    proc = t2r("pretrain", "--data", data, "--run", work / "runs" / "x", "--steps", "-5")
    assert_fails(proc, "--steps", "must be > 0", rc=2)


def test_missing_teacher_checkpoint(work, data):
    empty = work / "no-teacher"
    empty.mkdir()
    err = assert_fails(t2r(*convert_args(work, empty, data, "missing")), "no such checkpoint file")
    assert str(empty / "checkpoint.safetensors") in err and err.count("\n") == 0
    assert not (work / "runs" / "missing").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["random-bytes", "truncated", "pickle", "torch-save"])
def test_corrupt_teacher_checkpoint(work, teacher, data, kind):
    folder = work / f"bad-{kind}"
    shutil.copytree(teacher, folder)
    ckpt = folder / "checkpoint.safetensors"
    marker = work / f"unpickled-{kind}"
    if kind == "random-bytes":
        ckpt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data_bytes = ckpt.read_bytes()
        ckpt.write_bytes(data_bytes[: len(data_bytes) * 2 // 3])
    elif kind == "pickle":
        # A valid pickle whose loading would create `marker`: it must be rejected as corrupt, unexecuted.
        ckpt.write_bytes(pickle.dumps({"embed.weight": _Payload(str(marker))}))
    else:
        torch.save({"embed.weight": torch.zeros(VOCAB, 32)}, str(ckpt))  # a zip of pickles
    err = assert_fails(t2r(*convert_args(work, folder, data, f"bad-{kind}")), "checkpoint.safetensors")
    assert any(w in err for w in ("exceeds the file", "truncated", "corrupt", "too short")), err
    assert not marker.exists(), "the checkpoint loader unpickled the file"
    assert not (work / "runs" / f"bad-{kind}").exists()


def test_corpus_too_small(work):
    small = write_data(work / "small-data", train_tokens=20)
    err = assert_fails(t2r("pretrain", "--data", small, "--run", work / "runs" / "small", "--steps", "2",
                           *TINY, *TINY_MODEL), "corpus too small")
    assert "20 tokens" in err and "33" in err
    assert not (work / "runs" / "small").exists()


def test_vocab_shape_mismatch(work, teacher):
    other = write_data(work / "data-v80", vocab=80)
    assert_fails(t2r(*convert_args(work, teacher, other, "mismatch")), "shape mismatch", "80", str(VOCAB))
    assert not (work / "runs" / "mismatch").exists()


@pytest.mark.parametrize("command", ["pretrain", "convert"])
def test_existing_out_is_left_untouched(work, teacher, data, command):
    out = work / f"existing-{command}"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    (out / "model.json").write_text('{"name": "someone else"}')
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    if command == "pretrain":
        args = ["pretrain", "--data", data, "--run", work / "runs" / "exists", "--steps", "1", *TINY, *TINY_MODEL]
    else:
        args = convert_args(work, teacher, data, "exists")
    assert_fails(t2r(*args, "--out", out), "exists", str(out))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    assert not (work / "runs" / "exists").exists(), "the run started although --out exists"
    assert not [p for p in os.listdir(work) if ".partial-" in p]
