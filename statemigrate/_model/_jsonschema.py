"""The JSON Schema a schema version is fingerprinted and frozen by: pydantic's, plus the
Python types it leaves out that change what validation returns.

pydantic writes a JSON Schema for JSON documents, whose object keys are always strings:
so ``dict[str, X]``, ``dict[int, X]``, ``dict[float, X]``, ``dict[Decimal, X]`` and
``dict[bool, X]`` all come out as ``{"type": "object", "additionalProperties": X}``.
Validation tells them apart: the keys ``"007"`` and ``"7"`` of a ``dict[str, X]`` both
become ``7`` under ``dict[int, X]``, one entry lost. A fingerprint computed from that
JSON Schema would let such an edit keep its version, and a restore would take the old
data as its own. The same holds, without the loss, for ``tuple[X, ...]`` and ``deque``
against ``list``, ``frozenset`` against ``set``, ``OrderedDict`` and ``Counter`` against
``dict``; and for what changes values silently: a string constraint that rewrites text
(``to_lower``, ``to_upper``, ``strip_whitespace``, on a field or in a model's config)
and a union validated left to right.

:func:`validation_schema` adds what is missing under keywords of its own
(:data:`KEYS`, :data:`PYTHON_TYPE`, :data:`STR_TRANSFORMS`, :data:`UNION_MODE`; JSON
Schema validators ignore unknown keywords), and only where pydantic leaves it out, so
every schema pydantic describes fully keeps its JSON Schema and its fingerprint as they
were: ``dict[str, X]``, ``dict[datetime, X]`` (whose key format pydantic shows), ``list``,
``set`` and the rest.

pydantic writes a ``Literal``'s or an ``Enum``'s bytes value as its UTF-8 text, and stops
on bytes that are not UTF-8 (``Literal[b"\\xff"]``), which it validates all the same; such
a value is written as ``{"$base64": "/w=="}`` (:data:`BYTES`), so the schema registers
and its fingerprint tells those values apart. Every other value is written as pydantic
writes it.

:func:`detail_changes` says, field by field, where two such schemas differ in what
these keywords record, for the schema lock's messages.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import pydantic
import pydantic_core
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "BYTES",
    "DETAIL_KEYWORDS",
    "KEYS",
    "PYTHON_TYPE",
    "STR_TRANSFORMS",
    "UNION_MODE",
    "describe_key_type",
    "detail_changes",
    "unrecorded_details",
    "validation_schema",
    "without_details",
]

KEYS = "x-statemigrate-keys"
"""On an object schema: the JSON Schema of its keys' Python type, when pydantic shows
neither ``propertyNames`` nor ``patternProperties`` for it (any key type but ``str``)."""
PYTHON_TYPE = "x-statemigrate-type"
"""On an array or object schema: the Python container validation returns, when it is
not the one JSON Schema implies (``list``, ``set`` for unique items, ``dict``)."""
STR_TRANSFORMS = "x-statemigrate-str"
"""On a string schema, or a record's whose config sets them: the rewrites validation
applies to text, sorted (``strip_whitespace``, ``to_lower``, ``to_upper``)."""
UNION_MODE = "x-statemigrate-union"
"""On an ``anyOf``: ``"left_to_right"``, when the union takes its first fitting member
rather than the best one."""
BYTES = "$base64"
"""The key of the one-key object a Literal's or an Enum's value stands as in the JSON
Schema, when it is bytes that are not UTF-8 (base64-encoded): pydantic cannot write it."""
DETAIL_KEYWORDS = (KEYS, PYTHON_TYPE, STR_TRANSFORMS, UNION_MODE)
"""Every keyword this module adds (only :data:`KEYS` holds a schema; the others, names)."""

_TRANSFORMS = ("strip_whitespace", "to_lower", "to_upper")
_CONFIG_TRANSFORMS = {
    "str_strip_whitespace": "strip_whitespace",
    "str_to_lower": "to_lower",
    "str_to_upper": "to_upper",
}
# What a key schema is when it says nothing a JSON object's string keys do not: any key,
# or a plain string.
_STRING_KEYS: tuple[dict[str, str], ...] = ({}, {"type": "string"})


def validation_schema(
    adapter: pydantic.TypeAdapter[Any], *, by_alias: bool = False
) -> dict[str, Any]:
    """The JSON Schema of ``adapter`` in validation mode, with the Python types pydantic
    leaves out added (see the module's docstring).

    Fields are named by their Python names, as snapshots hold them: by their aliases
    (``by_alias``, pydantic's default and what releases before lock format 3 hashed), a
    field renamed under the same alias kept its fingerprint, and a restore took the
    old name's data for a schema unchanged and lost it.

    Raises:
        what :meth:`pydantic.TypeAdapter.json_schema` raises.
    """
    return adapter.json_schema(
        mode="validation", by_alias=by_alias, schema_generator=_WithPythonTypes
    )


class _WithPythonTypes(GenerateJsonSchema):
    """pydantic's generator, adding the keywords above where its output leaves the Python
    type open. Each override starts from pydantic's own output and only adds to it.

    Methods a pydantic release does not have are never called there; the fingerprint
    then depends on the pydantic release, as it does anyway (docs/migrations.md)."""

    # A default JSON has no value for (bytes that are not UTF-8) is left out, as pydantic
    # leaves it out: a restore takes an absent field's default from the class, not from
    # this schema. pydantic warns of it, two lines of advice for API schemas at each
    # registration, which every command of the command line printed.
    ignored_warning_kinds = {"skipped-choice", "non-serializable-default"}

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        return self._with_keys(schema, super().dict_schema(schema))

    def ordered_dict_schema(self, schema: Any) -> JsonSchemaValue:
        json_schema = self._with_keys(schema, super().ordered_dict_schema(schema))
        return {**json_schema, PYTHON_TYPE: "OrderedDict"}

    def counter_schema(self, schema: Any) -> JsonSchemaValue:
        json_schema = self._with_keys(schema, super().counter_schema(schema))
        return {**json_schema, PYTHON_TYPE: "Counter"}

    def tuple_schema(self, schema: core_schema.TupleSchema) -> JsonSchemaValue:
        json_schema = super().tuple_schema(schema)
        # A fixed tuple has prefixItems and bounds no list schema has (the empty one
        # maxItems 0 and no items); tuple[X, ...] is a list's schema, bounded or not.
        if "prefixItems" not in json_schema and schema.get("variadic_item_index") is not None:
            json_schema = {**json_schema, PYTHON_TYPE: "tuple"}
        return json_schema

    def deque_schema(self, schema: Any) -> JsonSchemaValue:
        return {**super().deque_schema(schema), PYTHON_TYPE: "deque"}

    def frozenset_schema(self, schema: core_schema.FrozenSetSchema) -> JsonSchemaValue:
        return {**super().frozenset_schema(schema), PYTHON_TYPE: "frozenset"}

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        json_schema = super().str_schema(schema)
        transforms = [name for name in _TRANSFORMS if schema.get(name)]
        if transforms:
            json_schema = {**json_schema, STR_TRANSFORMS: transforms}
        return json_schema

    def union_schema(self, schema: core_schema.UnionSchema) -> JsonSchemaValue:
        json_schema = super().union_schema(schema)
        if schema.get("mode") == "left_to_right" and "anyOf" in json_schema:
            json_schema = {**json_schema, UNION_MODE: "left_to_right"}
        return json_schema

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        expected = schema["expected"]
        if not any(_undecodable(_value_of(value)) for value in expected):
            return super().literal_schema(schema)
        shown = [_jsonable(_value_of(value)) for value in expected]
        return super().literal_schema({**schema, "expected": shown})

    def enum_schema(self, schema: core_schema.EnumSchema) -> JsonSchemaValue:
        members = schema["members"]
        if not any(_undecodable(member.value) for member in members):
            return super().enum_schema(schema)
        # pydantic reads each member's value alone; its class gives the title.
        shown = [_Shown(_jsonable(member.value)) for member in members]
        return super().enum_schema({**schema, "members": shown})

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        return _with_config(schema, super().model_schema(schema))

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> JsonSchemaValue:
        return _with_config(schema, super().typed_dict_schema(schema))

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        return _with_config(schema, super().dataclass_schema(schema))

    def _with_keys(self, schema: Any, json_schema: JsonSchemaValue) -> JsonSchemaValue:
        if "keys_schema" not in schema:
            return json_schema
        if "propertyNames" in json_schema or "patternProperties" in json_schema:
            return json_schema  # pydantic shows the keys (a format, an enum, a pattern)
        keys = {k: v for k, v in self.generate_inner(schema["keys_schema"]).items() if k != "title"}
        if keys in _STRING_KEYS:
            return json_schema
        return {**json_schema, KEYS: keys}


class _Shown(NamedTuple):
    """An enum member as pydantic's JSON Schema reads it: by its value."""

    value: Any


def _value_of(expected: Any) -> Any:
    return expected.value if isinstance(expected, enum.Enum) else expected


def _undecodable(value: Any) -> bool:
    """Whether ``value`` is bytes that are not UTF-8, or a list or tuple holding some:
    pydantic writes bytes into a JSON Schema as their UTF-8 text, and stops on these."""
    if isinstance(value, bytes):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    return isinstance(value, list | tuple) and any(_undecodable(item) for item in value)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON: bytes that are not UTF-8 as ``{"$base64": ...}``, the form the
    command line shows bytes in, which no text nor UTF-8 bytes value takes (pydantic
    writes those as strings); anything else as pydantic writes it."""
    if isinstance(value, bytes) and _undecodable(value):
        return {BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple) and _undecodable(value):
        return [_jsonable(item) for item in value]
    return pydantic_core.to_jsonable_python(value)


def _with_config(schema: Any, json_schema: JsonSchemaValue) -> JsonSchemaValue:
    """A record's JSON Schema with the text rewrites its config applies to its strings."""
    config = schema.get("config") or {}
    transforms = sorted(name for key, name in _CONFIG_TRANSFORMS.items() if config.get(key))
    if not transforms or "$ref" in json_schema:
        return json_schema
    return {**json_schema, STR_TRANSFORMS: transforms}


# --- what differs, field by field, for the schema lock -----------------------------------


def without_details(node: Any) -> Any:
    """A copy of a JSON Schema without this module's keywords: what pydantic alone
    writes, and what files frozen before these keywords existed hold."""
    if isinstance(node, dict):
        return {k: without_details(v) for k, v in node.items() if k not in DETAIL_KEYWORDS}
    if isinstance(node, list):
        return [without_details(item) for item in node]
    return node


def detail_changes(
    old: dict[str, Any], new: dict[str, Any], *, old_recorded: bool = True
) -> list[str]:
    """Where two canonical JSON Schemas differ in what the keywords of this module
    record, one line per place: ``field `by_id`: dict keys str became int``.

    Places are named by field paths (``*`` for any dict value or list item); a keyword
    a schema lacks stands for JSON Schema's own reading (``str`` keys, a ``list``).
    With ``old_recorded`` false (``old`` may come from a release that wrote none of
    these keywords), a keyword ``old`` lacks is not read that way: the line says
    ``dict keys unrecorded became int``, since nothing says what the type was.
    """
    before, after = dict(_details(old)), dict(_details(new))
    lines = []
    # A place only one side has is a type changed as a whole, which the diff shows.
    for place in sorted(before.keys() & after.keys()):
        was, now = before[place], after[place]
        for keyword in DETAIL_KEYWORDS:
            if was.get(keyword) != now.get(keyword):
                what, old_text, new_text = _describe(keyword, place, was, now)
                if keyword not in was and not old_recorded:
                    old_text = "unrecorded"
                lines.append(f"field `{place[0] or '(root)'}`: {what}{old_text} became {new_text}")
    return lines


def unrecorded_details(frozen: dict[str, Any], live: dict[str, Any]) -> list[str] | None:
    """When the canonical JSON Schema ``frozen`` is ``live`` but for keywords of this
    module it lacks (as a file frozen by a release that wrote none of them is), what
    ``live`` records that ``frozen`` does not, one line per place: ``field `by_id`:
    dict keys int``. None when they differ in anything else; empty when equal.
    """
    if not _lacks_only_details(frozen, live):
        return None
    before, after = dict(_details(frozen)), dict(_details(live))
    lines = []
    for place in sorted(after):
        was, now = before.get(place, {}), after[place]
        for keyword in DETAIL_KEYWORDS:
            if keyword in now and keyword not in was:
                what, _, new_text = _describe(keyword, place, was, now)
                lines.append(f"field `{place[0] or '(root)'}`: {what}{new_text}")
    return lines


def _lacks_only_details(frozen: Any, live: Any) -> bool:
    """Whether ``frozen`` equals ``live`` with some of this module's keywords left out
    (every one it does hold, it holds with the same value)."""
    if isinstance(frozen, dict) and isinstance(live, dict):
        if not frozen.keys() <= live.keys():
            return False
        if any(key not in DETAIL_KEYWORDS for key in live.keys() - frozen.keys()):
            return False
        return all(_lacks_only_details(value, live[key]) for key, value in frozen.items())
    if isinstance(frozen, list) and isinstance(live, list):
        return len(frozen) == len(live) and all(map(_lacks_only_details, frozen, live))
    return bool(type(frozen) is type(live) and frozen == live)


_Place = tuple[str, str]
"""A field path, and the node's base JSON type (a keyword means something else on each)."""


def _details(root: dict[str, Any]) -> Iterator[tuple[_Place, dict[str, Any]]]:
    """Every node of ``root`` that has one of the keywords or could (an object, an
    array, a string, a union), with its field path; references followed once each."""
    defs = root.get("$defs", {})
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, Any]] = [("", root)]
    while todo:
        path, node = todo.pop()
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if (path, name) not in seen:  # a recursive schema refers back to itself
                seen.add((path, name))
                todo.append((path, defs.get(name)))
        kind = node.get("type") if isinstance(node.get("type"), str) else ""
        if kind or "anyOf" in node or any(keyword in node for keyword in DETAIL_KEYWORDS):
            yield (path, f"{kind}{'+unique' if node.get('uniqueItems') else ''}"), {
                keyword: node[keyword] for keyword in DETAIL_KEYWORDS if keyword in node
            }
        for name, sub in (node.get("properties") or {}).items():
            todo.append((f"{path}.{name}" if path else name, sub))
        for key in ("additionalProperties", "items"):
            if isinstance(node.get(key), dict):
                todo.append((f"{path}.*" if path else "*", node[key]))
        for index, sub in enumerate(node.get("prefixItems") or ()):
            todo.append((f"{path}.{index}" if path else str(index), sub))
        for sub in node.get("anyOf") or node.get("oneOf") or ():
            todo.append((path, sub))


