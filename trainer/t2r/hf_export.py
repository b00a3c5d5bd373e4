"""`python3 -m t2r export-hf --model MODELS_DIR/NAME --out DIR`: a softmax model folder of ours as a
Hugging Face checkpoint folder (LlamaForCausalLM; Qwen2ForCausalLM with Qwen2's q/k/v-only biases;
GPT2LMHeadModel for a model with learned positions): config.json, model.safetensors (or shards and model.safetensors.index.json),
generation_config.json and the tokenizer files. `import` reads it back to the same weights, bit for
bit (the name maps of hf_weights.py run backwards); llama.cpp reads it through gguf.py."""
from __future__ import annotations

import json
import os
import shutil

import torch

from . import safetensors
from .checkpoint import load_model
from .folder import check_out, tokenizer_files
from .hf_config import GPT2, to_hf
from .hf_files import read_json
from .hf_weights import INDEX, SINGLE, from_ours, layout
from .model import Transformer

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ExportError(ValueError):
    pass


def hf_state(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's weights under Hugging Face's names and layouts (float32)."""
    ours = model.state_dict()
    groups: dict[str, list] = {}
    for m in layout(model.cfg, GPT2 if model.cfg.positions == "learned" else "LlamaForCausalLM"):
        groups.setdefault(m.hf, []).append(m)
    return {name: from_ours(maps, [ours[m.ours] for m in maps]).contiguous() for name, maps in groups.items()}


def special_ids(manifest: dict) -> dict:
    eos = manifest.get("eos_token_ids") or [manifest["eos_token_id"]]
    out = {"eos_token_id": eos[0] if len(eos) == 1 else eos}
    if manifest.get("bos_token_id") is not None:
        out["bos_token_id"] = manifest["bos_token_id"]
    return out


def _shards(tensors: dict[str, torch.Tensor], shard_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if not shard_bytes:
        return [tensors]
    shards, size = [{}], 0
    for name in sorted(tensors):
        n = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += n
    return shards


def export_hf(model_dir: str, out: str, dtype: str = "float32", shard_bytes: int | None = None) -> dict:
    """Writes the checkpoint folder `out` (next to it first, then renamed); -> its config.json."""
    check_out(out)
    manifest = read_json(model_dir, "model.json", required=True, error=ExportError)
    model = load_model(os.path.join(model_dir, "checkpoint.safetensors"))
    special = special_ids(manifest)
    try:
        config = {**to_hf(model.cfg, special), "torch_dtype": dtype}
    except ValueError as e:
        raise ExportError(f"{model_dir}: {e}") from None
    tensors = {k: v.to(DTYPES[dtype]) for k, v in hf_state(model).items()}
    shards = _shards(tensors, shard_bytes)
    tmp = f"{os.path.normpath(out)}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        if len(shards) == 1:
            safetensors.save(os.path.join(tmp, SINGLE), shards[0], {"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                safetensors.save(os.path.join(tmp, file), shard, {"format": "pt"})
                weight_map.update({name: file for name in shard})
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            _dump(os.path.join(tmp, INDEX), {"metadata": {"total_size": total}, "weight_map": weight_map})
        _dump(os.path.join(tmp, "config.json"), config)
        files = tokenizer_files(model_dir)
        for name, path in files.items():
            shutil.copyfile(path, os.path.join(tmp, name))
        if "generation_config.json" not in files:
            _dump(os.path.join(tmp, "generation_config.json"), special)
        check_out(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return config


def _dump(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
