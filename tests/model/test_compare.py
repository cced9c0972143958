"""The exact comparison of states (_model/_compare.py): datetimes and times by wall time
and UTC offset, in dict keys and set items too; numbers widened only on request; complex
numbers by their parts."""

from __future__ import annotations

import datetime
import sys
import zoneinfo
from collections.abc import Callable
from typing import TypeVar

import pytest

from statemigrate._model._compare import first_difference
from statemigrate._model._plaindata import MAX_NESTING

T = TypeVar("T")

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def fixed(hours: float) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=hours))


# Each: a ZoneInfo datetime, and the offset it has (what its ISO text keeps).
CHANGEOVERS = {
    "repeated-hour-first": (datetime.datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK), -4),
    "repeated-hour-second": (datetime.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK), -5),
    "skipped-hour": (datetime.datetime(2024, 3, 10, 2, 30, tzinfo=NEW_YORK), -5),
    "skipped-hour-fold": (datetime.datetime(2024, 3, 10, 2, 30, fold=1, tzinfo=NEW_YORK), -4),
    "summer": (datetime.datetime(2024, 7, 1, 1, 30, tzinfo=NEW_YORK), -4),
}


@pytest.mark.parametrize("case", CHANGEOVERS)
def test_a_zone_time_equals_its_fixed_offset_form_even_in_a_changeover_hour(case: str) -> None:
    """Same wall time and offset, so the same instant. Before, PEP 495 made ``==`` False
    between zones in the changeover hours, and every snapshot holding one was refused."""
    when, hours = CHANGEOVERS[case]
    back = when.replace(tzinfo=fixed(hours), fold=0)
    assert when.utcoffset() == back.utcoffset() and when.timestamp() == back.timestamp()
    assert first_difference(when, back) is None
    assert first_difference([when], [back]) is None
    assert first_difference({when: 1}, {back: 1}) is None
    assert first_difference({when}, {back}) is None


@pytest.mark.parametrize("case", CHANGEOVERS)
def test_the_other_offset_of_the_same_wall_time_is_a_difference(case: str) -> None:
    """The other side of the fold (or gap) is another instant: its text is shown."""
    when, hours = CHANGEOVERS[case]
    other = when.replace(tzinfo=fixed(hours - 1), fold=0)
    found = first_difference({"at": when}, {"at": other})
    assert found is not None
    path, detail = found
    assert path == ["at"]
    assert detail == (
        f"{when.isoformat()} (datetime) would come back as {other.isoformat()} (datetime)"
    )


def test_the_same_instant_at_another_offset_is_a_difference_in_keys_and_sets() -> None:
    """``==`` calls them equal (same instant); the offset would be lost. Before, a dict key
    or a set item at another offset compared equal."""
    when = datetime.datetime(2024, 5, 1, 12, tzinfo=fixed(2))
    as_utc = when.astimezone(datetime.UTC)
    assert when == as_utc
    assert first_difference(when, as_utc) is not None
    key = first_difference({when: 1}, {as_utc: 1})
    assert key == ([when], f"the key would come back as {as_utc.isoformat()} (datetime)")
    assert first_difference({when}, {as_utc}) is not None


def test_naive_is_not_aware() -> None:
    naive = datetime.datetime(2024, 5, 1, 12)
    assert first_difference(naive, naive.replace(tzinfo=datetime.UTC)) is not None
    assert first_difference(datetime.time(1), datetime.time(1, tzinfo=datetime.UTC)) is not None


def test_a_key_that_comes_back_as_another_type_is_named_with_what_it_becomes() -> None:
    """Before: 'this key would be lost', which says nothing of the ``'1'`` in its place."""
    assert first_difference({1: "a"}, {"1": "a"}) == ([1], "the key would come back as '1' (str)")
    assert first_difference({1: "a", 2: "b"}, {1: "a", "2": "b"}) == (
        [2],
        "the key would come back as '2' (str)",
    )
    assert first_difference({1: "a"}, {}) == ([1], "this key would be lost")
    assert first_difference({}, {1: "a"}) == ([1], "this key would appear")


WIDENED = [(True, 1), (False, 0.0), (True, 1.0), (1, 1.0), (-3, -3.0), (0, 0.0), (2**53, 2.0**53)]
NOT_WIDENED = [
    (1.0, 1),  # a float made an int
    (-0.0, 0),
    (1, True),  # an int made a bool
    (0.0, False),
    (2**53 + 1, 2.0**53),  # the float rounds the int
    ("1", 1),
    (1, "1"),
    (1, 2.0),
]


@pytest.mark.parametrize(("written", "back"), WIDENED)
def test_a_number_come_back_as_an_equal_wider_number_is_accepted_on_request(
    written: object, back: object
) -> None:
    assert first_difference(written, back) is not None
    assert first_difference({"a": [{"b": written}]}, {"a": [{"b": back}]}, widening=True) is None


@pytest.mark.parametrize(("written", "back"), NOT_WIDENED)
def test_nothing_but_an_equal_wider_number_is_accepted_when_widening(
    written: object, back: object
) -> None:
    assert first_difference([written], [back], widening=True) == (
        [0], f"{written!r} ({type(written).__name__}) would come back as"
        f" {back!r} ({type(back).__name__})"
    )


def test_a_key_is_not_widened() -> None:
    """Plain data holds keys as text; a key that changes type is a key rule's matter."""
    assert first_difference({1: "x"}, {1.0: "x"}, widening=True) == (
        [1], "the key would come back as 1.0 (float)"
    )


def test_complex_numbers_with_nan_parts_are_the_same_and_zero_signs_count() -> None:
    """Before, a complex with a NaN part differed from itself ("(nan+1j) would come back
    as (nan+1j)"), and ``-0.0 + 1j`` was the same as ``1j`` (``==``)."""
    nan = float("nan")
    assert first_difference(complex(nan, 1.0), complex(nan, 1.0)) is None
    assert first_difference({"z": complex(1.0, nan)}, {"z": complex(1.0, nan)}) is None
    assert first_difference(complex(-0.0, 1.0), 1j) == (
        [], "(-0+1j) (complex) would come back as 1j (complex)"
    )
    assert first_difference(complex(nan, 1.0), complex(nan, 2.0)) is not None


def _nested_lists(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = [{"k": value}]
    return value


def _on_deep_stack(frames: int, call: Callable[[], T]) -> T:
    if frames <= 0:
        return call()
    return _on_deep_stack(frames - 1, call)


def test_data_as_deep_as_a_snapshot_holds_compares_under_the_default_recursion_limit() -> None:
    """Plain data nested as deep as a snapshot holds (1,024 levels of lists and dicts)
    compares at the default limit of 1,000, from a stack already 600 calls deep, and a
    difference at the bottom is named by its whole path: where the stack runs out, the
    walk goes on on a fresh one. Before, RecursionError."""
    levels = MAX_NESTING // 2  # a list and a dict each
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        same = _on_deep_stack(600, lambda: first_difference(
            _nested_lists(levels, 1), _nested_lists(levels, 1)
        ))
        found = _on_deep_stack(600, lambda: first_difference(
            _nested_lists(levels, 1), _nested_lists(levels, "1")
        ))
    finally:
        sys.setrecursionlimit(before)
    assert same is None
    assert found is not None
    path, detail = found
    assert path == [0, "k"] * levels
    assert detail == "1 (int) would come back as '1' (str)"
