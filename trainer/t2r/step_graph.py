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
- the T2R feature map of every q and k head as one batched MatMul + Add + Relu (in the decode graph
  batched by head, one product of all rows per head, not one per row and head);
- the recurrence itself as one kernel per layer, ONNX Runtime's contrib `LinearAttention` (its
  "linear" rule is T2R's S' = S + phi(k) v^T, out = phi(q)^T S'): read S, write S' and read phi(q)
  against it in one pass, instead of an outer product, an Add and a MatMul that each write or
  read the whole state (at 32 rows of sotu-t2r-q8 those three were 2.0 of the step's 5.9 ms of
  kernels, LinearAttention 1.1). The normaliser z is a few hundred floats per row and stays plain
  ops. In prefill the op runs the recurrence token by token, linear in the prompt, where the
  masked quadratic form it replaces grew with its square;
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


class LinearAttention(torch.autograd.Function):
    """ONNX Runtime's com.microsoft.LinearAttention (contrib op, CPU and CUDA since 1.29) with
    update_rule "linear" and scale 1: per key/value head, S_t = S_{t-1} + k_t v_t^T and
    out_t = q_t^T S_t for each of T tokens, a group's query heads reading their key/value head's S.
    fq [B, T, heads * F], fk [B, T, kv_heads * F], v [B, T, kv_heads * D] (heads packed last, as the
    op takes them), state [B, kv_heads, F, D] -> (out [B, T, heads * D], the state after token T).
    In PyTorch (what the export traces, and any run of the graph module) the same recurrence token
    by token; the export writes the op."""

    @staticmethod
    def forward(ctx, fq, fk, v, state, heads: int, kv_heads: int):
        B, T = fq.shape[0], fq.shape[1]
        F_, D = state.shape[2], state.shape[3]
        outs = []
        for t in range(T):
            state = state + fk[:, t].reshape(B, kv_heads, F_, 1) @ v[:, t].reshape(B, kv_heads, 1, D)
            outs.append((fq[:, t].reshape(B, kv_heads, heads // kv_heads, F_) @ state).reshape(B, 1, heads * D))
        return torch.cat(outs, dim=1), state

    @staticmethod
    def symbolic(g, fq, fk, v, state, heads, kv_heads):
        out, new_state = g.op("com.microsoft::LinearAttention", fq, fk, v, state, q_num_heads_i=heads,
                              kv_num_heads_i=kv_heads, update_rule_s="linear", scale_f=1.0, outputs=2)
        new_state.setType(state.type())
        return out, new_state


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

    def token_features(self, qk: torch.Tensor) -> torch.Tensor:
        """features() of one token per row, [B, heads + kv_heads, 1, D] -> [B, heads + kv_heads, 1, F],
        as one product per head over all rows: [n, B, D] @ [n, D, F]. The [B, n, 1, D] @ [n, D, F]
        of features() is B * n products of one row each: at 32 rows of sotu-t2r-q8, 256 tiny matrix
        products a layer; with den below, the decode step's MatMul kernels went from 0.71 to 0.14 ms
        of 5.6 (ONNX Runtime's profile, 200 steps) and the step from 3.89 to 3.74 ms."""
        if self.kind == "elu":
            return F.elu(qk) + 1.0
        n = self.heads + self.kv_heads
        by_head = qk.reshape(-1, n, self.head_dim).transpose(0, 1)
        phi = F.relu(by_head @ self.fm_weight + self.fm_bias)
        return phi.transpose(0, 1).reshape(-1, n, 1, self.feature_dim)

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
            out = self.softmax_attention(q, k, v, mask).transpose(1, 2)
            new_a, new_b = k, v
        else:
            fq, fk = self.features(qk).split([H, Hkv], dim=1)
            packed = [t.transpose(1, 2).reshape(B, T, -1) for t in (fq, fk, v)]
            num, new_a = LinearAttention.apply(*packed, state_a, H, Hkv)
            # z after each token, and phi(q) . z per query head: [B, kv_heads, group, T].
            z = state_b.unsqueeze(2) + torch.cumsum(fk, dim=2)
            den = (fq.reshape(B, Hkv, self.group, T, self.feature_dim) * z.unsqueeze(2)).sum(-1)
            den = torch.clamp(den.permute(0, 3, 1, 2), min=EPS).unsqueeze(-1)
            out = num.reshape(B, T, Hkv, self.group, D) / den
            new_b = z[:, :, -1]
        return self.finish(x, out.reshape(B, T, H * D)), new_a, new_b

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
            fq, fk = self.token_features(qk).split([H, Hkv], dim=1)
            Fd = self.feature_dim
            # One token: [B, heads, 1, F] is already the op's packed [B, 1, heads * F].
            num, new_a = LinearAttention.apply(fq.reshape(-1, 1, H * Fd), fk.reshape(-1, 1, Hkv * Fd),
                                               v.reshape(-1, 1, Hkv * D), state_a, H, Hkv)
            new_b = state_b + fk.reshape(-1, Hkv, Fd)
            # Grouped as for softmax: phi(q) of a group [B, kv_heads, group, F] reads its head's z.
            # A product and a sum, not a MatMul of [.., 1, F] @ [.., F, 1]: that is B * kv_heads
            # products of one number each.
            den = (self.grouped(fq) * new_b.unsqueeze(2)).sum(-1, keepdim=True)
            out = num.reshape(-1, Hkv, self.group, D) / torch.clamp(den, min=EPS)
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
        mask = self.causal_mask(T, state_a) if self.softmax and not self.decode else None
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

    @staticmethod
    def causal_mask(T: int, past_key: torch.Tensor) -> torch.Tensor:
        """Softmax prefill: query i (the last T of past + T positions) sees key j <= past + i; the
        mask (0 or -inf) is added to its scores. (Linear attention needs none: LinearAttention is
        the recurrence itself.)"""
        past = past_key.shape[3]
        allowed = torch.arange(past + T).unsqueeze(0) <= (torch.arange(T) + past).unsqueeze(1)
        return torch.zeros(T, past + T).masked_fill(~allowed, float("-inf"))
