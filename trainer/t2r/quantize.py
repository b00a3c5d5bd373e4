"""Weight-only quantization of an exported ONNX graph (docs/design.md §7.6): a pass over any file the
exporter wrote, so it keeps working whatever the graph looks like (fused projections, per-layer
state, a second decode graph).

    python3 -m t2r quantize models/sotu-t2r --bits 8 [--block-size 128] [--accuracy-level 4|1] [--out models/sotu-t2r-q8]
    python3 -m t2r quantize x.onnx --bits 4                      # writes x.q4.onnx beside it

Every MatMul (and Gemm without transA, alpha = beta = 1) whose right-hand side is a 2-D constant
[K, N] (an initializer, or a Transpose of one, as the tied LM head is traced) becomes ONNX Runtime's
contrib `com.microsoft.MatMulNBits`: the weight in blocks of `block_size` along K, each block with
its own float32 scale and uint8 zero point (asymmetric: w ≈ scale * (q - zero_point), q in
[0, 2^bits - 1]). Layout (onnxruntime docs/ContribOperators.md): B is [N, blocks, block_size*bits/8]
uint8, column n's K values in order, 4-bit values two per byte, the first in the low nibble; scales
[N * blocks]; zero points [N * ceil(blocks*bits/8)], packed the same way. K is padded to whole
blocks of zeros, stored as the zero point (and A has only K columns anyway).

The token embedding (a Gather of a 2-D constant [vocab, dim] by the graph's `input_ids`, when dim
is whole blocks) becomes `com.microsoft.GatherBlockQuantized` with the same blocks along dim, rows
stored as MatMulNBits stores columns. Other constant Gathers (position tables) stay float32, as
llama.cpp keeps `position_embd`.

`accuracy_level` is ONNX Runtime's choice of arithmetic for the product: 4 (the default) quantizes
the activations to int8 per block too and multiplies in integers, 1 dequantizes to float32. Measured
on sotu-t2r, one thread (docs/design.md §7.6): level 4 takes 0.4-0.7x fp32's decode step at 8 and
4 bits; level 1 takes 0.76x at 4 bits and 5x (a slow fallback) at 8 bits. Level 4's perplexity cost
stays within the 2% budget at 8 bits, its per-token noise is larger (see §7.6).

A model folder becomes a derived folder (default `<folder>-q<bits>`) that serves as its own model:
every .onnx graph in it quantized, model.json renamed and given a `quantization` record; the
perplexity fields of that record are filled in by scripts/onnx-perplexity.ts, which runs the graphs.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .contract import ONNX_IO, check

BITS = (4, 8)
ACCURACY_LEVELS = {1: "float32", 4: "int8"}  # MatMulNBits accuracy_level -> what it computes in
MS_DOMAIN = "com.microsoft"


def method(accuracy_level: int) -> str:
    return (f"MatMulNBits, asymmetric, float32 scale and uint8 zero point per block, "
            f"{ACCURACY_LEVELS[accuracy_level]} arithmetic (accuracy_level {accuracy_level})")


class QuantizeError(ValueError):
    pass


def quantize_blocks(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w [K, N] -> (q [N, blocks, block_size] uint8, scales [N, blocks] float32, zero points [N, blocks] uint8)."""
    k, n = w.shape
    blocks = -(-k // block_size)
    top = (1 << bits) - 1
    cols = np.zeros((n, blocks * block_size), dtype=np.float32)
    cols[:, :k] = w.T
    cols = cols.reshape(n, blocks, block_size)
    # The range always holds 0, so 0 (and the padding) is exact, as ORT's own quantizer does it.
    lo = np.minimum(cols.min(axis=2), 0.0)
    hi = np.maximum(cols.max(axis=2), 0.0)
    scale = (hi - lo) / top
    scale[scale == 0] = 1.0
    zero = np.clip(np.round(-lo / scale), 0, top)
    # The padding is 0, so it lands on the zero point: it dequantizes to 0 whatever multiplies it.
    q = np.clip(np.round(cols / scale[:, :, None]) + zero[:, :, None], 0, top)
    return q.astype(np.uint8), scale.astype(np.float32), zero.astype(np.uint8)


def dequantize_blocks(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, k: int) -> np.ndarray:
    """The inverse of quantize_blocks, back to [K, N] float32."""
    w = (q.astype(np.float32) - zero[:, :, None]) * scale[:, :, None]
    return w.reshape(q.shape[0], -1)[:, :k].T.copy()


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 values, last axis packed: 8 bits as they are, 4 bits two per byte (first in the low nibble)."""
    if bits == 8:
        return values
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def _constant_weight(name: str, producers: dict, inits: dict):
    """The [K, N] float32 array behind `name` (an initializer, or a Transpose of a 2-D one), else None."""
    if name in inits:
        t = inits[name]
        return numpy_helper.to_array(t) if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT else None
    node = producers.get(name)
    if node is not None and node.op_type == "Transpose" and node.input[0] in inits:
        t = inits[node.input[0]]
        perm = [a.ints for a in node.attribute if a.name == "perm"]
        if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT and (not perm or list(perm[0]) == [1, 0]):
            return numpy_helper.to_array(t).T
    return None


# Ops that only reshape the token ids on their way to the embedding Gather (the decode graph
# flattens its [batch, 1] ids first).
_RESHAPES = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast"}


def _reads_token_ids(name: str, producers: dict) -> bool:
    while name != ONNX_IO["inputs"][0]["name"]:
        node = producers.get(name)
        if node is None or node.op_type not in _RESHAPES:
            return False
        name = node.input[0]
    return True


def _embedding(node: onnx.NodeProto, inits: dict, producers: dict, block_size: int):
    """The [vocab, dim] table a token-embedding Gather reads, when it can be quantized; else None.
    Position tables (gathered by position, not by token id) stay float32, as llama.cpp keeps them."""
    axis = [a.i for a in node.attribute if a.name == "axis"]
    if node.op_type != "Gather" or not _reads_token_ids(node.input[1], producers) or (axis and axis[0] != 0):
        return None
    t = inits.get(node.input[0])
    if t is None or len(t.dims) != 2 or t.data_type != onnx.TensorProto.FLOAT or t.dims[1] % block_size:
        return None
    return numpy_helper.to_array(t)


def _initializers(base: str, bits: int, arrays: tuple[np.ndarray, ...]) -> tuple[list, list[str]]:
    """(initializers, names) for the packed values, scales and zero points of one quantized weight."""
    names = [f"{base}/q{bits}/{part}" for part in ("B", "scales", "zero_points")]
    return [numpy_helper.from_array(a, name) for a, name in zip(arrays, names)], names


def _gemm_ok(node: onnx.NodeProto) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0


def quantize_model(model: onnx.ModelProto, bits: int, block_size: int, accuracy_level: int = 4) -> int:
    """Rewrites `model` in place; -> the number of nodes replaced (products and the embedding)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    nodes, added, replaced = [], [], 0
    for node in graph.node:
        table = _embedding(node, inits, producers, block_size)
        if table is not None:
            # Rows of the table are blocked as a weight's columns are: quantize its transpose.
            q, scale, zero = quantize_blocks(table.T, bits, block_size)
            tensors, names = _initializers(node.name or node.output[0], bits,
                                           (pack(q, bits).reshape(len(table), -1), scale, pack(zero, bits)))
            added += tensors
            nodes.append(helper.make_node("GatherBlockQuantized", [names[0], node.input[1], names[1], names[2]], list(node.output),
                                          name=f"{node.name or node.output[0]}/GatherBlockQuantized", domain=MS_DOMAIN,
                                          gather_axis=0, quantize_axis=1, block_size=block_size, bits=bits))
            replaced += 1
            continue
        if node.op_type not in ("MatMul", "Gemm") or (node.op_type == "Gemm" and not _gemm_ok(node)):
            nodes.append(node)
            continue
        w = _constant_weight(node.input[1], producers, inits)
        if w is not None and node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute):
            w = w.T
        if w is None:
            nodes.append(node)
            continue
        k, n = w.shape
        base = node.name or node.output[0]
        q, scale, zero = quantize_blocks(w, bits, block_size)
        tensors, names = _initializers(base, bits, (pack(q, bits), scale.reshape(-1), pack(zero, bits).reshape(-1)))
        added += tensors
        inputs = [node.input[0], *names]
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            inputs += ["", node.input[2]]  # no g_idx; the bias
        nodes.append(helper.make_node("MatMulNBits", inputs, list(node.output), name=f"{base}/MatMulNBits",
                                      domain=MS_DOMAIN, K=k, N=n, bits=bits, block_size=block_size,
                                      accuracy_level=accuracy_level))
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    _drop_unused(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return replaced


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Removes initializers and Transpose nodes that only fed the replaced products."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Transpose" and not any(o in used for o in n.output)]
        for n in dead:
            graph.node.remove(n)
        if not dead:
            break
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def quantize_file(src: str, dst: str, bits: int, block_size: int, accuracy_level: int) -> int:
    model = onnx.load(src)
    replaced = quantize_model(model, bits, block_size, accuracy_level)
    if replaced == 0:
        raise QuantizeError(f"{src}: no MatMul, Gemm or embedding Gather with a constant 2-D weight to quantize")
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return replaced


