"""The exported step (contract/onnx-io.json): the Transformer's forward rewritten for ONNX Runtime's
per-kernel cost, computing the same function (parity.json checks it against model.py's forward).

A decoding step at this model size is ~400 small kernels whose launch cost outweighs their
arithmetic (issue 8), so the graph is built for few kernels:

- one MatMul per layer for q, k and v;
- RoPE on q and k together: it rotates pairs (x[2i], x[2i+1]) -> (x[2i] cos - x[2i+1] sin,
  x[2i+1] cos + x[2i] sin) = x * cos + swap(x) * (-sin, sin), where swap exchanges the two of each
  pair (one reversed Slice); cos and the signed sin are computed once per step, already interleaved
  and tiled to the width of [q | k]. (Folding swap into the weights instead, as more rows of the
  q/k MatMul, saves 3 kernels per layer but measured no faster on sotu-t2r: those rows are 2 MB
  more weights to read per token, and a quantization pass would have them to quantize too.)
- the T2R feature map of every q and k head as one batched MatMul + Add + Relu;
- one MatMul for SwiGLU's gate and up projections;
- grouped-query attention in the decode graph without repeating the state: a group's query heads
  are rows of one product with their key/value head's S, z (or cache), not an Expand that copies
  them group times per layer per step.

Weights stay plain MatMul nodes with initializer weights (a post-export quantization pass finds them).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import EPS, Transformer, rope_frequencies


def _linear_parts(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[in, sum(out)] weight (and bias) of the Linears side by side."""
    w = torch.cat([l.weight for l in linears], dim=0).t().contiguous()
    return w, None if linears[0].bias is None else torch.cat([l.bias for l in linears])


