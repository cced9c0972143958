"""Exact comparison of states: equal values of the same types, with the first difference.

``==`` is too forgiving to tell whether a state survived a round trip: ``1 == 1.0 ==
True``, a ``str`` equals a ``StrEnum`` member, a model subclass may compare equal to its
base, and a ``datetime`` string never equals a ``datetime`` but says nothing of where.
:func:`first_difference` walks two states together and reports the path to the first
place where they differ in value or in type.

Two deliberate allowances, both documented round-trip rules:

- an aware ``datetime`` or ``time`` comes back with a fixed-offset ``tzinfo``: the same
  instant and UTC offset compare equal whatever the ``tzinfo`` class;
- NaN equals NaN (floats and decimals), so a state holding one can be compared at all.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import math
from collections.abc import Mapping
from typing import Any

import pydantic

__all__ = ["FieldName", "first_difference", "format_path"]

Difference = tuple[list[object], str]


class FieldName(str):
    """A path step that names a record field, rendered ``.name`` (a key renders ``['k']``)."""

    __slots__ = ()


def format_path(path: list[object] | tuple[object, ...]) -> str:
    """Render a path into a state: ``entries['a'].when[0]``, or ``(root)``."""
    text = "".join(f".{step}" if isinstance(step, FieldName) else f"[{step!r}]" for step in path)
    return text.removeprefix(".") or "(root)"


def first_difference(expected: object, actual: object) -> Difference | None:
    """Return ``(path, what differs)`` for the first difference, or None when the two
    states are the same values of the same types.

    ``expected`` may be a model or dataclass instance, or the dict of its fields, which
    is what a component without ``export_state`` hands over.
    """
    return _diff(expected, actual, [])


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__qualname__})"


def _changed(path: list[object], expected: object, actual: object) -> Difference:
    return path, f"{_describe(expected)} would come back as {_describe(actual)}"


def _diff(expected: object, actual: object, path: list[object]) -> Difference | None:
    if isinstance(expected, Mapping) and _is_record(actual):
        return _diff_fields(expected, actual, path, expected_is_dict=True)
    if type(expected) is not type(actual):
        return _changed(path, expected, actual)
    if isinstance(expected, pydantic.BaseModel) or _is_dataclass_instance(expected):
        return _diff_fields(expected, actual, path, expected_is_dict=False)
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping)
        return _diff_mappings(expected, actual, path)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        if len(expected) != len(actual):
            return path, f"{len(expected)} items would come back as {len(actual)}"
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _diff(left, right, [*path, index])
            if found:
                return found
        return None
    if isinstance(expected, set | frozenset):
        assert isinstance(actual, set | frozenset)
        if expected != actual or _item_types(expected) != _item_types(actual):
            return _changed(path, expected, actual)
        return None
    if isinstance(expected, datetime.datetime | datetime.time):
        assert isinstance(actual, datetime.datetime | datetime.time)
        if expected != actual or expected.utcoffset() != actual.utcoffset():
            return _changed(path, expected, actual)
        return None
    if isinstance(expected, float | decimal.Decimal) and _both_nan(expected, actual):
        return None
    if isinstance(expected, decimal.Decimal) and str(expected) != str(actual):
        return _changed(path, expected, actual)
    if isinstance(expected, collections.deque):
        assert isinstance(actual, collections.deque)
        return _diff(list(expected), list(actual), path)
    if expected != actual:
        return _changed(path, expected, actual)
    return None


def _diff_mappings(
    expected: Mapping[Any, Any], actual: Mapping[Any, Any], path: list[object]
) -> Difference | None:
    if expected.keys() != actual.keys():
        missing = [key for key in expected if key not in actual]
        if missing:
            return [*path, missing[0]], "this key would be lost"
        extra = [key for key in actual if key not in expected]
        return [*path, extra[0]], "this key would appear"
    actual_keys = {key: key for key in actual}
    for key, value in expected.items():
        twin = actual_keys[key]
        if type(twin) is not type(key):
            return [*path, key], f"the key would come back as {_describe(twin)}"
        found = _diff(value, actual[key], [*path, key])
        if found:
            return found
    return None


def _diff_fields(
    expected: Any, actual: Any, path: list[object], *, expected_is_dict: bool
) -> Difference | None:
    names = _field_names(actual)
    for name in names:
        if expected_is_dict:
            if name not in expected:
                continue  # an optional field the dict form leaves to its default
            left = expected[name]
        else:
            left = getattr(expected, name)
        found = _diff(left, getattr(actual, name), [*path, FieldName(name)])
        if found:
            return found
    if isinstance(actual, pydantic.BaseModel) and not expected_is_dict:
        for label, left, right in (
            ("extra", expected.__pydantic_extra__, actual.__pydantic_extra__),
            ("private attributes", expected.__pydantic_private__, actual.__pydantic_private__),
        ):
            found = _diff(left or {}, right or {}, [*path, FieldName(f"<{label}>")])
            if found:
                return found
    return None


def _field_names(value: object) -> list[str]:
    if isinstance(value, pydantic.BaseModel):
        return list(type(value).model_fields)
    return [f.name for f in dataclasses.fields(value)]  # type: ignore[arg-type]


def _is_record(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or _is_dataclass_instance(value)


def _is_dataclass_instance(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _item_types(items: set[Any] | frozenset[Any]) -> set[type]:
    return {type(item) for item in items}


def _both_nan(left: object, right: object) -> bool:
    def nan(value: object) -> bool:
        if isinstance(value, float):
            return math.isnan(value)
        return isinstance(value, decimal.Decimal) and value.is_nan()

    return nan(left) and nan(right)
