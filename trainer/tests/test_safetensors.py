"""The in-house safetensors reader/writer: exact round trips, strict rejection, never unpickles."""
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import tiny_config
from t2r import safetensors
from t2r.checkpoint import load_model, save_model
from t2r.model import Transformer
from t2r.safetensors import CheckpointError


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 5, generator=g),
        "b": torch.arange(-4, 8, dtype=torch.int64).reshape(2, 2, 3),
        "c.bytes": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "d.i32": torch.tensor([[-1, 2**31 - 1]], dtype=torch.int32),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(4, 6, generator=g).t(),  # non-contiguous input
        "half": torch.randn(2, 3, generator=g).half(),
        "brain": torch.randn(3, 2, generator=g).bfloat16(),
    }


def test_round_trip_tensors_and_metadata(tmp_path):
    path = str(tmp_path / "x.safetensors")
    tensors = sample_tensors()
    meta = {"config": json.dumps({"dim": 32}), "note": "ünïcödé", "number": 5}
    safetensors.save(path, tensors, meta)
    loaded, loaded_meta = safetensors.load(path)
    assert loaded.keys() == tensors.keys()
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype, name
        assert loaded[name].shape == t.shape, name
        assert torch.equal(loaded[name], t), name
    assert loaded_meta == {"config": json.dumps({"dim": 32}), "note": "ünïcödé", "number": "5"}
    # Loaded tensors own writable memory (not a view of the file buffer).
    loaded["a.weight"].add_(1.0)
    assert not os.path.exists(path + f".tmp-{os.getpid()}"), "temporary file left behind"


def test_file_layout_is_standard_safetensors(tmp_path):
    """u64 little-endian header length, a JSON header padded to 8 bytes, then the raw data."""
    path = str(tmp_path / "x.safetensors")
    safetensors.save(path, {"w": torch.tensor([1.0, 2.0], dtype=torch.float32)}, {"k": "v"})
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8:8 + n])
    assert header["__metadata__"] == {"k": "v"}
    assert header["w"] == {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    assert np.frombuffer(data[8 + n:], dtype="<f4").tolist() == [1.0, 2.0]


def test_round_trip_without_metadata(tmp_path):
    path = str(tmp_path / "x.safetensors")
    safetensors.save(path, {"x": torch.ones(2)})
    tensors, meta = safetensors.load(path)
    assert meta == {} and torch.equal(tensors["x"], torch.ones(2))


def test_unsupported_dtype_rejected_on_save(tmp_path):
    with pytest.raises(TypeError):
        safetensors.save(str(tmp_path / "x.safetensors"), {"h": torch.zeros(2, dtype=torch.float64)})


def test_half_precision_bits_are_the_standard_ones(tmp_path):
    """F16 is IEEE half; BF16 the top 16 bits of the float32 (what Hugging Face checkpoints hold)."""
    path = str(tmp_path / "x.safetensors")
    values = [1.0, -2.5, 0.1]
    safetensors.save(path, {"h": torch.tensor(values).half(), "b": torch.tensor(values).bfloat16()})
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    (hs, he), (bs, be) = header["h"]["data_offsets"], header["b"]["data_offsets"]
    assert header["h"]["dtype"] == "F16" and header["b"]["dtype"] == "BF16"
    assert np.frombuffer(body[hs:he], "<f2").tolist() == np.array(values, "<f2").tolist()
    top16 = (np.array(values, "<f4").view("<u4") >> 16).astype("<u2")
    # bfloat16 rounds to nearest: 0.1's mantissa rounds up by one unit in the last place.
    assert np.abs(np.frombuffer(body[bs:be], "<u2").astype(int) - top16.astype(int)).max() <= 1


def test_header_only_read_checks_everything_but_reads_no_data(tmp_path):
    path = str(tmp_path / "x.safetensors")
    safetensors.save(path, sample_tensors())
    entries, _ = safetensors.read_header(path)
    assert entries["half"].dtype == "F16" and entries["half"].shape == (2, 3)
    assert entries["brain"].dtype == "BF16" and entries["brain"].numel == 6
    subset, _ = safetensors.load(path, ["half"])
    assert list(subset) == ["half"]


def test_model_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Transformer(tiny_config(attention="t2r"))
    path = str(tmp_path / "m.safetensors")
    save_model(path, model, {"extra": {"a": 1}})
    again = load_model(path)
    assert again.cfg == model.cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -1, -4])
