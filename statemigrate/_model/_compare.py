"""Exact comparison of states: equal values of the same types, with the first difference.

``==`` is too forgiving to tell whether a state survived a round trip: ``1 == 1.0 ==
True``, a ``str`` equals a ``StrEnum`` member, a model subclass may compare equal to its
base, and a ``datetime`` string never equals a ``datetime`` but says nothing of where.
:func:`first_difference` walks two states together and reports the path to the first
place where they differ in value or in type.

Two deliberate allowances, both documented round-trip rules:

- an aware ``datetime`` or ``time`` comes back with a fixed-offset ``tzinfo``: the same
  wall time and UTC offset (so the same instant) compare equal whatever the ``tzinfo``
  class. Not with ``==``, which compares instants only, and which PEP 495 makes False
  between two zones for a time in a daylight-saving changeover (a ``ZoneInfo``'s
  repeated or skipped hour); ``fold`` counts only through the offset it selects, which
  is all of it an aware value's text can keep. The same rule matches dict keys and set
  items;
- NaN equals NaN (floats and decimals), so a state holding one can be compared at all.

One allowance on request (``widening=True``), for plain data that one schema wrote and
another reads back: a number that comes back as an exactly equal number of a wider
numeric type (``1`` as ``1.0``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import math
import pathlib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pydantic

from statemigrate._model._freshstack import EVERY, on_fresh_stack
from statemigrate._model._paths import FieldName
from statemigrate._model._shown import shortened

__all__ = [
    "DROPPED_KEY",
    "counterparts",
    "factory_name",
    "first_changed_value",
    "first_difference",
    "same_factory",
    "widening_change",
]

Difference = tuple[list[object], str]


def first_difference(
    expected: object, actual: object, *, widening: bool = False
) -> Difference | None:
    """Return ``(path, what differs)`` for the first difference, or None when the two
    states are the same values of the same types.

    ``expected`` may be a model or dataclass instance, or the dict of its fields, which
    is what a component without ``export_state`` hands over.

    ``widening=True`` also accepts a number that comes back as an exactly equal number
    of a wider type: a ``bool`` as an ``int`` or ``float``, an ``int`` as a ``float``
    (``1`` as ``1.0``, not ``2**53 + 1`` as ``2.0**53``). Plain data written by one
    schema and read by another holds such numbers whenever the writer kept an ``int``
    that validation makes a ``float``; nothing is lost in the step. Nothing else is
    accepted: ``-0.0`` as ``0``, a float as an int, a str as an int stay differences.
    """
    found = _diff(expected, actual, widening)
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
    return f"{shortened(value)} ({type(value).__qualname__})"


def _changed(expected: object, actual: object) -> _Found:
    return [], f"{_describe(expected)} would come back as {_describe(actual)}"


def _below(step: object, found: _Found | None) -> _Found | None:
    if found is not None:
        found[0].append(step)
    return found


_ATOMS = frozenset({str, int, bool, bytes, type(None)})
"""Types whose values are equal exactly when ``==`` says so (for the same type)."""

_WIDER: dict[type, tuple[type, ...]] = {bool: (int, float), int: (float,)}
"""The numeric types each type's values may come back as under ``widening``."""


def _widened(expected: object, actual: object) -> bool:
    """Whether ``actual`` is ``expected`` as an equal number of a wider type. Python
    compares an int with a float exactly, so an int that the float rounds is no match."""
    return type(actual) in _WIDER.get(type(expected), ()) and expected == actual


def widening_change(expected: object, actual: object) -> str | None:
    """None when ``actual`` is ``expected`` as an exactly equal number of a wider type,
    the one change ``widening`` accepts; else what would change, in the words of a
    difference: ``9007199254740993 (int) would come back as 9007199254740992.0 (float)``.

    For an export that converts a number as validation will (an ``int`` in a ``float``
    field), so that it refuses by the rule, and in the words, of a read-back.
    """
    return None if _widened(expected, actual) else _changed(expected, actual)[1]


