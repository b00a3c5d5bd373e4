"""A validator for the subset of JSON Schema (draft-07) that the contract's schemas use.

Debian's python3 has no jsonschema package here, and four small schemas do not justify a new
dependency in every image. Keywords outside the subset are refused, never ignored, so a schema can
not silently rely on a check this validator does not make (trainer/tests/test_contract.py runs every
contract schema through it)."""
from __future__ import annotations

import re

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description"}
KEYWORDS = {"type", "const", "enum", "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
            "minLength", "maxLength", "pattern", "items", "minItems", "maxItems", "properties", "required",
            "additionalProperties"} | ANNOTATIONS


class SchemaError(Exception):
    """The schema itself uses something this validator does not implement."""


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _has_type(x, kind: str) -> bool:
    if kind == "integer":
        return _is_number(x) and float(x).is_integer()
    if kind == "number":
        return _is_number(x)
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kind not in kinds:
        raise SchemaError(f"unknown type {kind!r}")
    return isinstance(x, kinds[kind])


def _same(a, b) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def errors(x, schema: dict, path: str = "") -> list[str]:
    """Every violation of `schema` by `x`, each as '<JSON pointer>: <what is wrong>'."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise SchemaError(f"unsupported JSON Schema keywords {sorted(unknown)} at {path or '/'}")
    where = path or "/"
    if "type" in schema and not _has_type(x, schema["type"]):
        return [f"{where}: must be {schema['type']}"]
    out: list[str] = []
    if "const" in schema and not _same(x, schema["const"]):
        out.append(f"{where}: must be {schema['const']!r}")
    if "enum" in schema and not any(_same(x, v) for v in schema["enum"]):
        out.append(f"{where}: must be one of {schema['enum']!r}")
    if "anyOf" in schema:
        branches = [errors(x, s, path) for s in schema["anyOf"]]
        if all(branches):
            closest = min(branches, key=len)
            out.append(f"{where}: matches none of {len(branches)} alternatives (closest: {'; '.join(closest)})")
    if _is_number(x):
        for key, fails, word in (("minimum", lambda v: x < v, ">="), ("maximum", lambda v: x > v, "<="),
                                 ("exclusiveMinimum", lambda v: x <= v, ">"),
                                 ("exclusiveMaximum", lambda v: x >= v, "<")):
            if key in schema and fails(schema[key]):
                out.append(f"{where}: must be {word} {schema[key]}, got {x}")
    if isinstance(x, str):
        if "minLength" in schema and len(x) < schema["minLength"]:
            out.append(f"{where}: must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(x) > schema["maxLength"]:
            out.append(f"{where}: must be at most {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], x) is None:
            out.append(f"{where}: must match {schema['pattern']}")
    if isinstance(x, list):
        if "minItems" in schema and len(x) < schema["minItems"]:
            out.append(f"{where}: must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(x) > schema["maxItems"]:
            out.append(f"{where}: must have at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(x):
                out.extend(errors(item, schema["items"], f"{path}/{i}"))
    if isinstance(x, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in x:
                out.append(f"{path}/{key}: is required")
        extra = schema.get("additionalProperties", True)
        if not isinstance(extra, bool):
            raise SchemaError(f"additionalProperties must be true or false at {where}")
        for key, value in x.items():
            if key in props:
                out.extend(errors(value, props[key], f"{path}/{key}"))
            elif not extra:
                out.append(f"{path}/{key}: is not allowed")
    return out
