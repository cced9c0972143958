"""Typed forms: a schema as a msgspec type, so that decoding can also validate.

Decoding a section to plain data and validating it afterwards walks every value twice:
once in C to build it, once more (in a Python loop, or in pydantic's copy) to check
it. When a schema is one msgspec can state exactly, a ``msgspec`` decoder given that
type builds the same objects, at the same cost, and checks them as it goes.

:func:`compile_typed_form` reads a schema's pydantic core schema and returns a
:class:`TypedForm` only for schemas made of ``TypedDict``\\ s, ``dict[str, ...]``,
``list``, optional values, ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``None``
and ``Any``, with no constraint, validator, alias, default or config; for anything
else it returns ``None`` and callers use plain decoding and validation. Those are the
nodes where pydantic's lax validation returns its input unchanged whenever each value
already has exactly its declared type (``statemigrate._model._inplace`` relies on the
same fact), so a decoded value that

1. msgspec decoded with the form's type,
2. packs back to exactly the bytes it came from (see
   ``statemigrate._snapshot._msgpack.unpack_typed``), and
3. holds every ``TypedDict`` record's keys in declaration order (:meth:`TypedForm.in_order`)

is what :meth:`SchemaVersion.validate <statemigrate._model._schema.SchemaVersion.validate>`
returns for the plain decoding of the same bytes, in value, type and key order. The
second condition rules out every case where msgspec and pydantic differ: an ``int``
msgspec turned into a ``float``, an unknown key msgspec skipped (pydantic would drop it
too, or refuse it under ``extra="forbid"``), a duplicate key. The third is needed
because pydantic writes a record's fields in declaration order while msgspec keeps the
order of the bytes. Data that fails any of them goes the plain way, so the result of a
restore never depends on this module.

For collections of flat records (:class:`BytesLayout`) a reading of the bytes in C
shows the second and third conditions at once, without packing anything: the bytes
state each record's fields in declaration order, each in its field's msgpack type.

A form holds no bytes and decodes nothing itself: the snapshot layer does, with
:attr:`TypedForm.decoder`.
"""

from __future__ import annotations

import itertools
import operator
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any

import msgspec
import typing_extensions

from statemigrate._model._accel import BytesCheck, records_bytes_check
from statemigrate._model._coreschema import INERT, STRUCTURE_PARTS, record_fields
from statemigrate._model._coreschema import Unsupported as _Unsupported
from statemigrate._model._inplace import Node, RecordsLayout, records_layout

__all__ = ["BytesLayout", "TypedForm", "compile_typed_form"]


@dataclass(frozen=True, slots=True)
class _Record:
    """A ``TypedDict`` somewhere in the schema: where its dicts are, and its fields."""

    path: tuple[Callable[[Iterable[Any]], Iterable[Any]], ...]
    """Steps that turn the iterable of root values into the iterable of these dicts."""
    names: tuple[str, ...]
    all_required: bool


@dataclass(frozen=True)
class BytesLayout:
    """How msgpack bytes of a form's collections of flat records are read in C."""

    read: BytesCheck
    """How many records each collection holds, when the bytes say in msgpack's own
    types exactly what the form declares (``_accel.records_bytes_check``), or None."""
    places: tuple[str | None, ...]
    """Where each collection is in the value: a root record's field, or (None) the root."""

    def sizes(self, value: Any) -> tuple[int, ...]:
        """How many records each collection of a decoded value holds."""
        return tuple(len(value if place is None else value[place]) for place in self.places)


@dataclass(frozen=True)
class TypedForm:
    """A schema stated as a msgspec type.

    Attributes:
        type: the msgspec type (synthetic ``TypedDict`` classes for the records).
        decoder: a ``msgspec.msgpack.Decoder`` of that type.
    """

    type: Any = field(repr=False)
    decoder: msgspec.msgpack.Decoder[Any] = field(repr=False)
    _records: tuple[_Record, ...] = field(repr=False, default=())
    layout: BytesLayout | None = field(repr=False, default=None)
    """For collections of flat records (``_inplace.records_layout``), when the C
    extension is in use: the reading of their bytes that shows a decoding exact."""

    def in_order(self, value: object) -> bool:
        """Whether every record in ``value`` (decoded with :attr:`decoder`) holds its keys
        in declaration order, as validation would write them.

        Each record is checked with one pass of C iterators over all its dicts (a tuple
        of the keys, compared with the field names), so a cache of a million records
        costs a tenth of what a loop in Python would.
        """
        for record in self._records:
            column: Iterable[Any] = (value,)
            for step in record.path:
                column = step(column)
            if record.all_required:
                if not all(map(record.names.__eq__, map(tuple, column))):
                    return False
            elif not all(map(partial(_keys_in_order, record.names), column)):
                return False
        return True


def _keys_in_order(names: tuple[str, ...], record: dict[str, Any]) -> bool:
    return tuple(record) == tuple(filter(record.__contains__, names))


_SCALARS: Mapping[str, object] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "none": None,
}
# What each known node may carry besides the inert keys. ``strict`` is harmless: only values of
# exactly the declared type are kept, and strict validation returns those unchanged too.
# Any other key (bounds, lengths, allow_inf_nan, extras_schema, ...) is declined.
_PARTS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"strict"}),
    "float": frozenset({"strict"}),
    "str": frozenset({"strict"}),
    "bool": frozenset({"strict"}),
    "bytes": frozenset({"strict"}),
    **STRUCTURE_PARTS,
}

