"""Left-to-right unions: a value an earlier member would take back as another value is
refused at snapshot and at commit, at its path, wherever the union is; values that come
back as themselves still round-trip, and smart unions keep what they held."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from holders import Holder
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from statemigrate import ExportError, MemoryStore, Registry, Service
from statemigrate._model._compare import first_difference

BoolInt = Annotated[bool | int, Field(union_mode="left_to_right")]
FloatInt = Annotated[float | int, Field(union_mode="left_to_right")]
IntFloat = Annotated[int | float, Field(union_mode="left_to_right")]
IntStr = Annotated[int | str, Field(union_mode="left_to_right")]
StrInt = Annotated[str | int, Field(union_mode="left_to_right")]


class Top(TypedDict):
    v: BoolInt


class Scalars(TypedDict):
    float_int: FloatInt
    int_float: IntFloat
    int_str: IntStr
    str_int: StrInt


class InDict(TypedDict):
    by_name: dict[str, IntStr]


class InList(TypedDict):
    items: list[FloatInt]


class InOptional(TypedDict):
    maybe: BoolInt | None


class Entry(TypedDict):
    hits: int
    lr: IntStr


class Records(TypedDict):
    entries: dict[str, Entry]


class Counter(BaseModel):
    lr: IntFloat


class Counters(BaseModel):
    counters: list[Counter]


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: BoolInt


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    name: str


class Pet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]


class Smart(TypedDict):
    v: bool | int


def committed(schema: Any, state: object, *, commit: bool) -> object:
    """``state`` committed (or snapshotted) by a component of ``schema``, and restored."""
    registry = Registry()
    registry.schema("thing", version=1)(schema)

    @registry.migratable("thing", version=1)
    class Thing(Holder):
        pass

    writer = Service("svc", registry=registry)
    writer.register(Thing(state))
    reader = Service("svc", registry=registry)
    restored = reader.register(Thing(None))
    if commit:
        reader.restore(writer.commit(MemoryStore()).ref)
    else:
        reader.restore(writer.snapshot()[0].to_bytes())
    return restored.state


REFUSED = {
    "top level": (Top, {"v": 1}, "at v: 1 (int) would come back as True (bool)"),
    "float | int": (
        Scalars,
        {"float_int": 1, "int_float": 2, "int_str": 3, "str_int": "a"},
        "at float_int: 1 (int) would come back as 1.0 (float)",
    ),
    "int | float": (
        Scalars,
        {"float_int": 1.5, "int_float": 2.0, "int_str": 3, "str_int": "a"},
        "at int_float: 2.0 (float) would come back as 2 (int)",
    ),
    "int | str": (
        Scalars,
        {"float_int": 1.5, "int_float": 2, "int_str": "7", "str_int": "a"},
        "at int_str: '7' (str) would come back as 7 (int)",
    ),
    "dict value": (
        InDict,
        {"by_name": {"a": 1, "b": "7"}},
        "at by_name['b']: '7' (str) would come back as 7 (int)",
    ),
    "list item": (
        InList,
        {"items": [1.5, 2]},
        "at items[1]: 2 (int) would come back as 2.0 (float)",
    ),
    "Optional": (InOptional, {"maybe": 0}, "at maybe: 0 (int) would come back as False (bool)"),
    "record field": (
        Records,
        {"entries": {"k": {"hits": 1, "lr": "7"}}},
        "at entries['k'].lr: '7' (str) would come back as 7 (int)",
    ),
    "model field": (
        Counters,
        Counters(counters=[Counter(lr=1), Counter.model_construct(lr=3.0)]),
        "at counters[1].lr: 3.0 (float) would come back as 3 (int)",
    ),
    "discriminated-union member": (
        Pet,
        Pet(pet=Cat.model_construct(lives=1)),
        "at pet.lives: 1 (int) would come back as True (bool)",
    ),
}


@pytest.mark.parametrize("commit", [False, True], ids=["snapshot", "commit"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_value_an_earlier_member_takes_back_is_refused_at_its_path(
    case: str, commit: bool
) -> None:
    schema, state, reason = REFUSED[case]
    with pytest.raises(ExportError) as caught:
        committed(schema, state, commit=commit)
    message = str(caught.value)
    assert message == f"thing version 1 cannot be snapshotted: {reason}"
    assert caught.value.by_validation


KEPT = {
    "top level": (Top, {"v": True}),
    "top level int": (Top, {"v": 5}),
    "scalars": (Scalars, {"float_int": 1.5, "int_float": 2, "int_str": 7, "str_int": "7"}),
    "str | int keeps an int": (
        Scalars,
        {"float_int": float("nan"), "int_float": -3, "int_str": "abc", "str_int": 5},
    ),
    "dict value": (InDict, {"by_name": {"a": 1, "b": "x"}}),
    "list item": (InList, {"items": [1.5, -0.0]}),
    "Optional": (InOptional, {"maybe": None}),
    "record field": (Records, {"entries": {"k": {"hits": 1, "lr": 2**70}}}),
    "model field": (Counters, Counters(counters=[Counter(lr=1), Counter(lr=2.5)])),
    "discriminated-union member": (Pet, Pet(pet=Cat(lives=True))),
}


@pytest.mark.parametrize("commit", [False, True], ids=["snapshot", "commit"])
@pytest.mark.parametrize("case", sorted(KEPT))
def test_a_value_that_comes_back_as_itself_round_trips(case: str, commit: bool) -> None:
    schema, state = KEPT[case]
    assert first_difference(state, committed(schema, state, commit=commit)) is None


def test_a_smart_union_keeps_an_int_beside_bool() -> None:
    """The check is the left-to-right mode's: in smart mode 1 fits int exactly."""
    restored = committed(Smart, {"v": 1}, commit=True)
    assert restored == {"v": 1} and type(restored["v"]) is int


def test_a_state_without_a_left_to_right_union_is_still_handed_over_as_it_is() -> None:
    """Negative control: only a left-to-right union makes a plain state walked."""
    for schema, walked in ((Smart, False), (Top, True)):
        registry = Registry()
        registry.schema("thing", version=1)(schema)
        exporter = registry.schema_for("thing", 1).exporter
        assert exporter is not None
        assert exporter.identity is not walked
