"""The trainer keeps to contract/: what it writes (model.json, parity.json, the ONNX graph's tensor
names, progress events) validates against the contract, and `convert`'s flags are the ones
contract/trainer-args.json lists, with its recipe defaults. The server's side: test/contract/."""
import json
import os

import onnx
import pytest

from conftest import write_data
from t2r.cli import build_parser
from t2r.contract import CONTRACT_DIR, ONNX_IO, RECIPE, ContractError, check, load, state_tensors
from t2r.data import DataError, load_meta
from t2r.export import layer_name
from t2r.jsonschema_subset import KEYWORDS, SchemaError, errors
from test_cli import TINY, TINY_MODEL, json_lines, t2r

SCHEMAS = ["manifest.schema.json", "parity.schema.json", "corpus-meta.schema.json", "trainer-events.schema.json"]
SHIPPED = os.path.join(CONTRACT_DIR, "..", "models")


def subschemas(schema: dict):
    yield schema
    for sub in [*schema.get("properties", {}).values(), *schema.get("anyOf", [])] + (
            [schema["items"]] if "items" in schema else []):
        yield from subschemas(sub)


@pytest.mark.parametrize("name", SCHEMAS)
def test_schemas_use_only_keywords_the_validator_checks(name):
    for sub in subschemas(load(name)):
        assert set(sub) <= KEYWORDS, f"{name}: {set(sub) - KEYWORDS}"


def test_subset_validator():
    schema = {"type": "object", "additionalProperties": False, "required": ["n"],
              "properties": {"n": {"type": "integer", "minimum": 1},
                             "k": {"anyOf": [{"type": "string", "const": "a"}, {"type": "null"}]}}}
    assert errors({"n": 2, "k": None}, schema) == []
    assert errors({"n": 2.0}, schema) == []
    assert errors({"n": True}, schema) == ["/n: must be integer"]
    assert errors({"n": 0}, schema) == ["/n: must be >= 1, got 0"]
    assert errors({}, schema) == ["/n: is required"]
    assert errors({"n": 1, "x": 1}, schema) == ["/x: is not allowed"]
    assert errors({"n": 1, "k": "b"}, schema)[0].startswith("/k: matches none of 2 alternatives")
    with pytest.raises(SchemaError, match="oneOf"):
        errors(1, {"oneOf": []})


@pytest.mark.parametrize("model", ["sotu-base", "sotu-t2r"])
def test_shipped_model_folders_keep_to_the_contract(model):
    folder = os.path.join(SHIPPED, model)
    manifest = json.load(open(os.path.join(folder, "model.json")))
    check(manifest, "manifest.schema.json", model)
    check(json.load(open(os.path.join(folder, "parity.json"))), "parity.schema.json", model)
    assert [s["name"] for s in manifest["state"]] == [t["name"] for t in state_tensors(manifest["architecture"])]


def test_check_names_the_violation():
    manifest = json.load(open(os.path.join(SHIPPED, "sotu-t2r", "model.json")))
    with pytest.raises(ContractError, match=r"^model.json breaks contract/manifest.schema.json: /architecture: "):
        check({**manifest, "architecture": "lstm"}, "manifest.schema.json", "model.json")
    with pytest.raises(ContractError, match=r"/vocab_size: is required; /layers: is required"):
        check({"name": "x", "architecture": "t2r"}, "manifest.schema.json", "model.json")


def test_a_meta_json_off_the_contract_is_a_data_error(tmp_path):
    folder = write_data(tmp_path / "data")
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"vocab_size": 70000, "eos_token_id": 1, "splits": {}}, f)
    with pytest.raises(DataError, match="vocab_size: must be <= 65536"):
        load_meta(folder)


def _kind(action) -> str:
    """An argparse action's type in contract/trainer-args.json's words."""
    if action.nargs == 0:
        return "switch"
    if action.choices is not None:
        return "choice"
    if action.type is None:
        return "string"
    return action.type.__name__.lstrip("_")


