"""Command line: pretrain | convert | evaluate | export | import | export-hf | gguf | quantize.

  python3 -m t2r pretrain --data data/sotu --run runs/base --steps 3000 --out models/sotu-base
  python3 -m t2r convert --teacher models/sotu-base --data data/sotu --run runs/t2r --steps 1500 \
      --out models/sotu-t2r --name sotu-t2r
  python3 -m t2r evaluate --checkpoint models/sotu-t2r/checkpoint.safetensors --data data/sotu
  python3 -m t2r export --checkpoint X.safetensors --out model.onnx [--decode-out decode.onnx] [--parity-out parity.json]
  python3 -m t2r import --hf hf/Llama-3.2-1B --out models/llama-1b
  python3 -m t2r export-hf --model models/sotu-base --out hf/sotu-base
  python3 -m t2r gguf --model models/sotu-base --out sotu-base.gguf [--dtype q8_0]
  python3 -m t2r quantize models/sotu-t2r --bits 8      # -> models/sotu-t2r-q8 (docs/design.md §7.6)

Progress is JSON lines on stdout; errors are one line on stderr and a non-zero exit.
pretrain and convert take --processes N: N ranks under torch.distributed.run (t2r/distributed.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from . import gguf, quantize
from .checkpoint import load_model, save_model
from .contract import RECIPE
from .data import DataError, load_meta, load_split, window_starts
from .distributed import relaunch, under_launcher
from .evaluation import EvalCost, evaluate, teacher_evaluation
from .export import export_onnx, seeded_ids, write_reference
from .folder import check_out, model_fields, tokenizer_files
from .folder import write as write_folder
from .hf_export import export_hf
from .hf_import import import_hf
from .model import ModelConfig, Transformer, swap_attention
from .safetensors import CheckpointError
from .train import RANKS, TrainSpec, emit, train

PARITY_TOKENS = 12


class UsageError(Exception):
    pass


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    parse.__name__ = f"positive_{kind.__name__}"  # contract/trainer-args.json's name for the type
    return parse


def _fractions(text):
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


# Pretraining's own defaults; `convert` takes its defaults from contract/recipe.json.
PRETRAIN_DEFAULTS = {"steps": None, "batch": 16, "seq": 256, "lr": 2e-3, "warmup": 100, "seed": 0}
CONVERT_DEFAULTS = {"steps": RECIPE["steps"], "batch": RECIPE["batch_size"], "seq": RECIPE["sequence_length"],
                    "lr": RECIPE["learning_rate"], "warmup": RECIPE["warmup"], "seed": RECIPE["seed"]}


def _common(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--data", required=True, help="folder with train/validation/test .bin and meta.json")
    p.add_argument("--train-split", default="train", help="token-id file to train on (default: train)")
    p.add_argument("--run", required=True, help="run folder: checkpoints and progress; resumes if present")
    p.add_argument("--steps", type=_positive(int), required=defaults["steps"] is None, default=defaults["steps"])
    p.add_argument("--batch", type=_positive(int), default=defaults["batch"])
    p.add_argument("--seq", type=_positive(int), default=defaults["seq"])
    p.add_argument("--lr", type=_positive(float), default=defaults["lr"])
    p.add_argument("--warmup", type=int, default=defaults["warmup"])
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--threads", type=_positive(int), default=None, help="CPU threads (per process)")
    p.add_argument("--processes", type=_positive(int), default=1,
                   help="training processes (DistributedDataParallel under torch.distributed.run); "
                        "the global --batch is split evenly between them")
    p.add_argument("--checkpoint-every", type=_positive(int), default=100)
    p.add_argument("--log-every", type=_positive(int), default=10)
    p.add_argument("--eval-at", type=_fractions, default=[],
                   help="evaluate held-out perplexity after these fractions of --steps (e.g. 0.2,0.5,1)")
    p.add_argument("--eval-split", choices=["validation", "test"], default="test",
                   help="split scored at --eval-at points (the finished model is always scored on test)")
    p.add_argument("--eval-sample", type=_positive(int), default=None,
                   help="score only this many windows, spread over the split, at --eval-at points")
    p.add_argument("--eval-windows", type=_positive(int), default=None,
                   help="limit every evaluation to the split's first windows (tests)")
    p.add_argument("--out", help="write a finished model folder here (never over an existing one)")
    p.add_argument("--name", help="model name for the manifest (default: the --out folder name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2r", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a softmax teacher from scratch")
    _common(p, PRETRAIN_DEFAULTS)
    p.add_argument("--dim", type=_positive(int), default=256)
    p.add_argument("--layers", type=_positive(int), default=4)
    p.add_argument("--heads", type=_positive(int), default=4)
    p.add_argument("--ffn-dim", type=_positive(int), default=688)

    # Every flag here is listed in contract/trainer-args.json, which the server builds argv from.
    p = sub.add_parser("convert", help="swap a teacher's attention for T2R (or ELU+1) and finetune")
    _common(p, CONVERT_DEFAULTS)
    p.add_argument("--teacher", required=True, help="teacher model folder (with checkpoint.safetensors)")
    p.add_argument("--attention", choices=["t2r", "elu"], default="t2r")
    p.add_argument("--init", choices=["swap", "scratch"], default="swap",
                   help="swap: keep the teacher's weights (the paper); scratch: random init (baseline)")
    p.add_argument("--feature-dim", type=_positive(int), default=RECIPE["feature_dim"])
    p.add_argument("--transfer-steps", type=int, default=RECIPE["transfer_steps"],
                   help="attention-transfer steps (train phi to match softmax outputs) before finetuning")
    p.add_argument("--attention-only", action="store_true", default=RECIPE["attention_only"],
                   help="finetune attention weights only")
    p.add_argument("--distill-weight", type=float, default=0.0,
                   help="mix KL to the teacher's next-token distribution into the finetuning loss (0..1)")
    p.add_argument("--eval-cache", default=None,
                   help="folder caching the teacher's test perplexity per teacher checkpoint and test tokens")

    p = sub.add_parser("evaluate", help="held-out perplexity of checkpoints on one split")
    p.add_argument("--checkpoint", required=True, action="append")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=["train", "validation", "test"], default="test")
    p.add_argument("--seq", type=_positive(int), default=256)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (docs/design.md §7)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="the step graph (model.onnx)")
    p.add_argument("--decode-out", help="also its one-token-per-row form (decode.onnx)")
    p.add_argument("--parity-out", help=f"also a parity reference (parity.json) on {PARITY_TOKENS} seeded token ids")

    p = sub.add_parser("import", help="a Hugging Face checkpoint folder as a model folder (docs/design.md §7.5)")
    p.add_argument("--hf", required=True, help="folder with config.json, safetensors weights, tokenizer.json")
    p.add_argument("--out", required=True, help="model folder to write (never over an existing one)")
    p.add_argument("--name", help="model name for the manifest (default: the --out folder name)")
    p.add_argument("--threads", type=_positive(int), default=None)

    p = sub.add_parser("export-hf", help="a softmax model folder as a Hugging Face checkpoint folder")
    p.add_argument("--model", required=True, help="model folder (with checkpoint.safetensors)")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--shard-bytes", type=_positive(int), default=None, help="split the weights into shards of at most this size")

    p = sub.add_parser("gguf", help="a GGUF v3 file for llama.cpp from a model folder or a Hugging Face checkpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="softmax model folder of ours")
    source.add_argument("--hf", help="Hugging Face checkpoint folder")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=list(gguf.FILE_TYPES), default="f32")

    p = sub.add_parser("quantize", help="8- or 4-bit weight-only copy of an ONNX export (docs/design.md §7.6)")
    p.add_argument("path", help="model folder (-> a derived folder NAME-qBITS) or one .onnx file (-> X.qBITS.onnx)")
    p.add_argument("--bits", type=int, required=True, help="4 or 8")
    p.add_argument("--block-size", type=int, default=128, help="weights per scale along K (a power of 2, >= 16)")
    p.add_argument("--accuracy-level", type=int, default=4,
                   help="MatMulNBits arithmetic: 4 int8 (fastest on CPU), 1 float32")
    p.add_argument("--out", help="where to write (default: beside the source, named as above)")
    return parser


def _load_ids(args):
    """-> (meta, training ids, test ids, ids scored at --eval-at points or None)."""
    meta = load_meta(args.data)
    ids = load_split(args.data, args.train_split)
    if len(ids) < args.batch * args.seq + 1:
        raise UsageError(f"corpus too small: {args.train_split} has {len(ids)} tokens, one batch of "
                         f"{args.batch}x{args.seq} needs {args.batch * args.seq + 1}")
    test_ids = load_split(args.data, "test")
    eval_ids = None
    if args.eval_at:
        eval_ids = test_ids if args.eval_split == "test" else load_split(args.data, args.eval_split)
    return meta, ids, test_ids, eval_ids


def _final_windows(args, test_ids) -> int:
    """Windows the finished model is scored on (none without --out)."""
    return len(window_starts(test_ids, args.seq, args.eval_windows)) if args.out else 0


def _spec(args, test_ids, cost: EvalCost, transfer_steps=0, attention_only=False, distill_weight=0.0) -> TrainSpec:
    return TrainSpec(steps=args.steps, batch=args.batch, seq=args.seq, lr=args.lr, seed=args.seed,
                     warmup=min(args.warmup, args.steps), transfer_steps=transfer_steps,
                     attention_only=attention_only, checkpoint_every=args.checkpoint_every,
                     log_every=args.log_every, eval_at=sorted({max(1, round(f * args.steps)) for f in args.eval_at}),
                     eval_split=args.eval_split, eval_windows=args.eval_windows, eval_sample=args.eval_sample,
                     after_windows=_final_windows(args, test_ids), eval_cost=cost, distill_weight=distill_weight)


def _check_out(args) -> None:
    if args.out:
        check_out(args.out)


DEFAULT_GENERATION = {"max_new_tokens": 128, "temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.1}
# Teacher manifest fields a conversion keeps: the special tokens of an imported teacher.
INHERITED = ("eos_token_ids", "bos_token_id", "add_bos_token")


def _package(model: Transformer, args, meta: dict, test_ids, tokenizer: dict[str, str], training: dict, extra: dict) -> None:
    """Evaluate on the test split, then write the model folder (folder.write: atomic)."""
    name = args.name or os.path.basename(os.path.normpath(args.out))
    final = evaluate(model, test_ids, args.seq, args.eval_windows)
    emit("eval", final=True, split="test", **final.fields())
    manifest = {
        "name": name, **model_fields(model), "eos_token_id": meta["eos_token_id"],
        "training": training,
        "metrics": {"test_perplexity": round(final.perplexity, 4), "test_tokens": final.tokens,
                    "eval_window": args.seq, **extra.pop("metrics", {})},
        "generation_defaults": DEFAULT_GENERATION,
        **extra,
    }
    write_folder(args.out, model, manifest, [int(t) for t in test_ids[:PARITY_TOKENS]], tokenizer)
    emit("packaged", out=args.out, name=name)


def _run_info(args, keys) -> dict:
    return {k: getattr(args, k) for k in keys}


def cmd_pretrain(args) -> None:
    _check_out(args)
    meta, ids, test_ids, eval_ids = _load_ids(args)
    cfg = ModelConfig(vocab_size=meta["vocab_size"], dim=args.dim, layers=args.layers, heads=args.heads,
                      ffn_dim=args.ffn_dim, max_positions=args.seq, attention="softmax").validate()
    torch.manual_seed(args.seed)
    model = Transformer(cfg)
    emit("start", command="pretrain", parameters=model.num_parameters(), config=cfg.to_dict())
    os.makedirs(args.run, exist_ok=True)
    info = _run_info(args, ["steps", "batch", "seq", "lr", "seed", "dim", "layers", "heads", "ffn_dim", "train_split"])
    model, seconds = train(model, ids, eval_ids, _spec(args, test_ids, EvalCost()), args.run, info)
    if not RANKS.main:
        return
    save_model(os.path.join(args.run, "final.safetensors"), model)
    if args.out:
        training = {"kind": "pretrain", "steps": args.steps, "tokens": args.steps * args.batch * args.seq,
                    "seconds": round(seconds, 1), "batch": args.batch, "seq": args.seq, "lr": args.lr,
                    "corpus": f"sotu:{args.train_split}", "seed": args.seed}
        _package(model, args, meta, test_ids, {"tokenizer.json": os.path.join(args.data, "tokenizer.json")}, training,
                 {"teacher": None})


def cmd_convert(args) -> None:
    _check_out(args)
    if args.transfer_steps < 0:
        raise UsageError("--transfer-steps must be >= 0")
    if not 0.0 <= args.distill_weight <= 1.0:
        raise UsageError("--distill-weight must be between 0 and 1")
    if args.transfer_steps and not (args.attention == "t2r" and args.init == "swap"):
        raise UsageError("--transfer-steps needs --attention t2r --init swap (it trains phi against the teacher)")
    teacher_path = os.path.join(args.teacher, "checkpoint.safetensors")
    teacher = load_model(teacher_path)
    if teacher.cfg.attention != "softmax":
        raise UsageError(f"{args.teacher} is a {teacher.cfg.attention} model; conversion needs a softmax teacher")
    meta, ids, test_ids, eval_ids = _load_ids(args)
    if meta["vocab_size"] != teacher.cfg.vocab_size:
        raise UsageError(f"shape mismatch: data vocabulary {meta['vocab_size']} != teacher's {teacher.cfg.vocab_size}")
    if args.init == "swap":
        model = swap_attention(teacher, args.attention, args.feature_dim, args.seed)
    else:
        cfg = ModelConfig.from_dict({**teacher.cfg.to_dict(), "attention": args.attention, "feature_dim": args.feature_dim})
        torch.manual_seed(args.seed)
        model = Transformer(cfg)
    emit("start", command="convert", parameters=model.num_parameters(), config=model.cfg.to_dict())
    os.makedirs(args.run, exist_ok=True)
    info = _run_info(args, ["teacher", "attention", "init", "feature_dim", "transfer_steps", "attention_only",
                            "steps", "batch", "seq", "lr", "seed", "train_split"])
    if args.distill_weight:
        info["distill_weight"] = args.distill_weight
    teacher.eval()
    cost = EvalCost()
    extra = {}
    if args.out and RANKS.main:
        # The teacher's figure first: it is the bar the student is measured against, and its cost
        # (measured now, or remembered by the cache) makes the training ETA include evaluation.
        with open(os.path.join(args.teacher, "model.json")) as f:
            teacher_manifest = json.load(f)
        teacher_eval, cached = teacher_evaluation(teacher, teacher_path, test_ids, args.seq, args.eval_windows,
                                                  args.eval_cache)
        cost.observe(teacher_eval)
        emit("eval", model="teacher", split="test", **teacher_eval.fields(), cached=cached)
        pre = teacher_manifest.get("training", {})
        extra = {"teacher": teacher_manifest.get("name", os.path.basename(args.teacher)),
                 "metrics": {"teacher_test_perplexity": round(teacher_eval.perplexity, 4)},
                 **{k: teacher_manifest[k] for k in INHERITED if k in teacher_manifest},
                 **({"generation_defaults": teacher_manifest["generation_defaults"]} if "generation_defaults" in teacher_manifest else {})}
    spec = _spec(args, test_ids, cost, args.transfer_steps, args.attention_only, args.distill_weight)
    model, seconds = train(model, ids, eval_ids, spec, args.run, info, teacher=teacher if args.distill_weight else None)
    if not RANKS.main:
        return
    save_model(os.path.join(args.run, "final.safetensors"), model)
    if args.out:
        training = {"kind": "convert", "method": f"{args.attention}-{args.init}", "steps": args.steps,
                    "transfer_steps": args.transfer_steps, "attention_only": args.attention_only,
                    "distill_weight": args.distill_weight,
                    "tokens": (args.steps + args.transfer_steps) * args.batch * args.seq, "seconds": round(seconds, 1),
                    "batch": args.batch, "seq": args.seq, "lr": args.lr, "corpus": f"sotu:{args.train_split}",
                    "seed": args.seed,
                    "fraction_of_pretraining_steps": round((args.steps + args.transfer_steps) / pre["steps"], 4) if pre.get("steps") else None}
        _package(model, args, meta, test_ids, tokenizer_files(args.teacher), training, extra)


def cmd_evaluate(args) -> None:
    ids = load_split(args.data, args.split)
    for path in args.checkpoint:
        emit("eval", checkpoint=path, split=args.split, **evaluate(load_model(path), ids, args.seq).fields())


def cmd_export(args) -> None:
    model = load_model(args.checkpoint)
    export_onnx(model, args.out)
    if args.decode_out:
        export_onnx(model, args.decode_out, decode=True)
    if args.parity_out:
        write_reference(model, seeded_ids(model.cfg.vocab_size, PARITY_TOKENS), args.parity_out)
    emit("exported", out=args.out, decode_out=args.decode_out, parity_out=args.parity_out)


def cmd_import(args) -> None:
    t0 = time.time()
    manifest = import_hf(args.hf, args.out, args.name)
    emit("imported", out=args.out, name=manifest["name"], architecture=manifest["source"]["architecture"],
         seconds=round(time.time() - t0, 2))


def cmd_export_hf(args) -> None:
    export_hf(args.model, args.out, args.dtype, args.shard_bytes)
    emit("exported", out=args.out)


def cmd_gguf(args) -> None:
    if args.model:
        gguf.from_model_folder(args.model, args.out, args.dtype)
    else:
        gguf.from_hf_folder(args.hf, args.out, args.dtype)
    emit("exported", out=args.out)


def cmd_quantize(args) -> None:
    emit("quantized", out=quantize.run(args.path, args.bits, args.block_size, args.accuracy_level, args.out), bits=args.bits,
         block_size=args.block_size)


COMMANDS = {"pretrain": cmd_pretrain, "convert": cmd_convert, "evaluate": cmd_evaluate, "export": cmd_export,
            "import": cmd_import, "export-hf": cmd_export_hf, "gguf": cmd_gguf, "quantize": cmd_quantize}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "processes", 1) > 1 and not under_launcher():
        if args.batch % args.processes:
            print(f"t2r {args.command}: error: --batch {args.batch} does not split evenly over --processes "
                  f"{args.processes}", file=sys.stderr)
            return 1
        return relaunch(argv, args.processes, args.threads)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        COMMANDS[args.command](args)
    except (UsageError, DataError, CheckpointError, ValueError) as e:
        print(f"t2r {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"t2r {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        RANKS.close()
    return 0
