"""The field that carries the tag of a discriminated union's member.

pydantic reads a discriminated union's tag before it picks the member, so a member's
tag field is needed in its input even when the member gives it a default
(``kind: Literal["sale"] = "sale"``, or a ``NotRequired`` key of a ``TypedDict``). The
state strategies would leave such a field out as often as any other defaulted one; each
value without it failed validation and was drawn again, which left collections of
tagged members nearly always empty. :func:`tag_key` names the field, so the strategy
can always put the tag in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["tag_key", "with_tag"]

Node = Mapping[str, Any]

_WRAPPERS = frozenset(
    {
        "model",
        "dataclass",
        "definitions",
        "function-after",
        "function-before",
        "function-wrap",
        "custom-error",
    }
)
"""Nodes whose ``schema`` describes the member's input (a ``before`` or ``wrap``
validator may take more, but the strategy draws what its inner schema takes)."""


def tag_key(member: Node, discriminator: object, refs: Mapping[str, Node]) -> str | None:
    """The key under which a drawn value of ``member`` holds its tag, or ``None``.

    Args:
        member: a choice of a ``tagged-union`` node.
        discriminator: that node's ``discriminator``: a key, a list of lookup paths (a
            key and its alias), or a function, whose field no schema names (``None``).
        refs: the nodes a ``definition-ref`` may name, by ref.
    """
    names = _lookup_keys(discriminator)
    if not names:
        return None
    return _key(member, names, refs, seen=set())


def with_tag(value: object, *, key: str, tag: object) -> object:
    """``value`` with ``tag`` under ``key`` unless it has a value there already.

    Values that are not dicts (a model instance the state form draws) hold their tag."""
    if isinstance(value, dict) and key not in value:
        return {**value, key: tag}
    return value


def _lookup_keys(lookup: object) -> frozenset[str]:
    """The top-level keys a discriminator or a validation alias reads: ``"kind"``,
    ``["kind"]`` or ``[["kind"], ["Kind"]]`` (longer paths reach into nested data)."""
    if isinstance(lookup, str):
        return frozenset({lookup})
    if not isinstance(lookup, list):
        return frozenset()
    paths = [lookup] if all(isinstance(step, str | int) for step in lookup) else lookup
    return frozenset(
        path[0]
        for path in paths
        if isinstance(path, list) and len(path) == 1 and isinstance(path[0], str)
    )


def _key(node: Node, names: frozenset[str], refs: Mapping[str, Node], seen: set[str]) -> str | None:
    kind = node.get("type")
    if kind == "definition-ref":
        ref = node.get("schema_ref")
        if not isinstance(ref, str) or ref in seen or ref not in refs:
            return None
        return _key(refs[ref], names, refs, seen | {ref})
    if kind in _WRAPPERS and isinstance(node.get("schema"), Mapping):
        return _key(node["schema"], names, refs, seen)
    if kind in ("union", "tagged-union"):
        # A nested union: its members must agree on where the outer tag is.
        choices = node["choices"]
        members = choices.values() if isinstance(choices, Mapping) else choices
        keys = {
            _key(choice[0] if isinstance(choice, tuple) else choice, names, refs, seen)
            for choice in members
        }
        return keys.pop() if len(keys) == 1 else None
    if kind in ("model-fields", "typed-dict"):
        fields = list(node["fields"].items())
    elif kind == "dataclass-args":
        fields = [(field["name"], field) for field in node["fields"]]
    else:
        return None
    for name, field in fields:
        if name in names or not names.isdisjoint(_lookup_keys(field.get("validation_alias"))):
            # The plain form holds a field by its Python name (see _builder._data_key).
            return str(name)
    return None

