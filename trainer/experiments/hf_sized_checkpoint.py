"""A random-weight Hugging Face checkpoint at a real model's shapes, to measure `t2r import` (time,
peak memory) on something the size of GPT-2 small (124 M parameters) or a ~125 M Llama. The weights
are not committed; write them where they are measured:

    python3 trainer/experiments/hf_sized_checkpoint.py gpt2-small /tmp/hf-gpt2-small
    python3 trainer/experiments/hf_sized_checkpoint.py llama-125m /tmp/hf-llama-125m [--dtype bfloat16]
    /usr/bin/time -v env PYTHONPATH=trainer python3 -m t2r import --hf /tmp/hf-gpt2-small --out /tmp/m/gpt2-small

Tensor names and layouts are Hugging Face's (as in trainer/tests/hf_checkpoints.py); the tokenizer
is the shipped 8,192-token one (config vocab sizes are the real models', so the embedding rows past
8,191 are padding, as Qwen2's are)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import torch

TRAINER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TRAINER)
from t2r import safetensors  # noqa: E402

TOKENIZER = os.path.join(os.path.dirname(TRAINER), "models", "sotu-base", "tokenizer.json")
SHAPES = {
    # GPT-2 small: 124,439,808 parameters.
    "gpt2-small": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_embd": 768,
                   "n_layer": 12, "n_head": 12, "n_positions": 1024, "n_ctx": 1024, "activation_function": "gelu_new",
                   "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True},
    # Llama-style, 124,950,528 parameters: 12 layers of 768, GQA 12/4, SwiGLU 2048, 32k vocabulary, untied.
    "llama-125m": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 768,
                   "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4, "intermediate_size": 2048,
                   "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "tie_word_embeddings": False},
}


def tensors(c: dict, g: torch.Generator) -> dict:
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.02  # noqa: E731
    if c["model_type"] == "gpt2":
        d, p = c["n_embd"], "transformer."
        t = {p + "wte.weight": r(c["vocab_size"], d), p + "wpe.weight": r(c["n_positions"], d),
             p + "ln_f.weight": torch.ones(d), p + "ln_f.bias": torch.zeros(d)}
        for i in range(c["n_layer"]):
            h = f"{p}h.{i}."
            t.update({h + "ln_1.weight": torch.ones(d), h + "ln_1.bias": torch.zeros(d), h + "ln_2.weight": torch.ones(d),
                      h + "ln_2.bias": torch.zeros(d), h + "attn.c_attn.weight": r(d, 3 * d), h + "attn.c_attn.bias": r(3 * d),
                      h + "attn.c_proj.weight": r(d, d), h + "attn.c_proj.bias": r(d), h + "mlp.c_fc.weight": r(d, 4 * d),
                      h + "mlp.c_fc.bias": r(4 * d), h + "mlp.c_proj.weight": r(4 * d, d), h + "mlp.c_proj.bias": r(d)})
        return t
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hd
    t = {"model.embed_tokens.weight": r(c["vocab_size"], d), "model.norm.weight": torch.ones(d),
         "lm_head.weight": r(c["vocab_size"], d)}
    for i in range(c["num_hidden_layers"]):
        h = f"model.layers.{i}."
        t.update({h + "input_layernorm.weight": torch.ones(d), h + "post_attention_layernorm.weight": torch.ones(d),
                  h + "self_attn.q_proj.weight": r(d, d), h + "self_attn.k_proj.weight": r(kv, d),
                  h + "self_attn.v_proj.weight": r(kv, d), h + "self_attn.o_proj.weight": r(d, d),
                  h + "mlp.gate_proj.weight": r(f, d), h + "mlp.up_proj.weight": r(f, d), h + "mlp.down_proj.weight": r(d, f)})
    return t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shape", choices=SHAPES)
    parser.add_argument("out")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    args = parser.parse_args()
    config = {**SHAPES[args.shape], "bos_token_id": 8191, "eos_token_id": 8191, "torch_dtype": args.dtype}
    weights = {k: v.to(getattr(torch, args.dtype)) for k, v in tensors(config, torch.Generator().manual_seed(0)).items()}
    os.makedirs(args.out)
    safetensors.save(os.path.join(args.out, "model.safetensors"), weights, {"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(TOKENIZER, os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f)
    print(json.dumps({"out": args.out, "parameters": sum(v.numel() for v in weights.values()),
                      "bytes": os.path.getsize(os.path.join(args.out, "model.safetensors"))}))


if __name__ == "__main__":
    main()
