"""Benchmark models at realistic sizes, with random weights (minutes, no training): for each shape
a softmax teacher imported from a random Hugging Face checkpoint (`t2r import`'s path), its T2R
conversion with a random feature map (the swap alone, no finetuning: speed does not depend on the
weights' values) and the teacher's GGUF for llama.cpp (`t2r gguf --hf`, from the same checkpoint).

    python3 trainer/experiments/bench_models.py llama-125m bench/.models/llama-125m [--threads 2]

writes OUT/models/<shape>-base, OUT/models/<shape>-t2r (model folders) and OUT/<shape>-base.f32.gguf,
then deletes the intermediate Hugging Face checkpoint. Shapes are hf_sized_checkpoint.py's: real
vocabulary sizes (GPT-2 50,257; Llama 32,000) with the shipped 8,192-token tokenizer, so ids past
8,191 are embedding rows no text maps to, which costs what they cost in the real model (the output
projection and softmax over the whole vocabulary). `npm run bench -- --size <shape>` calls this when
the folder is missing. Prints one JSON line per finished file."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from hf_sized_checkpoint import SHAPES  # noqa: E402
from t2r import gguf  # noqa: E402
from t2r.checkpoint import load_model  # noqa: E402
from t2r.contract import RECIPE  # noqa: E402
from t2r.folder import model_fields, tokenizer_files, write  # noqa: E402
from t2r.hf_import import import_hf  # noqa: E402
from t2r.model import swap_attention  # noqa: E402

PARITY_TOKENS = 12


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def t2r_folder(base_dir: str, out: str, feature_dim: int) -> None:
    """The teacher with its attention swapped for T2R (random phi, seed 0), as a model folder."""
    with open(os.path.join(base_dir, "model.json")) as f:
        teacher_manifest = json.load(f)
    model = swap_attention(load_model(os.path.join(base_dir, "checkpoint.safetensors")), "t2r", feature_dim, 0).eval()
    inherited = {k: teacher_manifest[k] for k in ("eos_token_ids", "bos_token_id", "add_bos_token", "generation_defaults")
                 if k in teacher_manifest}
    manifest = {"name": os.path.basename(out), **model_fields(model), "eos_token_id": teacher_manifest["eos_token_id"],
                **inherited, "teacher": teacher_manifest["name"]}
    ids = torch.randint(0, model.cfg.vocab_size, (PARITY_TOKENS,), generator=torch.Generator().manual_seed(0)).tolist()
    write(out, model, manifest, ids, tokenizer_files(base_dir))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shape", choices=SHAPES)
    parser.add_argument("out", help="folder to fill (files already there are kept)")
    parser.add_argument("--feature-dim", type=int, default=RECIPE["feature_dim"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = os.path.join(args.out, "models")
    base, t2r = os.path.join(models, f"{args.shape}-base"), os.path.join(models, f"{args.shape}-t2r")
    gguf_path = os.path.join(args.out, f"{args.shape}-base.f32.gguf")
    hf = os.path.join(args.out, f"hf-{args.shape}.partial-{os.getpid()}")
    os.makedirs(models, exist_ok=True)
    try:
        if not (os.path.isdir(base) and os.path.isfile(gguf_path)):
            t0 = time.time()
            subprocess.run([sys.executable, os.path.join(HERE, "hf_sized_checkpoint.py"), args.shape, hf],
                           check=True, stdout=subprocess.DEVNULL)
            if not os.path.isdir(base):
                import_hf(hf, base)
                emit(written=base, seconds=round(time.time() - t0, 1))
            if not os.path.isfile(gguf_path):
                t0 = time.time()
                gguf.from_hf_folder(hf, gguf_path, "f32")
                emit(written=gguf_path, seconds=round(time.time() - t0, 1))
        if not os.path.isdir(t2r):
            t0 = time.time()
            t2r_folder(base, t2r, args.feature_dim)
            emit(written=t2r, seconds=round(time.time() - t0, 1))
    finally:
        shutil.rmtree(hf, ignore_errors=True)


if __name__ == "__main__":
    main()
