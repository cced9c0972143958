"""The exact comparison of states (_model/_compare.py): datetimes and times by wall time
and UTC offset, in dict keys and set items too; numbers widened only on request; long
paths shortened in messages."""

from __future__ import annotations

import datetime
import sys
import zoneinfo
from collections.abc import Callable
from typing import Annotated, TypeVar

import pytest
from pydantic import AfterValidator, BaseModel, TypeAdapter
from typing_extensions import TypedDict

from statemigrate._errors import ExportError
from statemigrate._model._compare import (
    DictKey,
    FieldName,
    SetItem,
    first_difference,
    format_path,
    located_path,
)
from statemigrate._model._plaindata import MAX_NESTING
from statemigrate._model._schema import SchemaVersion

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


def _even(key: int) -> int:
    if key % 2:
        raise ValueError("odd key")
    return key


Even = Annotated[int, AfterValidator(_even)]


class _Keyed(BaseModel):
    by_id: dict[Even, int]
    nested: dict[str, dict[Even, int]] = {}
    deep: dict[str, dict[str, Even]] = {}


def test_a_key_that_does_not_validate_is_named_as_the_key() -> None:
    """pydantic locates a key's own error with a step ``[key]`` after the key. Before,
    that step was shown as one more key: ``by_id['3']['[key]']``."""
    core = TypeAdapter(_Keyed).core_schema
    assert format_path(located_path(core, ("by_id", "3", "[key]"))) == "by_id key '3'"
    assert format_path(located_path(core, ("nested", "a", "3", "[key]"))) == (
        "nested['a'] key '3'"
    )
    # Under a dict of dicts, a value's error at the key "[key]" has that location too.
    assert format_path(located_path(core, ("deep", "a", "[key]"))) == "deep['a']['[key]']"


def test_an_export_refused_for_a_key_names_the_key() -> None:
    schema = SchemaVersion.create("c", 1, _Keyed)
    with pytest.raises(ExportError) as caught:
        schema.export(_Keyed.model_construct(by_id={3: 1}))
    assert str(caught.value).startswith(
        "c version 1 cannot be snapshotted: at by_id key '3': its plain form does"
        " not validate back: Value error, odd key"
    )


def test_a_field_whose_name_is_no_identifier_is_shown_as_a_key() -> None:
    """A TypedDict's field may be named anything: ``.a b`` would not read as one step."""
    assert format_path([FieldName("rows"), "k", FieldName("a b")]) == "rows['k']['a b']"


def test_a_dict_keys_own_error_is_located_at_the_key() -> None:
    """pydantic puts ``'[key]'`` after a key whose own validation failed: the path
    names the key, ``users[1] key 'x'``, not a step ``['[key]']`` into its value."""
    adapter = TypeAdapter(dict[str, dict[int, bool]])
    path = located_path(adapter.core_schema, ["users", "x", "[key]"])
    assert format_path(path) == "['users'] key 'x'"
    # Here the values are dicts: their own key "[key]" has that location too, so it
    # is not told apart (see test_a_key_that_does_not_validate_is_named_as_the_key).
    assert format_path(located_path(adapter.core_schema, ["x", "[key]"])) == "['x']['[key]']"
    # Plain data has no such step: there a key '[key]' is a key.
    plain = located_path(adapter.core_schema, ["x", "[key]"], labelled=False)
    assert format_path(plain) == "['x']['[key]']"
    assert format_path([DictKey("x")]) == "(root) key 'x'"
    assert format_path([FieldName("s"), SetItem(1)]) == "s{1}"


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
