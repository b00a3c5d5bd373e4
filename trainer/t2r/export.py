"""ONNX export per docs/design.md §7, and the reference logits the server checks the export against."""
from __future__ import annotations

import base64
import json

import numpy as np
import torch
import torch.nn as nn

from .model import Transformer

OPSET = 17


class StepGraph(nn.Module):
    """The exported step: (input_ids, position_offset, state a, state b) -> (last logits, a', b').

    For T2R the state is (S, z); for softmax it is the KV cache (keys, values), grown by seq."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_offset, state_a, state_b):
        caches = [(state_a[i], state_b[i]) for i in range(self.model.cfg.layers)]
        logits, new = self.model(input_ids, position_offset, caches, last_only=True)
        last = logits[:, -1, :]
        # logsumexp: an extra output beside the contract's, so the server gets log-probabilities
        # without an exp over the vocabulary per token in JavaScript.
        return last, torch.stack([c[0] for c in new]), torch.stack([c[1] for c in new]), torch.logsumexp(last, dim=-1)


def empty_state(model: Transformer, batch: int, past: int = 0):
    cfg = model.cfg
    if cfg.attention == "softmax":
        shape = (cfg.layers, batch, cfg.heads, past, cfg.head_dim)
        return torch.zeros(shape), torch.zeros(shape)
    k = cfg.state_feature_dim()
    return (torch.zeros(cfg.layers, batch, cfg.heads, k, cfg.head_dim),
            torch.zeros(cfg.layers, batch, cfg.heads, k))


def state_spec(model: Transformer) -> list[dict]:
    cfg = model.cfg
    if cfg.attention == "softmax":
        shape = [cfg.layers, "batch", cfg.heads, "past", cfg.head_dim]
        return [{"name": n, "output": o, "shape": shape, "dtype": "float32", "growing_axis": 3}
                for n, o in (("past_key", "present_key"), ("past_value", "present_value"))]
    k = cfg.state_feature_dim()
    return [{"name": "state_kv", "output": "state_kv_out", "shape": [cfg.layers, "batch", cfg.heads, k, cfg.head_dim],
             "dtype": "float32", "growing_axis": None},
            {"name": "state_k", "output": "state_k_out", "shape": [cfg.layers, "batch", cfg.heads, k],
             "dtype": "float32", "growing_axis": None}]


def export_onnx(model: Transformer, path: str) -> None:
    model.eval()
    ids = torch.tensor([[1, 2, 3]], dtype=torch.long)
    offset = torch.tensor([2], dtype=torch.long)
    if model.cfg.attention == "softmax":
        a, b = empty_state(model, 1, past=2)
        names = ["past_key", "past_value"], ["present_key", "present_value"]
        state_axes = {0: {1: "batch", 3: "past"}, 1: {1: "batch", 3: "past_plus_seq"}}
    else:
        a, b = empty_state(model, 1)
        names = ["state_kv", "state_k"], ["state_kv_out", "state_k_out"]
        state_axes = {0: {1: "batch"}, 1: {1: "batch"}}
    dynamic = {"input_ids": {0: "batch", 1: "seq"}, "position_offset": {0: "batch"}, "logits": {0: "batch"},
               "logsumexp": {0: "batch"}}
    for n in names[0]:
        dynamic[n] = state_axes[0]
    for n in names[1]:
        dynamic[n] = state_axes[1]
    with torch.no_grad():
        torch.onnx.export(StepGraph(model), (ids, offset, a, b), path, opset_version=OPSET,
                          input_names=["input_ids", "position_offset", *names[0]],
                          output_names=["logits", *names[1], "logsumexp"], dynamic_axes=dynamic, do_constant_folding=True)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


@torch.no_grad()
def reference(model: Transformer, ids: list[int]) -> dict:
    """Logits after every prefix of `ids` from one full-sequence PyTorch forward, plus the final state:
    the server feeds the same ids to the ONNX graph (in one call and token by token) and compares."""
    model.eval()
    x = torch.tensor([ids], dtype=torch.long)
    logits, caches = model(x)
    out = {"input_ids": ids, "vocab_size": model.cfg.vocab_size,
           "logits_f32_b64": _b64(logits[0].numpy())}
    if model.cfg.attention != "softmax":
        out["state_kv_f32_b64"] = _b64(torch.stack([c[0] for c in caches])[:, 0].numpy())
        out["state_k_f32_b64"] = _b64(torch.stack([c[1] for c in caches])[:, 0].numpy())
    return out


def write_reference(model: Transformer, ids: list[int], path: str) -> None:
    with open(path, "w") as f:
        json.dump(reference(model, ids), f)
