"""Whether plain data holds an ``int`` where its schema declares a ``float``, found by
passes of C iterators over the columns that lead to float fields.

A migration step's output is validated into the new version, and validation makes an
``int`` in a ``float`` field a float, which for ``2**53 + 1`` is another number. Pairing
every value of the data with the validated state finds it at any depth
(:func:`~statemigrate._model._compare.first_changed_value`), but costs a Python step
per value: seconds for a million records of pydantic models, several times their
validation. Only the float fields can hold such an int, so this module compiles, once
per schema, the columns that lead to them (``entries`` -> each value -> ``score``), and
looks at the types there with ``map`` and ``set``: an ``int`` in none of them, the
usual case, ends the check. The walk then runs only when one was found, to say where.

What is not followed here (validators, unions holding a float, recursive schemas,
aliases, tuples with a float at a place) answers None, and the caller walks.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from itertools import chain
from operator import methodcaller
from typing import Any

from statemigrate._model._coreschema import schema_nodes

__all__ = ["FloatCheck", "compile_float_check", "walk_needed"]

Column = Callable[[], Iterator[Any]]
# True: an int sits in a float column; False: none does. Raises on data of another
# shape than the schema's (the caller then walks).
ColumnCheck = Callable[[Column], bool]
FloatCheck = Callable[[Any], bool | None]
"""Whether ``data`` holds an ``int`` in a float field: True, False, or None when only a
walk can tell (a schema not followed here, or data of another shape than the schema's)."""


def walk_needed(data: object) -> None:
    """The check of a schema not followed here: the walk always decides."""
    return None


def _no_float(data: object) -> bool:
    return False


class _Unsure(Exception):
    pass


# Kinds that hold no float and lead to none.
_LEAVES = frozenset(
    {"int", "str", "bool", "bytes", "none", "literal", "date", "datetime", "time",
     "timedelta", "decimal", "uuid", "url", "multi-host-url", "complex"}
)
_NOT_NONE = partial(operator.is_not, None)
_VALUES = methodcaller("values")


def compile_float_check(core_schema: Mapping[str, Any]) -> FloatCheck:
    """The check of ``core_schema``'s float columns: always False for a schema that
    declares no float, always None (walk) for one not followed here."""
    try:
        column = _compile(core_schema, {}, frozenset())
    except Exception:  # _Unsure, or a schema's form not foreseen: the walk decides
        return walk_needed
    if column is None:
        return _no_float

    def check(data: Any) -> bool | None:
        try:
            return column(lambda: iter((data,)))
        except (TypeError, AttributeError, KeyError):
            return None

    return check


Definitions = dict[str, Mapping[str, Any]]


def _compile(
    schema: Mapping[str, Any], definitions: Definitions, resolving: frozenset[str]
) -> ColumnCheck | None:
    """The check of a column of values of ``schema``, or None when no float is below."""
    kind = schema.get("type")
    sub = partial(_compile, definitions=definitions, resolving=resolving)
    if kind == "definitions":
        known = dict(definitions)
        for definition in schema["definitions"]:
            known[definition["ref"]] = definition
        return _compile(schema["schema"], known, resolving)
    if kind == "definition-ref":
        ref = schema["schema_ref"]
        if ref in resolving or ref not in definitions:
            raise _Unsure("recursive schema")  # would need a walk, not columns
        return _compile(definitions[ref], definitions, resolving | {ref})
    if kind == "float":
        return _floats
    if kind in _LEAVES or kind == "any":
        return None
    if kind == "nullable" or kind == "default":
        inner = sub(schema["schema"])
        return None if inner is None else _present(inner)
    if kind in ("list", "set", "frozenset"):
        items = sub(schema.get("items_schema") or {"type": "any"})
        return None if items is None else _flattened(items, iter)
    if kind == "dict":
        if _holds_float(schema.get("keys_schema") or {}):
            raise _Unsure("float keys")
        values = sub(schema.get("values_schema") or {"type": "any"})
        return None if values is None else _flattened(values, _VALUES)
    if kind == "model":
        return sub(schema["schema"])
    if kind in ("model-fields", "typed-dict"):
        return _record(
            ((name, field["schema"], field.get("validation_alias"))
             for name, field in schema["fields"].items()),
            sub,
        )
    if kind == "dataclass":
        return sub(schema["schema"])
    if kind == "dataclass-args":
        return _record(
            ((field["name"], field["schema"], field.get("validation_alias"))
             for field in schema["fields"]),
            sub,
        )
    if not _holds_float(schema):
        return None  # a custom type, an enum, a union of other kinds: no float below
    raise _Unsure(str(kind))


def _holds_float(schema: object) -> bool:
    """Whether a float schema appears anywhere in ``schema``."""
    return any(node.get("type") == "float" for node in schema_nodes(schema))


def _floats(column: Column) -> bool:
    return int in set(map(type, column()))


def _present(inner: ColumnCheck) -> ColumnCheck:
    return lambda column: inner(lambda: filter(_NOT_NONE, column()))


def _flattened(items: ColumnCheck, contents: Callable[[Any], Iterable[Any]]) -> ColumnCheck:
    return lambda column: items(lambda: chain.from_iterable(map(contents, column())))


def _record(
    fields: Iterable[tuple[str, Mapping[str, Any], object]],
    compile_field: Callable[[Mapping[str, Any]], ColumnCheck | None],
) -> ColumnCheck | None:
    checks: list[tuple[str, ColumnCheck]] = []
    for name, field_schema, alias in fields:
        check = compile_field(field_schema)
        if check is None:
            continue
        if alias is not None:
            raise _Unsure("alias")  # the plain form's key may be the alias
        checks.append((name, check))
    if not checks:
        return None

    def record(column: Column) -> bool:
        for name, check in checks:
            # A field left out of a record is None here, and passed over.
            field = methodcaller("get", name)
            if check(lambda field=field: filter(_NOT_NONE, map(field, column()))):  # type: ignore[misc]
                return True
        return False

    return record
