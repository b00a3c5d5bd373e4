"""A Hugging Face checkpoint's tensors: where they are (model.safetensors, or the shards that
model.safetensors.index.json names), what each is called in our model, and how it is laid out.

Every name, shape and dtype is checked from the files' headers before any data is read, and every
file must be a regular file inside the checkpoint folder (no index entry or symlink leading out).
Weights load as float32 whatever the file holds (F32, F16 or BF16): we compute in float32 on CPU.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import torch

from . import safetensors
from .hf_config import GPT2
from .hf_files import path_in
from .model import ModelConfig
from .safetensors import CheckpointError, TensorInfo

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# Buffers some checkpoints carry that are not weights (RoPE tables, GPT-2's causal masks).
IGNORED = re.compile(r"(\.rotary_emb\.inv_freq|\.attn\.bias|\.attn\.masked_bias)$")


class HFWeightsError(ValueError):
    """A checkpoint's files or tensors are missing, corrupt, or not what config.json describes."""


@dataclass(frozen=True)
class Mapping:
    """One of our tensors and the Hugging Face tensor it comes from.

    kind: `same`; `rope` (q/k rows in Hugging Face's half-split RoPE order, reordered into our
    consecutive pairs, model.apply_rope; `heads` heads in the tensor); `conv1d` (GPT-2's Conv1D
    stores [in, out]: transposed); `qkv` (part `part` of GPT-2's fused, transposed c_attn)."""
    hf: str
    ours: str
    kind: str = "same"
    heads: int = 0
    part: int = 0


def _llama_layout(cfg: ModelConfig) -> list[Mapping]:
    out = [Mapping("model.embed_tokens.weight", "embed.weight"), Mapping("model.norm.weight", "norm.weight")]
    if not cfg.tied_embeddings:
        out.append(Mapping("lm_head.weight", "head.weight"))
    for i in range(cfg.layers):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        out += [Mapping(hf + "input_layernorm.weight", ours + "attn_norm.weight"),
                Mapping(hf + "post_attention_layernorm.weight", ours + "ffn_norm.weight")]
        kinds = {"q": ("rope", cfg.heads), "k": ("rope", cfg.kv_heads), "v": ("same", 0), "o": ("same", 0)}
        for proj, (kind, heads) in kinds.items():
            params = ["weight"] + (["bias"] if (cfg.o_bias if proj == "o" else cfg.qkv_bias) else [])
            for p in params:
                out.append(Mapping(f"{hf}self_attn.{proj}_proj.{p}", f"{ours}attn.w{proj}.{p}", kind, heads))
        for hf_name, our_name in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
            for p in ["weight"] + (["bias"] if cfg.mlp_bias else []):
                out.append(Mapping(f"{hf}mlp.{hf_name}.{p}", f"{ours}ffn.{our_name}.{p}"))
    return out


def _gpt2_layout(cfg: ModelConfig, prefix: str) -> list[Mapping]:
    out = [Mapping(prefix + "wte.weight", "embed.weight"), Mapping(prefix + "wpe.weight", "pos_embed.weight"),
           Mapping(prefix + "ln_f.weight", "norm.weight"), Mapping(prefix + "ln_f.bias", "norm.bias")]
    if not cfg.tied_embeddings:
        out.append(Mapping("lm_head.weight", "head.weight"))
    for i in range(cfg.layers):
        hf, ours = f"{prefix}h.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            out += [Mapping(f"{hf}ln_1.{p}", f"{ours}attn_norm.{p}"), Mapping(f"{hf}ln_2.{p}", f"{ours}ffn_norm.{p}")]
            out += [Mapping(f"{hf}attn.c_attn.{p}", f"{ours}attn.w{name}.{p}", "qkv", part=j) for j, name in enumerate("qkv")]
            for hf_name, our_name in (("attn.c_proj", "attn.wo"), ("mlp.c_fc", "ffn.w1"), ("mlp.c_proj", "ffn.w2")):
                out.append(Mapping(f"{hf}{hf_name}.{p}", f"{ours}{our_name}.{p}", "conv1d" if p == "weight" else "same"))
    return out


def layout(cfg: ModelConfig, architecture: str, gpt2_prefix: str = "transformer.") -> list[Mapping]:
    return _gpt2_layout(cfg, gpt2_prefix) if architecture == GPT2 else _llama_layout(cfg)


