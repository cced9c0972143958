"""The exact comparison of states (_model/_compare.py): datetimes and times by wall time
and UTC offset, in dict keys and set items too; long paths shortened in messages."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict

from statemigrate._model._compare import (
    DictKey,
    FieldName,
    SetItem,
    first_difference,
    format_path,
    located_path,
)

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


def test_a_long_path_shows_its_ends_and_its_length() -> None:
    """Before, a path 1,024 steps deep made a message of over 3 KB."""
    path: list[object] = [FieldName("data"), *([0] * 1023), "leaf"]
    text = format_path(path)
    assert text == "data[0][0][0][0][0] ... [0][0][0]['leaf'] (1025 steps)"
    assert format_path([FieldName("a"), "k", 0]) == "a['k'][0]"
    sixteen: list[object] = [0] * 16
    assert format_path(sixteen) == "[0]" * 16


# --- pydantic's error locations as paths -----------------------------------------------------


class _Row(TypedDict):
    hits: int


class _Node(BaseModel):
    rows: dict[str, list[_Row]]
    either: int | list[int] = 0


def test_a_location_names_record_fields_and_keys_as_paths_do() -> None:
    """Fields of models and TypedDicts alike render ``.name``, keys ``['k']``: one form,
    as the exporter's own paths have. Before, a location was rendered all as keys."""
    core = TypeAdapter(_Node).core_schema
    path = located_path(core, ("rows", "k", 0, "hits"))
    assert format_path(path) == "rows['k'][0].hits"


def test_a_location_leaves_out_the_step_naming_a_union_member() -> None:
    core = TypeAdapter(_Node).core_schema
    assert format_path(located_path(core, ("either", "list[int]", 1))) == "either[1]"
    # Plain data has no such steps: past a union, the rest is kept as it is.
    assert format_path(located_path(core, ("either", 1), labelled=False)) == "either[1]"


def test_a_field_whose_name_is_no_identifier_is_shown_as_a_key() -> None:
    """A TypedDict's field may be named anything: ``.a b`` would not read as one step."""
    assert format_path([FieldName("rows"), "k", FieldName("a b")]) == "rows['k']['a b']"


def test_a_dict_keys_own_error_is_located_at_the_key() -> None:
    """pydantic puts ``'[key]'`` after a key whose own validation failed: the path
    names the key, ``users[1] key 'x'``, not a step ``['[key]']`` into its value."""
    adapter = TypeAdapter(dict[str, dict[int, bool]])
    path = located_path(adapter.core_schema, ["users", "x", "[key]"])
    assert format_path(path) == "['users'] key 'x'"
    assert format_path(located_path(adapter.core_schema, ["x", "[key]"])) == "(root) key 'x'"
    # Plain data has no such step: there a key '[key]' is a key.
    plain = located_path(adapter.core_schema, ["x", "[key]"], labelled=False)
    assert format_path(plain) == "['x']['[key]']"
    assert format_path([DictKey("x")]) == "(root) key 'x'"
    assert format_path([FieldName("s"), SetItem(1)]) == "s{1}"
