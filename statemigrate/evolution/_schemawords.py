"""JSON Schema nodes, and the changes of their bounds and allowed values, in words.

makemigration's TODOs and notes are read by the author of a schema change, who wrote
Python types, not JSON Schema: a node is said as ``an object with fields h, w`` or
``a dict of int keys to string``, never as a raw ``{"$ref": ...}``, and a long
value is shortened between tokens (``... (3 more)``), never in the middle of one.

:func:`bound_changes` and :func:`value_changes` say which bounds (``minimum``,
``maxLength``, ...) or allowed values (``Literal``, enums) changed and which step may
meet data the other version allowed: a tightened bound or a narrowed set of values
refuses some old data, a loosened or widened one refuses none. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from statemigrate._model._jsonschema import KEYS, PYTHON_TYPE, describe_key_type

__all__ = [
    "BOUNDS",
    "allowed_values",
    "allows_values",
    "bound_changes",
    "brief_json",
    "describe",
    "listed",
    "python_type",
    "value_changes",
]

Resolve = Callable[[Any], Any]
"""Follows a ``$ref`` node to the definition it names (the node itself otherwise)."""

_SHOWN = 6  # the names or values a list shows before "(N more)"

# JSON Schema's types in Python's words, and the string formats pydantic gives types.
_PYTHON_NAMES = {
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "string": "str",
    "array": "list",
    "object": "dict",
}
_STRING_FORMATS = {
    "binary": "bytes",
    "date-time": "datetime",
    "date": "date",
    "time": "time",
    "duration": "timedelta",
    "uuid": "UUID",
}
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(\[[A-Za-z0-9_.\[\], |]*\])?")

# Bounds a lower value of which refuses less, and those a higher value of which does.
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
BOUNDS = (*_LOWER, *_UPPER, "multipleOf", "pattern")
"""The keywords that restrict a value without changing its type."""

_UP = frozenset({"upgrade"})
_DOWN = frozenset({"downgrade"})
_BOTH = _UP | _DOWN


def describe(node: Any, resolve: Resolve, seen: frozenset[str] = frozenset()) -> str:
    """A schema node in words: its type, its bounds with their values, an object's
    fields, a definition by its title when it has one."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen:  # a recursive type, already being described
            return "the enclosing type"
        return describe(resolve(node), resolve, seen | {ref})
    if not isinstance(node, dict):
        return brief_json(node)
    if isinstance(node.get("title"), str) and node["title"]:
        return str(node["title"])
    if not node:
        return "any value"
    if isinstance(node.get("anyOf"), list):
        return " | ".join(describe(branch, resolve, seen) for branch in node["anyOf"])
    tag = node.get("discriminator")
    if "oneOf" in node and isinstance(tag, dict) and isinstance(tag.get("mapping"), dict):
        return f"a union tagged by {tag.get('propertyName')} ({listed(tag['mapping'])})"
    if isinstance(node.get("enum"), list):
        return "one of " + listed(json.dumps(value) for value in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if isinstance(node.get("properties"), dict):
        fields = sorted(node["properties"])
        return f"an object with fields {listed(fields)}" if fields else "an empty object"
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        # Keys first: "with int keys" after a nested dict would seem to be the inner one's.
        keys = f"{describe_key_type(node[KEYS])} keys to " if KEYS in node else ""
        return f"a dict of {keys}" + describe(node["additionalProperties"], resolve, seen)
    if "type" in node:
        text, said = python_type(node)
        items = node.get("items")
        if isinstance(items, dict) and "prefixItems" not in node:
            inner = describe(items, resolve, seen)
            if _PLAIN_NAME.fullmatch(inner):  # list[str]; a list of records stays "list"
                text += f"[{inner}]"
        if KEYS in node:
            text += f" with {describe_key_type(node[KEYS])} keys"
        extras = [
            _keyword(key, node[key])
            for key in sorted(node)
            if key not in ("type", "items", "properties", "additionalProperties", "required")
            and key not in (KEYS, PYTHON_TYPE, *said)
        ]
        return text + (f" ({', '.join(extras)})" if extras else "")
    return brief_json(node)


def python_type(node: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The Python type a JSON Schema node with a ``type`` stands for (``int``, ``set``,
    ``bytes``, ``datetime``), and the keywords that name says, so not shown again:
    ``uniqueItems`` of a set, ``format`` of bytes or a datetime."""
    kind = node["type"]
    if isinstance(kind, list):
        return " | ".join(_PYTHON_NAMES.get(str(k), str(k)) for k in kind), ()
    if PYTHON_TYPE in node:  # tuple, deque, frozenset, OrderedDict, Counter
        return str(node[PYTHON_TYPE]), ("uniqueItems",)
    if kind == "array" and node.get("uniqueItems") is True:
        return "set", ("uniqueItems",)
    if kind == "string" and node.get("format") in _STRING_FORMATS:
        return _STRING_FORMATS[node["format"]], ("format",)
    return _PYTHON_NAMES.get(str(kind), str(kind)), ()


def _keyword(key: str, value: Any) -> str:
    """A keyword of a node with its value when that is short: ``minimum 0``."""
    if value is True or isinstance(value, dict | list):
        return key
    return f"{key} {json.dumps(value)}"


def listed(items: Iterable[str]) -> str:
    """``a, b, c``, the first few of a long list and how many more there are."""
    items = list(items)
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def brief_json(value: Any, width: int = 60) -> str:
    """``value`` as JSON within about ``width`` characters: nested objects and lists are
    elided (``{...}``, ``... (N more)``) from the deepest up, never cut inside a token."""
    text = json.dumps(value, sort_keys=True)
    depth = 3
    while len(text) > width and depth >= 0:
        text = _elided(value, depth)
        depth -= 1
    return text


def _elided(value: Any, depth: int) -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        if depth == 0:
            return "{...}"
        keys = sorted(value)
        inner = [f"{json.dumps(k)}: {_elided(value[k], depth - 1)}" for k in keys[:3]]
        more = [f"... ({len(keys) - 3} more)"] if len(keys) > 3 else []
        return "{" + ", ".join(inner + more) + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if depth == 0:
            return "[...]"
        items = [_elided(item, depth - 1) for item in value[:3]]
        more = [f"... ({len(value) - 3} more)"] if len(value) > 3 else []
        return "[" + ", ".join(items + more) + "]"
    return json.dumps(value)


# --- bounds and allowed values --------------------------------------------------------


def bound_changes(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[str, str, frozenset[str]]]:
    """Each bound that differs: its keyword, the change in words (``minimum 0 added``,
    ``maximum 100 -> 50``), and the steps whose target refuses data their source
    allowed: the upgrade for a tightened bound, the downgrade for a loosened one, both
    when neither contains the other (a new pattern)."""
    found = []
    for key in BOUNDS:
        if key not in old and key not in new:
            continue
        before, after = old.get(key), new.get(key)
        if key not in old:
            found.append((key, f"{key} {json.dumps(after)} added", _UP))
        elif key not in new:
            found.append((key, f"{key} {json.dumps(before)} removed", _DOWN))
        elif before != after or type(before) is not type(after):
            text = f"{key} {json.dumps(before)} -> {json.dumps(after)}"
            found.append((key, text, _tightened_by(key, before, after)))
    return found


def _tightened_by(key: str, before: Any, after: Any) -> frozenset[str]:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    if numbers and key in _LOWER:
        return _UP if after > before else _DOWN
    if numbers and key in _UPPER:
        return _UP if after < before else _DOWN
    if key == "multipleOf" and all(isinstance(v, int) and v for v in (before, after)):
        # Multiples of 10 are multiples of 5: a multiple of the old step tightens.
        if after % before == 0:
            return _UP
        if before % after == 0:
            return _DOWN
    return _BOTH  # two patterns, or steps neither divides: each side refuses some data


def value_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The allowed values (``enum`` or ``const``) only the old node has, and those only
    the new one has, as JSON."""
    before, after = allowed_values(old), allowed_values(new)
    return [v for v in before if v not in after], [v for v in after if v not in before]


def allows_values(node: Any) -> bool:
    """Whether a node is a set of allowed values: a ``Literal`` or an enum."""
    return isinstance(node, dict) and (isinstance(node.get("enum"), list) or "const" in node)


def allowed_values(node: Mapping[str, Any]) -> list[str]:
    """The values a ``Literal`` or an enum allows, as JSON."""
    values = node["enum"] if isinstance(node.get("enum"), list) else [node.get("const")]
    # JSON text tells 1 from true and "1", as the schema does.
    return [json.dumps(value, sort_keys=True) for value in values]
