"""ONNX export in the shape of contract/onnx-io.json (docs/design.md §7), and the reference logits the
server checks the export against."""
from __future__ import annotations

import base64
import json

import numpy as np
import torch

from .contract import ONNX_IO, check, resolve_shape, state_tensors
from .model import Transformer
from .step_graph import StepGraph


def empty_state(model: Transformer, batch: int, past: int = 0) -> list[torch.Tensor]:
    """Zero state tensors (contract/onnx-io.json) for `batch` rows that have seen `past` tokens."""
    dims = {**_dims(model), "batch": batch, "past": past}
    return [torch.zeros([dims[d] for d in t["shape"]]) for t in state_tensors(model.cfg.attention)]


def _dims(model: Transformer) -> dict:
    cfg = model.cfg
    return {"layers": cfg.layers, "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size,
            "feature_dim": cfg.state_feature_dim() if cfg.attention != "softmax" else None}


def state_spec(model: Transformer) -> list[dict]:
    """model.json's `state`: the contract's state tensors for this attention, with this model's sizes."""
    dims = _dims(model)
    return [{"name": t["name"], "output": t["output"], "shape": resolve_shape(t["shape"], dims), "dtype": t["dtype"],
             "growing_axis": t["growing_axis"]} for t in state_tensors(model.cfg.attention)]


def _dynamic_axes(tensors: list[dict], fixed: tuple[str, ...] = ()) -> dict:
    return {t["name"]: {axis: d for axis, d in enumerate(t["shape"]) if d in ONNX_IO["dynamic_axes"] and d not in fixed}
            for t in tensors}


def layer_name(name: str, layer: int) -> str:
    """A decode graph's input or output for one layer of a state tensor (contract/onnx-io.json)."""
    return ONNX_IO["decode_graph"]["layer_name"].format(name=name, layer=layer)


def export_onnx(model: Transformer, path: str, decode: bool = False) -> None:
    """The step graph (contract/onnx-io.json) at `path`; `decode`: its decode_graph form (seq fixed
    at 1, the state per layer), which the engine runs for decoding steps when the folder has it."""
    model.eval()
    ids = torch.tensor([[1]] if decode else [[1, 2, 3]], dtype=torch.long)
    offset = torch.tensor([2], dtype=torch.long)
    state = state_tensors(model.cfg.attention)
    # Softmax: a cache of 2 past tokens, so the traced graph keeps the past axis dynamic.
    values = empty_state(model, 1, past=2)
    state_in = [{"name": t["name"], "shape": t["shape"]} for t in state]
    state_out = [{"name": t["output"], "shape": t["output_shape"]} for t in state]
    if decode:
        layers = range(model.cfg.layers)
        state_in = [{"name": layer_name(t["name"], l), "shape": t["shape"][1:]} for t in state_in for l in layers]
        state_out = [{"name": layer_name(t["name"], l), "shape": t["shape"][1:]} for t in state_out for l in layers]
        values = [v[l] for v in values for l in layers]
    inputs = ONNX_IO["inputs"] + state_in
    outputs = ONNX_IO["outputs"] + state_out + ONNX_IO["extra_outputs"]
    fixed = ("seq",) if decode else ()
    dynamic = {**_dynamic_axes(inputs, fixed), **_dynamic_axes(outputs)}
    with torch.no_grad():
        torch.onnx.export(StepGraph(model, decode), (ids, offset, *values), path, opset_version=ONNX_IO["opset"],
                          input_names=[t["name"] for t in inputs], output_names=[t["name"] for t in outputs],
                          dynamic_axes=dynamic, do_constant_folding=True)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


@torch.no_grad()
def reference(model: Transformer, ids: list[int]) -> dict:
    """Logits after every prefix of `ids` from one full-sequence PyTorch forward, plus the final state:
    the server feeds the same ids to the ONNX graph (in one call and token by token) and compares."""
    model.eval()
    x = torch.tensor([ids], dtype=torch.long)
    logits, caches = model(x)
    (logits_out,) = ONNX_IO["outputs"]
    out = {"input_ids": ids, "vocab_size": model.cfg.vocab_size, logits_out["reference"]: _b64(logits[0].numpy())}
    for i, t in enumerate(state_tensors(model.cfg.attention)):
        if t["reference"] is not None:
            out[t["reference"]] = _b64(torch.stack([c[i] for c in caches])[:, 0].numpy())
    return out


def seeded_ids(vocab_size: int, count: int) -> list[int]:
    """Token ids for a parity reference where no text is at hand (an import, a rebuild from a checkpoint):
    the same ids for the same vocabulary size every time."""
    return torch.randint(0, vocab_size, (count,), generator=torch.Generator().manual_seed(0)).tolist()


def write_reference(model: Transformer, ids: list[int], path: str) -> None:
    ref = reference(model, ids)
    check(ref, "parity.schema.json", path)
    with open(path, "w") as f:
        json.dump(ref, f)
