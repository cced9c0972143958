"""Types the plain form rewrites come back as they were: pydantic's URL classes
(AnyUrl, HttpUrl, PostgresDsn, ...), paths and IP addresses as text, NamedTuples (and
the ints past 64 bits they hold) as lists, enum values kept by ``use_enum_values``."""

from __future__ import annotations

import datetime
import enum
import ipaddress
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import pydantic
from pydantic import AnyUrl, BaseModel, ConfigDict, HttpUrl, PostgresDsn

from statemigrate.testing._exact import exact_differences

RoundTrip = Callable[[object, object], object]  # the round_trip fixture


class Endpoints(BaseModel):
    home: AnyUrl
    api: HttpUrl
    database: PostgresDsn
    mirrors: list[HttpUrl] = []
    fallback: AnyUrl | None = None
    core: pydantic.AnyHttpUrl | None = None
    path: pathlib.Path = pathlib.Path("/srv")
    address: ipaddress.IPv6Address = ipaddress.IPv6Address("::1")


def test_pydantic_url_classes_round_trip(round_trip: RoundTrip) -> None:
    """Before, every state holding one was refused: 'expected a URL, found AnyUrl'."""
    state = Endpoints(
        home="https://example.org/a?b=1#c",
        api="https://api.example.org:8443/v1/",
        database="postgres://user:secret@db1:5432,db2:5433/app",
        mirrors=["http://m1.example.org", "http://m2.example.org/x"],
        fallback="ftp://files.example.org",
        core="http://localhost",
    )
    restored = round_trip(Endpoints, state)
    assert not exact_differences(state, restored)
    assert isinstance(restored, Endpoints)
    assert type(restored.database) is PostgresDsn and str(restored.database) == str(state.database)


class Cell(NamedTuple):
    row: int
    column: int = 0
    seen: datetime.datetime | None = None


class Sheet(BaseModel):
    origin: Cell
    cells: list[Cell] = []
    corners: tuple[Cell, ...] = ()


def test_a_named_tuple_round_trips_field_by_field(round_trip: RoundTrip) -> None:
    """Before, a NamedTuple was written by its values' own types, so an int past 64 bits
    in it was refused although the field is an int."""
    state = Sheet(
        origin=Cell(2**70, -(2**90)),
        cells=[Cell(1, 2, datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC))],
        corners=(Cell(0), Cell(2**64)),
    )
    restored = round_trip(Sheet, state)
    assert not exact_differences(state, restored)
    assert isinstance(restored, Sheet) and type(restored.origin) is Cell


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


class Painted(BaseModel):
    model_config = ConfigDict(use_enum_values=True)

    color: Color = Color.RED
    size: Size = Size.S
    palette: list[Color] = []
    by_color: dict[Color, Size] = {}
    maybe: Color | None = None


def test_use_enum_values_round_trips(round_trip: RoundTrip) -> None:
    """The model holds the members' values; before, every such state was refused."""
    state = Painted(
        color=Color.BLUE, size=3, palette=["red", Color.BLUE], by_color={"blue": 1}, maybe="red"
    )
    assert type(vars(state)["color"]) is str  # the value, not the member
    restored = round_trip(Painted, state)
    assert not exact_differences(state, restored)