def first_changed_value(
    data: object, state: object, *, dropped_keys: bool = False, kinds: bool = False
) -> Difference | None:
    """``(path, what changes)`` for the first value of ``data`` that ``state``,
    validated from it, holds as another value: an int held as a float that is another
    number (``2**53 + 1`` as ``2.0**53``), by the rule and in the words of
    :func:`widening_change`, or a ``datetime`` held as a ``date`` (lax validation takes
    one at midnight, dropping its time and zone); or None. With ``dropped_keys``, also
    a dict of the data that the state holds with fewer keys: a ``TypedDict`` record
    with a key that is not one of its fields, which validation drops. With ``kinds``,
    also a value below the top level that validation made a value of another kind, not
    a scalar (see :func:`_kind_made`): a dict made a model, text made an enum member.

    Only those changes are looked for: everything else validation converts (``"5"``
    into ``5``, text into a date) is what validation is for. ``data`` is plain data (a
    step's output) or a component's fields as they are. The two are walked together by
    the data's keys and indexes (a model or dataclass by its fields), without
    recursion, so at any depth; a place the state does not hold the same way is passed
    over.
    """
    pending: list[tuple[object, object, tuple[object, ...]]] = [(data, state, ())]
    while pending:
        plain, held, path = pending.pop()
        if kinds and path:
            made = _kind_made(plain, held)
            if made is not None:
                return list(path), made
        kind = type(plain)
        if kind is int:
            if type(held) is float:
                change = widening_change(plain, held)
                if change is not None:
                    return list(path), change
        elif isinstance(plain, datetime.datetime):
            if type(held) is datetime.date:
                return list(path), "expected a date, found a datetime"
        elif kind is dict:
            assert isinstance(plain, dict)
            if isinstance(held, Mapping):
                # Fewer keys than the data: validation dropped some. (Compared by
                # count: a dict's keys may be converted, "1" to 1, and still all kept.)
                if dropped_keys and len(held) < len(plain):
                    gone = [key for key in plain if key not in held]
                    return [*path, gone[0] if gone else next(iter(plain))], DROPPED_KEY
                pending.extend(
                    (value, held[key], (*path, key)) for key, value in plain.items() if key in held
                )
            elif _is_record(held):
                pending.extend(
                    (value, getattr(held, key), (*path, FieldName(key)))
                    for key, value in plain.items()
                    if isinstance(key, str) and hasattr(held, key)
                )
        elif kind is list or (kinds and kind is tuple):
            assert isinstance(plain, list | tuple)
            if isinstance(held, list | tuple | collections.deque) and len(held) == len(plain):
                pending.extend(
                    (value, again, (*path, index))
                    for index, (value, again) in enumerate(zip(plain, held, strict=True))
                )
            elif isinstance(held, set | frozenset):
                for index, value in enumerate(plain):
                    if type(value) is int and _float_of(value) in held:
                        change = widening_change(value, _float_of(value))
                        if change is not None:
                            return [*path, index], change
    return None


NOT_A_FIELD = "validation drops this key: it is not a field of its record"
DROPPED_KEY = f"{NOT_A_FIELD} (or, in a dict, it converts to the same key as another)"


def _float_of(value: int) -> float | None:
    try:
        return float(value)
    except OverflowError:
        return None


