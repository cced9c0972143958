"""makemigration on a widened or narrowed union, a str field that became an enum of strs
(and back), types said in Python's words, and a lossy= guess on a step that moves data."""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from stub_helpers import evolve as make_stub
from typing_extensions import TypedDict

from statemigrate._model._registry import Registry
from statemigrate.evolution._makemigration import MigrationStub


def evolve(tmp_path: Path, old: object, new: object) -> tuple[Registry, MigrationStub]:
    """A stub from ``old`` (version 1) to ``new`` (version 2), its module loaded."""
    registry, stub = make_stub(tmp_path, "c", old, new)
    registry.load_migrations(tmp_path / "migrations")
    return registry, stub


def raising(stub: MigrationStub) -> set[str]:
    """The steps of a stub that raise NotImplementedError until a TODO is done."""
    return {
        name
        for step in stub.code.split("\n\n\n")
        for name in ("upgrade_1_to_2", "downgrade_2_to_1")
        if f"def {name}(" in step and "raise NotImplementedError(" in step
    }


# --- unions ---------------------------------------------------------------------------


class Card(TypedDict):
    kind: Literal["card"]
    last4: str


class Cash(TypedDict):
    kind: Literal["cash"]
    change: int


class Voucher(TypedDict):
    kind: Literal["voucher"]
    code: str


class PayV1(TypedDict):
    payment: Annotated[Card | Cash, Field(discriminator="kind")]


class PayV2(TypedDict):
    payment: Annotated[Card | Cash | Voucher, Field(discriminator="kind")]


def test_a_tagged_union_that_gains_a_member_leaves_work_to_the_downgrade_alone(
    tmp_path: Path,
) -> None:
    """As a widened Literal: every old payment is still valid, so the upgrade needs no
    code (it had a TODO, a raise and "probably lossy")."""
    registry, stub = evolve(tmp_path, PayV1, PayV2)
    assert stub.todos == (
        'payment allows new members kind="voucher": the downgrade must convert them to'
        ' kind="card" or kind="cash", or drop them',
    )
    assert raising(stub) == {"downgrade_2_to_1"}
    assert "  upgrade: lossless\n" in stub.summary()
    data = {"payment": {"kind": "cash", "change": 5}}
    assert registry.plan("c", 1, 2).apply(dict(data)) == data


def test_a_tagged_union_that_loses_a_member_leaves_work_to_the_upgrade_alone(
    tmp_path: Path,
) -> None:
    _, stub = evolve(tmp_path, PayV2, PayV1)
    assert stub.todos == (
        'payment no longer allows the members kind="voucher": the upgrade must convert them'
        ' to kind="card" or kind="cash", or drop them',
    )
    assert raising(stub) == {"upgrade_1_to_2"}


class ScalarsV1(TypedDict):
    value: int | str


class ScalarsV2(TypedDict):
    value: int | str | bytes


class OneV1(TypedDict):
    value: int


def test_a_plain_union_or_a_type_that_gains_a_member_leaves_work_to_the_downgrade(
    tmp_path: Path,
) -> None:
    _, stub = evolve(tmp_path, ScalarsV1, ScalarsV2)
    assert stub.todos == (
        "value allows new members bytes: the downgrade must convert them to int or str,"
        " or drop them",
    )
    assert raising(stub) == {"downgrade_2_to_1"}
    _, stub = evolve(tmp_path / "one", OneV1, ScalarsV1)
    assert stub.todos == (
        "value allows new members str: the downgrade must convert them to int, or drop them",
    )


class FirstV1(TypedDict):
    value: Annotated[int | bytes, Field(union_mode="left_to_right")]


class FirstV2(TypedDict):
    value: Annotated[str | int | bytes, Field(union_mode="left_to_right")]


class LastV2(TypedDict):
    value: Annotated[int | bytes | str, Field(union_mode="left_to_right")]


def test_a_left_to_right_union_widened_in_front_is_a_change_of_type(tmp_path: Path) -> None:
    """The first member that takes a value gets it: a member put before the old ones
    may take their values, so both steps have work; one put after them takes none."""
    _, stub = evolve(tmp_path, FirstV1, FirstV2)
    assert raising(stub) == {"upgrade_1_to_2", "downgrade_2_to_1"}
    assert stub.todos[0].startswith("value changed from int | bytes to str | int | bytes")
    _, stub = evolve(tmp_path / "last", FirstV1, LastV2)
    assert raising(stub) == {"downgrade_2_to_1"}


class ItemV1(TypedDict):
    sku: str


class ItemV2(TypedDict):
    sku: str
    qty: int


class BoxOfV1(TypedDict):
    thing: ItemV1 | int


class BoxOfV2(TypedDict):
    thing: ItemV2 | int | str


