"""Minimal safetensors reader/writer (the format: u64 header length, JSON header, raw tensors).

Debian ships no safetensors package; the format is small enough to own. Nothing here unpickles.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import torch

_DTYPES = {
    torch.float32: ("F32", np.float32),
    torch.int64: ("I64", np.int64),
    torch.uint8: ("U8", np.uint8),
    torch.int32: ("I32", np.int32),
}
_BY_NAME = {name: (dt, np_dt) for dt, (name, np_dt) in _DTYPES.items()}


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated or not what it claims to be."""


def save(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        raw = t.numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def load(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: header length {n} exceeds the file")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt header ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CheckpointError(f"{path}: corrupt header (not a JSON object)")
    body = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        try:
            dt, np_dt = _BY_NAME[info["dtype"]]
            start, end = info["data_offsets"]
            shape = info["shape"]
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end and isinstance(shape, list)
                    and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: bad entry for tensor {name!r}") from None
        if end > len(body) or end - start != int(np.prod(shape)) * np.dtype(np_dt).itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} is truncated or mis-sized")
        arr = np.frombuffer(body[start:end], dtype=np_dt).reshape(shape).copy()
        tensors[name] = torch.from_numpy(arr)
    return tensors, metadata