def _diff(
    expected: object, actual: object, widening: bool = False, depth: int = 0
) -> _Found | None:
    """The first difference; ``depth`` counts the containers and records walked into.

    A walk whose stack runs out (``RecursionError``) goes on from the last container
    at a multiple of :data:`EVERY` levels, on a fresh stack: a state nested as deep as
    a restore takes is compared in any process, whatever its recursion limit (see
    ``_freshstack``). The walk started there is ``fresh``, and does not move again at
    its own level.
    """
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
            return _diff_mappings(expected, actual, widening, depth)  # type: ignore[arg-type]
        if _plain_record_type(kind):
            return _diff_fields(expected, actual, False, widening, depth)
    if isinstance(expected, Mapping) and _is_record(actual):
        return _diff_fields(expected, actual, True, widening, depth)
    if type(expected) is not type(actual):
        if widening and _widened(expected, actual):
            return None
        return _changed(expected, actual)
    if isinstance(expected, pydantic.BaseModel) or _is_dataclass_instance(expected):
        return _diff_fields(expected, actual, False, widening, depth)
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping)
        if isinstance(expected, collections.defaultdict):
            again = actual.default_factory  # type: ignore[attr-defined]  # same type
            if not same_factory(expected.default_factory, again):
                return [], _factory_lost(expected.default_factory, again)
        return _diff_mappings(expected, actual, widening, depth)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        if len(expected) != len(actual):
            return [], f"{len(expected)} items would come back as {len(actual)}"
        return _diff_items(expected, actual, widening, depth)
    if isinstance(expected, set | frozenset):
        assert isinstance(actual, set | frozenset)
        if _item_forms(expected) != _item_forms(actual):
            return _changed(expected, actual)
        return None
    if isinstance(expected, datetime.datetime | datetime.time):
        assert isinstance(actual, datetime.datetime | datetime.time)
        if _moment(expected) != _moment(actual):
            return [], f"{_describe_moment(expected)} would come back as {_describe_moment(actual)}"
        return None
    if isinstance(expected, float | decimal.Decimal) and _both_nan(expected, actual):
        return None
    if isinstance(expected, complex):
        assert isinstance(actual, complex)
        if _same_part(expected.real, actual.real) and _same_part(expected.imag, actual.imag):
            return None
        return _changed(expected, actual)
    if isinstance(expected, decimal.Decimal) and str(expected) != str(actual):
        return _changed(expected, actual)
    if isinstance(expected, collections.deque):
        assert isinstance(actual, collections.deque)
        if expected.maxlen != actual.maxlen:
            return [], _maxlen_lost(expected.maxlen, actual.maxlen)
        return _diff(list(expected), list(actual), widening, depth)
    if expected != actual:
        return _changed(expected, actual)
    return None


def _maxlen_lost(maxlen: int | None, again: int | None) -> str:
    """A deque's maxlen that would change: a snapshot holds the items, and only a
    validator of the deque's type can bound it again."""
    return (
        f"a deque with maxlen={maxlen} would come back with maxlen={again}: a snapshot"
        " holds its items only; set the maxlen in a validator of its type, such as"
        f" Annotated[deque[...], AfterValidator(lambda d: deque(d, maxlen={maxlen}))]"
    )


def same_factory(kept: object, again: object) -> bool:
    """Whether ``again``, a restored defaultdict's ``default_factory``, is ``kept``, the
    state's: the same object or an equal one (a bound method of the same object), or
    the same function made again, with the same code, defaults and closure (a
    validator's ``lambda``, made anew by each validation)."""
    if kept is again or kept == again:
        return True
    if not (isinstance(kept, types.FunctionType) and isinstance(again, types.FunctionType)):
        return False
    return (
        kept.__code__ == again.__code__
        and kept.__globals__ is again.__globals__
        and kept.__defaults__ == again.__defaults__
        and kept.__kwdefaults__ == again.__kwdefaults__
        and kept.__closure__ == again.__closure__
    )


def _factory_lost(factory: object, again: object) -> str:
    """A defaultdict's factory that would change: a snapshot holds the items, and a
    restore makes the factory validation gives a plain dict (pydantic infers one from
    the value type, ``int`` for ``defaultdict[str, int]``, unless the type declares it)."""
    return (
        f"a defaultdict with default_factory={factory_name(factory)} would come back with"
        f" default_factory={factory_name(again)}: a snapshot holds its items only; declare"
        " the factory in its type, defaultdict[K, Annotated[V, Field(default_factory=...)]],"
        " or set it again in the component's import_state"
    )


