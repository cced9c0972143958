"""Types the plain form rewrites come back as they were: pydantic's URL classes
(AnyUrl, HttpUrl, PostgresDsn, ...), paths and IP addresses as text, NamedTuples (and
the ints past 64 bits they hold) as lists, enum values kept by ``use_enum_values``,
complex numbers and regular expressions as text (or bytes)."""

from __future__ import annotations

import datetime
import enum
import ipaddress
import pathlib
import re
from collections.abc import Callable
from typing import NamedTuple

import pydantic
import pytest
from pydantic import AnyUrl, BaseModel, ConfigDict, HttpUrl, PostgresDsn

from statemigrate import ExportError
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


class Signal(BaseModel):
    z: complex
    many: list[complex] = []


def test_a_complex_with_a_nan_part_round_trips(round_trip: RoundTrip) -> None:
    """Before, it was refused: "(nan+1j) would come back as (nan+1j)", NaN being equal
    to nothing, not even itself; its text brings it back as it was."""
    nan = float("nan")
    state = Signal(z=complex(nan, 1.0), many=[complex(1.0, nan), complex(nan, nan)])
    restored = round_trip(Signal, state)
    assert isinstance(restored, Signal)
    assert repr(restored.z) == "(nan+1j)"
    assert [repr(z) for z in restored.many] == ["(1+nanj)", "(nan+nanj)"]
    assert not exact_differences(state, restored)


def test_a_complex_keeps_the_sign_of_a_zero_real_part(round_trip: RoundTrip) -> None:
    """Before, ``-0.0 + 1j`` came back as ``1j``: pydantic's text of it, ``1j``, leaves
    out a zero real part and its sign."""
    state = Signal(z=complex(-0.0, 1.0), many=[complex(-0.0, -0.0), complex(-0.0, 0.0), 0j])
    restored = round_trip(Signal, state)
    assert isinstance(restored, Signal)
    assert repr(restored.z) == "(-0+1j)"
    assert [repr(z) for z in restored.many] == ["(-0-0j)", "(-0+0j)", "0j"]
    assert not exact_differences(state, restored)


class Filters(BaseModel):
    raw: re.Pattern[bytes]
    either: re.Pattern = re.compile("x")  # type: ignore[type-arg]  # str or bytes
    text: re.Pattern[str] = re.compile("^a")


def test_a_bytes_pattern_round_trips(round_trip: RoundTrip) -> None:
    """Before, every state was refused: a bytes pattern was written as the text of its
    repr, "b'^GET '", which no bytes pattern takes; it is written as its bytes."""
    state = Filters(raw=re.compile(rb"^GET "), either=re.compile(rb"\x00+"))
    restored = round_trip(Filters, state)
    assert isinstance(restored, Filters)
    assert restored.raw == re.compile(rb"^GET ") and restored.either == re.compile(rb"\x00+")
    assert restored.text == re.compile("^a")


def test_a_pattern_s_flags_are_still_refused_at_its_path(round_trip: RoundTrip) -> None:
    """A snapshot holds the pattern, not its flags: write them inline, ``(?i)``."""
    with pytest.raises(ExportError) as caught:
        round_trip(Filters, Filters(raw=re.compile(rb"^get ", re.IGNORECASE)))
    assert caught.value.path == "raw"
    assert "would come back as re.compile(b'^get ')" in str(caught.value)
