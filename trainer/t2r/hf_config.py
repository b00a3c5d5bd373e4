"""Hugging Face `config.json` <-> ModelConfig, for the two families we import (docs/design.md §7.5):

- Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM): RMSNorm, RoPE (theta,
  `rope_scaling` linear or llama3), grouped-query attention, SwiGLU, tied or untied embeddings,
  attention biases (Llama's `attention_bias`; Qwen2's q/k/v biases), Mistral's sliding window.
- GPT-2 (GPT2LMHeadModel): LayerNorm, learned absolute positions, GELU (tanh), biases everywhere.

Whatever a config asks for that the model cannot compute exactly is refused, naming the field."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .model import ROPE_SCALINGS, ModelConfig

LLAMA_FAMILY = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
GPT2 = "GPT2LMHeadModel"
ARCHITECTURES = LLAMA_FAMILY + (GPT2,)
# GPT-2's `activation_function` values that are GELU's tanh approximation.
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")


class HFConfigError(ValueError):
    """config.json asks for something this importer does not support, or is inconsistent."""


@dataclass
class Imported:
    config: ModelConfig
    architecture: str
    sliding_window: Optional[int]   # Mistral/Qwen2: attention window, noted (max_positions is capped at it)


def _get(hf: dict, key: str, kind, default=None, required=False):
    """config.json's `key`: a positive int (kind int), a positive number (kind float) or a bool."""
    value = hf.get(key, default)
    if value is None:
        if required:
            raise HFConfigError(f"config.json: {key} is missing")
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise HFConfigError(f"config.json: {key} must be true or false, got {value!r}")
        return value
    numeric = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric) or value <= 0:
        raise HFConfigError(f"config.json: {key} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return value


def architecture_of(hf: dict) -> str:
    archs = hf.get("architectures")
    if not (isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str)):
        raise HFConfigError(f"config.json: architectures must name one architecture, got {archs!r}")
    if archs[0] not in ARCHITECTURES:
        raise HFConfigError(f"config.json: architecture {archs[0]} is not supported ({', '.join(ARCHITECTURES)})")
    if hf.get("quantization_config") is not None:
        method = hf["quantization_config"].get("quant_method", "?") if isinstance(hf["quantization_config"], dict) else "?"
        raise HFConfigError(f"config.json: quantization_config ({method}): quantized weights are not supported")
    return archs[0]


