"""A Llama-style decoder (RMSNorm, RoPE, SwiGLU, tied embeddings) whose attention is one of:

- ``softmax``: the teacher; causal softmax attention with a KV cache for decoding.
- ``t2r``: Kasai et al. 2021. phi(x) = relu(W x + b), one (W, b) per head and layer, shared by
  queries and keys, applied after RoPE. Recurrent state S = sum phi(k) v^T, z = sum phi(k);
  out = phi(q)^T S / max(phi(q)^T z, EPS).
- ``elu``: Katharopoulos et al. 2020, phi(x) = elu(x) + 1, same recurrence (baseline).

Linear attention runs in a parallel form for training (a causal mask over phi(Q) phi(K)^T) and
takes an optional incoming state, so one graph serves prefill (many tokens) and decode (one).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# The normaliser's clamp. One constant used in training, export and decode (docs/design.md §7).
EPS = 1e-6
ATTENTIONS = ("softmax", "t2r", "elu")


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    dim: int = 256
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 688
    max_positions: int = 256
    rope_base: float = 10000.0
    attention: str = "softmax"
    feature_dim: int = 32

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def validate(self) -> "ModelConfig":
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.dim % self.heads or self.head_dim % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of even size")
        for name in ("vocab_size", "dim", "layers", "heads", "ffn_dim", "max_positions", "feature_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        return self

    def state_feature_dim(self) -> int:
        return self.head_dim if self.attention == "elu" else self.feature_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d).validate()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_angles(positions: torch.Tensor, head_dim: int, base: float):
    """cos/sin of shape [batch, 1, seq, head_dim/2] for integer positions [batch, seq]."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32).unsqueeze(-1) * inv
    return torch.cos(angles).unsqueeze(1), torch.sin(angles).unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class FeatureMap(nn.Module):
    """T2R's learned feature map, one (W, b) per head: relu(W x + b)."""

    def __init__(self, heads: int, head_dim: int, feature_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(heads, feature_dim, head_dim) / math.sqrt(head_dim))
        self.bias = nn.Parameter(torch.zeros(heads, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, T, D] -> [B, H, T, K]
        return F.relu(torch.einsum("bhtd,hkd->bhtk", x, self.weight) + self.bias[None, :, None, :])


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """True where query i (the last q_len of k_len positions) may see key j."""
    q_pos = torch.arange(q_len, device=device).unsqueeze(1) + (k_len - q_len)
    return torch.arange(k_len, device=device).unsqueeze(0) <= q_pos


def linear_attention(fq, fk, v, state_kv=None, state_k=None):
    """Causal linear attention in parallel form, continuing from an optional state.

    fq, fk: [B, H, T, K] features; v: [B, H, T, D]; state_kv: [B, H, K, D]; state_k: [B, H, K].
    Returns (out [B, H, T, D], new state_kv, new state_k).
    """
    T = fq.shape[2]
    scores = fq @ fk.transpose(-1, -2)
    scores = scores * causal_mask(T, T, fq.device).to(scores.dtype)
    num = scores @ v
    den = scores.sum(-1)
    if state_kv is not None:
        num = num + fq @ state_kv
        den = den + (fq @ state_k.unsqueeze(-1)).squeeze(-1)
    out = num / torch.clamp(den, min=EPS).unsqueeze(-1)
    new_kv = fk.transpose(-1, -2) @ v
    new_k = fk.sum(2)
    if state_kv is not None:
        new_kv = new_kv + state_kv
        new_k = new_k + state_k
    return out, new_kv, new_k


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.kind = cfg.attention
        self.feature_map = FeatureMap(cfg.heads, cfg.head_dim, cfg.feature_dim) if self.kind == "t2r" else None
        # Attention transfer (LoLCATs): when set, the layer also computes softmax attention, adds the
        # MSE between the two outputs here, and passes the softmax output on.
        self.transfer_loss: Optional[torch.Tensor] = None
        self.transfer = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "elu":
            return F.elu(x) + 1.0
        return self.feature_map(x)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_dim).transpose(1, 2)

    def softmax_attention(self, q, k, v):
        T, S = q.shape[2], k.shape[2]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~causal_mask(T, S, q.device), float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def forward(self, x, cos, sin, cache=None):
        """cache: softmax -> (past_k, past_v) or None; linear -> (state_kv, state_k) or None."""
        B, T, _ = x.shape
        q = apply_rope(self.split(self.wq(x)), cos, sin)
        k = apply_rope(self.split(self.wk(x)), cos, sin)
        v = self.split(self.wv(x))
        if self.kind == "softmax":
            if cache is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            out = self.softmax_attention(q, k, v)
            new_cache = (k, v)
        else:
            skv, sk = cache if cache is not None else (None, None)
            out, nkv, nk = linear_attention(self.features(q), self.features(k), v, skv, sk)
            new_cache = (nkv, nk)
            if self.transfer:
                with torch.no_grad():
                    target = self.softmax_attention(q, k, v)
                self.transfer_loss = F.mse_loss(out, target)
                out = target
        return self.wo(out.transpose(1, 2).reshape(B, T, -1)), new_cache


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim)
        self.ffn = FeedForward(cfg)

    def forward(self, x, cos, sin, cache=None):
        h, new_cache = self.attn(self.attn_norm(x), cos, sin, cache)
        x = x + h
        return x + self.ffn(self.ffn_norm(x)), new_cache


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids: torch.Tensor, position_offset: Optional[torch.Tensor] = None, caches=None,
                last_only: bool = False):
        """ids [B, T] -> (logits [B, T, V], new caches per layer). `last_only` projects only the
        last position to the vocabulary (what a decoding step needs; a long prefill skips the rest)."""
        B, T = ids.shape
        positions = torch.arange(T, device=ids.device).unsqueeze(0).expand(B, T)
        if position_offset is not None:
            positions = positions + position_offset.unsqueeze(1)
        cos, sin = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_base)
        x = self.embed(ids)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, cos, sin, None if caches is None else caches[i])
            new_caches.append(c)
        if last_only:
            x = x[:, -1:, :]
        logits = self.norm(x) @ self.embed.weight.t()
        return logits, new_caches

    def transfer_loss(self) -> torch.Tensor:
        return sum(b.attn.transfer_loss for b in self.blocks)

    def set_transfer(self, on: bool):
        for b in self.blocks:
            b.attn.transfer = on
            b.attn.transfer_loss = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def swap_attention(teacher: Transformer, attention: str, feature_dim: int, seed: int) -> Transformer:
    """The T2R swap: a copy of the teacher with a linear attention; every pretrained weight kept.

    Only the feature map (t2r) is new, initialised from `seed`.
    """
    cfg = ModelConfig.from_dict({**teacher.cfg.to_dict(), "attention": attention, "feature_dim": feature_dim})
    torch.manual_seed(seed)
    student = Transformer(cfg)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(".feature_map." not in m for m in missing):
        raise RuntimeError(f"swap mismatch: missing={missing} unexpected={unexpected}")
    return student
