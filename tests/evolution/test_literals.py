"""Python literals for plain data in generated migrations modules: they load, as ASCII,
and give back exactly the value they were written from."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemigrate.evolution._literals import python_literal
from statemigrate.testing import plain_data
from statemigrate.testing._exact import exact_differences

_FLOATS = st.floats() | st.sampled_from([math.inf, -math.inf, math.nan, -math.nan, -0.0, 0.0])
_TEXT = st.text(st.characters(codec="utf-8"))  # any code point a snapshot's text holds
_VALUES = st.recursive(
    plain_data() | _FLOATS | _TEXT | st.integers(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=16,
)


def _loaded(value: Any) -> Any:
    return eval(python_literal(value), {"__builtins__": {"float": float}})  # noqa: S307


def _signs(value: Any) -> list[float]:
    """The sign of every float in ``value``, in order: exact_differences tells ``-0.0``
    from ``0.0`` but not the sign of a NaN, which a snapshot keeps."""
    if type(value) is float:
        return [math.copysign(1.0, value)]
    if type(value) is list:
        return [sign for item in value for sign in _signs(item)]
    if type(value) is dict:
        return [sign for item in value.values() for sign in _signs(item)]
    return []


@given(_VALUES)
def test_a_literal_loads_as_exactly_its_value(value: Any) -> None:
    """For all plain data v (any code point, any int, floats with infinities, NaN and
    -0.0): eval(python_literal(v)) has v's types, values, key order and float signs,
    and the literal is ASCII."""
    literal = python_literal(value)
    assert literal.isascii()
    loaded = _loaded(value)
    assert exact_differences(value, loaded) == []
    assert _signs(loaded) == _signs(value)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (math.inf, 'float("inf")'),
        (-math.inf, 'float("-inf")'),
        (math.nan, 'float("nan")'),
        (-0.0, "-0.0"),
        (2**70, "1180591620717411303424"),
        ("\U0001f600", '"\\U0001f600"'),  # one escape, not a surrogate pair
        ("café", '"caf\\xe9"'),
        ('say "hi"', "'say \"hi\"'"),
        (b"\xff\x00hello", 'b"\\xff\\x00hello"'),
        ({"a": [None, True, 1, 1.5]}, '{"a": [None, True, 1, 1.5]}'),
    ],
)
def test_literals_are_written_as_python_reads_them(value: Any, literal: str) -> None:
    assert python_literal(value) == literal


def test_a_value_that_is_not_plain_data_has_no_literal() -> None:
    with pytest.raises(TypeError, match="no literal for a tuple value"):
        python_literal((1, 2))
