"""The default a generated step gives a field: the plain form a snapshot would hold.

A step works on plain data, so a field it adds must get its default's plain form: what
the exporter (``statemigrate._model._export``) writes for that value, which validation
turns back into the value. pydantic's JSON Schema shows the default as pydantic
*serializes* it instead, through everything a user customised for other outputs:
``ser_json_bytes="base64"`` makes bytes base64 text, ``exclude=True`` leaves a field
out of a nested model, and field or model serializers and computed fields change it
further. Validation takes such text without a complaint (base64 text is valid bytes),
so a step written from it would hand every upgraded record a wrong value in silence.

So :func:`field_default` reads the default from the type itself: it finds the field by
its path in the schema's pydantic core schema, takes the value a record holds when the
field is absent (validation fills it in, ``validate_default`` applied), exports it under
the field's own schema and its record's config, validates the result back under them
and compares it with the default. A default that has no such plain form (a value its
own type refuses, one that comes back changed, text with a lone surrogate) is reported
with the reason, so that the step says so rather than write a wrong value; a default
made by a factory has no one value, and is left for validation to make.

:func:`with_plain_defaults` applies it to the changes makemigration found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import pydantic_core

from statemigrate._model._compare import first_difference
from statemigrate._model._export import NotExportable, SchemaNotExportable, compile_exporter
from statemigrate._model._export_kinds import TRANSPARENT, VALIDATORS
from statemigrate._model._paths import format_path
from statemigrate._model._plaindata import find_not_plain
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._shown import shown
from statemigrate.evolution._schemadiff import Change, FieldPath

__all__ = ["FieldDefault", "field_default", "with_plain_defaults"]


@dataclass(frozen=True)
class FieldDefault:
    """What a step can give a field that its record lacks.

    Attributes:
        kind: ``"value"``: ``plain`` is the default's plain form; ``"factory"``: a
            factory makes the default, so validation must; ``"none"``: the field has no
            default; ``"refused"``: the default has no plain form that validates back to
            it, and ``reason`` says why.
        plain: the plain form, for ``"value"``.
        reason: why, for ``"refused"``.
    """

    kind: Literal["value", "factory", "none", "refused"]
    plain: Any = None
    reason: str = ""


def field_default(schema: SchemaVersion, parent: FieldPath, name: str) -> FieldDefault:
    """The default of field ``name`` of the record at ``parent`` (a path of field names,
    ``*`` for any dict value or list item, as :class:`Change` has it) in ``schema``."""
    definitions: dict[str, Mapping[str, Any]] = {}
    record = _record_at(schema.adapter.core_schema, parent, definitions)
    if record is None or name not in record.fields:
        where = ".".join((*parent, name))
        return _refused(f"{where} was not found in the type's pydantic core schema")
    field_schema = record.fields[name]
    default = _default_node(field_schema)
    if default is None:
        return FieldDefault("none")
    if "default_factory" in default:
        return FieldDefault("factory")
    # The field alone, in a record of one field under its record's config: the
    # exporter and pydantic read it there as they read it in its own record.
    alone: dict[str, Any] = {
        "type": "typed-dict",
        "fields": {name: {"type": "typed-dict-field", "schema": field_schema, "required": False}},
        "config": record.config,
    }
    if definitions:
        alone = {"type": "definitions", "schema": alone, "definitions": [*definitions.values()]}
    try:
        validator = pydantic_core.SchemaValidator(alone)
        exporter = compile_exporter(alone)
    except (pydantic_core.SchemaError, SchemaNotExportable) as exc:
        return _refused(f"its schema cannot be read alone: {_first_line(exc)}")
    held = _validated(validator, {})
    if isinstance(held, FieldDefault):
        return replace(held, reason=f"its default does not validate: {held.reason}")
    value = held[name]
    try:
        plain = exporter.convert({name: value})[name]
    except NotExportable as exc:
        where = format_path(exc.path[1:]) if len(exc.path) > 1 else ""
        at = f" at {where}" if where and where != "(root)" else ""
        return _refused(f"the default {_brief(value)} has no plain form{at}: {exc.detail}")
    problem = find_not_plain(plain)
    if problem is not None:
        return _refused(f"the plain form of its default {_brief(value)}: {problem[1]}")
    again = _validated(validator, {name: plain})
    if isinstance(again, FieldDefault):
        return replace(
            again,
            reason=f"the plain form of its default {_brief(value)} does not validate: "
            + again.reason,
        )
    # widening: an int default of a float field (`ratio: float = 1`) comes back as the
    # float validation makes of it, as it would from a snapshot.
    difference = first_difference(value, again[name], widening=True)
    if difference is not None:
        path, detail = difference
        at = "" if not path else f" at {format_path(path)}"
        return _refused(f"its default does not come back from its plain form{at}: {detail}")
    return FieldDefault("value", plain)


def with_plain_defaults(
    changes: Sequence[Change], *, new: SchemaVersion, old: SchemaVersion | None
) -> tuple[list[Change], list[str]]:
    """``changes`` with the defaults of the fields they add and remove read from the
    types: an added field's from ``new``, a removed field's from ``old``.

    Without ``old`` (the released type is not registered), a removed field's default is
    the one the frozen JSON Schema shows, kept when it is plain data, with a note that
    names such fields: pydantic wrote it serialized.

    Returns:
        The changes, and notes for the author.
    """
    result: list[Change] = []
    unchecked: list[str] = []
    for change in changes:
        if change.kind not in ("added", "removed") or change.required:
            result.append(change)
            continue
        schema = new if change.kind == "added" else old
        parent = change.new_parent if change.kind == "added" else change.old_parent
        if schema is None:
            found = _frozen_default(change)
            if found.kind == "value":
                unchecked.append(change.where)
        else:
            found = field_default(schema, parent, change.name)
        result.append(_with_default(change, found))
    notes = []
    if unchecked:
        notes.append(
            "the released type is not registered (or not as frozen), so the defaults the"
            f" downgrade restores ({', '.join(unchecked)}) are read from the frozen schema,"
            " which shows them as pydantic serializes them: check them (a serializer or"
            " `exclude` changes a value there), or register the released type under its"
            " version and run makemigration again"
        )
    return result, notes


def _with_default(change: Change, found: FieldDefault) -> Change:
    if found.kind == "value":
        return replace(change, default=found.plain, has_default=True, default_refused="")
    return replace(change, default=None, has_default=False, default_refused=found.reason)


def _frozen_default(change: Change) -> FieldDefault:
    if not change.has_default:
        return FieldDefault("none")
    problem = find_not_plain(change.default)
    if problem is not None:
        return _refused(
            f"the frozen schema shows its default as {_brief(change.default)}, not plain"
            f" data: {problem[1]}"
        )
    return FieldDefault("value", change.default)


@dataclass(frozen=True)
class _Record:
    """A record's fields (name to the field's schema) and the config they live under."""

    fields: Mapping[str, Mapping[str, Any]]
    config: Mapping[str, Any]


_STEPS_LIMIT: Final = 10_000
"""Wrappers and references looked through at most on one step of a path: more is a
reference that only refers to itself."""


def _record_at(
    top: Mapping[str, Any], path: FieldPath, definitions: dict[str, Mapping[str, Any]]
) -> _Record | None:
    """The record at ``path`` in core schema ``top``, collecting the definitions met."""
    node: Mapping[str, Any] | None = top
    config: Mapping[str, Any] = {}
    for step in (*path, None):
        node, config = _inside(node, config, definitions)
        if node is None:
            return None
        record = _fields(node, config)
        if step is None:
            return record
        if step == "*":
            node = _items(node)
        else:
            node = None if record is None else record.fields.get(step)
    return None


def _inside(
    node: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    definitions: dict[str, Mapping[str, Any]],
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any]]:
    """The node that holds a value's fields or items, through references, wrappers,
    optional values and root models, and the config in force there."""
    for _ in range(_STEPS_LIMIT):
        if node is None:
            return None, config
        kind = node.get("type")
        if kind == "definitions":
            definitions.update((item["ref"], item) for item in node["definitions"])
            node = node["schema"]
        elif kind == "definition-ref":
            node = definitions.get(node["schema_ref"])
        elif kind in TRANSPARENT or kind in VALIDATORS or kind == "nullable":
            node = node["schema"]
        elif kind == "model" and node.get("root_model"):
            config = node.get("config") or config
            node = node["schema"]
        elif kind == "union":
            choices = [c[0] if isinstance(c, tuple | list) else c for c in node["choices"]]
            others = [c for c in choices if c.get("type") != "none"]
            node = others[0] if len(others) == 1 else None
        elif kind == "json-or-python":
            node = node["python_schema"]
        elif kind == "lax-or-strict":
            node = node["lax_schema"]
        else:
            return node, config
    return None, config


def _fields(node: Mapping[str, Any], config: Mapping[str, Any]) -> _Record | None:
    kind = node.get("type")
    if kind == "typed-dict":
        fields = {name: spec["schema"] for name, spec in node["fields"].items()}
        return _Record(fields, node.get("config") or config)
    if kind in ("model", "dataclass"):
        inner = node["schema"]
        while inner.get("type") in TRANSPARENT or inner.get("type") in VALIDATORS:
            inner = inner["schema"]
        own = node.get("config") or config
        if inner.get("type") == "model-fields":
            return _Record({name: spec["schema"] for name, spec in inner["fields"].items()}, own)
        if inner.get("type") == "dataclass-args":
            return _Record({spec["name"]: spec["schema"] for spec in inner["fields"]}, own)
    return None


def _items(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What ``*`` stands for in a node: a dict's values, a list's or a set's items, the
    repeated item of a ``tuple[X, ...]``."""
    kind = node.get("type")
    if kind in ("dict", "ordered-dict", "counter"):
        values: Mapping[str, Any] | None = node.get("values_schema", _ANY)
        return values
    if kind in ("list", "set", "frozenset", "deque", "generator"):
        items: Mapping[str, Any] | None = node.get("items_schema", _ANY)
        return items
    if kind == "tuple":
        schemas = node.get("items_schema", [])
        variadic = node.get("variadic_item_index")
        return schemas[variadic] if variadic is not None and len(schemas) == 1 else None
    return None


