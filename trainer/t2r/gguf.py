"""GGUF v3 files for llama.cpp, so an independent implementation can run the models we serve
(test/import/llama-cpp.test.ts checks imports against it; the benchmark runs it beside us).

    python3 -m t2r gguf --hf HF_DIR --out x.gguf [--dtype f32|f16|q8_0|q4_0]   # a Hugging Face checkpoint
    python3 -m t2r gguf --model MODELS_DIR/NAME --out x.gguf            # our softmax model folder

The conversion follows llama.cpp's own convert_hf_to_gguf.py (of the llama.cpp node-llama-cpp
3.21.1 ships) from the Hugging Face layout, not from our model: a model folder of ours is first put
in that layout in memory (hf_export.hf_state). Per architecture:

- LlamaForCausalLM, MistralForCausalLM -> `llama`: q/k rows (and biases) permuted from Hugging
  Face's half-split RoPE to llama.cpp's consecutive pairs; llama3 RoPE scaling as a `rope_freqs`
  tensor of per-frequency divisors, linear as `rope.scaling.{type,factor}`.
- Qwen2ForCausalLM -> `qwen2`: llama.cpp rotates halves (NEOX) for it, so nothing is permuted.
- GPT2LMHeadModel -> `gpt2`: Conv1D weights transposed, c_attn kept fused as `attn_qkv`.

Tensors: F32, or F16 for 2-D weights with --dtype f16 (1-D ones stay F32, as llama.cpp's converter
does). With --dtype q8_0 / q4_0 every 2-D weight is written in GGML's block format (ggml-common.h,
gguf-py quants.py): Q8_0 blocks of 32 weights along a row are an fp16 scale d = max|x| / 127 then 32
int8 q = round(x / d) (half away from zero); Q4_0 blocks are an fp16 d = m / -8 (m: the value of
largest magnitude, sign kept) then 16 bytes, byte j holding q_j in its low nibble and q_{j+16} in its
high one, q = min(15, trunc(x / d + 8.5)), x = d * (q - 8). As llama.cpp's converter does, 1-D
tensors and position embeddings stay F32 and a 2-D tensor whose rows are not whole blocks falls
back to F16; Q4_0 is the "pure" kind (llama-quantize --pure): the output and embedding matrices are
Q4_0 too, not Q6_K. The tokenizer goes in as llama.cpp's `gpt2` (byte-level BPE: tokens, token types, merges) or,
for BPE with byte fallback (SentencePiece-style, Llama 2, Mistral), `llama` (tokens, scores, types),
from tokenizer.json as its converter reads it when there is no tokenizer.model.

The format: magic "GGUF", version 3, tensor count, key/value count (little-endian); key/values
(string key, u32 type, value); tensor infos (name, dims innermost first, ggml type, data offset);
data, every tensor aligned to 32 bytes.
"""
from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import safetensors
from .checkpoint import load_model
from .hf_config import GPT2, from_hf, to_hf
from .hf_export import hf_state, special_ids
from .hf_files import read_json
from .hf_tokens import read_vocabulary
from .hf_weights import locate

ALIGNMENT = 32
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8
QK = 32  # weights per Q4_0 / Q8_0 block
BLOCK_BYTES = {GGML_Q4_0: 2 + QK // 2, GGML_Q8_0: 2 + QK}
# llama.cpp's LlamaFileType: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}
BLOCK_TYPES = {"q8_0": GGML_Q8_0, "q4_0": GGML_Q4_0}
# GGUF value types
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 3, 4, 5, 6
ARCHES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", GPT2: "gpt2"}


class GGUFError(ValueError):
    pass


@dataclass
class Tensor:
    name: str
    shape: tuple            # numpy order (outermost first)
    ggml_type: int
    produce: Callable[[], np.ndarray]   # the data, called once while writing

    @property
    def nbytes(self) -> int:
        if self.ggml_type in BLOCK_BYTES:
            return math.prod(self.shape) // QK * BLOCK_BYTES[self.ggml_type]
        return math.prod(self.shape) * (4 if self.ggml_type == GGML_F32 else 2)


def _blocks(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] % QK:
        raise GGUFError(f"rows of {x.shape[-1]} values are not whole blocks of {QK}")
    return x.astype(np.float32).reshape(-1, QK)


def quantize_q8_0(x: np.ndarray) -> bytes:
    """GGML's block_q8_0 (quantize_row_q8_0_ref): per 32 values, fp16 d then 32 int8."""
    b = _blocks(x)
    d = np.abs(b).max(axis=1, keepdims=True) / 127
    inv = np.divide(1, d, out=np.zeros_like(d), where=d != 0)
    scaled = b * inv
    q = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int8)  # roundf: half away from zero
    return np.concatenate([d.astype("<f2").view(np.uint8), q.view(np.uint8)], axis=1).tobytes()


