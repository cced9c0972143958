"""The canonical form of a JSON Schema, and the fingerprint hashed from it.

A schema version's fingerprint (see :class:`~statemigrate._model._schema.SchemaVersion`)
is 32 hex digits of SHA-256 over the canonical text of its JSON Schema: keys sorted,
cosmetic keywords (titles, descriptions, examples) removed, ``required`` lists sorted and
nested definitions renamed in order of first use, so that only what changes which data
is valid changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

from statemigrate._model._jsonschema import KEYS

__all__ = ["DEFS_REF", "canonical_json_schema", "canonical_text", "fingerprint_of"]

# Annotation keywords of JSON Schema that never change which data is valid.
_COSMETIC = frozenset({"title", "description", "examples", "$comment"})
# Keywords whose value maps names (field names, definition names, patterns) to schemas:
# the names are data, only the values are schema objects.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
# Keywords whose value is one schema (or, for old-style "items", a list of them).
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
        KEYS,  # the Python type of a dict's keys, where pydantic leaves it out
    }
)
# Keywords whose value is a list of schemas.
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
DEFS_REF = "#/$defs/"


def canonical_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return the canonical form of a JSON Schema produced by pydantic.

    Cosmetic keywords (``title``, ``description``, ``examples``, ``$comment``) are
    removed from schema objects only: a *field* called ``title`` under ``properties``,
    or a ``"title"`` key inside a ``default`` value, is data and stays. ``required``
    lists are sorted, since the order of fields does not change what is valid. Definitions under
    ``$defs`` are renamed ``d0``, ``d1``, ... in the order a sorted walk from the root
    first refers to them, so renaming a nested class does not change the result;
    definitions nothing refers to are dropped.
    """
    cleaned = _rebuild(schema, _normalize)
    defs = cleaned.get("$defs")
    if not isinstance(defs, dict):
        return cast(dict[str, Any], cleaned)
    order = _definition_order(cleaned, defs)
    names = {old: f"d{index}" for index, old in enumerate(order)}
    root = {key: value for key, value in cleaned.items() if key != "$defs"}
    result = cast(dict[str, Any], _rebuild(root, lambda obj: _rename_refs(obj, names)))
    if order:
        result["$defs"] = {
            names[old]: _rebuild(defs[old], lambda obj: _rename_refs(obj, names)) for old in order
        }
    return result


def fingerprint_of(schema: dict[str, Any]) -> str:
    """Return 32 hex digits of SHA-256 over the canonical text of ``schema``."""
    return hashlib.sha256(canonical_text(schema).encode("ascii")).hexdigest()[:32]


def canonical_text(schema: dict[str, Any]) -> str:
    return json.dumps(
        canonical_json_schema(schema), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def _rebuild(node: Any, fix: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Copy a schema, applying ``fix`` to every schema object (and nothing else)."""
    if not isinstance(node, dict):
        return node  # a boolean schema
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _rebuild(sub, fix) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_rebuild(sub, fix) for sub in value]
        elif key in _SCHEMA_VALUES:
            if isinstance(value, list):
                out[key] = [_rebuild(sub, fix) for sub in value]
            else:
                out[key] = _rebuild(value, fix)
        else:
            out[key] = value
    return fix(out)


def _children(node: dict[str, Any]) -> Iterator[Any]:
    """Yield the direct subschemas of a schema object in a key-sorted order."""
    for key in sorted(node):
        value = node[key]
        if key == "$defs":
            continue  # definitions are visited when something refers to them
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            yield from (value[name] for name in sorted(value))
        elif key in _SCHEMA_LISTS or (key in _SCHEMA_VALUES and isinstance(value, list)):
            if isinstance(value, list):
                yield from value
        elif key in _SCHEMA_VALUES:
            yield value


def _refs_in(node: Any) -> Iterator[str]:
    """Yield the ``$defs`` names a schema refers to, in a pre-order, key-sorted walk."""
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(DEFS_REF):
        yield ref[len(DEFS_REF) :]
    for child in _children(node):
        yield from _refs_in(child)


def _definition_order(root: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """Name every definition reachable from ``root``, in order of first reference."""
    order: list[str] = []
    todo = [root]
    while todo:
        for name in _refs_in(todo.pop(0)):
            if name in defs and name not in order:
                order.append(name)
                todo.append(defs[name])
    return order


def _normalize(obj: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in obj.items() if key not in _COSMETIC}
    required = out.get("required")
    if isinstance(required, list) and all(isinstance(name, str) for name in required):
        out["required"] = sorted(required)  # a set of names: field order is cosmetic
    return out


def _rename_refs(obj: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def rename(ref: object) -> object:
        if isinstance(ref, str) and ref.startswith(DEFS_REF):
            old = ref[len(DEFS_REF) :]
            if old in names:
                return DEFS_REF + names[old]
        return ref

    if "$ref" in obj:
        obj["$ref"] = rename(obj["$ref"])
    discriminator = obj.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
        mapping = {key: rename(ref) for key, ref in discriminator["mapping"].items()}
        obj["discriminator"] = {**discriminator, "mapping": mapping}
    return obj