def test_truncated_file_rejected(tmp_path, keep):
    path = str(tmp_path / "x.safetensors")
    safetensors.save(path, sample_tensors(), {"k": "v"})
    data = open(path, "rb").read()
    # keep >= 0: only the first `keep` bytes (inside the length prefix, the header or the tensors);
    # keep < 0: all but the last -keep bytes (the tensors end early).
    cut = data[:keep]
    assert 0 <= len(cut) < len(data)
    open(path, "wb").write(cut)
    with pytest.raises(CheckpointError):
        safetensors.load(path)


def _with_header(obj, body=b""):
    raw = json.dumps(obj).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@pytest.mark.parametrize("content", [
    b"",
    os.urandom(64),
    struct.pack("<Q", 2**63) + b"{}",
    struct.pack("<Q", 4) + b"\xff\xfe{}",
    _with_header([1, 2]),
    _with_header({"__metadata__": [1]}),
    _with_header({"x": "F32"}),
    _with_header({"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0"),
    _with_header({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    _with_header({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
    struct.pack("<Q", 200_000_000) + b" " * 8,
    _with_header({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 8),
    _with_header({"x": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, b"\0" * 4),
    _with_header({"x": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}, b"\0" * 4),
    _with_header({"x": {"dtype": "F32", "shape": "ab", "data_offsets": [0, 4]}}, b"\0" * 4),
], ids=["empty", "random", "huge-header", "bad-utf8", "list-header", "list-metadata", "bad-entry", "fp8",
        "overlap", "runs-past-end", "header-length-overruns-file",
        "size-mismatch", "negative-offset", "string-offsets", "string-shape"])
def test_corrupt_files_raise_checkpoint_error(tmp_path, content):
    path = str(tmp_path / "x.safetensors")
    open(path, "wb").write(content)
    with pytest.raises(CheckpointError):
        safetensors.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        safetensors.load(str(tmp_path / "nope.safetensors"))


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_never_unpickles(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = str(tmp_path / "evil.safetensors")
    with open(evil, "wb") as f:
        pickle.dump({"weights": _Payload(str(marker))}, f)
    good = str(tmp_path / "good.safetensors")
    safetensors.save(good, sample_tensors(), {"k": "v"})
    torch.save({"x": torch.ones(2)}, str(tmp_path / "torch.pt"))

    def forbidden(*a, **k):
        raise AssertionError("the safetensors loader must not unpickle")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, forbidden)
    assert safetensors.load(good)[0].keys() == sample_tensors().keys()
    for path in (evil, str(tmp_path / "torch.pt")):
        with pytest.raises(CheckpointError):
            safetensors.load(path)
        with pytest.raises(CheckpointError):
            load_model(path)
    assert not marker.exists()


def test_load_model_rejects_wrong_shapes_and_foreign_files(tmp_path):
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    sd = dict(model.state_dict())
    meta = {"config": json.dumps(model.cfg.to_dict())}
    path = str(tmp_path / "m.safetensors")

    safetensors.save(path, {**sd, "embed.weight": torch.zeros(65, 32)}, meta)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(path)
    safetensors.save(path, {k: v for k, v in sd.items() if k != "norm.weight"}, meta)
    with pytest.raises(CheckpointError, match="missing"):
        load_model(path)
    safetensors.save(path, {**sd, "bogus": torch.zeros(1)}, meta)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_model(path)
    safetensors.save(path, sd)  # no config
    with pytest.raises(CheckpointError, match="config"):
        load_model(path)
    safetensors.save(path, sd, {"config": json.dumps({**model.cfg.to_dict(), "attention": "mamba"})})
    with pytest.raises(CheckpointError, match="bad model config"):
        load_model(path)