def to_ours(m: Mapping, t: torch.Tensor) -> torch.Tensor:
    if m.kind == "rope":  # [h0 first halves, h0 second halves, ...] -> [h0 pairs (x_i, x_i+d/2), ...]
        return t.reshape(m.heads, 2, t.shape[0] // m.heads // 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)
    if m.kind == "conv1d":
        return t.t()
    if m.kind == "qkv":
        rows = t.t() if t.dim() == 2 else t
        third = rows.shape[0] // 3
        return rows[m.part * third:(m.part + 1) * third]
    return t


def from_ours(maps: list[Mapping], ours: list[torch.Tensor]) -> torch.Tensor:
    """The Hugging Face tensor made of our tensors `ours` (one per mapping; three for GPT-2's c_attn)."""
    m, t = maps[0], ours[0]
    if m.kind == "rope":
        return t.reshape(m.heads, t.shape[0] // m.heads // 2, 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)
    if m.kind == "conv1d":
        return t.t()
    if m.kind == "qkv":
        fused = torch.cat([o for _, o in sorted(zip([x.part for x in maps], ours), key=lambda p: p[0])])
        return fused.t() if fused.dim() == 2 else fused
    return t


def _hf_shape(maps: list[Mapping], ours: list[tuple]) -> tuple:
    return tuple(from_ours(maps, [torch.empty(s, device="meta") for s in ours]).shape)


def _inside(hf_dir: str, name: str, what: str) -> str:
    return path_in(hf_dir, name, what, HFWeightsError)


def _header(path: str) -> dict[str, TensorInfo]:
    try:
        return safetensors.read_header(path)[0]
    except CheckpointError as e:
        raise HFWeightsError(str(e).replace(os.path.dirname(path) + os.sep, "")) from None


def locate(hf_dir: str) -> dict[str, tuple[str, TensorInfo]]:
    """Every tensor of the checkpoint: name -> (file path, its header entry)."""
    if os.path.lexists(os.path.join(hf_dir, SINGLE)):
        path = _inside(hf_dir, SINGLE, SINGLE)
        return {name: (path, info) for name, info in _header(path).items()}
    if not os.path.lexists(os.path.join(hf_dir, INDEX)):
        found = [f for f in ("pytorch_model.bin", "model.pt") if os.path.exists(os.path.join(hf_dir, f))]
        hint = f" ({found[0]} is a pickle, never read: save the checkpoint as safetensors)" if found else ""
        raise HFWeightsError(f"no {SINGLE} or {INDEX} in the checkpoint folder{hint}")
    try:
        with open(_inside(hf_dir, INDEX, INDEX)) as f:
            weight_map = json.load(f).get("weight_map")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise HFWeightsError(f"{INDEX}: not a JSON object with a weight_map ({e})") from None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise HFWeightsError(f"{INDEX}: weight_map must map tensor names to shard file names")
    headers = {file: _header(_inside(hf_dir, file, INDEX)) for file in sorted(set(weight_map.values()))}
    out = {}
    for name, file in weight_map.items():
        if name not in headers[file]:
            raise HFWeightsError(f"{INDEX} puts {name} in {file}, which does not hold it")
        out[name] = (os.path.join(hf_dir, file), headers[file][name])
    return out


def check(tensors: dict[str, tuple[str, TensorInfo]], maps: list[Mapping], cfg: ModelConfig, our_shapes: dict) -> str:
    """Names, shapes and dtypes against config.json, from headers alone; -> the weights' dtype."""
    by_hf: dict[str, list[Mapping]] = {}
    for m in maps:
        by_hf.setdefault(m.hf, []).append(m)
    for hf_name, group in by_hf.items():
        if hf_name not in tensors:
            raise HFWeightsError(f"missing tensor {hf_name}")
        info = tensors[hf_name][1]
        if info.dtype not in FLOAT_DTYPES:
            raise HFWeightsError(f"tensor {hf_name} has dtype {info.dtype}: only {', '.join(FLOAT_DTYPES)} weights are supported (no quantized weights)")
        want = _hf_shape(group, [our_shapes[m.ours] for m in group])
        if tuple(info.shape) != want:
            if group[0].ours == "embed.weight" and len(info.shape) == 2 and info.shape[1] == cfg.dim:
                raise HFWeightsError(f"tensor {hf_name} has {info.shape[0]} rows but config.json vocab_size is {cfg.vocab_size}")
            raise HFWeightsError(f"shape mismatch: tensor {hf_name} is {list(info.shape)}, config.json implies {list(want)}")
    mapped = set(by_hf) | ({"lm_head.weight"} if cfg.tied_embeddings else set())
    extra = sorted(n for n in tensors if n not in mapped and not IGNORED.search(n))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise HFWeightsError(f"unexpected tensor {extra[0]}{more}: config.json describes no such weight")
    return FLOAT_DTYPES[tensors[maps[0].hf][1].dtype]


def load_into(model: torch.nn.Module, tensors: dict[str, tuple[str, TensorInfo]], maps: list[Mapping]) -> None:
    """Copies the checkpoint into `model` (float32), one tensor at a time: the import never holds a
    second copy of the weights."""
    params = model.state_dict()
    by_file: dict[str, dict[str, list[Mapping]]] = {}
    for m in maps:
        by_file.setdefault(tensors[m.hf][0], {}).setdefault(m.hf, []).append(m)
    for path, group in by_file.items():
        try:
            for hf_name, raw in safetensors.iter_tensors(path, sorted(group)):
                for m in group[hf_name]:
                    params[m.ours].copy_(to_ours(m, raw.float()))
        except CheckpointError as e:
            raise HFWeightsError(str(e)) from None
