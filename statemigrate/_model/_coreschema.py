"""What the typed forms and the in-place checker both accept of a pydantic core schema.

Both walk a schema's core form and decline every node whose validation they cannot
reproduce exactly. The keys known to change nothing, and the checks of a TypedDict node
and of its fields, are the same for both and live here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Keys any core schema may carry without changing what validation returns.
INERT = frozenset({"type", "ref", "metadata", "serialization"})
# What a TypedDict node may carry besides those.
RECORD_PARTS = frozenset(
    {"fields", "cls", "cls_name", "computed_fields", "extra_behavior", "config", "total"}
)
# What each structural node may carry besides the inert keys: the nodes every walk of a
# core schema shares. Each walk adds its scalar kinds, with the constraints it reproduces.
STRUCTURE_PARTS: Mapping[str, frozenset[str]] = {
    "none": frozenset(),
    "any": frozenset(),
    "nullable": frozenset({"schema"}),
    "list": frozenset({"items_schema"}),
    "dict": frozenset({"keys_schema", "values_schema"}),
    "typed-dict": RECORD_PARTS,
    "definitions": frozenset({"schema", "definitions"}),
    "definition-ref": frozenset({"schema_ref"}),
}
FIELD_KEYS = frozenset(
    {"type", "schema", "required", "metadata", "serialization_alias", "serialization_exclude"}
)
# A TypedDict's config reaches every validator below it (str_strip_whitespace,
# str_to_lower, allow_inf_nan, ...); only its title is known to change nothing.
INERT_CONFIG = frozenset({"title"})


def schema_nodes(root: object) -> Iterator[Mapping[str, Any]]:
    """Every node (mapping) of a core schema, at any depth, without recursion, so a
    deep schema cannot exhaust the stack. A node's ``metadata`` (pydantic's own notes,
    not schema) and ``cls`` are not entered."""
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            yield item
            stack.extend(v for k, v in item.items() if k not in ("metadata", "cls"))
        elif isinstance(item, list | tuple):
            stack.extend(item)


def schema_refs(root: object) -> dict[str, Mapping[str, Any]]:
    """Every node of a core schema that carries a ``ref``, by its ref: what a
    ``definition-ref`` names. The first node found for a ref is kept."""
    refs: dict[str, Mapping[str, Any]] = {}
    for node in schema_nodes(root):
        ref = node.get("ref")
        if isinstance(ref, str) and isinstance(node.get("type"), str):
            refs.setdefault(ref, node)
    return refs


class Unsupported(Exception):
    """A core schema node whose validation the walk cannot reproduce exactly."""


def record_fields(schema: Mapping[str, Any]) -> Iterator[tuple[Any, Mapping[str, Any], bool]]:
    """The fields of a ``typed-dict`` node, in order: name, core schema, whether required.

    Each field is checked just before it is given, so a walk that translates it at once
    stops at the same place as one that checks as it goes.

    Raises:
        Unsupported: the record allows extra fields, has computed fields or a config
            that changes validation, a field's name is not a plain ``str``, or a field
            carries a key not known here.
    """
    if schema.get("extra_behavior", "ignore") not in ("ignore", "forbid"):
        raise Unsupported("extra fields allowed")
    if schema.get("computed_fields") or set(schema.get("config") or {}) - INERT_CONFIG:
        raise Unsupported("config")
    total = schema.get("total", True)
    for name, spec in schema["fields"].items():
        if type(name) is not str:
            # A str subclass (a StrEnum member, say) as a field name: pydantic writes
            # that very object as the key, and its repr need not be a str literal.
            raise Unsupported("field name")
        if spec.get("type") != "typed-dict-field" or set(spec) - FIELD_KEYS:
            raise Unsupported("field")
        yield name, spec["schema"], bool(spec.get("required", total))
