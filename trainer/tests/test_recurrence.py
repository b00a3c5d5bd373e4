"""The parallel (training) form and the recurrent/cached (decoding) form compute the same function."""
import pytest
import torch

from conftest import tiny_config
from t2r.model import Transformer

T = 24
ATOL = 1e-5


# Architecture variants (the imported families'): each test runs on every one.
VARIANTS = {
    "llama": {},
    "gqa": dict(heads=4, kv_heads=2, qkv_bias=True,
                rope_scaling={"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 16}),
    "mqa-linear-rope": dict(heads=4, kv_heads=1, rope_scaling={"type": "linear", "factor": 2.0}, tied_embeddings=False),
    "gpt2": dict(norm="layer", positions="learned", mlp="gelu_tanh", qkv_bias=True, o_bias=True, mlp_bias=True),
}


def make_model(attention: str, seed: int = 0, variant: str = "llama") -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(attention=attention, **VARIANTS[variant])).eval()
    # The default init (std 0.02) makes attention almost uniform and the logits tiny, which would hide
    # errors; larger weights make every token's contribution, position and state visible.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
            else:
                p.uniform_(0.5, 1.5)
    return model


def ids_for(batch=2, length=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (batch, length), generator=g)


def offset(batch, start):
    return torch.full((batch,), start, dtype=torch.long)


def run_chunks(model, ids, sizes):
    """Feed `ids` in chunks of the given sizes, carrying the state; -> (logits [B, T, V], state)."""
    B = ids.shape[0]
    caches, outs, pos = None, [], 0
    for n in sizes:
        logits, caches = model(ids[:, pos:pos + n], offset(B, pos), caches)
        outs.append(logits)
        pos += n
    assert pos == ids.shape[1]
    return torch.cat(outs, dim=1), caches


def assert_states_close(a, b):
    """The state is a running sum (entries in the hundreds here), so float32 summation order moves it
    by a few ulps of its largest entry: the tolerance is ATOL relative to that scale."""
    assert len(a) == len(b)
    for (a0, a1), (b0, b1) in zip(a, b):
        for x, y in ((a0, b0), (a1, b1)):
            assert x.shape == y.shape
            torch.testing.assert_close(x, y, rtol=1e-5, atol=ATOL * max(1.0, y.abs().max().item()))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("attention", ["t2r", "elu"])
@torch.no_grad()
def test_linear_attention_token_by_token_equals_parallel(attention, variant):
    model = make_model(attention, variant=variant)
    ids = ids_for()
    full, full_state = model(ids)
    step, step_state = run_chunks(model, ids, [1] * T)
    assert full.abs().max() > 1.0, "logits too small for the comparison to mean anything"
    torch.testing.assert_close(step, full, rtol=1e-5, atol=ATOL)
    assert_states_close(step_state, full_state)
    # The recurrent state has a fixed size, per key/value head: [B, Hkv, K, D] and [B, Hkv, K]
    # whatever the length (grouped-query attention shares it among the query heads of a group).
    cfg = model.cfg
    k = cfg.state_feature_dim()
    assert full_state[0][0].shape == (2, cfg.kv_heads, k, cfg.head_dim)
    assert full_state[0][1].shape == (2, cfg.kv_heads, k)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("attention", ["t2r", "elu"])
@pytest.mark.parametrize("split", [1, 7, 16])
@torch.no_grad()
def test_linear_attention_two_chunks_equal_parallel(attention, split, variant):
    model = make_model(attention, variant=variant)
    ids = ids_for()
    full, full_state = model(ids)
    chunked, state = run_chunks(model, ids, [split, T - split])
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=ATOL)
    assert_states_close(state, full_state)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("attention", ["softmax", "t2r", "elu"])
@torch.no_grad()
def test_state_and_offset_matter(attention, variant):
    """Guards the tests above against passing vacuously: dropping the carried state, or the
    position offset, must change the second chunk's logits."""
    model = make_model(attention, variant=variant)
    ids = ids_for()
    full, _ = model(ids)
    _, caches = model(ids[:, :8])
    no_state, _ = model(ids[:, 8:], offset(2, 8), None)
    no_offset, _ = model(ids[:, 8:], None, caches)
    assert (no_state - full[:, 8:]).abs().max() > 1e-2
    assert (no_offset - full[:, 8:]).abs().max() > 1e-2


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_softmax_kv_cache_chunks_equal_full_forward(variant):
    model = make_model("softmax", variant=variant)
    ids = ids_for()
    full, full_cache = model(ids)
    for sizes in ([T // 2, T - T // 2], [5, 7, 1, 11], [1] * T):
        chunked, cache = run_chunks(model, ids, sizes)
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=ATOL)
        # The KV cache grows along the sequence axis and ends equal to the full pass's keys/values.
        for (k, v), (fk, fv) in zip(cache, full_cache):
            assert k.shape == (2, model.cfg.kv_heads, T, model.cfg.head_dim)
            torch.testing.assert_close(k, fk, rtol=1e-5, atol=ATOL)
            torch.testing.assert_close(v, fv, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("attention", ["softmax", "t2r", "elu"])
@torch.no_grad()
def test_grouped_query_attention_is_multi_head_with_shared_keys_values_and_phi(attention):
    """A GQA model equals the multi-head model whose key/value projections (and T2R's phi) are
    repeated for the query heads of each group; its state is that model's, one copy per group."""
    gqa = make_model(attention, variant="gqa")
    cfg = gqa.cfg
    assert (cfg.heads, cfg.kv_heads) == (4, 2)
    mha = Transformer(tiny_config(attention=attention, **{**VARIANTS["gqa"], "kv_heads": 4})).eval()
    sd = gqa.state_dict()
    per_head = lambda t: t.view(cfg.kv_heads, -1, *t.shape[1:]).repeat_interleave(cfg.group, 0).flatten(0, 1)
    for name in list(sd):
        if name.endswith(("attn.wk.weight", "attn.wk.bias", "attn.wv.weight", "attn.wv.bias")):
            sd[name] = per_head(sd[name])
        elif ".feature_map." in name:
            assert sd[name].shape[0] == cfg.kv_heads, "phi is per key/value head"
            sd[name] = sd[name].repeat_interleave(cfg.group, 0)
    mha.load_state_dict(sd)
    ids = ids_for()
    got, got_state = gqa(ids)
    want, want_state = mha(ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=ATOL)
    for (a0, a1), (b0, b1) in zip(got_state, want_state):
        torch.testing.assert_close(a0.repeat_interleave(cfg.group, 1), b0, rtol=1e-5, atol=ATOL * max(1.0, b0.abs().max().item()))
        torch.testing.assert_close(a1.repeat_interleave(cfg.group, 1), b1, rtol=1e-5, atol=ATOL * max(1.0, b1.abs().max().item()))
