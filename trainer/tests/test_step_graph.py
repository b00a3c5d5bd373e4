"""The exported step graphs (step_graph.py: fused weights, RoPE by partner rows, the one-token decode
form) compute model.py's function, on every architecture variant, before any ONNX is involved."""
import pytest
import torch

from t2r.export import empty_state
from t2r.step_graph import StepGraph
from test_recurrence import ATOL, T, VARIANTS, ids_for, make_model, offset

ATTENTIONS = ["softmax", "t2r", "elu"]


def assert_close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=ATOL * max(1.0, want.abs().max().item()))


def stacked(caches, i):
    return torch.stack([c[i] for c in caches])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@torch.no_grad()
def test_prefill_then_decode_graph_equals_the_model(attention, variant):
    """A prefill chunk through the general graph, then one token at a time through the decode graph
    (its state per layer), with the state carried between them: every position's logits (and logsumexp), and the final
    state, equal one full forward of the model."""
    model = make_model(attention, variant=variant)
    step, decode = StepGraph(model).eval(), StepGraph(model, decode=True).eval()
    ids = ids_for()
    full, caches = model(ids)
    assert full.abs().max() > 1.0, "logits too small for the comparison to mean anything"
    prefill = 9
    a, b = empty_state(model, 2)
    logits, a, b, lse = step(ids[:, :prefill], offset(2, 0), a, b)
    assert_close(logits, full[:, prefill - 1])
    assert_close(lse, torch.logsumexp(full[:, prefill - 1], dim=-1))
    layers = list(a) + list(b)
    for t in range(prefill, T):
        logits, *layers, lse = decode(ids[:, t:t + 1], offset(2, t), *layers)
        assert_close(logits, full[:, t])
        assert_close(lse, torch.logsumexp(full[:, t], dim=-1))
    L = model.cfg.layers
    assert_close(torch.stack(layers[:L]), stacked(caches, 0))
    assert_close(torch.stack(layers[L:]), stacked(caches, 1))


@pytest.mark.parametrize("attention", ATTENTIONS)
@torch.no_grad()
def test_general_graph_chunks_equal_the_model(attention):
    """The general graph over chunks of several tokens continuing a state (prefill in chunks)."""
    model = make_model(attention, variant="gqa")
    step = StepGraph(model).eval()
    ids = ids_for()
    full, caches = model(ids)
    a, b = empty_state(model, 2)
    pos = 0
    for n in (5, 1, 11, T - 17):
        logits, a, b, _ = step(ids[:, pos:pos + n], offset(2, pos), a, b)
        pos += n
        assert_close(logits, full[:, pos - 1])
    assert_close(a, stacked(caches, 0))
    assert_close(b, stacked(caches, 1))


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_decode_graph_batches_caches_of_different_lengths(variant):
    """Softmax rows whose KV caches differ in length decode in one batch (the engine's batched
    softmax decoding): each cache right-aligned in a common `past` axis, its left slots padding
    (filled with garbage here: it must not matter). Every row's logits, and its real cache after
    several steps, equal the row decoded alone."""
    model = make_model("softmax", variant=variant)
    step, decode = StepGraph(model).eval(), StepGraph(model, decode=True).eval()
    L = model.cfg.layers
    ids = ids_for(batch=3)
    lengths = [13, 6, 9]
    alone = []
    for r, n in enumerate(lengths):
        a, b = empty_state(model, 1)
        _, a, b, _ = step(ids[r:r + 1, :n], offset(1, 0), a, b)
        alone.append(list(a) + list(b))
    past = max(lengths)
    padded = []
    for i in range(2 * L):
        cache = torch.randn(3, *alone[0][i].shape[1:2], past, alone[0][i].shape[-1]) * 100
        for r, n in enumerate(lengths):
            cache[r, :, past - n:] = alone[r][i][0]
        padded.append(cache)
    for t in range(4):
        positions = torch.tensor([n + t for n in lengths])
        logits, *padded, lse = decode(torch.stack([ids[r, n + t] for r, n in enumerate(lengths)]).unsqueeze(1), positions, *padded)
        for r, n in enumerate(lengths):
            want, *alone[r], want_lse = decode(ids[r:r + 1, n + t:n + t + 1], offset(1, n + t), *alone[r])
            assert_close(logits[r:r + 1], want)
            assert_close(lse[r:r + 1], want_lse)
    for r, n in enumerate(lengths):
        for i in range(2 * L):
            assert_close(padded[i][r:r + 1, :, padded[i].shape[2] - (n + 4):], alone[r][i])
