"""A model folder (docs/design.md §7.1): checkpoint, ONNX graph, parity reference, tokenizer files
and model.json, written next to its destination and renamed into place, so a folder is either
complete or not there. Training (`pretrain`, `convert`) and `import` both finish through here."""
from __future__ import annotations

import json
import os
import shutil

from .checkpoint import save_model
from .contract import check
from .export import export_onnx, state_spec, write_reference
from .model import Transformer

# Files of a Hugging Face tokenizer a folder carries beside tokenizer.json when its source had them.
TOKENIZER_EXTRAS = ("tokenizer_config.json", "generation_config.json")


class FolderExists(ValueError):
    pass


def check_out(out: str) -> None:
    if os.path.exists(out):
        raise FolderExists(f"--out {out} exists; a finished model folder is never overwritten")


def model_fields(model: Transformer) -> dict:
    """model.json's description of the network and its state (contract/manifest.schema.json)."""
    cfg = model.cfg
    recurrent = cfg.attention != "softmax"
    return {
        "architecture": cfg.attention,
        "vocab_size": cfg.vocab_size, "dim": cfg.dim, "layers": cfg.layers, "heads": cfg.heads,
        "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "ffn_dim": cfg.ffn_dim,
        "feature_dim": cfg.state_feature_dim() if recurrent else None,
        # What positions the model can address: a recurrent RoPE model has no bound; learned
        # positions (GPT-2) end with their table whatever the attention.
        "max_positions": None if recurrent and cfg.positions == "rope" else cfg.max_positions,
        "trained_positions": cfg.max_positions,
        "state": state_spec(model),
        # decode.onnx masks each row's padding (step_graph.py's pad_mask): caches of different
        # lengths decode in one batch.
        **({} if recurrent else {"decode_padded_cache": True}),
    }


def write(out: str, model: Transformer, manifest: dict, parity_ids: list[int], copies: dict[str, str]) -> None:
    """Writes the folder `out` (never over an existing one). `copies`: file name in the folder ->
    source path."""
    check(manifest, "manifest.schema.json", "model.json")
    check_out(out)
    tmp = f"{os.path.normpath(out)}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_model(os.path.join(tmp, "checkpoint.safetensors"), model)
        export_onnx(model, os.path.join(tmp, "model.onnx"))
        export_onnx(model, os.path.join(tmp, "decode.onnx"), decode=True)
        write_reference(model, parity_ids, os.path.join(tmp, "parity.json"))
        for name, source in copies.items():
            shutil.copyfile(source, os.path.join(tmp, name))
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        check_out(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tokenizer_files(folder: str) -> dict[str, str]:
    """tokenizer.json and whichever Hugging Face tokenizer extras `folder` has: name -> path."""
    names = ("tokenizer.json",) + TOKENIZER_EXTRAS
    return {n: os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))}
