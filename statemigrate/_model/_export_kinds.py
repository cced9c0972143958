"""What a node of a pydantic core schema is, read without compiling it: the wrappers that
change nothing about a value's plain form, the class an instance check names, a cheap
test of the values a union member takes, and the type's name in the user's terms.

The exporter (see :mod:`statemigrate._model._export`) reads these to pick a converter,
to route a union's value to its member, and to name a type in a refusal.
"""

from __future__ import annotations

import datetime
import decimal
import pathlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from statemigrate._model._export_leaves import KNOWN_CLASSES, PATH_NODE, Node

__all__ = [
    "TRANSPARENT",
    "VALIDATORS",
    "accepts",
    "describe",
    "instance_class",
    "known_class",
]


# Wrappers that change nothing about the value's plain form.
TRANSPARENT = ("custom-error", "default")


VALIDATORS = ("function-after", "function-before", "function-wrap")


def known_class(cls: object) -> Node | None:
    if not isinstance(cls, type):
        return None
    if cls in KNOWN_CLASSES:
        return KNOWN_CLASSES[cls]
    if issubclass(cls, pathlib.PurePath):
        return PATH_NODE
    return None


# Kinds of core schema whose name is not the type's own.
KIND_NAMES = {
    "url": "URL", "multi-host-url": "multi-host URL", "none": "None", "literal": "a Literal"
}


# Kinds of core schema that a type's own schema is built of, named after no type.
WRAPPED_KINDS = frozenset(
    {"function-plain", "chain", "lax-or-strict", "json-or-python", "union", "custom-error"}
)


def instance_class(schema: Mapping[str, Any]) -> object:
    """The class checked by ``is-instance`` at the top of a schema (or a union in it)."""
    kind = schema.get("type")
    if kind == "is-instance":
        return schema["cls"]
    if kind == "json-or-python":
        return instance_class(schema.get("python_schema", {}))
    if kind == "union":
        for choice in schema.get("choices", ()):
            found = instance_class(choice[0] if isinstance(choice, tuple | list) else choice)
            if found is not None:
                return found
    return None


TYPE_TESTS: Mapping[str, type | tuple[type, ...]] = {
    "str": str,
    "bytes": bytes,
    "none": type(None),
    "float": float,
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": Mapping,
    "typed-dict": Mapping,
    "date": datetime.date,
    "datetime": datetime.datetime,
    "time": datetime.time,
    "timedelta": datetime.timedelta,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def accepts(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Callable[[Any], bool]:
    """A cheap test of whether ``value`` is this union member's kind of value."""
    kind = schema.get("type")
    if kind in TRANSPARENT or kind in VALIDATORS or kind == "nullable":
        return accepts(schema["schema"], definitions)
    if kind == "definition-ref":
        target = definitions.get(schema["schema_ref"])
        return (lambda value: True) if target is None else accepts(target, definitions)
    if kind in ("model", "dataclass", "enum"):
        cls = schema["cls"]
        return lambda value: type(value) is cls
    if kind == "int":
        return lambda value: type(value) is int
    if kind == "bool":
        return lambda value: type(value) is bool
    if kind == "literal":
        expected = schema["expected"]
        return lambda value: any(value == e and type(value) is type(e) for e in expected)
    if kind == "datetime":
        return lambda value: isinstance(value, datetime.datetime)
    if kind == "date":
        return lambda value: type(value) is datetime.date
    if kind in TYPE_TESTS:
        expected = TYPE_TESTS[str(kind)]
        return lambda value: isinstance(value, expected)
    found = None
    if kind == "lax-or-strict":
        found = instance_class(schema.get("strict_schema", {}))
    elif kind == "json-or-python":
        found = instance_class(schema)
    if isinstance(found, type):
        instance_of = found
        return lambda value: isinstance(value, instance_of)
    return lambda value: True


def describe(schema: Mapping[str, Any]) -> str:
    """A schema's type in the user's terms: its class, or its kind (``tuple``)."""
    cls = schema.get("cls")
    if isinstance(cls, type):
        return cls.__qualname__
    kind = schema.get("type")
    found = instance_class(schema.get("strict_schema", {}) if kind == "lax-or-strict" else schema)
    if isinstance(found, type):
        return found.__qualname__
    if kind == "nullable":
        inner = describe(schema.get("schema", {}))
        if inner != "a custom type":
            return f"a union ({inner.removeprefix('a union (').removesuffix(')')} | None)"
    if kind == "union":
        # Named by its members, as declared (``int | str``), when each has a name.
        members = [describe(_schema_of(choice)) for choice in schema.get("choices", ())]
        if members and "a custom type" not in members:
            return f"a union ({' | '.join(members)})"
    if kind in VALIDATORS or kind in WRAPPED_KINDS:
        return "a custom type"
    return KIND_NAMES.get(str(kind), str(kind))


def _schema_of(choice: Any) -> Mapping[str, Any]:
    """A union choice's schema: pydantic gives a tagged choice as ``(schema, tag)``."""
    return choice[0] if isinstance(choice, tuple | list) else choice  # type: ignore[no-any-return]
