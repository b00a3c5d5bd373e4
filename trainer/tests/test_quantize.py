"""Weight-only quantization: MatMulNBits blocks (t2r/quantize.py) and GGML's Q8_0 / Q4_0 (t2r/gguf.py):
error bounds of a round trip, the exact bytes of hand-computed blocks, the graph rewrite, the CLI's
refusals. (ONNX Runtime runs the rewritten graphs in test/models/quantized.test.ts.)"""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_cli import assert_fails, t2r
from t2r import gguf
from t2r.quantize import dequantize_blocks, pack, quantize_blocks, quantize_model


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("k", [64, 80])  # 80: a last block padded
def test_matmulnbits_round_trip_error_bound(bits, k):
    w = np.random.default_rng(bits + k).standard_normal((k, 24)).astype(np.float32)
    blocks = -(-k // 32)
    q, scale, zero = quantize_blocks(w, bits, 32)
    assert q.shape == (24, blocks, 32) and scale.shape == zero.shape == (24, blocks)
    assert q.max() <= (1 << bits) - 1
    # Each block's range holds its values, so rounding is the error: half a step, or one step at
    # a block's extreme when the value and the zero point both round up and q is clipped.
    step = np.repeat(scale, 32, axis=1)[:, :k].T
    err = np.abs(dequantize_blocks(q, scale, zero, k) - w)
    assert (err <= step * (1 + 1e-5)).all()
    assert (err <= step / 2 * (1 + 1e-5)).mean() > 0.99
    if k % 32:
        assert (q[:, -1, k % 32:] == zero[:, -1:]).all(), "padding is the zero point"


def test_matmulnbits_4_bit_packing_puts_the_first_value_low():
    assert pack(np.array([[1, 2, 3, 4]], np.uint8), 4).tolist() == [[0x21, 0x43]]
    assert pack(np.array([[1, 2, 3]], np.uint8), 4).tolist() == [[0x21, 0x03]]
    assert pack(np.array([[1, 2, 3]], np.uint8), 8).tolist() == [[1, 2, 3]]


def test_q8_0_block_bytes_match_ggml():
    x = np.zeros(32, np.float32)
    x[:5] = [127, -127, 63.5, -63.5, 0.2]  # d = 127 / 127 = 1; roundf rounds halves away from zero
    want = b"\x00\x3c" + bytes([0x7F, 0x81, 0x40, 0xC0, 0x00]) + b"\x00" * 27
    assert gguf.quantize_q8_0(x) == want


def test_q4_0_block_bytes_match_ggml():
    x = np.zeros(32, np.float32)
    x[[0, 1, 2, 16, 17]] = [-8, 7, 1, 0.5, -0.5]  # largest magnitude -8: d = -8 / -8 = 1
    # q = min(15, trunc(x + 8.5)): -8 -> 0, 7 -> 15, 1 -> 9, 0.5 -> 9, -0.5 -> 8, 0 -> 8; byte j = q_j | q_{j+16} << 4
    want = b"\x00\x3c" + bytes([0x90, 0x8F, 0x89]) + b"\x88" * 13
    assert gguf.quantize_q4_0(x) == want


@pytest.mark.parametrize("ggml_type,quantize,steps", [(gguf.GGML_Q8_0, gguf.quantize_q8_0, 0.5), (gguf.GGML_Q4_0, gguf.quantize_q4_0, 1.0)])
def test_ggml_round_trip_error_bound(ggml_type, quantize, steps):
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    raw = quantize(x)
    assert len(raw) == x.size // 32 * gguf.BLOCK_BYTES[ggml_type]
    back = gguf.dequantize(raw, ggml_type).reshape(x.shape)
    # Q8_0: half a step d. Q4_0: a whole step at most (the value of largest magnitude maps to -8
    # steps; its opposite, +8, is clipped to +7). Both plus d's own fp16 rounding (2^-11 relative).
    d = np.abs(gguf.dequantize(raw, ggml_type).reshape(-1, 32)).max(axis=1) / (127 if ggml_type == gguf.GGML_Q8_0 else 8)
    bound = np.repeat(d, 32).reshape(x.shape) * (steps + 16 * 2 ** -11)
    assert (np.abs(back - x) <= bound).all()


def test_ggml_types_follow_llama_cpp_rules():
    assert gguf.tensor_type("blk.0.attn_norm.weight", (256,), "q8_0") == gguf.GGML_F32
    assert gguf.tensor_type("blk.0.ffn_up.weight", (688, 256), "q4_0") == gguf.GGML_Q4_0
    assert gguf.tensor_type("blk.0.ffn_down.weight", (256, 688), "q8_0") == gguf.GGML_F16, "688 is not whole blocks"
    assert gguf.tensor_type("position_embd.weight", (1024, 64), "q8_0") == gguf.GGML_F32


def _graph_with_three_products(k=64, n=32):
    """Three products with constant weights, a token embedding, and a position table that must stay float32."""
    rng = np.random.default_rng(0)
    w, tied, gemm_w, bias = (rng.standard_normal(s).astype(np.float32) for s in ((k, n), (n, k), (n, k), (n,)))
    embed, positions = rng.standard_normal((10, k)).astype(np.float32), rng.standard_normal((16, k)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["embed", "input_ids"], ["e"], name="embed"),
             helper.make_node("Gather", ["positions", "position_ids"], ["p"], name="positions"),
             helper.make_node("MatMul", ["x", "w"], ["y1"], name="plain"),
             helper.make_node("Transpose", ["tied"], ["tied_t"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "tied_t"], ["y2"], name="tied"),
             helper.make_node("Gemm", ["x", "gemm_w", "bias"], ["y3"], name="gemm", transB=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])] + \
        [helper.make_tensor_value_info(i, TensorProto.INT64, [None]) for i in ("input_ids", "position_ids")]
    outputs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in ("y1", "y2", "y3", "e", "p")]
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, name) for a, name in (
        (w, "w"), (tied, "tied"), (gemm_w, "gemm_w"), (bias, "bias"), (embed, "embed"), (positions, "positions"))])
    return helper.make_model(graph), {"plain": w, "tied": tied.T, "gemm": gemm_w.T, "embed": embed.T}


