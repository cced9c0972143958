"""The zones a drawn datetime or time carries: fixed offsets as pydantic's
``tz_constraint`` allows them, and named zones with daylight saving, with the wall times
of their changeovers (skipped or repeated, where the fold decides the offset).
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo

from hypothesis import strategies as st

__all__ = [
    "NAMED_ZONE_YEARS",
    "allowed_zones",
    "changeover_times",
    "in_changeover",
    "named_zones",
    "pick",
]


_NAMED_ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe")
"""Zones with daylight saving, Lord Howe's a changeover of half an hour."""

NAMED_ZONE_YEARS = (datetime.datetime(1990, 1, 1), datetime.datetime(2100, 1, 1))
"""The wall times drawn under a named zone: from 1990, where each of them has had
offsets of whole minutes for decades (their local mean times had seconds)."""


@functools.cache
def named_zones() -> list[zoneinfo.ZoneInfo]:
    """The named zones this machine's time zone database holds (none without one)."""
    found = []
    for name in _NAMED_ZONES:
        try:
            found.append(zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return found


_CHANGEOVER_YEARS = (2024, 2046)  # one by the zone's table, one past it (its rule)


@functools.cache
def changeover_times() -> tuple[datetime.datetime, ...]:
    """Wall times each named zone skips or repeats in :data:`_CHANGEOVER_YEARS`, at
    quarter hours: where a datetime's UTC offset depends on its fold (PEP 495)."""
    found = []
    for zone in named_zones():
        for year in _CHANGEOVER_YEARS:
            noon = datetime.datetime(year, 1, 1, 12, tzinfo=zone)
            for _ in range(366):
                following = noon + datetime.timedelta(days=1)
                if following.utcoffset() != noon.utcoffset():
                    for quarter in range(96):
                        wall = noon + datetime.timedelta(minutes=15 * quarter)
                        if wall.utcoffset() != wall.replace(fold=1).utcoffset():
                            found.append(wall)
                noon = following
    return tuple(found)


def pick(index: int, *choices: datetime.datetime) -> datetime.datetime:
    return choices[index]


def in_changeover(
    wall: datetime.datetime, *, fold: int, seconds: int, microsecond: int
) -> datetime.datetime:
    """``wall`` moved on within its quarter hour, with ``fold``."""
    moved = wall + datetime.timedelta(seconds=seconds)
    return moved.replace(fold=fold, microsecond=microsecond)


def allowed_zones(constraint: object) -> st.SearchStrategy[datetime.tzinfo | None]:
    """The zones a datetime or time may carry under pydantic's ``tz_constraint``."""
    offsets = st.integers(-1439, 1439).map(
        lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
    )
    if constraint == "naive":
        return st.none()
    if constraint == "aware":
        return st.just(datetime.UTC) | offsets
    if isinstance(constraint, int):
        return st.just(datetime.timezone(datetime.timedelta(seconds=constraint)))
    return st.none() | st.just(datetime.UTC) | offsets