def quantize_q4_0(x: np.ndarray) -> bytes:
    """GGML's block_q4_0 (quantize_row_q4_0_ref): per 32 values, fp16 d then 16 bytes of nibbles."""
    b = _blocks(x)
    m = np.take_along_axis(b, np.abs(b).argmax(axis=1)[:, None], axis=1)
    d = m / -8
    inv = np.divide(1, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc(b * inv + 8.5)).astype(np.uint8)
    nibbles = q[:, :QK // 2] | (q[:, QK // 2:] << 4)
    return np.concatenate([d.astype("<f2").view(np.uint8), nibbles], axis=1).tobytes()


def dequantize(raw: bytes, ggml_type: int) -> np.ndarray:
    """The values a Q8_0 / Q4_0 byte string stands for, flat float32 (dequantize_row_*)."""
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BLOCK_BYTES[ggml_type])
    d = rows[:, :2].copy().view("<f2").astype(np.float32)
    if ggml_type == GGML_Q8_0:
        return (rows[:, 2:].view(np.int8).astype(np.float32) * d).reshape(-1)
    nibbles = rows[:, 2:]
    q = np.concatenate([nibbles & 0xF, nibbles >> 4], axis=1).astype(np.float32)
    return ((q - 8) * d).reshape(-1)


def encode(data: np.ndarray, ggml_type: int) -> bytes:
    if ggml_type == GGML_Q8_0:
        return quantize_q8_0(data)
    if ggml_type == GGML_Q4_0:
        return quantize_q4_0(data)
    return np.ascontiguousarray(data, dtype="<f4" if ggml_type == GGML_F32 else "<f2").tobytes()


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(value, vtype: int, item_type: int | None = None) -> bytes:
    if vtype == STRING:
        return _string(value)
    if vtype == ARRAY:
        body = b"".join(_value(v, item_type) for v in value)
        return struct.pack("<IQ", item_type, len(value)) + body
    return struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}[vtype], value)


