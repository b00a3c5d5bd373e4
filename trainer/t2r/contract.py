"""The contract between the trainer and the TypeScript server: the JSON files in contract/ at the
repository root (schemas, ONNX tensor names, corpus layout, the `convert` flags, recipe defaults).
Both sides read the same files; trainer/tests/test_contract.py and test/contract/ fail on drift."""
from __future__ import annotations

import functools
import json
import os

from .jsonschema_subset import errors

CONTRACT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "contract"))


class ContractError(ValueError):
    pass


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict:
    with open(os.path.join(CONTRACT_DIR, name)) as f:
        doc = json.load(f)
    doc.pop("$comment", None)
    return doc


RECIPE = load("recipe.json")
ONNX_IO = load("onnx-io.json")
CORPUS_FILES = load("corpus-files.json")


def check(instance, schema: str, what: str) -> None:
    """Raises ContractError naming the first few violations of contract/<schema> by `instance`."""
    found = errors(instance, load(schema))
    if found:
        raise ContractError(f"{what} breaks contract/{schema}: {'; '.join(found[:3])}")


def state_tensors(architecture: str) -> list[dict]:
    """The state tensors (contract/onnx-io.json) of a model with this attention."""
    for family in ONNX_IO["state"].values():
        if architecture in family["architectures"]:
            return family["tensors"]
    raise ContractError(f"contract/onnx-io.json has no state for architecture {architecture!r}")


def resolve_shape(shape: list, dims: dict) -> list:
    """A contract shape with manifest dims filled in; dynamic axes stay symbolic."""
    return [d if d in ONNX_IO["dynamic_axes"] else dims[d] for d in shape]