def test_a_union_whose_member_changed_is_a_change_of_type(tmp_path: Path) -> None:
    """A member gone and another come: no widening, whatever else came."""
    _, stub = evolve(tmp_path, BoxOfV1, BoxOfV2)
    assert raising(stub) == {"upgrade_1_to_2", "downgrade_2_to_1"}


# --- a str field and an enum -------------------------------------------------------------


class Status(enum.StrEnum):
    ACTIVE = "active"
    GONE = "gone"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class TextV1(BaseModel):
    status: str


class TextV2(BaseModel):
    status: Status


class LevelV2(BaseModel):
    status: Level


def test_a_str_that_became_an_enum_of_strs_leaves_work_to_the_upgrade_alone(
    tmp_path: Path,
) -> None:
    """The downgrade writes each member's value, a str, as it is: no TODO there."""
    registry, stub = evolve(tmp_path, TextV1, TextV2)
    assert stub.todos == (
        'status changed from str to one of "active", "gone": the upgrade must map every'
        " other str to one of them",
    )
    assert raising(stub) == {"upgrade_1_to_2"}
    assert "  downgrade: lossless\n" in stub.summary()
    assert registry.plan("c", 2, 1).apply({"status": "gone"}) == {"status": "gone"}


def test_an_enum_of_strs_that_became_a_str_leaves_work_to_the_downgrade_alone(
    tmp_path: Path,
) -> None:
    _, stub = evolve(tmp_path, TextV2, TextV1)
    assert stub.todos == (
        'status changed from one of "active", "gone" to str: the downgrade must map every'
        " other str to one of them",
    )
    assert raising(stub) == {"downgrade_2_to_1"}


def test_a_str_that_became_an_enum_of_ints_is_a_change_of_type(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, TextV1, LevelV2)
    assert raising(stub) == {"upgrade_1_to_2", "downgrade_2_to_1"}


# --- Python's words --------------------------------------------------------------------


class WordsV1(BaseModel):
    price: int
    tags: list[str]
    blob: str
    when: str


class WordsV2(BaseModel):
    price: float
    tags: set[str]
    blob: bytes
    when: datetime.datetime


def test_a_changed_type_is_said_in_python_types(tmp_path: Path) -> None:
    """Not JSON Schema's ``integer to number`` or ``array to array (uniqueItems)``."""
    _, stub = evolve(tmp_path, WordsV1, WordsV2)
    assert stub.todos == (
        "blob changed from str to bytes",
        "price changed from int to float",
        "tags changed from list[str] to set[str]",
        "when changed from str to datetime",
    )
    assert "integer" not in stub.summary() + stub.code
    assert "uniqueItems" not in stub.summary() + stub.code


# --- a lossy= guess on a step that moves data -------------------------------------------


class Customer(TypedDict):
    id: str
    first: str


class OrderV1(TypedDict):
    id: int
    customer: Customer


class OrdersV1(TypedDict):
    orders: list[OrderV1]


class OrderV2(TypedDict):
    id: int
    customer_id: str


class OrdersV2(TypedDict):
    orders: list[OrderV2]
    customers: dict[str, Customer]


def test_a_step_that_drops_and_computes_says_its_lossy_is_a_guess(tmp_path: Path) -> None:
    """A customer moved out of each order into a dict keyed by id: the stub's
    ``lossy=("orders.*.customer",)`` would stay wrong once the step moves it, and hide
    the step's bugs from the checks, so a TODO says to narrow or remove it."""
    _, stub = evolve(tmp_path, OrdersV1, OrdersV2)
    guesses = [todo for todo in stub.todos if todo.startswith("lossy=(")]
    assert guesses == [
        "lossy=(orders.*.customer) is a guess: once this step moves what it drops into the"
        " fields it computes, narrow lossy= to what is really lost or remove it;"
        " statemigrate check never compares a field declared lost, so a guess left in"
        " hides this step's bugs",
        "lossy=(customers, orders.*.customer_id) is a guess: once this step moves what it"
        " drops into the fields it computes, narrow lossy= to what is really lost or"
        " remove it; statemigrate check never compares a field declared lost, so a guess"
        " left in hides this step's bugs",
    ]
    upgrade = stub.code.split("\n\n\n")[1]
    assert '@migration("c", 1, 2, lossy=("orders.*.customer",))' in upgrade
    assert "# Declared lossy for now: review lossy= (see the TODO below)." in upgrade
    assert "# TODO: lossy=(orders.*.customer) is a guess" in upgrade


class ProfileV1(BaseModel):
    name: str
    nickname: str = "anonymous"


class ProfileV2(BaseModel):
    name: str


@pytest.mark.parametrize(("old", "new"), [(ProfileV1, ProfileV2), (ProfileV2, ProfileV1)])
def test_a_field_dropped_with_nothing_to_compute_is_lossy_without_a_todo(
    tmp_path: Path, old: Any, new: Any
) -> None:
    _, stub = evolve(tmp_path, old, new)
    assert stub.todos == ()
    assert "Declared lossy: version" in stub.code
