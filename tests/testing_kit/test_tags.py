"""Tests for the tags of discriminated unions' members in drawn states (testing/_tags.py)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, NotRequired

import pytest
from hypothesis import given, settings
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from statemigrate._model._schema import SchemaVersion
from statemigrate.testing import from_schema
from statemigrate.testing._strategies import Form
from statemigrate.testing._tags import tag_key, with_tag


class Sale(BaseModel):
    kind: Literal["sale"] = "sale"
    qty: int


class Refund(BaseModel):
    kind: Literal["refund", "return"] = "refund"
    qty: int


class AliasedSale(BaseModel):
    kind: Literal["sale"] = Field("sale", alias="Kind")
    qty: int


class AliasedRefund(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    kind: Literal["refund"] = Field("refund", alias="Kind")
    qty: int


class SaleRow(TypedDict):
    kind: NotRequired[Literal["sale"]]
    qty: int


class RefundRow(TypedDict):
    kind: NotRequired[Literal["refund"]]
    qty: int


@dataclasses.dataclass
class SaleRecord:
    qty: int
    kind: Literal["sale"] = "sale"


@dataclasses.dataclass
class RefundRecord:
    qty: int
    kind: Literal["refund"] = "refund"


class Paid(BaseModel):
    kind: Literal["sale"] = "sale"
    how: Literal["paid"] = "paid"
    qty: int


class Owed(BaseModel):
    kind: Literal["sale"] = "sale"
    how: Literal["owed"] = "owed"
    qty: int


Payment = Annotated[Paid | Owed, Field(discriminator="how")]

UNIONS: dict[str, Any] = {
    "models": Annotated[Sale | Refund, Field(discriminator="kind")],
    "aliased": Annotated[AliasedSale | AliasedRefund, Field(discriminator="kind")],
    "typed dicts": Annotated[SaleRow | RefundRow, Field(discriminator="kind")],
    "dataclasses": Annotated[SaleRecord | RefundRecord, Field(discriminator="kind")],
    "nested": Annotated[Payment | Refund, Field(discriminator="kind")],
}


@pytest.mark.parametrize("form", ["plain", "state"])
@pytest.mark.parametrize("name", list(UNIONS))
def test_lists_of_members_with_a_defaulted_tag_are_mostly_not_empty(
    name: str, form: Form
) -> None:
    """Property: a list of a discriminated union's members, whose tag field has a
    default, is drawn about as often non-empty as any list. Drawn without their tag,
    such members failed validation and the state was drawn again, so under half the
    lists (a quarter in the state form) held any member."""
    schema = SchemaVersion.create("events", 1, list.__class_getitem__(UNIONS[name]))
    lengths: list[int] = []

    @settings(database=None, max_examples=60, derandomize=True)
    @given(from_schema(schema, form=form))
    def draw(value: list[Any]) -> None:
        lengths.append(len(value))

    draw()
    assert sum(length > 0 for length in lengths) >= 0.7 * len(lengths), lengths


def union_node(union: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tagged-union node of ``union`` and the nodes its references name."""
    root: Any = TypeAdapter[Any](union).core_schema
    refs = {node["ref"]: node for node in root.get("definitions", [])}
    node = root["schema"] if root["type"] == "definitions" else root
    assert node["type"] == "tagged-union"
    return node, refs


@pytest.mark.parametrize("name", list(UNIONS))
def test_the_tag_is_found_under_the_fields_python_name(name: str) -> None:
    node, refs = union_node(UNIONS[name])
    keys = {tag_key(choice, node["discriminator"], refs) for choice in node["choices"].values()}
    assert keys == {"kind"}


def test_a_discriminator_function_names_no_field() -> None:
    node, refs = union_node(UNIONS["models"])
    assert tag_key(node["choices"]["sale"], lambda value: "sale", refs) is None


def test_a_drawn_tag_is_kept_and_a_missing_one_put_in() -> None:
    assert with_tag({"qty": 1}, key="kind", tag="return") == {"qty": 1, "kind": "return"}
    assert with_tag({"kind": "refund"}, key="kind", tag="return") == {"kind": "refund"}
    sale = Sale(qty=1)
    assert with_tag(sale, key="kind", tag="sale") is sale