class StepLayer(nn.Module):
    def __init__(self, block, rope: bool):
        super().__init__()
        a = block.attn
        self.attn_norm, self.ffn_norm, self.wo, self.ffn = block.attn_norm, block.ffn_norm, a.wo, block.ffn
        self.kind, self.heads, self.kv_heads, self.head_dim, self.group = a.kind, a.heads, a.kv_heads, a.head_dim, a.group
        w, b = _linear_parts([a.wq, a.wk, a.wv])
        self.qkv_weight = nn.Parameter(w, requires_grad=False)
        self.qkv_bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.rope = rope
        self.feature_dim = a.cfg.state_feature_dim()
        if a.feature_map is not None:
            # Per (query or key) head: its key/value head's map, as [heads + kv_heads, head_dim, F].
            maps = a.feature_map.weight.transpose(1, 2)
            bias = a.feature_map.bias
            per_q = torch.arange(self.heads) // self.group
            self.fm_weight = nn.Parameter(torch.cat([maps[per_q], maps]), requires_grad=False)
            self.fm_bias = nn.Parameter(torch.cat([bias[per_q], bias]).unsqueeze(1), requires_grad=False)
        self.gate_up = None
        if block.ffn.kind == "swiglu":
            w, b = _linear_parts([block.ffn.w1, block.ffn.w3])
            self.gate_up = nn.Parameter(w, requires_grad=False)
            self.gate_up_bias = None if b is None else nn.Parameter(b, requires_grad=False)

    def features(self, qk: torch.Tensor) -> torch.Tensor:
        """[B, heads + kv_heads, T, D] -> [B, heads + kv_heads, T, F]."""
        if self.kind == "elu":
            return F.elu(qk) + 1.0
        return F.relu(qk @ self.fm_weight + self.fm_bias)

    def project(self, x, cos, sin, lead: tuple):
        """[*lead, dim] -> RoPE'd [q | k] [*lead, (heads + kv_heads) * D] and v [*lead, kv_heads * D].
        `lead`: the leading sizes, given so the decode graph's reshapes stay constant."""
        proj = self.attn_norm(x) @ self.qkv_weight
        if self.qkv_bias is not None:
            proj = proj + self.qkv_bias
        qk_width = (self.heads + self.kv_heads) * self.head_dim
        qk, v = proj.split([qk_width, self.kv_heads * self.head_dim], dim=-1)
        if not self.rope:
            return qk, v
        swapped = qk.reshape(*lead, qk_width // 2, 2).flip(-1).reshape(*lead, qk_width)
        return qk * cos + swapped * sin, v

    def finish(self, x, attended):
        """The residual stream after attention's output [..., heads * D] and the MLP."""
        x = x + self.wo(attended)
        h = self.ffn_norm(x)
        if self.gate_up is None:
            return x + self.ffn(h)
        gu = h @ self.gate_up
        if self.gate_up_bias is not None:
            gu = gu + self.gate_up_bias
        gate, up = gu.split([self.gate_up.shape[1] // 2] * 2, dim=-1)
        return x + self.ffn.w2(F.silu(gate) * up)

    def forward(self, x, cos, sin, mask, state_a, state_b):
        """Any number of tokens per row: x [B, T, dim]."""
        B, T, _ = x.shape
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        qk, v = self.project(x, cos, sin, (B, T))
        qk = qk.reshape(B, T, H + Hkv, D).transpose(1, 2)
        v = v.reshape(B, T, Hkv, D).transpose(1, 2)
        if self.kind == "softmax":
            q, k = qk.split([H, Hkv], dim=1)
            k = torch.cat([state_a, k], dim=2)
            v = torch.cat([state_b, v], dim=2)
            out = self.softmax_attention(q, k, v, mask)
            new_a, new_b = k, v
        else:
            fq, fk = self.features(qk).split([H, Hkv], dim=1)
            out, new_a, new_b = self.linear_attention(fq, fk, v, mask, state_a, state_b)
        return self.finish(x, out.transpose(1, 2).reshape(B, T, H * D)), new_a, new_b

    def decode(self, x, cos, sin, state_a, state_b, pad_mask=None):
        """One token per row: x [B, dim]. Every reshape has constant sizes and nothing is masked but a
        softmax cache's padding (`pad_mask`), so the graph is a fraction of forward's kernels (the recurrence in its sequential form:
        S' = S + phi(k) v^T, z' = z + phi(k), out = phi(q) S' / phi(q) z')."""
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        qk, v = self.project(x, cos, sin, (-1,))
        qk = qk.reshape(-1, H + Hkv, 1, D)
        v = v.reshape(-1, Hkv, 1, D)
        if self.kind == "softmax":
            q, k = qk.split([H, Hkv], dim=1)
            new_a = torch.cat([state_a, k], dim=2)
            new_b = torch.cat([state_b, v], dim=2)
            # A group's queries as rows of one product with their key/value head: [B, kv_heads,
            # group, D] @ [B, kv_heads, D, T]. No repeated copy of the cache (repeat() is an Expand
            # that writes the whole cache group times over, every layer, every step).
            scores = (self.grouped(q) @ new_a.transpose(-1, -2)) / math.sqrt(D) + pad_mask
            out = torch.softmax(scores, dim=-1) @ new_b
        else:
            fq, fk = self.features(qk).split([H, Hkv], dim=1)
            # The outer product phi(k) v^T stays a MatMul (inner size 1): a broadcast Mul measured
            # slower in ONNX Runtime (0.57 against 0.30 ms a step at 32 rows, sotu-t2r-q8).
            new_a = state_a + fk.reshape(-1, Hkv, self.feature_dim, 1) @ v
            new_b = state_b + fk.reshape(-1, Hkv, self.feature_dim)
            # Grouped as for softmax: phi(q) of a group [B, kv_heads, group, F] reads its head's S and z.
            fq = self.grouped(fq)
            den = fq @ new_b.reshape(-1, Hkv, self.feature_dim, 1)
            out = (fq @ new_a) / torch.clamp(den, min=EPS)
        return self.finish(x, out.reshape(-1, H * D)), new_a, new_b

    def grouped(self, q: torch.Tensor) -> torch.Tensor:
        """One token's [B, heads, 1, X] -> [B, kv_heads, group, X]: query head h = kv * group + g is
        row g of key/value head kv, the order repeat() gives."""
        return q if self.group == 1 else q.reshape(-1, self.kv_heads, self.group, q.shape[-1])

    def repeat(self, x: torch.Tensor) -> torch.Tensor:
        """[B, kv_heads, ...] -> [B, heads, ...] (grouped-query attention)."""
        if self.group == 1:
            return x
        return x.unsqueeze(2).expand(-1, -1, self.group, *[-1] * (x.dim() - 2)).flatten(1, 2)

    def softmax_attention(self, q, k, v, mask=None):
        scores = (q @ self.repeat(k).transpose(-1, -2)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        return torch.softmax(scores, dim=-1) @ self.repeat(v)

    def linear_attention(self, fq, fk, v, mask, state_kv, state_k):
        """model.linear_attention with the causal mask given (0/1, made once per step)."""
        scores = (fq @ self.repeat(fk).transpose(-1, -2)) * mask
        num = scores @ self.repeat(v) + fq @ self.repeat(state_kv)
        den = scores.sum(-1) + (fq @ self.repeat(state_k).unsqueeze(-1)).squeeze(-1)
        out = num / torch.clamp(den, min=EPS).unsqueeze(-1)
        return out, state_kv + fk.transpose(-1, -2) @ v, state_k + fk.sum(2)


class StepGraph(nn.Module):
    """(input_ids, position_offset, state a, state b) -> (last logits, a', b', logsumexp).

    For T2R the state is (S, z); for softmax it is the KV cache (keys, values), grown by seq.
    `decode`: the graph for one token per row (input_ids [batch, 1]) with the state per layer, the
    engine's decoding step (contract/onnx-io.json's decode_graph); otherwise any number of tokens
    per row (prefill, and decoding where a folder has no decode graph)."""

    def __init__(self, model: Transformer, decode: bool = False):
        super().__init__()
        cfg = model.cfg
        self.model = model
        self.decode = decode
        self.softmax = cfg.attention == "softmax"
        rope = cfg.positions == "rope"
        self.layers = nn.ModuleList(StepLayer(b, rope) for b in model.blocks)
        self.inv_freq = None
        if rope:
            # [q | k] width, each head's pairs sharing one frequency: cos/sin come out ready to multiply,
            # sin with the sign of its place in the pair (see the module's docstring).
            self.inv_freq = rope_frequencies(cfg).repeat_interleave(2).repeat(cfg.heads + cfg.kv_heads)
            self.sin_sign = torch.tensor([-1.0, 1.0]).repeat(self.inv_freq.shape[0] // 2)

    def forward(self, input_ids, position_offset, *state):
        """state: the two stacked state tensors [layers, batch, ...]; decode: each one's layers apart
        (a_0 .. a_{L-1}, b_0 .. b_{L-1}), and so are the state outputs."""
        m = self.model
        L = len(self.layers)
        if self.decode:
            state_a, state_b = state[:L], state[L:]
            positions = position_offset
            x = m.embed(input_ids.reshape(-1))
        else:
            state_a, state_b = state
            T = input_ids.shape[1]
            positions = position_offset.unsqueeze(1) + torch.arange(T).unsqueeze(0)
            x = m.embed(input_ids)
        cos = sin = None
        if self.inv_freq is not None:
            angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq
            cos, sin = torch.cos(angles), torch.sin(angles) * self.sin_sign
        else:
            x = x + m.pos_embed(positions)
        mask = None if self.decode else self.causal_mask(T, state_a)
        pad_mask = self.pad_mask(positions, state_a[0]) if self.decode and self.softmax else None
        new_a, new_b = [], []
        for i, layer in enumerate(self.layers):
            if self.decode:
                x, a, b = layer.decode(x, cos, sin, state_a[i], state_b[i], pad_mask)
            else:
                x, a, b = layer(x, cos, sin, mask, state_a[i], state_b[i])
            new_a.append(a)
            new_b.append(b)
        x = m.norm(x if self.decode else x[:, -1, :])
        last = x @ m.embed.weight.t() if m.head is None else m.head(x)
        # logsumexp (onnx-io.json's extra output): the server gets log-probabilities without an exp
        # over the vocabulary per token in JavaScript.
        # Written out (max, exp, sum, log): ONNX Runtime's ReduceLogSumExp is not vectorised, 9x slower
        # on 32 rows of 8,192 logits (1.15 ms against 0.13, the largest kernel of a batched step).
        peak = torch.amax(last, dim=-1, keepdim=True)
        lse = torch.log(torch.exp(last - peak).sum(-1)) + peak.squeeze(-1)
        if self.decode:
            return (last, *new_a, *new_b, lse)
        return last, torch.stack(new_a), torch.stack(new_b), lse

    @staticmethod
    def pad_mask(positions: torch.Tensor, past_key: torch.Tensor) -> torch.Tensor:
        """The decode graph's KV cache may hold rows of different lengths side by side (the engine's
        batched softmax decoding): row r's cache is right-aligned, its `position_offset` real keys
        last, the first past - position_offset of its `past` slots padding. -> [B, 1, 1, past + 1]
        to add to the scores: 0 where a key is real (the step's own key always is), -inf on padding.
        Rows of one length (past = position_offset) are masked nowhere."""
        past = past_key.shape[2]
        pad = past - positions
        real = torch.arange(past + 1).unsqueeze(0) >= pad.unsqueeze(1)
        return torch.zeros_like(real, dtype=torch.float32).masked_fill(~real, float("-inf")).unsqueeze(1).unsqueeze(1)

    def causal_mask(self, T: int, state_a: torch.Tensor) -> torch.Tensor:
        """Query i (the last T of past + T positions) sees key j <= past + i: softmax adds the mask
        (0 or -inf) to its scores, linear attention multiplies its scores by it (1 or 0)."""
        past = state_a.shape[3] if self.softmax else 0
        allowed = torch.arange(past + T).unsqueeze(0) <= (torch.arange(T) + past).unsqueeze(1)
        if self.softmax:
            return torch.zeros(T, past + T).masked_fill(~allowed, float("-inf"))
        return allowed.to(torch.float32)
