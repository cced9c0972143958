"""statemigrate.testing: float and decimal specials, and collections of records, drawn often."""

from __future__ import annotations

import collections
import decimal
import math
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from statemigrate._model._registry import Registry
from statemigrate.testing import check_migrations, states

# The same draws every run: the figures below hold for these draws, not on average.
_FIXED = settings(
    max_examples=300, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


class Device(BaseModel):
    temp: float
    reading: Annotated[decimal.Decimal, Field(allow_inf_nan=True)]
    level: decimal.Decimal = decimal.Decimal(0)


class Slot(TypedDict):
    at: float


class Fleet(BaseModel):
    devices: dict[str, Device] = {}
    slots: list[Slot] = []
    ratio: Annotated[float, Field(gt=0)] = 1.0


def _counts() -> collections.Counter[str]:
    registry = Registry()
    registry.add_schema("fleet", 1, Fleet)
    counts: collections.Counter[str] = collections.Counter()

    @_FIXED
    @given(states(registry, "fleet", 1, form="state"))
    def draw(fleet: Fleet) -> None:
        counts["states"] += 1
        counts["devices"] += bool(fleet.devices)
        counts["slots"] += bool(fleet.slots)
        counts["ratio -0.0"] += math.copysign(1, fleet.ratio) < 0
        for device in fleet.devices.values():
            counts["floats"] += 1
            counts["-0.0"] += device.temp == 0 and math.copysign(1, device.temp) < 0
            counts["reading not finite"] += not device.reading.is_finite()
            counts["level not finite"] += not device.level.is_finite()
            counts["level -0"] += device.level.is_zero() and device.level.is_signed()

    draw()
    return counts


def test_specials_and_records_are_drawn_often() -> None:
    """-0.0 in at least 1 float in 25, non-finite decimals where allowed (never where
    not), Decimal('-0'), and collections of records non-empty in most states."""
    counts = _counts()
    assert counts["-0.0"] * 25 >= counts["floats"], counts
    assert counts["reading not finite"] * 25 >= counts["floats"], counts
    assert counts["level not finite"] == 0, counts
    assert counts["level -0"] * 50 >= counts["floats"], counts
    assert counts["ratio -0.0"] == 0, counts  # gt=0 takes no zero of either sign
    assert counts["devices"] * 10 >= counts["states"] * 6, counts
    assert counts["slots"] * 10 >= counts["states"] * 6, counts


class Tree(BaseModel):
    name: str
    children: list[Tree] = []


def test_a_record_that_holds_itself_is_not_filled() -> None:
    """A tree whose every node had children would never end: its lists are drawn as
    hypothesis draws them, and the check runs."""
    registry = Registry()
    registry.add_schema("tree", 1, Tree)
    report = check_migrations(registry, settings=_FIXED, max_examples=50)
    assert report.ok


class Reading(BaseModel):
    temp: float


def _plus_zero(data: Any) -> Any:
    data["temp"] = data["temp"] + 0.0  # turns -0.0 into 0.0
    return data


def _same(data: Any) -> Any:
    return data


def test_a_step_that_loses_the_sign_of_zero_fails() -> None:
    """The planted bug docs/testing.md says the check catches, at 100 examples."""
    registry = Registry()
    registry.add_schema("r", 1, Reading)
    registry.add_schema("r", 2, Reading)
    registry.add_migration("r", 1, 2, _plus_zero, name="up")
    registry.add_migration("r", 2, 1, _same, name="down")
    fixed = settings(derandomize=True, database=None)
    report = check_migrations(registry, settings=fixed, max_examples=100, raise_on_failure=False)
    assert [failure.check for failure in report.failures][:1] == ["r-step-1-2"]
    assert "-0.0" in str(report.failures[0])