def factory_name(factory: object) -> str:
    """A ``default_factory`` as a message names it: ``int``, ``Limits.<lambda>``."""
    name = getattr(factory, "__qualname__", None)
    text = name if isinstance(name, str) else repr(factory)
    return text if len(text) <= 60 else "..." + text[-57:]


def _diff_items(
    expected: Sequence[Any], actual: Sequence[Any], widening: bool, depth: int, fresh: bool = False
) -> _Found | None:
    try:
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _diff(left, right, widening, depth + 1)
            if found:
                return _below(index, found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(_diff_items, expected, actual, widening, depth, True)


def _diff_mappings(
    expected: Mapping[Any, Any],
    actual: Mapping[Any, Any],
    widening: bool,
    depth: int,
    fresh: bool = False,
) -> _Found | None:
    try:
        if expected.keys() == actual.keys():
            twins: Mapping[Any, Any] = {key: key for key in actual}
        else:
            paired = _pair_keys(expected, actual)
            if not isinstance(paired, dict):
                return paired
            twins = paired
        for key, value in expected.items():
            twin = twins[key]
            if type(twin) is not type(key) or (type(key) not in _ATOMS and _diff(key, twin)):
                return [key], f"the key would come back as {_describe_key(twin)}"
            found = _diff(value, actual[twin], widening, depth + 1)
            if found:
                return _below(key, found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(_diff_mappings, expected, actual, widening, depth, True)


def _pair_keys(expected: Mapping[Any, Any], actual: Mapping[Any, Any]) -> dict[Any, Any] | _Found:
    """Each key of ``expected`` with its counterpart in ``actual``, or the difference.

    A key is matched as :func:`counterparts` matches it. A key left without one is reported as
    the key that took its place when the two hold as many keys and that key is of
    another type (validation keeps their order: ``1`` that comes back as ``'1'``), else
    as lost: a key of the same type in its place is another key, not this one changed.
    """
    find = counterparts(actual)
    twins: dict[Any, Any] = {}
    for key in expected:
        twin = find(key, _NONE)
        if twin is not _NONE:
            twins[key] = twin
    taken = {id(twin) for twin in twins.values()}
    extra = [key for key in actual if id(key) not in taken]
    if len(expected) == len(actual):
        for key, in_its_place in zip(expected, actual, strict=True):
            if key not in twins:
                twin = in_its_place if id(in_its_place) not in taken else extra[0]
                if type(twin) is not type(key):
                    return [key], f"the key would come back as {_describe_key(twin)}"
    missing = [key for key in expected if key not in twins]
    if missing:
        return [missing[0]], "this key would be lost"
    if extra:
        return [extra[0]], "this key would appear"
    return twins


_NONE = object()


def _diff_fields(
    expected: Any,
    actual: Any,
    expected_is_dict: bool,
    widening: bool,
    depth: int,
    fresh: bool = False,
) -> _Found | None:
    try:
        names = _field_names(actual)
        for name in names:
            if expected_is_dict:
                if name not in expected:
                    continue  # an optional field the dict form leaves to its default
                left = expected[name]
            else:
                left = getattr(expected, name)
            found = _diff(left, getattr(actual, name), widening, depth + 1)
            if found:
                return _below(FieldName(name), found)
        if isinstance(actual, pydantic.BaseModel) and not expected_is_dict:
            for label, left, right in (
                ("extra", expected.__pydantic_extra__, actual.__pydantic_extra__),
                ("private attributes", expected.__pydantic_private__, actual.__pydantic_private__),
            ):
                found = _diff(left or {}, right or {}, widening, depth + 1)
                if found:
                    return _below(FieldName(f"<{label}>"), found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(
            _diff_fields, expected, actual, expected_is_dict, widening, depth, True
        )


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


def _kind_made(plain: object, held: object) -> str | None:
    """What is wrong with ``plain`` when validation made it ``held``, a value of another
    kind where the declared type is no scalar: a model or dataclass instance from a dict
    (or anything else), an enum member from its value, a path from text. None for
    any other pair; a scalar converted (``"5"`` into ``5``) is validation's job.

    A component without ``export_state`` holds its fields' values as it set them; code
    that read such a value as a dict before a restore would find a model after it."""
    if _is_record(held):
        if _is_record(plain):
            return None
    elif isinstance(held, enum.Enum):
        if isinstance(plain, enum.Enum):
            return None
        return f"expected a {type(held).__qualname__} member, found {type(plain).__qualname__}"
    elif isinstance(held, pathlib.PurePath):
        if isinstance(plain, pathlib.PurePath):
            return None
        return f"expected a path, found {type(plain).__qualname__}"
    else:
        return None
    return f"expected {type(held).__qualname__}, found {type(plain).__qualname__}"


def _is_record(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or _is_dataclass_instance(value)


def _is_dataclass_instance(value: object) -> bool:
    # What dataclasses.is_dataclass checks for an instance, at a fraction of its cost.
    return hasattr(type(value), dataclasses._FIELDS)  # type: ignore[attr-defined]


def _item_forms(items: set[Any] | frozenset[Any]) -> set[tuple[type, object]]:
    return {(type(item), _key_form(item)) for item in items}


def _moment(value: datetime.datetime | datetime.time) -> tuple[object, object]:
    """What an aware or naive datetime or time keeps through its ISO 8601 text: its wall
    time and its UTC offset. Together they fix the instant; a zone's name and rules are
    documented as not kept, and ``fold`` (PEP 495) only selects the offset, which is
    kept. A naive value's fold is kept by nothing: ``==`` ignores it too."""
    return value.replace(tzinfo=None, fold=0), value.utcoffset()


def _key_form(key: object) -> object:
    """A dict key or set item as compared: an aware datetime or time as its
    :func:`_moment`, so that the same moment under another ``tzinfo`` matches it; any
    other value as itself."""
    if isinstance(key, datetime.datetime | datetime.time) and key.utcoffset() is not None:
        return (type(key), *_moment(key))
    return key


def counterparts(items: Iterable[Any]) -> Callable[[Any, Any], Any]:
    """``find(item, default)``: the counterpart of a dict key or set item among
    ``items``, an equal one or else the same moment under another ``tzinfo`` (a
    ``ZoneInfo`` time in a changeover hour equals no other zone's, PEP 495), or
    ``default``. The counterpart may still differ in type or offset: compare it."""
    by_value = {item: item for item in items}
    by_form = {_key_form(item): item for item in by_value}

    def find(item: Any, default: Any) -> Any:
        other = by_value.get(item, _NONE)
        return by_form.get(_key_form(item), default) if other is _NONE else other

    return find


def _describe_moment(value: datetime.datetime | datetime.time) -> str:
    """Its ISO 8601 text, which shows what is compared: wall time and offset."""
    return f"{value.isoformat()} ({type(value).__qualname__})"


def _describe_key(key: object) -> str:
    if isinstance(key, datetime.datetime | datetime.time):
        return _describe_moment(key)
    return _describe(key)


def _same_part(left: float, right: float) -> bool:
    """Whether two parts of complex numbers are the same: equal with the same sign (a
    complex number's text may lose a zero's), or both NaN."""
    if left == right:
        return math.copysign(1.0, left) == math.copysign(1.0, right)
    return math.isnan(left) and math.isnan(right)


def _both_nan(left: object, right: object) -> bool:
    def nan(value: object) -> bool:
        if isinstance(value, float):
            return math.isnan(value)
        return isinstance(value, decimal.Decimal) and value.is_nan()

    return nan(left) and nan(right)
