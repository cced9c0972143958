"""NaN keys: a delta's NaN key matched with the one a dict holds.

``nan != nan``, and since Python 3.10 two NaN objects hash apart, so a dict finds a
NaN key only by the very object it holds. A snapshot writes a float key as its text,
and one dict can hold at most one key written as ``nan`` (a second is refused at
snapshot), so on the way back in a delta's NaN key, a new object once decoded, means
the NaN key the dict holds, whatever object it is: setting it replaces that key's
value, deleting it removes that key. These helpers give the receiver that meaning.

A key is taken for a NaN when it is not equal to itself. The test runs in C over the
keys a delta carries (``map(ne, keys, keys)``), and only for a field whose key type may
hold a NaN (:func:`may_hold_nan`: ``float``, ``Decimal``, a union); only a delta that
carries such a key pays for a pass over the dict to find the one it holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal
from itertools import compress
from operator import eq, ne
from typing import Any

from statemigrate._model._changes import KeyCodec

__all__ = [
    "MISSING",
    "has_nan",
    "held_nan",
    "may_hold_nan",
    "nan_keys",
    "under_held_nan",
    "without_stale_nan",
]

MISSING: Any = object()


def may_hold_nan(codec: KeyCodec) -> bool:
    """Whether a key of the codec's field may be unequal to itself: its key type is a
    ``float`` or a ``Decimal`` (or a subclass), or not one class (a union, say)."""
    if codec.adapter is None:
        return False  # str keys
    return not codec.classes or any(issubclass(cls, float | Decimal) for cls in codec.classes)


def has_nan(keys: Collection[Any]) -> bool:
    """Whether one of ``keys`` is not equal to itself."""
    return any(map(ne, keys, keys))


def nan_keys(mapping: Mapping[Any, Any]) -> int:
    """How many keys of ``mapping`` are not equal to themselves: more than one cannot
    be written (all are written as ``nan``)."""
    return sum(map(ne, mapping, mapping))


def held_nan(mapping: Mapping[Any, Any]) -> Any:
    """The key of ``mapping`` that is not equal to itself, or :data:`MISSING`."""
    return next(compress(mapping, map(ne, mapping, mapping)), MISSING)


def under_held_nan(target: Mapping[Any, Any], keys: Any) -> Any:
    """``keys`` (a map of records, or a list of keys) with a NaN key replaced by the
    NaN key ``target`` holds, in its place; ``keys`` itself when either has none."""
    if not has_nan(keys):
        return keys
    held = held_nan(target)
    if held is MISSING:
        return keys
    if isinstance(keys, Mapping):
        return {held if key != key else key: value for key, value in keys.items()}
    return [held if key != key else key for key in keys]


def without_stale_nan(deleted: list[Any], records: Collection[Any]) -> list[Any]:
    """The keys a delta deletes, less its NaN ones when it also sets a NaN key.

    ``del d[nan]`` then ``d[float("nan")] = v`` logs two keys (the NaN objects differ):
    one deleted, one set. A receiver matches both with the one NaN key it holds, so the
    deletion, applied after the sets, would remove the record just set. The dict holds
    one NaN key when the delta sets one: the deleted NaN is gone already.
    """
    if not has_nan(deleted) or not has_nan(records):
        return deleted
    return list(compress(deleted, map(eq, deleted, deleted)))
