"""Model checkpoints (weights + config) and resumable run state, all as safetensors."""
from __future__ import annotations

import json
import os

import torch

from . import safetensors
from .model import ModelConfig, Transformer
from .safetensors import CheckpointError


def save_model(path: str, model: Transformer, extra: dict | None = None) -> None:
    meta = {"config": json.dumps(model.cfg.to_dict())}
    if extra:
        meta.update({k: json.dumps(v) for k, v in extra.items()})
    safetensors.save(path, dict(model.state_dict()), meta)


def load_model(path: str) -> Transformer:
    tensors, meta = safetensors.load(path)
    if "config" not in meta:
        raise CheckpointError(f"{path}: no model config in its metadata; not a t2r-serve checkpoint")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad model config ({e})") from None
    model = Transformer(cfg)
    expected = model.state_dict()
    for name, t in tensors.items():
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {name!r}")
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{path}: shape mismatch for {name}: file {tuple(t.shape)}, config {tuple(expected[name].shape)}")
    missing = set(expected) - set(tensors)
    if missing:
        raise CheckpointError(f"{path}: missing tensors {sorted(missing)[:5]}")
    model.load_state_dict(tensors)
    return model


def save_run_state(run_dir: str, model: Transformer, optimizer: torch.optim.Optimizer, info: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    meta = {"info": json.dumps(info), "config": json.dumps(model.cfg.to_dict()),
            "param_groups": json.dumps(opt["param_groups"])}
    safetensors.save(os.path.join(run_dir, "state.safetensors"), tensors, meta)


def load_run_state(run_dir: str):
    """-> (model, optimizer state dict, info) or None when the run has no state yet."""
    path = os.path.join(run_dir, "state.safetensors")
    if not os.path.exists(path):
        return None
    tensors, meta = safetensors.load(path)
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
        info = json.loads(meta["info"])
        groups = json.loads(meta["param_groups"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: bad run-state metadata ({e})") from None
    model = Transformer(cfg)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    return model, {"state": state, "param_groups": groups}, info
