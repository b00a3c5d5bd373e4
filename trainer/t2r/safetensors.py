"""Minimal safetensors reader/writer (the format: u64 header length, JSON header, raw tensors).

Debian ships no safetensors package; the format is small enough to own. Nothing here unpickles.
The reader trusts nothing in the file: the header length, every tensor's dtype, shape and byte
range are checked against the file before a byte of data is read, and the data is read through a
memory map one tensor at a time (a checkpoint of several GB is never held twice in memory).
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.uint8: "U8",
    torch.int32: "I32",
}
_BY_NAME = {name: dt for dt, name in _DTYPES.items()}
_ITEMSIZE = {name: torch.empty(0, dtype=dt).element_size() for name, dt in _BY_NAME.items()}
# The format's own limit (safetensors' MAX_HEADER_SIZE): a larger header is not a checkpoint.
MAX_HEADER_BYTES = 100_000_000


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated or not what it claims to be."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str          # the file's name for it: F32, F16, BF16, ... (possibly one this reader lacks)
    shape: tuple
    start: int          # byte range in the file
    end: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _raw(t: torch.Tensor) -> bytes:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        raw = _raw(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
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


def _entry(path: str, name: str, info, data_start: int, file_size: int) -> TensorInfo:
    try:
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        if not (isinstance(dtype, str) and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end
                and isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: bad entry for tensor {name!r}") from None
    entry = TensorInfo(dtype, tuple(shape), data_start + start, data_start + end)
    if entry.end > file_size:
        raise CheckpointError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
    if dtype in _BY_NAME and end - start != entry.numel * _ITEMSIZE[dtype]:
        raise CheckpointError(f"{path}: tensor {name!r} is mis-sized: {end - start} bytes for {dtype} {shape}")
    return entry


def read_header(path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Every tensor's dtype, shape and byte range, and the metadata; nothing else is read."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(f"{path}: header length {n} exceeds the file ({size} bytes)")
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: header length {n} exceeds the format's {MAX_HEADER_BYTES}-byte limit")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt header ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CheckpointError(f"{path}: corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", {})
    entries = {name: _entry(path, name, info, 8 + n, size) for name, info in header.items()}
    spans = sorted((e.start, e.end, name) for name, e in entries.items() if e.end > e.start)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise CheckpointError(f"{path}: tensors {a!r} and {b!r} overlap")
    return entries, metadata


def iter_tensors(path: str, names=None):
    """Yields (name, tensor) for the file's tensors (all, or those in `names`), in the file's dtypes,
    each in its own memory: one tensor at a time, so a caller that keeps none holds one at most."""
    entries, _ = read_header(path)
    wanted = entries if names is None else {n: entries[n] for n in names}
    with open(path, "rb") as f:
        # ACCESS_COPY: a writable (copy-on-write) view, so torch.frombuffer needs no warning; the file
        # is never written.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mm:
            for name, e in wanted.items():
                if e.dtype not in _BY_NAME:
                    raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {e.dtype}")
                dtype = _BY_NAME[e.dtype]
                if e.numel == 0:
                    yield name, torch.empty(e.shape, dtype=dtype)
                    continue
                view = torch.frombuffer(mm, dtype=dtype, count=e.numel, offset=e.start)
                tensor = view.reshape(e.shape).clone()
                del view  # the map closes only once no tensor views it
                yield name, tensor


def load(path: str, names=None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (all, or those in `names`) in the file's dtypes, and the metadata."""
    tensors = dict(iter_tensors(path, names))
    return tensors, read_header(path)[1]
