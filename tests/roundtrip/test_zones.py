"""Aware datetimes under a ZoneInfo, daylight-saving changeover hours included, restore
with the same wall time, UTC offset and instant under a fixed offset; a value that would
come back at another offset is refused with both texts."""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Callable
from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel

from statemigrate import ExportError

RoundTrip = Callable[[object, object], object]  # the round_trip fixture

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LORD_HOWE = zoneinfo.ZoneInfo("Australia/Lord_Howe")  # a 30-minute changeover

TIMES = {
    "repeated-hour-first": datetime.datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK),
    "repeated-hour-second": datetime.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
    "skipped-hour": datetime.datetime(2024, 3, 10, 2, 30, tzinfo=NEW_YORK),
    "half-hour-repeated": datetime.datetime(2024, 4, 7, 1, 45, fold=1, tzinfo=LORD_HOWE),
    "ordinary": datetime.datetime(2024, 7, 1, 1, 30, tzinfo=NEW_YORK),
}


class Events(BaseModel):
    starts: list[datetime.datetime]
    by_start: dict[datetime.datetime, str] = {}
    seen: set[datetime.datetime] = set()


def same_moment(restored: datetime.datetime, when: datetime.datetime) -> bool:
    return (
        restored.replace(tzinfo=None) == when.replace(tzinfo=None, fold=0)
        and restored.utcoffset() == when.utcoffset()
        and restored.timestamp() == when.timestamp()
    )


@pytest.mark.parametrize("case", TIMES)
def test_a_zone_datetime_restores_as_its_fixed_offset(round_trip: RoundTrip, case: str) -> None:
    """Before, each changeover-hour value was refused at every snapshot ('... would come
    back as ...' showing the same time): ``==`` is False across zones in those hours."""
    when = TIMES[case]
    restored = round_trip(Events, Events(starts=[when], by_start={when: "a"}, seen={when}))
    assert isinstance(restored, Events)
    [start] = restored.starts
    [(key, label)] = restored.by_start.items()
    [seen] = restored.seen
    assert label == "a"
    assert all(same_moment(value, when) for value in (start, key, seen))


def shift_an_hour_east(value: datetime.datetime) -> datetime.datetime:
    """Not idempotent: each validation moves the offset (the instant stays)."""
    offset = value.utcoffset() or datetime.timedelta(0)
    return value.astimezone(datetime.timezone(offset + datetime.timedelta(hours=1)))


class Shifted(BaseModel):
    at: Annotated[datetime.datetime, AfterValidator(shift_an_hour_east)]


def test_a_value_that_would_come_back_at_another_offset_names_both(
    round_trip: RoundTrip,
) -> None:
    """Before, the message showed the values' reprs cut after 60 characters, the zone
    and offset cut off."""
    when = TIMES["repeated-hour-second"]
    with pytest.raises(ExportError) as caught:
        round_trip(Shifted, Shifted.model_construct(at=when))
    assert caught.value.path == "at"
    assert str(caught.value).endswith(
        "at at: 2024-11-03T01:30:00-05:00 (datetime) would come back as"
        " 2024-11-03T02:30:00-04:00 (datetime)"
    )