_Step = Callable[[Iterable[Any]], Iterable[Any]]


def compile_typed_form(
    core_schema: Mapping[str, Any], tree: Node | None = None
) -> TypedForm | None:
    """The typed form of a schema, or None when msgspec cannot state it exactly.

    ``tree`` is the schema's in-place tree (``_inplace.schema_tree``), if it has one:
    collections of flat records in it get a :attr:`TypedForm.layout`.
    """
    records: list[_Record] = []
    try:
        annotation = _translate(core_schema, {}, frozenset(), (), records)
        decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(annotation)
    except (_Unsupported, TypeError, ValueError):
        # TypeError, ValueError: msgspec refused the type (a field name it cannot hold).
        return None
    return TypedForm(annotation, decoder, tuple(records), _bytes_layout(records_layout(tree)))


def _bytes_layout(layout: RecordsLayout | None) -> BytesLayout | None:
    if layout is None:
        return None
    collections = layout.collections
    read = records_bytes_check(layout.root, tuple((c.is_map, c.fields) for c in collections))
    return None if read is None else BytesLayout(read, tuple(c.field for c in collections))


def _translate(
    schema: Mapping[str, Any],
    definitions: dict[str, Mapping[str, Any]],
    resolving: frozenset[str],
    path: tuple[_Step, ...],
    records: list[_Record],
) -> Any:
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _PARTS:
        raise _Unsupported(kind)
    if set(schema) - INERT - _PARTS[kind]:
        raise _Unsupported(kind)
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "any":
        return Any
    if kind == "nullable":
        inner = _translate(schema["schema"], definitions, resolving, (*path, _not_none), records)
        return typing.Optional[inner]  # noqa: UP045 - built at run time from a value
    if kind == "list":
        item = _translate_or_any(
            schema.get("items_schema"), definitions, resolving, (*path, _items), records
        )
        return list[item]  # type: ignore[valid-type]
    if kind == "dict":
        keys = schema.get("keys_schema")
        if keys is None or keys != {"type": "str"}:
            # Keys of other types, or of any type: msgspec and the packer disagree with
            # pydantic on them (int keys, say), so such dicts stay plain.
            raise _Unsupported("dict key")
        value = _translate_or_any(
            schema.get("values_schema"), definitions, resolving, (*path, _values), records
        )
        return dict[str, value]  # type: ignore[valid-type]
    if kind == "typed-dict":
        return _translate_record(schema, definitions, resolving, path, records)
    if kind == "definitions":
        known = dict(definitions)
        for definition in schema["definitions"]:
            known[definition["ref"]] = definition
        return _translate(schema["schema"], known, resolving, path, records)
    ref = schema["schema_ref"]  # definition-ref
    if ref in resolving or ref not in definitions:
        raise _Unsupported("recursive schema")  # the order check walks a fixed depth
    return _translate(definitions[ref], definitions, resolving | {ref}, path, records)


def _translate_or_any(
    schema: Mapping[str, Any] | None,
    definitions: dict[str, Mapping[str, Any]],
    resolving: frozenset[str],
    path: tuple[_Step, ...],
    records: list[_Record],
) -> Any:
    return Any if schema is None else _translate(schema, definitions, resolving, path, records)


def _translate_record(
    schema: Mapping[str, Any],
    definitions: dict[str, Mapping[str, Any]],
    resolving: frozenset[str],
    path: tuple[_Step, ...],
    records: list[_Record],
) -> Any:
    annotations: dict[str, Any] = {}
    names = []
    all_required = True
    for name, field_schema, required in record_fields(schema):
        if not isinstance(name, str):
            raise _Unsupported("field")
        step = _field(name) if required else _present_field(name)
        annotation = _translate(field_schema, definitions, resolving, (*path, step), records)
        annotations[name] = (
            typing_extensions.Required[annotation]
            if required
            else typing_extensions.NotRequired[annotation]
        )
        names.append(name)
        all_required = all_required and required
    records.append(_Record(path, tuple(names), all_required))
    # A class of our own rather than the user's: its annotations may carry pydantic
    # metadata that msgspec would read differently, or not at all.
    return typing_extensions.TypedDict(  # type: ignore[operator]
        str(schema.get("cls_name") or getattr(schema.get("cls"), "__name__", "Record")),
        annotations,
    )


# Steps of a record's path. Each turns the iterable of the values at one place into the
# iterable of the values one level down, with C iterators where there is one.


def _not_none(values: Iterable[Any]) -> Iterable[Any]:
    return filter(partial(operator.is_not, None), values)


def _items(values: Iterable[Any]) -> Iterable[Any]:
    return itertools.chain.from_iterable(values)


def _values(values: Iterable[Any]) -> Iterable[Any]:
    return itertools.chain.from_iterable(map(dict.values, values))


def _field(name: str) -> _Step:
    get = itemgetter(name)

    def field_values(values: Iterable[Any]) -> Iterable[Any]:
        return map(get, values)

    return field_values


def _present_field(name: str) -> _Step:
    def field_values(values: Iterable[Any]) -> Iterator[Any]:
        return (value[name] for value in values if name in value)

    return field_values
