"""`t2r import` / `export-hf` / `gguf` on tiny checkpoints in Hugging Face's layout (hf_checkpoints.py).

What agrees with an independent implementation (llama.cpp) is test/import/llama-cpp.test.ts; here:
the folder an import writes, weights read exactly (any dtype, sharded or not), bit-exact round trips
through export-hf, conversions of imported models, the GGUF file's structure, and every bad input
refused with one line, a non-zero exit and nothing written."""
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
import torch

from conftest import TRAINER, write_data
from hf_checkpoints import EOS, VARIANTS, special_ids, write_checkpoint
from t2r import safetensors
from t2r.checkpoint import load_model
from t2r.cli import main
from t2r.hf_import import import_hf

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Every variant's checkpoint, written once: name -> folder."""
    root = tmp_path_factory.mktemp("hf")
    return {v: write_checkpoint(str(root / v), v) for v in VARIANTS}


@pytest.fixture(scope="module")
def imported(hf, tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    return {v: (import_hf(path, str(root / v)), str(root / v)) for v, path in hf.items()}


def hf_tensors(folder: str) -> dict:
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    out = {}
    for f in files:
        out.update(safetensors.load(os.path.join(folder, f))[0])
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_import_writes_a_complete_model_folder(variant, hf, imported):
    manifest, out = imported[variant]
    arch, options = VARIANTS[variant]
    assert sorted(os.listdir(out)) == sorted(["checkpoint.safetensors", "decode.onnx", "model.json", "model.onnx", "parity.json",
                                              *TOKENIZER_FILES])
    for name in TOKENIZER_FILES:  # copied as they are
        assert open(os.path.join(out, name), "rb").read() == open(os.path.join(hf[variant], name), "rb").read()
    assert json.load(open(os.path.join(out, "model.json"))) == manifest
    assert manifest["architecture"] == "softmax" and manifest["name"] == variant
    ids = special_ids(variant)
    assert manifest["eos_token_id"] == ids["eos"][0] and manifest["eos_token_ids"] == ids["eos"]
    assert manifest["bos_token_id"] == ids["bos"] and manifest["add_bos_token"] is ids["add_bos"]
    dtype = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(options.get("dtype"), "float32")
    assert manifest["source"] == {"format": "huggingface", "architecture": arch, "dtype": dtype}
    kv_heads = options.get("kv_heads", 4)
    assert manifest["heads"] == 4 and manifest["kv_heads"] == kv_heads
    assert [s["shape"] for s in manifest["state"]] == [[2, "batch", kv_heads, "past", 16]] * 2  # the KV cache is per kv head
    assert manifest["max_positions"] == 128
    assert ("sliding_window" in manifest) == (arch == "MistralForCausalLM")
    assert manifest["generation_defaults"] == {"max_new_tokens": 128, "temperature": 0.0}  # greedy, as generate()
    assert not [p for p in os.listdir(os.path.dirname(out)) if ".partial-" in p]


@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_are_the_files_values_in_float32(variant, hf, imported):
    """Every weight of the import is a float32 copy of a value in the file (halves widened exactly),
    and export-hf puts each back under its name, in its layout, bit for bit."""
    _, out = imported[variant]
    original = hf_tensors(hf[variant])
    model = load_model(os.path.join(out, "checkpoint.safetensors"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    back = str(out) + "-hf"
    dtype = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(VARIANTS[variant][1].get("dtype"), "float32")
    assert main(["export-hf", "--model", out, "--out", back, "--dtype", dtype]) == 0
    again = hf_tensors(back)
    weights = {k for k in original if not k.endswith(".attn.bias")}  # GPT-2's mask buffer is not a weight
    assert set(again) == weights
    for name in weights:
        assert again[name].dtype == original[name].dtype and torch.equal(again[name], original[name]), name
    config = json.load(open(os.path.join(back, "config.json")))
    # Mistral is Llama's computation: it goes out as Llama (its sliding window was never applied).
    assert config["architectures"] == [VARIANTS[variant][0].replace("Mistral", "Llama")]


def test_rope_rows_are_reordered_for_our_rotation(hf, imported):
    """Hugging Face pairs q dims (i, i + d/2); our apply_rope pairs (2i, 2i + 1): row 2i of a head
    is HF row i, row 2i+1 is HF row i + d/2 (v is not rotated, so it is copied as it is)."""
    original = hf_tensors(hf["qwen2-bias"])
    model = load_model(os.path.join(imported["qwen2-bias"][1], "checkpoint.safetensors"))
    q_hf, q = original["model.layers.0.self_attn.q_proj.weight"], model.blocks[0].attn.wq.weight
    head, d = 1, 16
    for i in range(d // 2):
        assert torch.equal(q[head * d + 2 * i], q_hf[head * d + i])
        assert torch.equal(q[head * d + 2 * i + 1], q_hf[head * d + i + d // 2])
    bias_hf, bias = original["model.layers.1.self_attn.k_proj.bias"], model.blocks[1].attn.wk.bias
    assert torch.equal(bias[2 * 3 + 1], bias_hf[3 + d // 2])
    assert torch.equal(model.blocks[0].attn.wv.weight, original["model.layers.0.self_attn.v_proj.weight"])


def test_gpt2_conv1d_weights_are_transposed_and_c_attn_split(hf, imported):
    original = hf_tensors(hf["gpt2"])
    model = load_model(os.path.join(imported["gpt2"][1], "checkpoint.safetensors"))
    c_attn = original["transformer.h.1.attn.c_attn.weight"]  # [in, 3 * out]
    attn = model.blocks[1].attn
    assert torch.equal(attn.wk.weight, c_attn[:, 64:128].t())
    assert torch.equal(attn.wv.bias, original["transformer.h.1.attn.c_attn.bias"][128:])
    assert torch.equal(model.blocks[1].ffn.w1.weight, original["transformer.h.1.mlp.c_fc.weight"].t())
    assert torch.equal(model.pos_embed.weight, original["transformer.wpe.weight"])
    cfg = model.cfg
    assert (cfg.norm, cfg.positions, cfg.mlp, cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias) == ("layer", "learned", "gelu_tanh", True, True, True)


def test_variant_configs(imported):
    load = lambda v: load_model(os.path.join(imported[v][1], "checkpoint.safetensors")).cfg  # noqa: E731
    assert load("llama-untied-llama3-bf16").rope_scaling == {
        "type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    assert load("llama-untied-llama3-bf16").rope_base == 500000.0 and not load("llama-untied-llama3-bf16").tied_embeddings
    assert load("llama-mqa-linear-f16-sharded").rope_scaling == {"type": "linear", "factor": 4.0}
    qwen = load("qwen2-bias")
    assert qwen.qkv_bias and not qwen.o_bias and qwen.tied_embeddings and qwen.rope_base == 1e6
    assert imported["mistral-untied"][0]["sliding_window"] == 4096


def test_sliding_window_caps_the_positions_served(hf, tmp_path):
    """Full attention equals a sliding window only within the window: max_positions stops there."""
    folder = shutil.copytree(hf["mistral-untied"], tmp_path / "mistral")
    config = json.load(open(folder / "config.json"))
    json.dump({**config, "sliding_window": 32}, open(folder / "config.json", "w"))
    manifest = import_hf(str(folder), str(tmp_path / "out"))
    assert manifest["sliding_window"] == 32 and manifest["max_positions"] == 32


def read_gguf(path: str) -> tuple[dict, dict]:
    """A minimal GGUF reader for the checks below: (metadata, tensor name -> (dims, type, offset))."""
    data = open(path, "rb").read()
    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    assert version == 3
    at = 24

    def string():
        nonlocal at
        (n,) = struct.unpack_from("<Q", data, at)
        at += 8 + n
        return data[at - n:at].decode()

    def value(vtype):
        nonlocal at
        if vtype == 8:
            return string()
        if vtype == 9:
            item, n = struct.unpack_from("<IQ", data, at)
            at += 12
            return [value(item) for _ in range(n)]
        fmt = {4: "<I", 5: "<i", 6: "<f", 7: "<?"}[vtype]
        (v,) = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return v

    kv = {}
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack_from("<I", data, at)
        at += 4
        kv[key] = value(vtype)
    tensors = {}
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack_from("<I", data, at)
        dims = struct.unpack_from(f"<{n_dims}Q", data, at + 4)
        ggml_type, offset = struct.unpack_from("<IQ", data, at + 4 + 8 * n_dims)
        at += 4 + 8 * n_dims + 12
        tensors[name] = (dims, ggml_type, offset)
    start = at + (-at % 32)
    for name, (dims, ggml_type, offset) in tensors.items():
        assert offset % 32 == 0
        n = 1
        for d in dims:
            n *= d
        assert start + offset + n * (4 if ggml_type == 0 else 2) <= len(data), name
    return kv, tensors


@pytest.mark.parametrize("variant,arch", [("llama-untied-llama3-bf16", "llama"), ("qwen2-bias", "qwen2"), ("gpt2", "gpt2"),
                                          ("llama-mqa-linear-f16-sharded", "llama"), ("llama-sentencepiece", "llama")])
def test_gguf_structure(variant, arch, hf, tmp_path):
    out = str(tmp_path / "m.gguf")
    assert main(["gguf", "--hf", hf[variant], "--out", out, "--dtype", "f16"]) == 0
    kv, tensors = read_gguf(out)
    assert kv["general.architecture"] == arch and kv["general.file_type"] == 1
    ids = special_ids(variant)
    eos = ids["eos"][0]
    assert len(kv["tokenizer.ggml.tokens"]) == 8192 and kv["tokenizer.ggml.tokens"][eos] == ids["eos_text"]
    assert kv["tokenizer.ggml.token_type"][eos] == 3 and kv["tokenizer.ggml.eos_token_id"] == eos
    assert kv["tokenizer.ggml.bos_token_id"] == ids["bos"] and kv["tokenizer.ggml.add_bos_token"] is ids["add_bos"]
    if variant == "llama-sentencepiece":  # byte fallback: llama.cpp's SentencePiece vocabulary
        assert kv["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.merges" not in kv
        assert kv["tokenizer.ggml.tokens"][3 + 0x0A] == "<0x0A>" and kv["tokenizer.ggml.token_type"][3 + 0x0A] == 6
        assert kv["tokenizer.ggml.scores"][500] == -1000.0 and kv["tokenizer.ggml.token_type"][500] == 1
    else:
        assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2"
        assert len(kv["tokenizer.ggml.merges"]) > 1000 and " " in kv["tokenizer.ggml.merges"][0]
    assert tensors["token_embd.weight"][:2] == ((64, 8192), 1)  # dims innermost first; F16
    assert tensors["output_norm.weight"][1] == 0  # 1-D tensors stay F32
    if arch == "gpt2":
        assert tensors["blk.0.attn_qkv.weight"][0] == (64, 192) and "position_embd.weight" in tensors
        assert kv["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    else:
        assert kv[f"{arch}.attention.head_count_kv"] == VARIANTS[variant][1]["kv_heads"]
        assert tensors["blk.1.attn_k.weight"][0] == (64, 16 * VARIANTS[variant][1]["kv_heads"])
    if variant == "llama-untied-llama3-bf16":
        assert "output.weight" in tensors and tensors["rope_freqs.weight"][0] == (8,)
    if variant == "llama-mqa-linear-f16-sharded":
        assert kv["llama.rope.scaling.type"] == "linear" and kv["llama.rope.scaling.factor"] == 4.0
    if arch == "qwen2":
        assert "blk.0.attn_q.bias" in tensors and "output.weight" not in tensors


def test_gguf_from_our_folder_equals_gguf_from_its_hf_export(imported, tmp_path):
    _, folder = imported["llama-gqa"]
    assert main(["export-hf", "--model", folder, "--out", str(tmp_path / "hf")]) == 0
    assert main(["gguf", "--model", folder, "--out", str(tmp_path / "a.gguf")]) == 0
    assert main(["gguf", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "b.gguf")]) == 0
    assert open(tmp_path / "a.gguf", "rb").read() == open(tmp_path / "b.gguf", "rb").read()


@pytest.mark.parametrize("variant", ["llama-gqa", "gpt2"])
def test_convert_an_imported_model(variant, imported, tmp_path, capsys):
    """swap-then-finetune with the attention-transfer warm-up, on an imported GQA Llama and GPT-2."""
    _, teacher = imported[variant]
    data = write_data(tmp_path / "data", vocab=8192, train_tokens=3000, eval_tokens=300)
    shutil.copyfile(os.path.join(teacher, "tokenizer.json"), os.path.join(data, "tokenizer.json"))
    meta = json.load(open(os.path.join(data, "meta.json")))
    json.dump({**meta, "eos_token_id": EOS}, open(os.path.join(data, "meta.json"), "w"))
    out = str(tmp_path / "t2r")
    rc = main(["convert", "--teacher", teacher, "--data", data, "--run", str(tmp_path / "run"), "--steps", "2",
               "--transfer-steps", "2", "--feature-dim", "8", "--batch", "2", "--seq", "16", "--warmup", "1",
               "--eval-windows", "2", "--log-every", "1", "--threads", "1", "--out", out])
    assert rc == 0, capsys.readouterr().err
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["phase"] for e in events if e["event"] == "step"] == ["transfer", "transfer", "finetune", "finetune"]
    manifest = json.load(open(os.path.join(out, "model.json")))
    kv_heads = 2 if variant == "llama-gqa" else 4
    assert manifest["architecture"] == "t2r" and manifest["kv_heads"] == kv_heads
    assert manifest["state"][0]["shape"] == [2, "batch", kv_heads, 8, 16]  # phi and the state per kv head
    assert manifest["max_positions"] == (128 if variant == "gpt2" else None)  # learned positions end
    assert manifest["eos_token_ids"] == [EOS, 13] and manifest["bos_token_id"] == EOS  # the teacher's
    for name in TOKENIZER_FILES:
        assert os.path.exists(os.path.join(out, name))
    model = load_model(os.path.join(out, "checkpoint.safetensors"))
    assert model.blocks[0].attn.feature_map.weight.shape == (kv_heads, 8, 16)


# -- bad input: one line on stderr, a non-zero exit, nothing written -----------------------------

def edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    config = json.load(open(path))
    config.update(changes)
    json.dump(config, open(path, "w"))


def rewrite_weights(folder, change):
    path = os.path.join(folder, "model.safetensors")
    tensors = safetensors.load(path)[0]
    change(tensors)
    safetensors.save(path, tensors)


def truncate(path, keep):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:keep(len(data))])


def header_overrun(path):
    data = open(path, "rb").read()
    open(path, "wb").write(struct.pack("<Q", len(data) * 2) + data[8:])


def shard(folder, i):
    return os.path.join(folder, f"model-{i:05d}-of-00003.safetensors")


def index_names(folder, file):
    path = os.path.join(folder, "model.safetensors.index.json")
    index = json.load(open(path))
    first = sorted(index["weight_map"])[0]
    index["weight_map"][first] = file
    json.dump(index, open(path, "w"))


def link_out(folder):
    outside = os.path.join(os.path.dirname(folder), "outside.safetensors")
    shutil.move(os.path.join(folder, "model.safetensors"), outside)
    os.symlink(outside, os.path.join(folder, "model.safetensors"))


BAD = {
    "architecture": ("llama-gqa", lambda f: edit_config(f, architectures=["BertForMaskedLM"]), "architecture BertForMaskedLM is not supported"),
    "quantized-config": ("llama-gqa", lambda f: edit_config(f, quantization_config={"quant_method": "gptq"}), "quantization_config (gptq)"),
    "rope-type": ("llama-gqa", lambda f: edit_config(f, rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling type 'yarn' is not supported"),
    "gqa-heads": ("llama-gqa", lambda f: edit_config(f, num_key_value_heads=3), "num_key_value_heads 3 does not divide"),
    "activation": ("gpt2", lambda f: edit_config(f, activation_function="relu"), "activation_function 'relu'"),
    "missing-tensor": ("llama-gqa", lambda f: rewrite_weights(f, lambda t: t.pop("model.layers.1.mlp.up_proj.weight")),
                       "missing tensor model.layers.1.mlp.up_proj.weight"),
    "shape": ("llama-gqa", lambda f: rewrite_weights(f, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)})),
              "shape mismatch: tensor model.layers.0.self_attn.k_proj.weight is [64, 64], config.json implies [32, 64]"),
    "vocab": ("llama-gqa", lambda f: edit_config(f, vocab_size=9000), "model.embed_tokens.weight has 8192 rows but config.json vocab_size is 9000"),
    "dtype": ("llama-gqa", lambda f: rewrite_weights(f, lambda t: t.update({"model.norm.weight": torch.ones(64, dtype=torch.uint8)})),
              "tensor model.norm.weight has dtype U8"),
    "unexpected-tensor": ("llama-gqa", lambda f: rewrite_weights(f, lambda t: t.update({"model.layers.0.self_attn.q_proj.qweight": torch.zeros(2)})),
                          "unexpected tensor model.layers.0.self_attn.q_proj.qweight"),
    "truncated": ("llama-gqa", lambda f: truncate(os.path.join(f, "model.safetensors"), lambda n: n - 100), "runs past the end of the file"),
    "header-overrun": ("llama-gqa", lambda f: header_overrun(os.path.join(f, "model.safetensors")), "header length"),
    "corrupt-shard": ("llama-mqa-linear-f16-sharded", lambda f: open(shard(f, 2), "wb").write(os.urandom(4096)), "model-00002-of-00003.safetensors"),
    "missing-shard": ("llama-mqa-linear-f16-sharded", lambda f: os.remove(shard(f, 3)), "names model-00003-of-00003.safetensors, which is missing"),
    "index-missing-file": ("llama-mqa-linear-f16-sharded", lambda f: index_names(f, "model-00009-of-00009.safetensors"), "model-00009-of-00009.safetensors, which is missing"),
    "index-path-out": ("llama-mqa-linear-f16-sharded", lambda f: index_names(f, "../outside.safetensors"), "names '../outside.safetensors', not a file of the checkpoint folder"),
    "index-wrong-shard": ("llama-mqa-linear-f16-sharded", lambda f: index_names(f, os.path.basename(shard(f, 3))), "which does not hold it"),
    "symlink-out": ("llama-gqa", link_out, "model.safetensors is a symlink leading outside the checkpoint folder"),
    "no-weights": ("llama-gqa", lambda f: os.remove(os.path.join(f, "model.safetensors")), "no model.safetensors or model.safetensors.index.json"),
    "eos-not-in-tokenizer": ("llama-gqa", lambda f: edit_config(f, eos_token_id=8200, vocab_size=8192), "config.json: eos_token_id 8200 is not a token of tokenizer.json"),
    "generation-eos": ("gpt2", lambda f: json.dump({"eos_token_id": [8191, 9999]}, open(os.path.join(f, "generation_config.json"), "w")),
                       "generation_config.json: eos_token_id 9999 is not a token"),
    "no-tokenizer": ("gpt2", lambda f: os.remove(os.path.join(f, "tokenizer.json")), "tokenizer.json is missing"),
    "corrupt-config": ("gpt2", lambda f: open(os.path.join(f, "config.json"), "w").write("{not json"), "config.json: not valid JSON"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoint_is_refused_with_one_line(case, hf, tmp_path, capsys):
    variant, breaker, needle = BAD[case]
    folder = str(tmp_path / "ckpt" / variant)
    shutil.copytree(hf[variant], folder)
    breaker(folder)
    models = tmp_path / "models"
    models.mkdir()
    assert main(["import", "--hf", folder, "--out", str(models / "x")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("t2r import: error: "), err
    assert needle in err, err
    assert captured.out == ""
    assert os.listdir(models) == [], "something was written to the models folder"


def test_existing_out_is_never_overwritten(hf, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep").write_text("precious")
    assert main(["import", "--hf", hf["gpt2"], "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert os.listdir(out) == ["keep"]


def test_cli_process_exit_and_one_line(hf, tmp_path):
    """The real process: `PYTHONPATH=trainer python3 -m t2r import` (the spelling deployments use)."""
    folder = shutil.copytree(hf["gpt2"], tmp_path / "ckpt")
    edit_config(str(folder), n_head=5)
    proc = subprocess.run([sys.executable, "-m", "t2r", "import", "--hf", str(folder), "--out", str(tmp_path / "m")],
                          cwd=TRAINER, env={**os.environ, "PYTHONPATH": TRAINER}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "t2r import: error: config.json: n_embd 64 is not a multiple of n_head 5"
    assert not (tmp_path / "m").exists()
    ok = subprocess.run([sys.executable, "-m", "t2r", "import", "--hf", str(tmp_path / "ckpt2"), "--out", str(tmp_path / "m")],
                        cwd=TRAINER, env={**os.environ, "PYTHONPATH": TRAINER}, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 1 and "is not a folder" in ok.stderr