def _default_node(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``default`` node of a field's schema, under the wrappers around it."""
    while schema.get("type") != "default":
        if schema.get("type") not in TRANSPARENT and schema.get("type") not in VALIDATORS:
            return None
        schema = schema["schema"]
    return schema


def _validated(validator: pydantic_core.SchemaValidator, data: dict[str, Any]) -> Any:
    """What validation makes of ``data``, as a restore validates (lax, by field name),
    or a refused :class:`FieldDefault` saying why not."""
    try:
        return validator.validate_python(data, strict=False, by_alias=False, by_name=True)
    except pydantic_core.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if not errors:
            return _refused(_first_line(exc))
        below = tuple(errors[0]["loc"][1:])  # the first step is the field itself
        at = f" at {format_path(below)}" if below else ""
        return _refused(f"{errors[0]['msg']}{at}")
    except Exception as exc:
        # pydantic wraps only ValueError and AssertionError from a validator; a validator
        # of the user's type may raise anything else, and makemigration must say so.
        return _refused(f"validation raised {type(exc).__name__}: {_first_line(exc)}")


def _refused(reason: str) -> FieldDefault:
    return FieldDefault("refused", reason=reason)


def _brief(value: object) -> str:
    text = shown(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_ANY: Final[Mapping[str, Any]] = {"type": "any"}
