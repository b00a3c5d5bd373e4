"""Tiny Hugging Face checkpoints in the exact layout transformers' save_pretrained writes (tensor
names, shapes, GPT-2's transposed Conv1D weights and fused c_attn, shards with an index), with
random weights, written here from scratch: nothing of t2r's own name maps is used, so an import
that misreads the layout cannot pass by agreeing with itself.

Every checkpoint but one uses the shipped byte-level BPE tokenizer (models/sotu-base/tokenizer.json,
8,192 tokens, <|endoftext|> = 8191), so the server loads the imports as they are; `llama-sentencepiece`
has a Llama-2-style one (BPE with byte fallback, 8,192 tokens, <s> = 1, </s> = 2) made here.

    python3 trainer/tests/hf_checkpoints.py OUT_DIR [VARIANT ...]   # one folder per variant
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys

import torch

TRAINER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TRAINER not in sys.path:
    sys.path.insert(0, TRAINER)

from t2r import safetensors  # noqa: E402  (the file format only)

ROOT = os.path.dirname(TRAINER)
TOKENIZER = os.path.join(ROOT, "models", "sotu-base", "tokenizer.json")
VOCAB, EOS = 8192, 8191
DIM, LAYERS, HEADS, FFN, POSITIONS = 64, 2, 4, 128, 128
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          # head_dim 16, theta 5e5: wavelengths 6.3, 32, 167, ...: one kept, one smoothed, the rest scaled
          "original_max_position_embeddings": 64}

# name -> (architecture, options)
VARIANTS = {
    "llama-gqa": ("LlamaForCausalLM", dict(kv_heads=2, tied=True)),
    "llama-untied-llama3-bf16": ("LlamaForCausalLM", dict(kv_heads=4, tied=False, rope_theta=500000.0, rope_scaling=LLAMA3,
                                                          dtype=torch.bfloat16)),
    "llama-mqa-linear-f16-sharded": ("LlamaForCausalLM", dict(kv_heads=1, tied=True, rope_scaling={"type": "linear", "factor": 4.0},
                                                              dtype=torch.float16, shards=3)),
    "llama-sentencepiece": ("LlamaForCausalLM", dict(kv_heads=2, tied=False, tokenizer="sentencepiece")),
    "mistral-untied": ("MistralForCausalLM", dict(kv_heads=2, tied=False, sliding_window=4096)),
    "qwen2-bias": ("Qwen2ForCausalLM", dict(kv_heads=2, tied=True, rope_theta=1000000.0)),
    "gpt2": ("GPT2LMHeadModel", dict(tied=True)),
    "gpt2-f16-sharded": ("GPT2LMHeadModel", dict(tied=True, dtype=torch.float16, shards=2)),
}


def special_ids(variant: str) -> dict:
    """bos, eos ids (and the extra EOS id generation_config.json lists) of a variant's tokenizer."""
    if VARIANTS[variant][1].get("tokenizer") == "sentencepiece":
        return {"bos": 1, "eos": [2], "bos_text": "<s>", "eos_text": "</s>", "add_bos": True}
    # Two end-of-sequence ids, as Llama 3 instruct models have (the second one any token).
    return {"bos": EOS, "eos": [EOS, 13], "bos_text": "<|endoftext|>", "eos_text": "<|endoftext|>", "add_bos": False}


