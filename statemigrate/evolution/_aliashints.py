"""The other names a live type lets each field be read from (``AliasChoices``), found
in its pydantic core schema: an old field of such a name was renamed, which
:func:`~statemigrate.evolution._schemadiff.diff_schemas` takes as declared. Pure
functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from statemigrate._model._schema import SchemaVersion

__all__ = ["alias_hints"]

FieldPath = tuple[str, ...]


def alias_hints(schema: SchemaVersion) -> dict[FieldPath, set[str]]:
    """Per field path (new data), the other names ``AliasChoices`` lets it be read from."""
    found: dict[FieldPath, set[str]] = {}
    refs: dict[str, Any] = {}
    _index_refs(schema.adapter.core_schema, refs)
    _walk_core(schema.adapter.core_schema, (), found, refs, frozenset())
    return found


def _index_refs(node: Any, refs: dict[str, Any]) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("ref"), str) and isinstance(item.get("type"), str):
                refs.setdefault(item["ref"], item)
            stack.extend(v for k, v in item.items() if k not in ("metadata", "cls"))
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _walk_core(
    node: Any,
    path: FieldPath,
    found: dict[FieldPath, set[str]],
    refs: dict[str, Any],
    seen: frozenset[str],
) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "definition-ref":
        ref = node.get("schema_ref")
        if isinstance(ref, str) and ref not in seen and ref in refs:
            _walk_core(refs[ref], path, found, refs, seen | {ref})
        return
    if kind in ("typed-dict", "model-fields"):
        fields: Iterable[tuple[str, Any]] = node["fields"].items()
    elif kind == "dataclass-args":
        fields = [(f["name"], f) for f in node["fields"]]
    else:
        for key in _CORE_CHILDREN:
            sub = (*path, "*") if key in ("items_schema", "values_schema") else path
            for child in _schemas_in(node.get(key)):
                _walk_core(child, sub, found, refs, seen)
        return
    for name, spec in fields:
        alias = spec.get("validation_alias")
        key = name
        if isinstance(alias, list):
            choices = [
                c[0] for c in alias if isinstance(c, list) and len(c) == 1 and isinstance(c[0], str)
            ]
            if choices:
                key = choices[0]
                if len(choices) > 1:
                    found.setdefault((*path, key), set()).update(choices[1:])
        elif isinstance(alias, str):
            key = alias
        _walk_core(spec.get("schema"), (*path, key), found, refs, seen)


# Keys of a core schema node that hold the schemas of its contents.
_CORE_CHILDREN = (
    "schema",
    "items_schema",
    "values_schema",
    "choices",
    "steps",
    "lax_schema",
    "python_schema",
)


def _schemas_in(child: Any) -> list[Any]:
    if isinstance(child, dict):
        return [child] if "type" in child else list(child.values())  # tagged-union choices
    if isinstance(child, list | tuple):
        return [item[0] if isinstance(item, tuple) else item for item in child]
    return []