def _rope(hf: dict) -> tuple[float, Optional[dict]]:
    """(theta, our rope_scaling) from `rope_theta` + `rope_scaling`, or transformers 5's `rope_parameters`."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict):
        theta, scaling, field = params.get("rope_theta", hf.get("rope_theta", 10000.0)), params, "rope_parameters"
    else:
        theta, scaling, field = hf.get("rope_theta", 10000.0), hf.get("rope_scaling"), "rope_scaling"
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
        raise HFConfigError(f"config.json: rope_theta must be a positive number, got {theta!r}")
    if scaling is None:
        return float(theta), None
    if not isinstance(scaling, dict):
        raise HFConfigError(f"config.json: {field} must be an object or null, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind not in ROPE_SCALINGS:
        raise HFConfigError(f"config.json: {field} type {kind!r} is not supported ({', '.join(ROPE_SCALINGS)})")
    ours = {"type": kind}
    for key in ROPE_SCALINGS[kind]:
        value = scaling.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise HFConfigError(f"config.json: {field}.{key} must be a positive number, got {value!r}")
        ours[key] = value
    if kind == "llama3" and not ours["high_freq_factor"] > ours["low_freq_factor"]:
        raise HFConfigError(f"config.json: {field}.high_freq_factor must exceed low_freq_factor")
    return float(theta), ours


def _llama(hf: dict, architecture: str) -> Imported:
    dim = _get(hf, "hidden_size", int, required=True)
    heads = _get(hf, "num_attention_heads", int, required=True)
    kv_heads = _get(hf, "num_key_value_heads", int, default=heads)
    if dim % heads:
        raise HFConfigError(f"config.json: hidden_size {dim} is not a multiple of num_attention_heads {heads}")
    if heads % kv_heads:
        raise HFConfigError(f"config.json: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}")
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim != dim // heads:
        raise HFConfigError(f"config.json: head_dim {head_dim} differs from hidden_size / num_attention_heads ({dim // heads}): not supported")
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise HFConfigError(f"config.json: partial_rotary_factor {hf['partial_rotary_factor']} is not supported (1.0 only)")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise HFConfigError(f"config.json: hidden_act {act!r} is not supported (silu)")
    theta, scaling = _rope(hf)
    attention_bias = _get(hf, "attention_bias", bool, default=False)
    qkv_bias = True if architecture == "Qwen2ForCausalLM" else attention_bias  # Qwen2: q/k/v always biased
    window = None
    if architecture == "MistralForCausalLM" or (architecture == "Qwen2ForCausalLM" and hf.get("use_sliding_window")):
        window = _get(hf, "sliding_window", int)
    max_positions = _get(hf, "max_position_embeddings", int, default=2048)
    cfg = ModelConfig(
        vocab_size=_get(hf, "vocab_size", int, required=True), dim=dim, layers=_get(hf, "num_hidden_layers", int, required=True),
        heads=heads, kv_heads=kv_heads, ffn_dim=_get(hf, "intermediate_size", int, required=True),
        max_positions=min(max_positions, window) if window else max_positions, rope_base=theta, rope_scaling=scaling,
        norm="rms", norm_eps=float(_get(hf, "rms_norm_eps", float, default=1e-6)), positions="rope",
        qkv_bias=qkv_bias, o_bias=attention_bias, mlp="swiglu", mlp_bias=_get(hf, "mlp_bias", bool, default=False),
        tied_embeddings=_get(hf, "tie_word_embeddings", bool, default=False), attention="softmax")
    return Imported(cfg, architecture, window)


def _gpt2(hf: dict) -> Imported:
    dim = _get(hf, "n_embd", int, default=768)
    heads = _get(hf, "n_head", int, default=12)
    if dim % heads:
        raise HFConfigError(f"config.json: n_embd {dim} is not a multiple of n_head {heads}")
    act = hf.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        raise HFConfigError(f"config.json: activation_function {act!r} is not supported ({', '.join(GELU_TANH)})")
    if hf.get("scale_attn_weights", True) is not True:
        raise HFConfigError("config.json: scale_attn_weights false is not supported")
    if hf.get("scale_attn_by_inverse_layer_idx", False) is not False:
        raise HFConfigError("config.json: scale_attn_by_inverse_layer_idx is not supported")
    cfg = ModelConfig(
        vocab_size=_get(hf, "vocab_size", int, default=50257), dim=dim, layers=_get(hf, "n_layer", int, default=12),
        heads=heads, ffn_dim=_get(hf, "n_inner", int) or 4 * dim, max_positions=_get(hf, "n_positions", int, default=1024),
        norm="layer", norm_eps=float(_get(hf, "layer_norm_epsilon", float, default=1e-5)), positions="learned",
        qkv_bias=True, o_bias=True, mlp="gelu_tanh", mlp_bias=True,
        tied_embeddings=_get(hf, "tie_word_embeddings", bool, default=True), attention="softmax")
    return Imported(cfg, GPT2, None)


def from_hf(hf: dict) -> Imported:
    if not isinstance(hf, dict):
        raise HFConfigError("config.json: not a JSON object")
    architecture = architecture_of(hf)
    imported = _gpt2(hf) if architecture == GPT2 else _llama(hf, architecture)
    try:
        imported.config.validate()
    except ValueError as e:
        raise HFConfigError(f"config.json: {e}") from None
    return imported


def to_hf(cfg: ModelConfig, special: dict) -> dict:
    """config.json for our softmax model in Hugging Face's layout: LlamaForCausalLM for RoPE
    models (Qwen2ForCausalLM with Qwen2's q/k/v-only biases), GPT2LMHeadModel for learned
    positions. `special` holds bos/eos ids."""
    if cfg.attention != "softmax":
        raise HFConfigError(f"a {cfg.attention} model has no Hugging Face architecture; export its softmax teacher")
    if cfg.positions == "learned":
        if not (cfg.norm == "layer" and cfg.mlp == "gelu_tanh" and cfg.qkv_bias and cfg.o_bias and cfg.mlp_bias
                and cfg.kv_heads == cfg.heads):
            raise HFConfigError("a model with learned positions exports as GPT-2 only with GPT-2's LayerNorm, GELU and biases")
        return {"architectures": [GPT2], "model_type": "gpt2", "vocab_size": cfg.vocab_size, "n_embd": cfg.dim,
                "n_layer": cfg.layers, "n_head": cfg.heads, "n_inner": cfg.ffn_dim, "n_positions": cfg.max_positions,
                "n_ctx": cfg.max_positions, "layer_norm_epsilon": cfg.norm_eps, "activation_function": "gelu_new",
                "tie_word_embeddings": cfg.tied_embeddings, "torch_dtype": "float32", **special}
    if cfg.norm != "rms" or cfg.mlp != "swiglu":
        raise HFConfigError("a RoPE model exports to Hugging Face's layout only with RMSNorm and SwiGLU")
    rope = None if cfg.rope_scaling is None else {("rope_type" if k == "type" else k): v for k, v in cfg.rope_scaling.items()}
    common = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "num_hidden_layers": cfg.layers,
              "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads, "intermediate_size": cfg.ffn_dim,
              "hidden_act": "silu", "max_position_embeddings": cfg.max_positions, "rms_norm_eps": cfg.norm_eps,
              "rope_theta": cfg.rope_base, "rope_scaling": rope, "tie_word_embeddings": cfg.tied_embeddings,
              "torch_dtype": "float32", **special}
    if cfg.qkv_bias and not cfg.o_bias and not cfg.mlp_bias:  # Qwen2's biases
        return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **common, "use_sliding_window": False}
    if cfg.qkv_bias != cfg.o_bias:
        raise HFConfigError("a RoPE model with biases on q, k, v but not o (or the reverse) exports only as Qwen2, without MLP biases")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **common, "attention_bias": cfg.qkv_bias,
            "mlp_bias": cfg.mlp_bias}
