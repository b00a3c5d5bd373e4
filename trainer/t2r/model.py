"""The decoder every model here is: a Llama-style transformer by default (RMSNorm, RoPE, SwiGLU, tied
embeddings; the shipped models), with the variants imported Hugging Face checkpoints need
(trainer/t2r/hf_import.py): LayerNorm, learned absolute positions, RoPE scaling (linear, llama3),
grouped-query attention, q/k/v and output biases, GPT-2's GELU MLP, an untied output head.

Its attention is one of:

- ``softmax``: the teacher; causal softmax attention with a KV cache for decoding.
- ``t2r``: Kasai et al. 2021. phi(x) = relu(W x + b), one (W, b) per key/value head and layer, shared
  by keys and the queries of that head's group, applied after RoPE. Recurrent state per key/value
  head S = sum phi(k) v^T, z = sum phi(k); out = phi(q)^T S / max(phi(q)^T z, EPS).
- ``elu``: Katharopoulos et al. 2020, phi(x) = elu(x) + 1, same recurrence (baseline).

With grouped-query attention (kv_heads < heads) the state is per key/value head: the q heads of a
group read the same S and z through the same phi, exactly as they read the same keys and values in
the teacher. A state is layers x kv_heads x feature_dim x head_dim (plus z), docs/design.md §7.

Linear attention runs in a parallel form for training (a causal mask over phi(Q) phi(K)^T) and
takes an optional incoming state, so one graph serves prefill (many tokens) and decode (one).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# The normaliser's clamp. One constant used in training, export and decode (docs/design.md §7).
EPS = 1e-6
ATTENTIONS = ("softmax", "t2r", "elu")
NORMS = ("rms", "layer")
POSITIONS = ("rope", "learned")
MLPS = ("swiglu", "gelu_tanh")
# rope_scaling["type"] -> the keys it needs (Hugging Face's modeling_rope_utils.py names).
ROPE_SCALINGS = {"linear": ("factor",),
                 "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


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
    # The variants below default to the shipped models' architecture, so their checkpoints (whose
    # stored config predates these fields) load unchanged.
    kv_heads: Optional[int] = None      # key/value heads (grouped-query attention); None: = heads
    norm: str = "rms"                   # rms | layer (LayerNorm with bias)
    norm_eps: float = 1e-5
    positions: str = "rope"             # rope | learned (absolute, max_positions of them)
    rope_scaling: Optional[dict] = None  # {"type": "linear"|"llama3", + ROPE_SCALINGS keys}
    qkv_bias: bool = False
    o_bias: bool = False
    mlp: str = "swiglu"                 # swiglu (gate, up, down) | gelu_tanh (up, down: GPT-2)
    mlp_bias: bool = False
    tied_embeddings: bool = True        # the output head is the embedding matrix

    def __post_init__(self):
        if self.kv_heads is None:
            self.kv_heads = self.heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    def validate(self) -> "ModelConfig":
        for name, allowed in (("attention", ATTENTIONS), ("norm", NORMS), ("positions", POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "dim", "layers", "heads", "ffn_dim", "max_positions", "feature_dim", "kv_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head size, got {self.head_dim}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("type") if isinstance(self.rope_scaling, dict) else None
            if self.positions != "rope" or kind not in ROPE_SCALINGS:
                raise ValueError(f"rope_scaling must be null or a RoPE model's {{type: {'|'.join(ROPE_SCALINGS)}, ...}}")
            for key in ROPE_SCALINGS[kind]:
                value = self.rope_scaling.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"rope_scaling.{key} must be a positive number, got {value!r}")
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


def make_norm(cfg: ModelConfig) -> nn.Module:
    return RMSNorm(cfg.dim, cfg.norm_eps) if cfg.norm == "rms" else nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """RoPE's inverse frequencies [head_dim/2], scaled as Hugging Face's modeling_rope_utils.py does."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    s = cfg.rope_scaling
    if s is None:
        return inv
    if s["type"] == "linear":
        return inv / s["factor"]
    # llama3: long wavelengths slowed down by `factor`, short ones kept, a smooth ramp between.
    factor, low, high, context = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > context / low, inv / factor, inv)
    smooth = (context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= context / high) & (wavelen <= context / low)
    return torch.where(medium, smoothed, scaled)


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor):
    """cos/sin of shape [batch, 1, seq, head_dim/2] for integer positions [batch, seq]."""
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    return torch.cos(angles).unsqueeze(1), torch.sin(angles).unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates consecutive pairs (x[2i], x[2i+1]) (Meta's and llama.cpp's layout; hf_import.py
    reorders Hugging Face's q/k rows, which pair x[i] with x[i + head_dim/2], into it)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """[B, kv_heads, ...] -> [B, kv_heads * group, ...]: each key/value head (or its state) repeated
    for the query heads of its group."""
    if group == 1:
        return x
    return x.unsqueeze(2).expand(-1, -1, group, *[-1] * (x.dim() - 2)).flatten(1, 2)


class FeatureMap(nn.Module):
    """T2R's learned feature map, one (W, b) per key/value head: relu(W x + b). Query heads use
    their group's map, so phi(q) and phi(k) live in the same feature space."""

    def __init__(self, heads: int, head_dim: int, feature_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(heads, feature_dim, head_dim) / math.sqrt(head_dim))
        self.bias = nn.Parameter(torch.zeros(heads, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, maps * g, T, D] -> [B, maps * g, T, K]
        B, H, T, D = x.shape
        maps = self.weight.shape[0]
        grouped = x.reshape(B, maps, H // maps, T, D)
        out = torch.einsum("bmgtd,mkd->bmgtk", grouped, self.weight) + self.bias[None, :, None, None, :]
        return F.relu(out).reshape(B, H, T, -1)


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """True where query i (the last q_len of k_len positions) may see key j."""
    q_pos = torch.arange(q_len, device=device).unsqueeze(1) + (k_len - q_len)
    return torch.arange(k_len, device=device).unsqueeze(0) <= q_pos


def linear_attention(fq, fk, v, state_kv=None, state_k=None, group: int = 1):
    """Causal linear attention in parallel form, continuing from an optional state.

    fq: [B, H, T, K] query features; fk: [B, Hkv, T, K]; v: [B, Hkv, T, D] with H = Hkv * group;
    state_kv: [B, Hkv, K, D]; state_k: [B, Hkv, K]. The state is per key/value head.
    Returns (out [B, H, T, D], new state_kv, new state_k).
    """
    T = fq.shape[2]
    scores = fq @ repeat_kv(fk, group).transpose(-1, -2)
    scores = scores * causal_mask(T, T, fq.device).to(scores.dtype)
    num = scores @ repeat_kv(v, group)
    den = scores.sum(-1)
    if state_kv is not None:
        num = num + fq @ repeat_kv(state_kv, group)
        den = den + (fq @ repeat_kv(state_k, group).unsqueeze(-1)).squeeze(-1)
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
        self.heads, self.kv_heads, self.head_dim, self.group = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.group
        kv_dim = cfg.kv_heads * cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.wk = nn.Linear(cfg.dim, kv_dim, bias=cfg.qkv_bias)
        self.wv = nn.Linear(cfg.dim, kv_dim, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=cfg.o_bias)
        self.kind = cfg.attention
        self.feature_map = FeatureMap(cfg.kv_heads, cfg.head_dim, cfg.feature_dim) if self.kind == "t2r" else None
        # Attention transfer (LoLCATs): when set, the layer also computes softmax attention, adds the
        # MSE between the two outputs here, and passes the softmax output on.
        self.transfer_loss: Optional[torch.Tensor] = None
        self.transfer = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "elu":
            return F.elu(x) + 1.0
        return self.feature_map(x)

    def split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)

    def softmax_attention(self, q, k, v):
        T, S = q.shape[2], k.shape[2]
        k, v = repeat_kv(k, self.group), repeat_kv(v, self.group)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~causal_mask(T, S, q.device), float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def forward(self, x, rope, cache=None):
        """rope: (cos, sin), or None for a model with learned positions.
        cache: softmax -> (past_k, past_v) or None; linear -> (state_kv, state_k) or None."""
        B, T, _ = x.shape
        q = self.split(self.wq(x), self.heads)
        k = self.split(self.wk(x), self.kv_heads)
        v = self.split(self.wv(x), self.kv_heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.kind == "softmax":
            if cache is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            out = self.softmax_attention(q, k, v)
            new_cache = (k, v)
        else:
            skv, sk = cache if cache is not None else (None, None)
            out, nkv, nk = linear_attention(self.features(q), self.features(k), v, skv, sk, self.group)
            new_cache = (nkv, nk)
            if self.transfer:
                with torch.no_grad():
                    target = self.softmax_attention(q, k, v)
                self.transfer_loss = F.mse_loss(out, target)
                out = target
        return self.wo(out.transpose(1, 2).reshape(B, T, -1)), new_cache


class FeedForward(nn.Module):
    """swiglu: w2(silu(w1 x) * w3 x) (Llama's gate, up, down); gelu_tanh: w2(gelu(w1 x)) (GPT-2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.mlp
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=cfg.mlp_bias)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=cfg.mlp_bias) if self.kind == "swiglu" else None
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=cfg.mlp_bias)

    def forward(self, x):
        if self.kind == "swiglu":
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg)
        self.ffn_norm = make_norm(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x, rope, cache=None):
        h, new_cache = self.attn(self.attn_norm(x), rope, cache)
        x = x + h
        return x + self.ffn(self.ffn_norm(x)), new_cache


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embed = nn.Embedding(cfg.max_positions, cfg.dim) if cfg.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = make_norm(cfg)
        self.head = None if cfg.tied_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, position_offset: Optional[torch.Tensor] = None, caches=None,
                last_only: bool = False):
        """ids [B, T] -> (logits [B, T, V], new caches per layer). `last_only` projects only the
        last position to the vocabulary (what a decoding step needs; a long prefill skips the rest)."""
        B, T = ids.shape
        positions = torch.arange(T, device=ids.device).unsqueeze(0).expand(B, T)
        if position_offset is not None:
            positions = positions + position_offset.unsqueeze(1)
        x = self.embed(ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
            rope = None
        else:
            rope = rope_angles(positions, rope_frequencies(self.cfg))
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, rope, None if caches is None else caches[i])
            new_caches.append(c)
        if last_only:
            x = x[:, -1:, :]
        x = self.norm(x)
        logits = x @ self.embed.weight.t() if self.head is None else self.head(x)
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