def check_args(bits: int, block_size: int, accuracy_level: int) -> None:
    if bits not in BITS:
        raise QuantizeError(f"--bits must be 4 or 8, got {bits}")
    if accuracy_level not in ACCURACY_LEVELS:
        raise QuantizeError(f"--accuracy-level must be 4 (int8 arithmetic) or 1 (float32), got {accuracy_level}")
    if block_size < 16 or block_size & (block_size - 1):
        raise QuantizeError(f"--block-size must be a power of 2, at least 16 (MatMulNBits), got {block_size}")


def quantize_folder(src: str, out: str, bits: int, block_size: int, accuracy_level: int) -> dict:
    """Writes the derived model folder `out` (never over an existing one); -> its manifest."""
    if os.path.exists(out):
        raise QuantizeError(f"--out {out} exists; a model folder is never overwritten")
    with open(os.path.join(src, "model.json")) as f:
        manifest = json.load(f)
    if "quantization" in manifest:
        raise QuantizeError(f"{src} is already quantized ({manifest['quantization']['bits']} bits); quantize its source")
    graphs = sorted(n for n in os.listdir(src) if n.endswith(".onnx"))
    if not graphs:
        raise QuantizeError(f"{src}: no .onnx graph in the folder")
    tmp = f"{os.path.normpath(out)}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        replaced = {g: quantize_file(os.path.join(src, g), os.path.join(tmp, g), bits, block_size, accuracy_level)
                    for g in graphs}
        # The weights are not the checkpoint's any more, so neither the checkpoint nor PyTorch's
        # parity reference comes along; the tokenizer files do.
        for name in sorted(os.listdir(src)):
            if name.endswith(".json") and name not in ("model.json", "parity.json"):
                shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
        # `metrics` are the source checkpoint's PyTorch figures, not this graph's: the record's
        # perplexity fields (scripts/onnx-perplexity.ts) take their place.
        manifest = {k: v for k, v in manifest.items() if k != "metrics"}
        manifest = {**manifest, "name": os.path.basename(os.path.normpath(out)),
                    "quantization": {"bits": bits, "block_size": block_size, "accuracy_level": accuracy_level,
                                     "method": method(accuracy_level),
                                     "source": manifest["name"], "nodes": sum(replaced.values())}}
        check(manifest, "manifest.schema.json", "model.json")
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def run(path: str, bits: int, block_size: int, accuracy_level: int, out: str | None) -> str:
    """The CLI's job: a folder or one .onnx file; -> what was written."""
    check_args(bits, block_size, accuracy_level)
    if os.path.isdir(path):
        out = out or f"{os.path.normpath(path)}-q{bits}"
        quantize_folder(path, out, bits, block_size, accuracy_level)
        return out
    if not path.endswith(".onnx") or not os.path.isfile(path):
        raise QuantizeError(f"{path}: neither a model folder nor an .onnx file")
    out = out or f"{path[:-len('.onnx')]}.q{bits}.onnx"
    quantize_file(path, out, bits, block_size, accuracy_level)
    return out
