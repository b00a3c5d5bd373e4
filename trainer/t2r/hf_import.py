"""`python3 -m t2r import --hf DIR --out MODELS_DIR/NAME`: a Hugging Face checkpoint folder
(config.json, model.safetensors or shards + model.safetensors.index.json, tokenizer.json,
tokenizer_config.json, optional generation_config.json) becomes a softmax model folder of ours:
checkpoint, ONNX graph, parity reference, model.json, and the tokenizer files as they were
(docs/design.md §7.5). Everything is checked before a byte is written; the folder appears whole
(folder.write) or not at all."""
from __future__ import annotations

import os

import torch

from . import hf_weights
from .export import seeded_ids
from .folder import TOKENIZER_EXTRAS, check_out, model_fields, write
from .hf_config import GPT2, HFConfigError, from_hf
from .hf_files import path_in, read_json
from .hf_tokens import GENERATION_CONFIG, TOKENIZER, TOKENIZER_CONFIG, HFTokenizerError, read_vocabulary, special_tokens
from .model import Transformer

PARITY_TOKENS = 12
# Hugging Face's generate() defaults, for generation_config.json fields it leaves out.
HF_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}


def generation_defaults(generation: dict | None) -> dict:
    """model.json's sampling defaults: what generate() would do with generation_config.json
    (greedy unless it sets do_sample)."""
    g = generation or {}
    out = {"max_new_tokens": 128}
    if g.get("do_sample") is not True:
        return {**out, "temperature": 0.0}
    for key, default in HF_SAMPLING.items():
        value = g.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "top_p":
            ok = ok and 0 < value <= 1
        elif key == "top_k":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif key == "repetition_penalty":
            ok = ok and value > 0
        else:
            ok = ok and value >= 0
        if not ok:
            raise HFConfigError(f"{GENERATION_CONFIG}: {key} {value!r} is out of range")
        out[key] = value
    return out


def read_checkpoint(hf_dir: str):
    """Reads and checks everything the import needs, data last. -> (imported config, model with the
    checkpoint's weights, weight dtype, special tokens, generation_config.json or None)."""
    if not os.path.isdir(hf_dir):
        raise HFConfigError(f"--hf {hf_dir} is not a folder")
    config = read_json(hf_dir, "config.json", required=True, error=HFConfigError)
    imported = from_hf(config)
    cfg = imported.config
    tensors = hf_weights.locate(hf_dir)
    # GPT2LMHeadModel saves its body under "transformer."; GPT2Model (no head) without a prefix.
    bare = imported.architecture == GPT2 and "wte.weight" in tensors and "transformer.wte.weight" not in tensors
    prefix = "" if bare else "transformer."
    maps = hf_weights.layout(cfg, imported.architecture, prefix)
    model = Transformer(cfg).eval()
    dtype = hf_weights.check(tensors, maps, cfg, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    vocab = read_vocabulary(hf_dir)
    if vocab.size > cfg.vocab_size:
        raise HFConfigError(f"{TOKENIZER} has ids up to {vocab.size - 1}, beyond config.json vocab_size {cfg.vocab_size}")
    generation = read_json(hf_dir, GENERATION_CONFIG, required=False, error=HFTokenizerError)
    tokenizer_config = read_json(hf_dir, TOKENIZER_CONFIG, required=False, error=HFTokenizerError)
    special = special_tokens(config, generation, tokenizer_config, vocab)
    with torch.no_grad():
        hf_weights.load_into(model, tensors, maps)
    return imported, model, dtype, special, generation


def import_hf(hf_dir: str, out: str, name: str | None = None) -> dict:
    """Writes the model folder `out`; -> its manifest."""
    check_out(out)
    imported, model, dtype, special, generation = read_checkpoint(hf_dir)
    name = name or os.path.basename(os.path.normpath(out))
    manifest = {
        "name": name, **model_fields(model),
        "eos_token_id": special.eos_ids[0], "eos_token_ids": special.eos_ids, "bos_token_id": special.bos_id,
        **({"add_bos_token": special.add_bos} if special.add_bos is not None else {}),
        **({"sliding_window": imported.sliding_window} if imported.sliding_window else {}),
        "teacher": None,
        "source": {"format": "huggingface", "architecture": imported.architecture, "dtype": dtype},
        "generation_defaults": generation_defaults(generation),
    }
    ids = seeded_ids(model.cfg.vocab_size, PARITY_TOKENS)
    copies = {n: path_in(hf_dir, n, n, HFTokenizerError) for n in (TOKENIZER,) + TOKENIZER_EXTRAS
              if os.path.lexists(os.path.join(hf_dir, n))}
    write(out, model, manifest, ids, copies)
    return manifest