def sentencepiece_tokenizer() -> dict:
    """A tokenizer.json in Llama 2's form: BPE with byte fallback, "▁" for spaces; <unk>, <s>, </s>,
    the 256 byte tokens, single characters, then merges of them up to VOCAB tokens."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    chars = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [".", ","]
    for c in chars:
        vocab[c] = len(vocab)
    merges = []
    parts = list(chars)
    while len(vocab) < VOCAB:
        for a in list(parts):
            for b in chars:
                if len(vocab) == VOCAB:
                    break
                if a + b not in vocab:
                    vocab[a + b] = len(vocab)
                    merges.append(f"{a} {b}")
                    parts.append(a + b)
    special = lambda i, t: {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,  # noqa: E731
                            "normalized": False, "special": True}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                      {"type": "ByteFallback"}, {"type": "Fuse"},
                                                      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def _weights(shape, fan_in: int, g: torch.Generator, scale: float = 0.7) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * (scale / math.sqrt(fan_in))


def _norm(g):
    return 1.0 + 0.2 * torch.rand(DIM, generator=g) - 0.1


def llama_tensors(arch: str, o: dict, g: torch.Generator) -> dict:
    kv, hd = o["kv_heads"], DIM // HEADS
    t = {"model.embed_tokens.weight": torch.randn(VOCAB, DIM, generator=g) * 0.3, "model.norm.weight": _norm(g)}
    if not o["tied"]:
        t["lm_head.weight"] = torch.randn(VOCAB, DIM, generator=g) * 0.3
    biased = arch == "Qwen2ForCausalLM"
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = _norm(g)
        t[p + "post_attention_layernorm.weight"] = _norm(g)
        # q and k a little larger than the rest: attention that is not uniform shows position errors.
        t[p + "self_attn.q_proj.weight"] = _weights((HEADS * hd, DIM), DIM, g, 2.0)
        t[p + "self_attn.k_proj.weight"] = _weights((kv * hd, DIM), DIM, g, 2.0)
        t[p + "self_attn.v_proj.weight"] = _weights((kv * hd, DIM), DIM, g)
        t[p + "self_attn.o_proj.weight"] = _weights((DIM, HEADS * hd), DIM, g)
        if biased:
            for proj, n in (("q", HEADS * hd), ("k", kv * hd), ("v", kv * hd)):
                t[f"{p}self_attn.{proj}_proj.bias"] = torch.randn(n, generator=g) * 0.5
        t[p + "mlp.gate_proj.weight"] = _weights((FFN, DIM), DIM, g)
        t[p + "mlp.up_proj.weight"] = _weights((FFN, DIM), DIM, g)
        t[p + "mlp.down_proj.weight"] = _weights((DIM, FFN), FFN, g)
    return t


def llama_config(arch: str, o: dict) -> dict:
    model_type = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}[arch]
    c = {"architectures": [arch], "model_type": model_type, "vocab_size": VOCAB, "hidden_size": DIM,
         "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
         "num_key_value_heads": o["kv_heads"], "hidden_act": "silu", "max_position_embeddings": POSITIONS,
         "rms_norm_eps": 1e-5, "rope_theta": o.get("rope_theta", 10000.0), "rope_scaling": o.get("rope_scaling"),
         "tie_word_embeddings": o["tied"], "initializer_range": 0.02,
         "use_cache": True, "transformers_version": "4.46.0", "torch_dtype": _dtype_name(o)}
    if arch == "LlamaForCausalLM":
        c.update(attention_bias=False, mlp_bias=False, pretraining_tp=1, head_dim=DIM // HEADS)
    if arch == "MistralForCausalLM":
        c["sliding_window"] = o["sliding_window"]
    if arch == "Qwen2ForCausalLM":
        c.update(use_sliding_window=False, sliding_window=POSITIONS, max_window_layers=LAYERS)
    return c


def gpt2_tensors(o: dict, g: torch.Generator) -> dict:
    t = {"transformer.wte.weight": torch.randn(VOCAB, DIM, generator=g) * 0.3,
         "transformer.wpe.weight": torch.randn(POSITIONS, DIM, generator=g) * 0.3,
         "transformer.ln_f.weight": _norm(g), "transformer.ln_f.bias": torch.randn(DIM, generator=g) * 0.1}
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            t[f"{p}{ln}.weight"] = _norm(g)
            t[f"{p}{ln}.bias"] = torch.randn(DIM, generator=g) * 0.1
        # Conv1D: weight [in, out]; c_attn holds q, k, v side by side along `out`.
        qkv = _weights((DIM, 3 * DIM), DIM, g)
        qkv[:, :2 * DIM] *= 3.0
        t[p + "attn.c_attn.weight"] = qkv
        t[p + "attn.c_attn.bias"] = torch.randn(3 * DIM, generator=g) * 0.2
        t[p + "attn.c_proj.weight"] = _weights((DIM, DIM), DIM, g)
        t[p + "attn.c_proj.bias"] = torch.randn(DIM, generator=g) * 0.1
        t[p + "mlp.c_fc.weight"] = _weights((DIM, 4 * DIM), DIM, g, 1.5)
        t[p + "mlp.c_fc.bias"] = torch.randn(4 * DIM, generator=g) * 0.2
        t[p + "mlp.c_proj.weight"] = _weights((4 * DIM, DIM), 4 * DIM, g)
        t[p + "mlp.c_proj.bias"] = torch.randn(DIM, generator=g) * 0.1
        # Older checkpoints also carry the causal-mask buffer; it is not a weight.
        t[p + "attn.bias"] = torch.tril(torch.ones(POSITIONS, POSITIONS)).view(1, 1, POSITIONS, POSITIONS)
    return t


def gpt2_config(o: dict) -> dict:
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB, "n_embd": DIM,
            "n_layer": LAYERS, "n_head": HEADS, "n_inner": None, "n_positions": POSITIONS, "n_ctx": POSITIONS,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
            "attn_pdrop": 0.1, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": o["tied"],
            "transformers_version": "4.46.0", "torch_dtype": _dtype_name(o)}


def _dtype_name(o: dict) -> str:
    return {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[o.get("dtype", torch.float32)]


def save_weights(folder: str, tensors: dict, shards: int = 1) -> None:
    if shards == 1:
        safetensors.save(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
        return
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        safetensors.save(os.path.join(folder, file), {n: tensors[n] for n in part}, {"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_checkpoint(folder: str, variant: str, seed: int = 0) -> str:
    arch, o = VARIANTS[variant]
    g = torch.Generator().manual_seed(seed)
    if arch == "GPT2LMHeadModel":
        tensors, config = gpt2_tensors(o, g), gpt2_config(o)
    else:
        tensors, config = llama_tensors(arch, o, g), llama_config(arch, o)
    dtype = o.get("dtype", torch.float32)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    ids = special_ids(variant)
    config.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"][0])
    os.makedirs(folder, exist_ok=True)
    save_weights(folder, tensors, o.get("shards", 1))
    _dump(os.path.join(folder, "config.json"), config)
    if o.get("tokenizer") == "sentencepiece":
        _dump(os.path.join(folder, "tokenizer.json"), sentencepiece_tokenizer())
    else:
        shutil.copyfile(TOKENIZER, os.path.join(folder, "tokenizer.json"))
    _dump(os.path.join(folder, "tokenizer_config.json"),
          {"add_bos_token": ids["add_bos"], "bos_token": ids["bos_text"], "eos_token": ids["eos_text"],
           "model_max_length": POSITIONS, "tokenizer_class": "PreTrainedTokenizerFast"})
    _dump(os.path.join(folder, "generation_config.json"),
          {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"] if len(ids["eos"]) > 1 else ids["eos"][0],
           "transformers_version": "4.46.0"})
    return folder


def _dump(path: str, doc: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    out, chosen = sys.argv[1], sys.argv[2:] or list(VARIANTS)
    for v in chosen:
        write_checkpoint(os.path.join(out, v), v)
        print(os.path.join(out, v))
