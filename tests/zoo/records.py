"""Dataclass and TypedDict schemas of the zoo (stdlib and pydantic dataclasses)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
from typing import Annotated, NotRequired

import pydantic
import pydantic.dataclasses
from pydantic import Field
from typing_extensions import TypedDict


class Kind(enum.StrEnum):
    START = "start"
    STOP = "stop"


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Event:
    at: datetime.datetime
    kind: Kind
    tags: set[str] = dataclasses.field(default_factory=set)
    span: tuple[int, int] = (0, 0)


@dataclasses.dataclass
class Timeline:
    """Nested stdlib dataclasses."""

    origin: Point
    events: list[Event] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Totalled:
    """A field the constructor does not take, computed after init."""

    items: list[int]
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = sum(self.items)


@pydantic.dataclasses.dataclass
class PydanticRecord:
    name: str
    seen: datetime.datetime | None = None
    scores: dict[int, float] = dataclasses.field(default_factory=dict)


@pydantic.dataclasses.dataclass(config=pydantic.ConfigDict(populate_by_name=True))
class PydanticAliased:
    name: str = Field(alias="fullName")
    nick: str | None = Field(default=None, alias="nickName")


class Row(TypedDict):
    id: int
    note: NotRequired[str]
    at: datetime.datetime


class RichRow(TypedDict):
    """A TypedDict state holds validated values, not plain data."""

    when: datetime.datetime
    tags: set[str]
    pair: tuple[int, int]
    by_id: dict[int, str]
    amount: decimal.Decimal
    kind: Kind


class AliasedRow(TypedDict):
    data: Annotated[str, Field(alias="value")]
    hits: NotRequired[int]


class Sessions(TypedDict):
    """The shape of the reference cache: a dict of entries, with a counter."""

    entries: dict[str, Row]
    served: int