def write(path: str, kv: list[tuple], tensors: list[Tensor]) -> None:
    """kv: (key, value, type[, item type]) in order; written to `path` via a temporary file."""
    pad = lambda n: -n % ALIGNMENT  # noqa: E731
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, value, vtype, *item in kv:
        head += _string(key) + struct.pack("<I", vtype) + _value(value, vtype, *item)
    offset = 0
    for t in tensors:
        dims = list(reversed(t.shape))
        head += _string(t.name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        head += struct.pack("<IQ", t.ggml_type, offset)
        offset += t.nbytes + pad(t.nbytes)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(head + b"\0" * pad(len(head)))
            for t in tensors:
                data = np.asarray(t.produce())
                if data.shape != t.shape:
                    raise GGUFError(f"{t.name}: produced {data.shape}, declared {t.shape}")
                raw = encode(data, t.ggml_type)
                f.write(raw)
                f.write(b"\0" * pad(len(raw)))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# -- Hugging Face layout -> llama.cpp names ------------------------------------------------------

def permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's LlamaModel.permute: q/k rows from Hugging Face's RoPE order (each head's first
    halves, then second halves) into consecutive pairs, the order its `llama` RoPE rotates."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_names(arch: str, config: dict, names: set) -> list[tuple[str, str, Callable]]:
    """(gguf name, hf name, transform) for the llama and qwen2 architectures."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    same = lambda t: t  # noqa: E731
    rows = {"q": (lambda t: permute(t, heads)), "k": (lambda t: permute(t, kv_heads))} if arch == "llama" else {}
    out = [("token_embd.weight", "model.embed_tokens.weight", same), ("output_norm.weight", "model.norm.weight", same)]
    if not config.get("tie_word_embeddings", False) and "lm_head.weight" in names:
        out.append(("output.weight", "lm_head.weight", same))
    for i in range(config["num_hidden_layers"]):
        hf, blk = f"model.layers.{i}.", f"blk.{i}."
        out += [(blk + "attn_norm.weight", hf + "input_layernorm.weight", same),
                (blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", same)]
        for proj, gguf_name in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output")):
            for p in ("weight", "bias"):
                if f"{hf}self_attn.{proj}_proj.{p}" in names:
                    out.append((f"{blk}{gguf_name}.{p}", f"{hf}self_attn.{proj}_proj.{p}", rows.get(proj, same)))
        for proj, gguf_name in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
            for p in ("weight", "bias"):
                if f"{hf}mlp.{proj}.{p}" in names:
                    out.append((f"{blk}{gguf_name}.{p}", f"{hf}mlp.{proj}.{p}", same))
    return out


def _gpt2_names(config: dict, names: set) -> list[tuple[str, str, Callable]]:
    prefix = "transformer." if "transformer.wte.weight" in names else ""
    same, t = (lambda x: x), (lambda x: x.t())
    out = [("token_embd.weight", prefix + "wte.weight", same), ("position_embd.weight", prefix + "wpe.weight", same),
           ("output_norm.weight", prefix + "ln_f.weight", same), ("output_norm.bias", prefix + "ln_f.bias", same)]
    if not config.get("tie_word_embeddings", True) and "lm_head.weight" in names:
        out.append(("output.weight", "lm_head.weight", same))
    for i in range(config.get("n_layer", 12)):
        hf, blk = f"{prefix}h.{i}.", f"blk.{i}."
        for hf_name, gguf_name in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm"), ("attn.c_attn", "attn_qkv"),
                                   ("attn.c_proj", "attn_output"), ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")):
            conv1d = not hf_name.startswith("ln")
            out += [(f"{blk}{gguf_name}.weight", f"{hf}{hf_name}.weight", t if conv1d else same),
                    (f"{blk}{gguf_name}.bias", f"{hf}{hf_name}.bias", same)]
    return out


def llama3_rope_factors(config: dict) -> np.ndarray:
    """llama.cpp's `rope_freqs`: what each RoPE frequency is divided by (LlamaModel.generate_extra_tensors)."""
    s, base = config["rope_scaling"], config.get("rope_theta", 10000.0)
    dim = config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _hparams(arch: str, config: dict, file_type: str) -> list[tuple]:
    kv = [("general.architecture", arch, STRING), ("general.file_type", FILE_TYPES[file_type], U32),
          ("general.alignment", ALIGNMENT, U32)]
    if arch == "gpt2":
        dim = config.get("n_embd", 768)
        return kv + [("gpt2.block_count", config.get("n_layer", 12), U32),
                     ("gpt2.context_length", config.get("n_ctx", config.get("n_positions", 1024)), U32),
                     ("gpt2.embedding_length", dim, U32),
                     ("gpt2.feed_forward_length", config.get("n_inner") or 4 * dim, U32),
                     ("gpt2.attention.head_count", config.get("n_head", 12), U32),
                     ("gpt2.attention.layer_norm_epsilon", config.get("layer_norm_epsilon", 1e-5), F32)]
    heads = config["num_attention_heads"]
    kv += [(f"{arch}.block_count", config["num_hidden_layers"], U32),
           (f"{arch}.context_length", config.get("max_position_embeddings", 2048), U32),
           (f"{arch}.embedding_length", config["hidden_size"], U32),
           (f"{arch}.feed_forward_length", config["intermediate_size"], U32),
           (f"{arch}.attention.head_count", heads, U32),
           (f"{arch}.attention.head_count_kv", config.get("num_key_value_heads") or heads, U32),
           (f"{arch}.rope.freq_base", float(config.get("rope_theta", 10000.0)), F32),
           (f"{arch}.attention.layer_norm_rms_epsilon", config.get("rms_norm_eps", 1e-6), F32)]
    if arch == "llama":
        kv += [("llama.vocab_size", config["vocab_size"], U32),
               ("llama.rope.dimension_count", config["hidden_size"] // heads, U32)]
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "linear":
        kv += [(f"{arch}.rope.scaling.type", "linear", STRING), (f"{arch}.rope.scaling.factor", float(scaling["factor"]), F32)]
    return kv


def _tokenizer(hf_dir: str, config: dict, generation: dict | None, tokenizer_config: dict | None) -> list[tuple]:
    """The vocabulary as llama.cpp's converter writes it: byte-level BPE as `gpt2` (tokens, types,
    merges; _set_vocab_gpt2), BPE with byte fallback (SentencePiece-style, Llama 2) as `llama`
    (tokens, scores, types; _set_vocab_llama_hf). Ids past the tokenizer, up to vocab_size, are
    unused padding."""
    vocab = read_vocabulary(hf_dir)
    model = vocab.model
    if model.get("type") != "BPE":
        raise GGUFError(f"tokenizer.json: a {model.get('type')} model; only BPE tokenizers are written to GGUF")
    sentencepiece = bool(model.get("byte_fallback"))
    size = config.get("vocab_size", vocab.size)
    if vocab.size > size:
        raise GGUFError(f"tokenizer.json has ids up to {vocab.size - 1}, beyond config.json vocab_size {size}")
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [TOKEN_UNUSED] * size
    for text, i in model["vocab"].items():
        byte = sentencepiece and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text)
        tokens[i], types[i] = text, TOKEN_BYTE if byte else TOKEN_NORMAL
    for t in vocab.added:
        tokens[t["id"]] = t["content"]
        types[t["id"]] = TOKEN_CONTROL if t.get("special") else TOKEN_USER_DEFINED
    if sentencepiece:
        # llama.cpp's converter scores every token -1000 when it reads tokenizer.json (LlamaHfVocab).
        kv = [("tokenizer.ggml.model", "llama", STRING), ("tokenizer.ggml.pre", "default", STRING),
              ("tokenizer.ggml.tokens", tokens, ARRAY, STRING), ("tokenizer.ggml.scores", [-1000.0] * size, ARRAY, F32),
              ("tokenizer.ggml.token_type", types, ARRAY, I32)]
    else:
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        kv = [("tokenizer.ggml.model", "gpt2", STRING), ("tokenizer.ggml.pre", model_pre(hf_dir), STRING),
              ("tokenizer.ggml.tokens", tokens, ARRAY, STRING), ("tokenizer.ggml.token_type", types, ARRAY, I32),
              ("tokenizer.ggml.merges", merges, ARRAY, STRING)]
    for key in ("bos_token_id", "eos_token_id"):
        value = (generation or {}).get(key, config.get(key))
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            kv.append((f"tokenizer.ggml.{key}", value, U32))
    add_bos = (tokenizer_config or {}).get("add_bos_token")
    kv.append(("tokenizer.ggml.add_bos_token", add_bos is True, BOOL))
    return kv


def model_pre(hf_dir: str) -> str:
    """llama.cpp's pre-tokenizer name: GPT-2's regex split for a ByteLevel pre-tokenizer that uses
    it, else llama.cpp's default."""
    doc = read_json(hf_dir, "tokenizer.json", required=True, error=GGUFError)
    pre = doc.get("pre_tokenizer") or {}
    return "gpt-2" if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) else "default"


def tensor_type(name: str, shape: tuple, dtype: str) -> int:
    """A tensor's GGML type for --dtype (llama.cpp's converter's rules; see the module doc)."""
    if len(shape) != 2:
        return GGML_F32
    if dtype in BLOCK_TYPES:
        if name.startswith("position_embd."):
            return GGML_F32
        return BLOCK_TYPES[dtype] if shape[-1] % QK == 0 else GGML_F16
    return GGML_F16 if dtype == "f16" else GGML_F32


def convert(hf_dir: str, config: dict, shapes: dict[str, tuple], load: Callable[[str], torch.Tensor], out: str, dtype: str) -> None:
    """Writes `out` from a Hugging Face layout: config.json's contents, tensor shapes by name, a
    loader for one tensor (float32), and the folder holding the tokenizer files."""
    architecture = from_hf(config).architecture
    arch = ARCHES[architecture]
    names = set(shapes)
    mapping = _gpt2_names(config, names) if arch == "gpt2" else _llama_names(arch, config, names)
    tensors = []
    for gguf_name, hf_name, transform in mapping:
        shape = tuple(transform(torch.empty(shapes[hf_name], device="meta")).shape)
        ggml_type = tensor_type(gguf_name, shape, dtype)
        tensors.append(Tensor(gguf_name, shape, ggml_type,
                              lambda h=hf_name, f=transform: f(load(h)).numpy()))
    scaling = config.get("rope_scaling") or {}
    if arch == "llama" and scaling.get("rope_type", scaling.get("type")) == "llama3":
        factors = llama3_rope_factors(config)
        tensors.append(Tensor("rope_freqs.weight", factors.shape, GGML_F32, lambda: factors))
    generation = read_json(hf_dir, "generation_config.json", required=False, error=GGUFError)
    tokenizer_config = read_json(hf_dir, "tokenizer_config.json", required=False, error=GGUFError)
    kv = _hparams(arch, config, dtype) + _tokenizer(hf_dir, config, generation, tokenizer_config)
    write(out, kv, tensors)


def from_hf_folder(hf_dir: str, out: str, dtype: str = "f32") -> None:
    config = read_json(hf_dir, "config.json", required=True, error=GGUFError)
    located = locate(hf_dir)
    load = lambda name: safetensors.load(located[name][0], [name])[0][name].float()  # noqa: E731
    convert(hf_dir, config, {n: info.shape for n, (_, info) in located.items()}, load, out, dtype)


def from_model_folder(model_dir: str, out: str, dtype: str = "f32") -> None:
    """Our softmax model folder, put in the Hugging Face layout in memory, then as from_hf_folder."""
    manifest = read_json(model_dir, "model.json", required=True, error=GGUFError)
    model = load_model(os.path.join(model_dir, "checkpoint.safetensors"))
    config = to_hf(model.cfg, special_ids(manifest))
    state = hf_state(model)
    convert(model_dir, config, {n: tuple(t.shape) for n, t in state.items()}, lambda n: state[n], out, dtype)
