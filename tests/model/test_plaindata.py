"""Plain data: is_plain, not_plain_output, same_plain, copy_plain and to_plain conversions."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections import OrderedDict, deque
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from statemigrate._model._compare import first_difference
from statemigrate._model._plaindata import (
    copy_plain,
    find_not_plain,
    is_plain,
    not_plain_output,
    same_plain,
    to_plain,
)


class SubStr(str):
    __slots__ = ()


plain_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
plain_values = st.recursive(
    plain_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)


def containers(value: Any) -> list[int]:
    found: list[int] = []
    if isinstance(value, dict):
        found.append(id(value))
        for sub in value.values():
            found.extend(containers(sub))
    elif isinstance(value, list):
        found.append(id(value))
        for sub in value:
            found.extend(containers(sub))
    return found


@given(plain_values)
def test_plain_values_survive_msgpack_and_copy(value: Any) -> None:
    """Property: plain data is plain, msgpack round-trips it, and copy_plain gives an equal
    value that shares no container with the original."""
    assert is_plain(value)
    packed = msgpack.packb(value, use_bin_type=True)
    assert msgpack.unpackb(packed, raw=False, strict_map_key=True) == value
    copied = copy_plain(value)
    assert copied == value
    assert not set(containers(copied)) & set(containers(value))


@given(plain_values)
def test_to_plain_of_plain_data_is_equal(value: Any) -> None:
    """Property: to_plain leaves plain data equal (and still plain)."""
    converted = to_plain(value)
    assert converted == value and is_plain(converted)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1: "a"},
        {"a": (1,)},
        2**64,
        -(2**63) - 1,
        object(),
        {"a": {1, 2}},
        True.__class__,
        [bytearray(b"x")],
    ],
)
def test_is_plain_rejects(value: Any) -> None:
    assert not is_plain(value)


almost_plain = st.recursive(
    plain_leaves | st.sampled_from(
        [datetime.date(2020, 1, 2), {1}, (1,), bytearray(b"x"), 2**64, "\ud800", 1j]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.binary(max_size=2) | st.integers(), inner,
                          max_size=4)
    ),
    max_leaves=20,
)


@given(almost_plain)
def test_a_step_output_is_judged_as_the_encoder_judges_it(value: Any) -> None:
    """not_plain_output(v) == find_not_plain(v) for every value: ormsgpack's verdict
    and the walk's agree."""
    assert not_plain_output(value) == find_not_plain(value)


class Color(enum.Enum):
    RED = "red"


class Flag(enum.IntEnum):
    ON = 1


class Small(BaseModel):
    when: datetime.date


@dataclasses.dataclass
class Pair:
    left: int
    right: Color


def test_to_plain_conversions() -> None:
    value = {
        "tuple": (1, 2),
        "set": {"b", "a"},
        "deque": deque([3]),
        "enum": Color.RED,
        "intenum": Flag.ON,
        "uuid": uuid.UUID(int=255),
        "model": Small(when=datetime.date(2020, 1, 2)),
        "dataclass": Pair(1, Color.RED),
        "bytearray": bytearray(b"\x00"),
        "nested": OrderedDict(k=[{"x": frozenset({2, 1})}]),
        1: "int key",
        "1": "same key once converted",
    }
    with pytest.raises(TypeError, match="two keys become '1'"):
        to_plain(value)
    del value["1"]
    plain = to_plain(value)
    assert plain == {
        "tuple": [1, 2],
        "set": ["a", "b"],
        "deque": [3],
        "enum": "red",
        "intenum": 1,
        "uuid": "00000000-0000-0000-0000-0000000000ff",
        "model": {"when": "2020-01-02"},
        "dataclass": {"left": 1, "right": "red"},
        "bytearray": b"\x00",
        "nested": {"k": [{"x": [1, 2]}]},
        "1": "int key",
    }
    assert is_plain(plain)
    assert type(plain["intenum"]) is int


def test_to_plain_keys() -> None:
    assert to_plain({True: 1, 2.5: 2, uuid.UUID(int=0): 3}) == {
        "true": 1,
        "2.5": 2,
        "00000000-0000-0000-0000-000000000000": 3,
    }


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, object()]}, "['a'][1]"),
        ({"a": 2**70}, "['a']"),
        ({(1, 2): 1}, "the top level"),
        # A long key is shown by its start and its length (before, whole).
        ({"k" * 100: object()}, f"at [{'k' * 40!r}...(100 chars)]"),
    ],
)
def test_to_plain_errors_name_the_path(value: Any, where: str) -> None:
    with pytest.raises(TypeError) as info:
        to_plain(value)
    assert where in str(info.value)


def test_copy_plain_is_deep() -> None:
    original = {"a": [{"b": 1}]}
    copied = copy_plain(original)
    copied["a"][0]["b"] = 2
    assert original == {"a": [{"b": 1}]}


@given(plain_values)
def test_plain_data_is_the_same_as_its_copy(value: Any) -> None:
    assert same_plain(value, copy_plain(value))


@given(plain_values, plain_values)
def test_values_the_same_as_plain_data_show_no_difference(left: Any, right: Any) -> None:
    """Property: whatever same_plain calls the same, first_difference finds no
    difference in (same_plain is a fast pass before it, never more forgiving)."""
    if same_plain(left, right):
        assert first_difference(left, right) is None


@given(plain_values)
def test_plain_data_the_same_as_itself_shows_no_difference(value: Any) -> None:
    """The implication above, for pairs that are the same (random pairs seldom are)."""
    copy = copy_plain(value)
    assert same_plain(value, copy) and first_difference(value, copy) is None


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (1, 1.0),
        (1, True),
        (0.0, -0.0),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ([1], [1, 1]),
        ("a", b"a"),
        (None, 0),
    ],
    ids=["int-float", "int-bool", "signed-zero", "key-order", "length", "str-bytes", "none"],
)
def test_values_equal_by_eq_but_not_the_same_plain_data(left: Any, right: Any) -> None:
    assert not same_plain(left, right)
    assert not same_plain(right, left)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: "a"}, [SubStr("x")], [2**64], [datetime.date(2020, 1, 1)]],
    ids=["tuple", "int-key", "str-subclass", "past-64-bits", "date"],
)
def test_values_that_are_not_plain_are_never_the_same(value: Any) -> None:
    """A comparison in Python decides (a tuple is no list, a subclass no str)."""
    assert not same_plain(value, value)


def test_a_nan_is_the_same_as_itself() -> None:
    nan = float("nan")
    assert same_plain([nan], [float("nan")])


def test_the_first_value_that_is_not_plain_in_order_is_the_one_named() -> None:
    """A step that broke every record is told about the first record, not the last."""
    assert find_not_plain({"items": [(1,), (2,)]}) == (
        ["items", 0], "a tuple value ((1,)) is not plain data"
    )
    assert find_not_plain({"a": {1}, "b": [{2}]}) == (["a"], "a set value ({1}) is not plain data")
