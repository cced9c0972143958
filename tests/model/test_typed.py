"""Typed forms of schemas: which schemas msgspec can state exactly, and the key order check."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pydantic
import pytest
from fastpath_schemas import (
    Choice,
    Either,
    Flat,
    Model,
    Open,
    Partial,
    Positive,
    Record,
    Stamp,
    Stripped,
    Tree,
)
from typing_extensions import TypedDict

from statemigrate._model._schema import SchemaVersion
from statemigrate._model._typed import compile_typed_form


class Nested(TypedDict):
    flat: Flat
    items: list[Flat]
    by_key: dict[str, Partial]
    maybe: Flat | None
    anything: Any


class IntKeys(TypedDict):
    a: dict[int, int]


class AnyKeys(TypedDict):
    a: dict  # type: ignore[type-arg]


class Aliased(TypedDict):
    a: Annotated[int, pydantic.Field(alias="b")]


@pydantic.with_config(pydantic.ConfigDict(extra="forbid"))
class Closed(TypedDict):
    a: int


def schema_of(type_: object) -> SchemaVersion:
    return SchemaVersion.create("c", 1, type_)


@pytest.mark.parametrize(
    "type_",
    [Flat, Partial, Nested, list[int], dict[str, Flat], int, Any, list[Flat] | None],
    ids=str,
)
def test_plain_schemas_get_a_typed_form(type_: object) -> None:
    assert schema_of(type_).typed is not None


@pytest.mark.parametrize(
    "type_",
    [Tree, Model, Record, Positive, Choice, Either, Stamp, IntKeys, AnyKeys, Aliased, Stripped,
     Open, Closed, tuple[int, int], set[str]],
    ids=str,
)
def test_schemas_msgspec_cannot_state_exactly_get_none(type_: object) -> None:
    assert schema_of(type_).typed is None


def test_the_typed_form_decodes_what_the_schema_describes() -> None:
    form = schema_of(Nested).typed
    assert form is not None
    value = {
        "flat": {"a": 1, "b": "x", "c": 1.5, "d": True, "e": b"\x00", "f": None},
        "items": [],
        "by_key": {"k": {"a": 1, "c": "y"}},
        "maybe": None,
        "anything": [1, {"x": None}],
    }
    assert form.decoder.decode(msgspec.msgpack.encode(value)) == value
    with pytest.raises(msgspec.ValidationError):
        form.decoder.decode(msgspec.msgpack.encode({**value, "items": [{"a": "1"}]}))


def test_records_hold_their_keys_in_declaration_order() -> None:
    form = schema_of(dict[str, Partial]).typed
    assert form is not None
    assert form.in_order({"k": {"a": 1}, "l": {"a": 1, "b": [], "c": "x"}, "m": {"a": 1, "c": "x"}})
    assert not form.in_order({"k": {"a": 1}, "l": {"c": "x", "a": 1}})
    nested = schema_of(Nested).typed
    assert nested is not None
    flat = {"a": 1, "b": "x", "c": 1.5, "d": True, "e": b"", "f": None}
    value = {"flat": flat, "items": [flat], "by_key": {}, "maybe": None, "anything": None}
    assert nested.in_order(value)
    reordered = {"b": "x", "a": 1, "c": 1.5, "d": True, "e": b"", "f": None}
    assert not nested.in_order({**value, "items": [flat, reordered]})
    assert not nested.in_order({**value, "maybe": reordered})
    assert not nested.in_order(dict(reversed(value.items())))


def test_a_schema_core_schema_with_an_unknown_node_gets_none() -> None:
    assert compile_typed_form({"type": "int", "ge": 0}) is None
    assert compile_typed_form({"type": "decimal"}) is None
    assert compile_typed_form({"type": "int"}) is not None