def test_convert_flags_are_the_contracts():
    convert = build_parser()._subparsers._group_actions[0].choices["convert"]
    actions = {a.option_strings[0]: a for a in convert._actions if a.option_strings and a.dest != "help"}
    contract = {f["flag"]: f for f in load("trainer-args.json")["flags"]}
    assert sorted(actions) == sorted(contract)
    for flag, spec in contract.items():
        a = actions[flag]
        assert a.dest == spec["dest"], flag
        assert a.required == spec.get("required", False), flag
        if not a.required:
            want = RECIPE[spec["recipe"]] if "recipe" in spec else spec["default"]
            assert a.default == want and type(a.default) is type(want), flag
        assert _kind(a) == ("string" if spec["type"] == "path" else spec["type"]), flag
        assert list(a.choices or []) == spec.get("choices", []), flag


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny teacher and two conversions of it sharing one --eval-cache; -> (work dir, events per run)."""
    work = tmp_path_factory.mktemp("contract")
    data = write_data(work / "data")
    events = {}
    proc = t2r("pretrain", "--data", data, "--run", work / "run-base", "--steps", "2", *TINY, *TINY_MODEL,
               "--eval-at", "1", "--out", work / "base")
    assert proc.returncode == 0, proc.stderr
    events["pretrain"] = json_lines(proc.stdout)
    for name in ("conv-1", "conv-2"):
        proc = t2r("convert", "--teacher", work / "base", "--data", data, "--run", work / f"run-{name}", "--steps", "2",
                   "--transfer-steps", "1", "--feature-dim", "8", *TINY, "--eval-at", "0.5,1", "--eval-split",
                   "validation", "--eval-sample", "2", "--eval-cache", work / "cache", "--out", work / name)
        assert proc.returncode == 0, proc.stderr
        events[name] = json_lines(proc.stdout)
    return work, events


def test_every_event_the_trainer_emits_keeps_to_the_contract(runs):
    _, events = runs
    kinds = set()
    for run, evs in events.items():
        for e in evs:
            check(e, "trainer-events.schema.json", f"{run} event {e}")
            kinds.add(e["event"])
    assert kinds == {"start", "step", "eval", "checkpoint", "packaged"}


def test_model_folders_the_trainer_writes_keep_to_the_contract(runs):
    work, _ = runs
    for name in ("base", "conv-1"):
        manifest = json.load(open(work / name / "model.json"))
        check(manifest, "manifest.schema.json", name)
        parity = json.load(open(work / name / "parity.json"))
        check(parity, "parity.schema.json", name)
        tensors = state_tensors(manifest["architecture"])
        assert [(s["name"], s["output"], s["growing_axis"]) for s in manifest["state"]] == \
            [(t["name"], t["output"], t["growing_axis"]) for t in tensors]
        references = {ONNX_IO["outputs"][0]["reference"]} | {t["reference"] for t in tensors if t["reference"]}
        assert set(parity) == {"input_ids", "vocab_size"} | references
        graph = onnx.load(str(work / name / "model.onnx")).graph
        inputs = [t["name"] for t in ONNX_IO["inputs"]]
        outputs = [t["name"] for t in ONNX_IO["outputs"]]
        extra = [t["name"] for t in ONNX_IO["extra_outputs"]]
        assert [i.name for i in graph.input] == inputs + [t["name"] for t in tensors]
        assert [o.name for o in graph.output] == outputs + [t["output"] for t in tensors] + extra
        # The decode graph: the same with every state tensor split per layer, layer by layer.
        decode = onnx.load(str(work / name / ONNX_IO["decode_graph"]["file"])).graph
        layers = range(manifest["layers"])
        assert [i.name for i in decode.input] == inputs + [layer_name(t["name"], l) for t in tensors for l in layers]
        assert [o.name for o in decode.output] == outputs + [layer_name(t["output"], l) for t in tensors for l in layers] + extra
        assert [d.dim_value for d in decode.input[0].type.tensor_type.shape.dim][1:] == [ONNX_IO["decode_graph"]["seq"]]


def test_intermediate_evaluations_score_a_validation_sample_and_the_final_one_the_test_split(runs):
    _, events = runs
    evals = [e for e in events["conv-1"] if e["event"] == "eval"]
    progress = [e for e in evals if "finetune_step" in e]
    assert [e["finetune_step"] for e in progress] == [1, 2]
    assert all(e["split"] == "validation" and e["windows"] == 2 and e["sample"] for e in progress)
    final = [e for e in evals if e.get("final")]
    assert len(final) == 1 and final[0]["split"] == "test" and final[0]["windows"] == 4


def test_the_teacher_is_scored_once_per_teacher_and_test_tokens(runs):
    work, events = runs
    first, second = ([e for e in events[n] if e.get("model") == "teacher"] for n in ("conv-1", "conv-2"))
    assert len(first) == len(second) == 1
    assert first[0]["cached"] is False and second[0]["cached"] is True
    assert first[0]["perplexity"] == second[0]["perplexity"]
    base = json.load(open(work / "base" / "model.json"))
    assert first[0]["perplexity"] == base["metrics"]["test_perplexity"]
    conv2 = json.load(open(work / "conv-2" / "model.json"))
    assert conv2["metrics"]["teacher_test_perplexity"] == second[0]["perplexity"]

