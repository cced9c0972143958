"""The float columns of a schema, looked at to tell whether a step's output holds an int
that validation would make a float (statemigrate._model._floatcolumns)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel
from typing_extensions import TypedDict

from statemigrate._model._schema import SchemaVersion


class Entry(BaseModel):
    id: int
    score: float
    history: list[float] = []
    best: float | None = None


class Entries(BaseModel):
    entries: dict[str, Entry]


class Plain(TypedDict):
    counts: dict[str, int]
    names: list[str]


class Node(BaseModel):
    weight: float
    children: list[Node] = []


class Checked(BaseModel):
    score: Annotated[float, AfterValidator(lambda value: value)]


def float_check(schema_type: object) -> Any:
    return SchemaVersion.create("c", 1, schema_type).float_check


def entry(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "score": 0.5, "history": [1.0], "best": None, **fields}


@pytest.mark.parametrize(
    ("entries", "found"),
    [
        ({"a": entry(), "b": entry(id=2**60)}, False),  # an int where an int is declared
        ({"a": entry(), "b": entry(score=2**53 + 1)}, True),
        ({"a": entry(history=[1.0, 3])}, True),
        ({"a": entry(best=7)}, True),
        ({"a": {"id": 1, "score": 0.5}}, False),  # fields left out
        ({}, False),
    ],
)
def test_an_int_in_any_float_column_is_found(entries: dict[str, Any], found: bool) -> None:
    assert float_check(Entries)({"entries": entries}) is found


def test_data_of_another_shape_is_left_to_the_walk() -> None:
    assert float_check(Entries)({"entries": {"a": entry(history=5)}}) is None


def test_a_schema_without_floats_finds_nothing_whatever_the_data() -> None:
    assert float_check(Plain)({"counts": {"a": 2**53 + 1}, "names": []}) is False
    assert float_check(Plain)("not even a record") is False


@pytest.mark.parametrize("schema_type", [Node, Checked], ids=["recursive", "validator"])
def test_a_schema_not_followed_leaves_all_data_to_the_walk(schema_type: type) -> None:
    assert float_check(schema_type)({"weight": 2**53 + 1, "score": 1.5}) is None
    assert float_check(schema_type)({"weight": 1.5, "score": 1.5}) is None
