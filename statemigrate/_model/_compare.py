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
    found = _diff(expected, actual)
    if found is None:
        return None
    steps, detail = found
    steps.reverse()
    return steps, detail


# The walk builds no path on the way down: a difference comes back up with the steps
# to it innermost first, each caller adding its own. Paths cost a list per value
# otherwise, on states that are nearly always the same.
_Found = tuple[list[object], str]


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__qualname__})"


def _changed(expected: object, actual: object) -> _Found:
    return [], f"{_describe(expected)} would come back as {_describe(actual)}"


def _below(step: object, found: _Found | None) -> _Found | None:
    if found is not None:
        found[0].append(step)
    return found


_ATOMS = frozenset({str, int, bool, bytes, type(None)})
"""Types whose values are equal exactly when ``==`` says so (for the same type)."""


def _diff(expected: object, actual: object) -> _Found | None:
    kind = type(expected)
    if kind is type(actual):
        # The bulk of a state's values: answered here without the general checks below,
        # which cost a dozen isinstance calls per value.
        if kind in _ATOMS:
            return None if expected == actual else _changed(expected, actual)
        if kind is float:
            if expected == actual or _both_nan(expected, actual):
                return None
            return _changed(expected, actual)
        if kind is dict:
            return _diff_mappings(expected, actual)  # type: ignore[arg-type]
        if _plain_record_type(kind):
            return _diff_fields(expected, actual, expected_is_dict=False)
    if isinstance(expected, Mapping) and _is_record(actual):
        return _diff_fields(expected, actual, expected_is_dict=True)
    if type(expected) is not type(actual):
        return _changed(expected, actual)
    if isinstance(expected, pydantic.BaseModel) or _is_dataclass_instance(expected):
        return _diff_fields(expected, actual, expected_is_dict=False)
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping)
        return _diff_mappings(expected, actual)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        if len(expected) != len(actual):
            return [], f"{len(expected)} items would come back as {len(actual)}"
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _diff(left, right)
            if found:
                return _below(index, found)
        return None
    if isinstance(expected, set | frozenset):
        assert isinstance(actual, set | frozenset)
        if expected != actual or _item_types(expected) != _item_types(actual):
            return _changed(expected, actual)
        return None
    if isinstance(expected, datetime.datetime | datetime.time):
        assert isinstance(actual, datetime.datetime | datetime.time)
        if expected != actual or expected.utcoffset() != actual.utcoffset():
            return _changed(expected, actual)
        return None
    if isinstance(expected, float | decimal.Decimal) and _both_nan(expected, actual):
        return None
    if isinstance(expected, decimal.Decimal) and str(expected) != str(actual):
        return _changed(expected, actual)
    if isinstance(expected, collections.deque):
        assert isinstance(actual, collections.deque)
        return _diff(list(expected), list(actual))
    if expected != actual:
        return _changed(expected, actual)
    return None


def _diff_mappings(expected: Mapping[Any, Any], actual: Mapping[Any, Any]) -> _Found | None:
    if expected.keys() != actual.keys():
        missing = [key for key in expected if key not in actual]
        if missing:
            return [missing[0]], "this key would be lost"
        extra = [key for key in actual if key not in expected]
        return [extra[0]], "this key would appear"
    actual_keys = {key: key for key in actual}
    for key, value in expected.items():
        twin = actual_keys[key]
        if type(twin) is not type(key):
            return [key], f"the key would come back as {_describe(twin)}"
        found = _diff(value, actual[key])
        if found:
            return _below(key, found)
    return None


def _diff_fields(expected: Any, actual: Any, *, expected_is_dict: bool) -> _Found | None:
    names = _field_names(actual)
    for name in names:
        if expected_is_dict:
            if name not in expected:
                continue  # an optional field the dict form leaves to its default
            left = expected[name]
        else:
            left = getattr(expected, name)
        found = _diff(left, getattr(actual, name))
        if found:
            return _below(FieldName(name), found)
    if isinstance(actual, pydantic.BaseModel) and not expected_is_dict:
        for label, left, right in (
            ("extra", expected.__pydantic_extra__, actual.__pydantic_extra__),
            ("private attributes", expected.__pydantic_private__, actual.__pydantic_private__),
        ):
            found = _diff(left or {}, right or {})
            if found:
                return _below(FieldName(f"<{label}>"), found)
    return None


_RECORD_TYPES: dict[type, bool] = {}


def _plain_record_type(kind: type) -> bool:
    """A model or dataclass type that is no mapping: its values compare field by field,
    as the general checks in :func:`_diff` would find after a dozen ``isinstance``."""
    known = _RECORD_TYPES.get(kind)
    if known is None:
        known = not issubclass(kind, Mapping) and (
            issubclass(kind, pydantic.BaseModel) or hasattr(kind, dataclasses._FIELDS)  # type: ignore[attr-defined]
        )
        _RECORD_TYPES[kind] = known
    return known


def _field_names(value: object) -> list[str]:
    if isinstance(value, pydantic.BaseModel):
        return list(type(value).model_fields)
    return [f.name for f in dataclasses.fields(value)]  # type: ignore[arg-type]


def _is_record(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or _is_dataclass_instance(value)


def _is_dataclass_instance(value: object) -> bool:
    # What dataclasses.is_dataclass checks for an instance, at a fraction of its cost.
    return hasattr(type(value), dataclasses._FIELDS)  # type: ignore[attr-defined]


def _item_types(items: set[Any] | frozenset[Any]) -> set[type]:
    return {type(item) for item in items}


def _both_nan(left: object, right: object) -> bool:
    def nan(value: object) -> bool:
        if isinstance(value, float):
            return math.isnan(value)
        return isinstance(value, decimal.Decimal) and value.is_nan()

    return nan(left) and nan(right)
