"""The training loop shared by pretraining and swap-then-finetune.

Progress goes to stdout as one JSON object per line (the server's job runner reads it), each one
an event of contract/trainer-events.schema.json: start, resume, step, eval, checkpoint, packaged.
A step's `eta_s` counts the evaluations still to come (EvalCost), not just the training steps.
The run folder holds state.safetensors (weights + optimizer + step), written atomically every
`checkpoint_every` steps, so a killed run resumes where it was and continues to the same loss.
Under several processes (distributed.py) each rank trains on its slice of the same global batch and
only rank 0 emits events and writes files.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_run_state, save_run_state
from .data import BatchSampler, window_starts
from .distributed import Ranks
from .evaluation import EvalCost, evaluate
from .model import Transformer


def emit(event: str, **fields) -> None:
    if not RANKS.main:
        return
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


RANKS = Ranks()


@dataclass
class TrainSpec:
    steps: int
    batch: int
    seq: int
    lr: float
    seed: int
    warmup: int = 100
    weight_decay: float = 0.1
    transfer_steps: int = 0          # attention transfer before finetuning (t2r only)
    transfer_lr: float = 1e-2
    attention_only: bool = False
    checkpoint_every: int = 100
    log_every: int = 10
    eval_at: list[int] = field(default_factory=list)
    eval_split: str = "test"         # the split eval_ids come from (reported in eval events)
    eval_windows: int | None = None  # limit eval to the first N windows (tests)
    eval_sample: int | None = None   # score N windows spread over the split at eval_at points
    after_windows: int = 0           # windows the caller evaluates after training (counted in ETAs)
    eval_cost: EvalCost = field(default_factory=EvalCost)
    distill_weight: float = 0.0      # finetune loss = (1-w) CE + w KL(teacher || student)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _phase(step: int, spec: TrainSpec) -> str:
    return "transfer" if step < spec.transfer_steps else "finetune"


def _params(model: Transformer, phase: str, spec: TrainSpec):
    if phase == "transfer":
        return [p for n, p in model.named_parameters() if ".feature_map." in n]
    if spec.attention_only:
        return [p for n, p in model.named_parameters() if ".attn." in n]
    return list(model.parameters())


def _optimizer(model: Transformer, phase: str, spec: TrainSpec) -> torch.optim.Optimizer:
    params = _params(model, phase, spec)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    lr = spec.transfer_lr if phase == "transfer" else spec.lr
    return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def _replicated(model: Transformer) -> torch.nn.Module:
    """What the training step calls: the model itself, or under several processes a DDP wrapper
    made after the phase chose its trainable parameters (DDP registers them at construction)."""
    if RANKS.world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[RANKS.device] if RANKS.device.type == "cuda" else None)


def train(model: Transformer, train_ids: np.ndarray, eval_ids: np.ndarray | None, spec: TrainSpec,
          run_dir: str, run_info: dict, teacher: Transformer | None = None) -> tuple[Transformer, float]:
    """Train `model` (or the run's saved state, if the run folder has one); -> (model, train seconds)."""
    if spec.batch % RANKS.world:
        raise ValueError(f"--batch {spec.batch} does not split evenly over {RANKS.world} processes")
    resumed = load_run_state(run_dir)
    start, seconds = 0, 0.0
    if resumed is not None:
        model, opt_state, info = resumed
        if info.get("run") != run_info:
            raise ValueError(f"{run_dir} holds a different run ({info.get('run')}); use a new --run folder")
        start, seconds = info["step"], info.get("seconds", 0.0)
        emit("resume", step=start)
    total = spec.transfer_steps + spec.steps
    phase = _phase(start, spec)
    model.to(RANKS.device)
    if teacher is not None:
        teacher.to(RANKS.device)
    optimizer = _optimizer(model, phase, spec)
    if resumed is not None and _phase(start - 1, spec) == phase:
        # A checkpoint taken on the last transfer step holds the transfer optimizer; an uninterrupted
        # run starts finetuning with a fresh one, so a resume at that boundary does too.
        optimizer.load_state_dict(opt_state)
    step_model = _replicated(model)
    rows = RANKS.rows(spec.batch)
    sampler = BatchSampler(train_ids, spec.batch, spec.seq, spec.seed)
    model.train()
    model.set_transfer(phase == "transfer")
    t_last, tokens_since = time.time(), 0
    step_times: list[float] = []
    windows_per_eval, split_windows = 0, 0
    if eval_ids is not None:
        windows_per_eval = len(window_starts(eval_ids, spec.seq, spec.eval_windows, spec.eval_sample))
        split_windows = (len(eval_ids) - 1) // spec.seq
    for step in range(start, total):
        if _phase(step, spec) != phase:
            phase = "finetune"
            model.set_transfer(False)
            optimizer = _optimizer(model, phase, spec)
            step_model = _replicated(model)
        t0 = time.time()
        if phase == "transfer":
            lr = lr_at(step, spec.transfer_steps, spec.transfer_lr, min(spec.warmup, spec.transfer_steps))
        else:
            lr = lr_at(step - spec.transfer_steps, spec.steps, spec.lr, spec.warmup)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = sampler.get(step)
        tokens_since += x.numel()
        x, y = x[rows].to(RANKS.device), y[rows].to(RANKS.device)
        logits, _ = step_model(x)
        if phase == "transfer":
            loss = model.transfer_loss()
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            if spec.distill_weight > 0 and teacher is not None:
                with torch.no_grad():
                    target = F.log_softmax(teacher(x)[0], dim=-1)
                kl = F.kl_div(F.log_softmax(logits, dim=-1), target, log_target=True, reduction="none").sum(-1).mean()
                loss = (1 - spec.distill_weight) * loss + spec.distill_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        step_times.append(time.time() - t0)
        seconds += step_times[-1]
        done = step + 1
        if done % spec.log_every == 0 or done == total:
            now = time.time()
            recent = step_times[-50:]
            step_s = sum(recent) / len(recent)
            evals_left = sum(1 for s in spec.eval_at if s + spec.transfer_steps >= done) if eval_ids is not None else 0
            eval_s = spec.eval_cost.seconds(evals_left * windows_per_eval + spec.after_windows, step_s, spec.batch)
            emit("step", step=done, steps=total, phase=phase, loss=round(RANKS.mean(loss).item(), 5), lr=lr,
                 tokens_per_s=round(tokens_since / max(now - t_last, 1e-9), 1),
                 eta_s=round((total - done) * step_s + eval_s, 1))
            t_last, tokens_since = now, 0
        if RANKS.main and eval_ids is not None and (done - spec.transfer_steps) in spec.eval_at and phase == "finetune":
            ev = evaluate(model, eval_ids, spec.seq, spec.eval_windows, spec.eval_sample)
            spec.eval_cost.observe(ev)
            record = {"step": done, "finetune_step": done - spec.transfer_steps, "split": spec.eval_split,
                      "sample": ev.windows < split_windows, **ev.fields(), "train_seconds": round(seconds, 1)}
            emit("eval", **record)
            with open(os.path.join(run_dir, "evals.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        if RANKS.main and (done % spec.checkpoint_every == 0 or done == total):
            save_run_state(run_dir, model, optimizer, {"step": done, "run": run_info, "seconds": seconds})
            emit("checkpoint", step=done)
    model.set_transfer(False)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.cpu(), seconds
