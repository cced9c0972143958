"""Unions of records of every kind (TypedDict, BaseModel, dataclass members; tagged by a
discriminator or not), and states whose member holds a given string, for the tests of
what a snapshot says of a lone surrogate inside a union member."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

KINDS = ("typeddict", "model", "dataclass")
MEMBERS = ("card", "voucher")
# The str field of each member that a test puts its text into.
TEXT_FIELD = {"card": "last4", "voucher": "code"}


class CardDict(TypedDict):
    kind: Literal["card"]
    last4: str


class VoucherDict(TypedDict):
    kind: Literal["voucher"]
    code: str
    notes: list[str]


class CardModel(BaseModel):
    kind: Literal["card"] = "card"
    last4: str


class VoucherModel(BaseModel):
    kind: Literal["voucher"] = "voucher"
    code: str
    notes: list[str] = []


@dataclasses.dataclass
class CardData:
    last4: str
    kind: Literal["card"] = "card"


@dataclasses.dataclass
class VoucherData:
    code: str
    notes: list[str] = dataclasses.field(default_factory=list)
    kind: Literal["voucher"] = "voucher"


_CLASSES: dict[str, tuple[Any, Any]] = {
    "typeddict": (CardDict, VoucherDict),
    "model": (CardModel, VoucherModel),
    "dataclass": (CardData, VoucherData),
}


class TaggedDicts(TypedDict):
    owner: str
    payments: list[Annotated[CardDict | VoucherDict, Field(discriminator="kind")]]


class UntaggedDicts(TypedDict):
    owner: str
    payments: list[CardDict | VoucherDict]


class TaggedModels(TypedDict):
    owner: str
    payments: list[Annotated[CardModel | VoucherModel, Field(discriminator="kind")]]


class UntaggedModels(TypedDict):
    owner: str
    payments: list[CardModel | VoucherModel]


class TaggedData(TypedDict):
    owner: str
    payments: list[Annotated[CardData | VoucherData, Field(discriminator="kind")]]


class UntaggedData(TypedDict):
    owner: str
    payments: list[CardData | VoucherData]


_SCHEMAS: dict[tuple[str, bool], Any] = {
    ("typeddict", True): TaggedDicts,
    ("typeddict", False): UntaggedDicts,
    ("model", True): TaggedModels,
    ("model", False): UntaggedModels,
    ("dataclass", True): TaggedData,
    ("dataclass", False): UntaggedData,
}


def schema_of(kind: str, tagged: bool) -> Any:
    """A TypedDict holding a list of the union of ``kind``'s two members."""
    return _SCHEMAS[kind, tagged]


def member_of(kind: str, member: str, text: str, note: str = "") -> Any:
    """A state's member of ``kind``, ``member`` (card or voucher), holding ``text`` in its
    text field and ``note`` (when given) in a list of strings of a voucher."""
    card, voucher = _CLASSES[kind]
    if kind == "typeddict":
        if member == "card":
            return {"kind": "card", "last4": text}
        return {"kind": "voucher", "code": text, "notes": [note] if note else []}
    if member == "card":
        return card(last4=text)
    return voucher(code=text, notes=[note] if note else [])