def test_products_and_the_embedding_become_contrib_ops():
    model, weights = _graph_with_three_products()
    assert quantize_model(model, 8, 32) == 4
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(inits) == {"bias", "positions"} | {f"{p}/q8/{part}" for p in weights for part in ("B", "scales", "zero_points")}
    assert [n.op_type for n in model.graph.node] == ["GatherBlockQuantized", "Gather"] + ["MatMulNBits"] * 3
    embed, _, *products = model.graph.node
    assert {a.name: a.i for a in embed.attribute} == {"gather_axis": 0, "quantize_axis": 1, "block_size": 32, "bits": 8}
    q, scale, zero = (inits[i] for i in (embed.input[0], embed.input[2], embed.input[3]))
    assert q.shape == (10, 64) and scale.shape == zero.shape == (10, 2)
    assert np.abs(dequantize_blocks(q.reshape(10, 2, 32), scale, zero, 64) - weights["embed"]).max() < 0.02
    for node in products:
        name = node.name.split("/")[0]
        attrs = {a.name: a.i for a in node.attribute}
        assert node.domain == "com.microsoft" and attrs == {"K": 64, "N": 32, "bits": 8, "block_size": 32, "accuracy_level": 4}
        q, scale, zero = (inits[i] for i in node.input[1:4])
        got = dequantize_blocks(q, scale.reshape(32, 2), zero.reshape(32, 2), 64)
        assert np.abs(got - weights[name]).max() < 0.02, name
    assert list(products[2].input[4:]) == ["", "bias"], "the Gemm's bias is MatMulNBits' bias input"


def test_cli_refuses_bad_flags_naming_them(tmp_path):
    model, _ = _graph_with_three_products()
    onnx.save(model, tmp_path / "m.onnx")
    err = assert_fails(t2r("quantize", tmp_path / "m.onnx", "--bits", "5"), "--bits")
    assert err == "t2r quantize: error: --bits must be 4 or 8, got 5"
    assert_fails(t2r("quantize", tmp_path / "m.onnx", "--bits", "8", "--block-size", "24"), "--block-size")
    assert_fails(t2r("quantize", tmp_path / "m.onnx", "--bits", "8", "--accuracy-level", "2"), "--accuracy-level")
    assert_fails(t2r("quantize", tmp_path / "missing", "--bits", "8"), "neither a model folder nor an .onnx file")
    ok = t2r("quantize", tmp_path / "m.onnx", "--bits", "4")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["out"] == str(tmp_path / "m.q4.onnx") and os.path.isfile(tmp_path / "m.q4.onnx")