def _describe(
    keyword: str, place: _Place, was: dict[str, Any], now: dict[str, Any]
) -> tuple[str, str, str]:
    if keyword == KEYS:
        return "dict keys ", describe_key_type(was.get(KEYS)), describe_key_type(now.get(KEYS))
    if keyword == PYTHON_TYPE:
        implied = {"array": "list", "array+unique": "set", "object": "dict"}.get(place[1], "?")
        return "", was.get(PYTHON_TYPE, implied), now.get(PYTHON_TYPE, implied)
    if keyword == STR_TRANSFORMS:
        return "string rewrites ", _listed(was.get(keyword)), _listed(now.get(keyword))
    return "union ", _union(was.get(keyword)), _union(now.get(keyword))


def _listed(names: object) -> str:
    return ", ".join(names) if isinstance(names, list) and names else "none"


def _union(mode: object) -> str:
    return "left to right" if mode == "left_to_right" else "smart"


_JSON_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "null": "None",
               "string": "str", "array": "list", "object": "dict"}


def describe_key_type(schema: object) -> str:
    """A key type in Python's words where it is one of the common ones, else its JSON
    Schema (``str`` for none: what a JSON object's keys are)."""
    if schema is None:
        return "str"
    if not isinstance(schema, dict):
        return json.dumps(schema)
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        if [b.get("type") for b in branches if isinstance(b, dict)] == ["number", "string"]:
            return "Decimal"
        return " | ".join(describe_key_type(branch) for branch in branches)
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(value) for value in schema["enum"]) + "]"
    if "const" in schema:
        return f"Literal[{json.dumps(schema['const'])}]"
    kind = schema.get("type")
    name = schema.get(PYTHON_TYPE) or _JSON_TYPES.get(kind if isinstance(kind, str) else "")
    if name is None:
        return json.dumps(schema, sort_keys=True)
    rest = {k: v for k, v in schema.items() if k not in ("type", PYTHON_TYPE)}
    if not rest:
        return str(name)
    return f"{name} {json.dumps(rest, sort_keys=True)}"
