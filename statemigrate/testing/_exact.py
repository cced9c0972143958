"""The testing kit's exact comparison: where two states, or two pieces of plain data,
differ in value, in type or in the order of a dict's keys.

Every check compares with it: the snapshot check a restored state with the committed
one, the step and paths checks the plain data that steps give. ``==`` would pass steps
that lose what a snapshot keeps: a dict re-sorted (an LRU cache's order), ``-0.0``
turned into ``0.0``, ``True`` into ``1``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from statemigrate._model._compare import counterparts, factory_name, same_factory
from statemigrate._model._paths import FieldName, SetItem, format_path
from statemigrate._model._shown import shortened

__all__ = ["PathOf", "cut", "exact_differences"]

_MISSING = object()

PathOf = Callable[[list[object]], list[object]]
"""Turns the steps to a difference (keys, indexes, record fields as
:class:`~statemigrate._model._paths.FieldName`) into the path shown: plain data holds
a record as a dict, and only its schema tells its fields from keys."""


def exact_differences(
    expected: Any, actual: Any, *, limit: int = 5, path_of: PathOf | None = None
) -> list[str]:
    """Name the first places where two states differ in value *or in type*.

    Stricter than ``==``, which calls ``1 == 1.0 == True``, a tuple different from a
    list but a ``datetime`` equal to the same instant in another zone, a model equal
    to an instance of its subclass with the same fields, and two dicts equal whatever
    the order of their keys. Here, recursively:

    - every value has exactly the type of its counterpart (a ``StrEnum`` member is not
      its ``str``, a subclass instance is not its base, a ``deque`` is not a list);
    - a ``defaultdict`` has the same ``default_factory`` (the same function made again
      counts, as a validator's ``lambda`` is), a ``deque`` the same ``maxlen``: neither
      is in a snapshot, and only its type's validation gives it back;
    - dict keys match with their types, and in the same order (a snapshot keeps it, and
      an LRU cache or a FIFO queue relies on it); set items match with their types, in
      any order;
    - models and dataclasses compare field by field, extra fields included (pydantic's
      private attributes are not state and are left out);
    - floats, complex numbers and decimals compare by representation (``-0.0`` is not
      ``0.0``, ``Decimal("1.10")`` is not ``Decimal("1.1")``);
    - datetimes and times compare their wall-clock fields and their UTC offset, so naive
      is not aware and ``+01:00`` is not ``UTC``; the class of the ``tzinfo`` (a
      ``ZoneInfo``, a ``datetime.timezone`` or pydantic's own fixed-offset zone) does not
      count, in dict keys and set items too;
    - secrets compare their secret values.

    Args:
        expected: the state or plain data that should be there.
        actual: what is there.
        limit: how many differences to name at most.
        path_of: the steps to a difference as a path in the data's schema (see
            :data:`PathOf`); without it, only a model's or a dataclass's fields are
            known as fields.

    Returns:
        Up to ``limit`` lines ``<path>: expected ..., got ...`` with paths in the form of
        error messages (``entries['k'].when``, ``(root)``); for a dict whose keys come in
        another order, ``<path>: key order differs: ...``. Empty when the two states are
        exactly equal.
    """
    found: list[str] = []
    _exact(expected, actual, _Where((), path_of), found, limit)
    return found


@dataclasses.dataclass(frozen=True)
class _Where:
    """The steps to a value, rendered only when a difference is found there: the
    steps into the data, and, for a difference in a dict's key, the key and the steps
    into it."""

    steps: tuple[object, ...]
    path_of: PathOf | None
    key: object = _MISSING
    in_key: tuple[object, ...] = ()

    def __truediv__(self, step: object) -> _Where:
        if self.key is _MISSING:
            return dataclasses.replace(self, steps=(*self.steps, step))
        return dataclasses.replace(self, in_key=(*self.in_key, step))

    def key_of(self, key: object) -> _Where:
        """Where the key ``key`` of the dict here is."""
        return dataclasses.replace(self, key=key)

    def __str__(self) -> str:
        steps = list(self.steps)
        path = format_path(steps if self.path_of is None else self.path_of(steps))
        if self.key is _MISSING:
            return path
        inner = f" at {format_path(list(self.in_key))}" if self.in_key else ""
        return f"{path} key {shortened(self.key)}{inner}"


def _exact(a: Any, b: Any, where: _Where, found: list[str], limit: int) -> None:
    if len(found) >= limit or a is b:
        return
    here = where
    if type(a) is not type(b) and not (_is_zone(a) and _is_zone(b)):
        found.append(
            f"{here}: expected {type(a).__qualname__} {cut(a)},"
            f" got {type(b).__qualname__} {cut(b)}"
        )
        return
    if isinstance(a, pydantic.BaseModel):
        _exact_fields(_model_fields(a), _model_fields(b), where, found, limit)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        names = [item.name for item in dataclasses.fields(a)]
        _exact_fields(
            {name: getattr(a, name, _MISSING) for name in names},
            {name: getattr(b, name, _MISSING) for name in names},
            where,
            found,
            limit,
        )
    elif isinstance(a, Mapping):
        if isinstance(a, collections.defaultdict) and not same_factory(
            a.default_factory, b.default_factory
        ):
            found.append(
                f"{here}: expected default_factory={factory_name(a.default_factory)},"
                f" got default_factory={factory_name(b.default_factory)}"
            )
            if len(found) >= limit:
                return
        _exact_mapping(a, b, where, found, limit)
    elif isinstance(a, list | tuple | collections.deque):
        if isinstance(a, collections.deque) and a.maxlen != b.maxlen:
            found.append(f"{here}: expected maxlen={a.maxlen}, got maxlen={b.maxlen}")
            if len(found) >= limit:
                return
        if len(a) != len(b):
            found.append(f"{here}: expected {len(a)} items {cut(a)}, got {len(b)} {cut(b)}")
            return
        for index, (left, right) in enumerate(zip(a, b, strict=True)):
            _exact(left, right, where / index, found, limit)
    elif isinstance(a, set | frozenset):
        in_b, in_a = counterparts(b), counterparts(a)
        for item in a:
            other = in_b(item, _MISSING)
            if other is _MISSING:
                found.append(f"{here}: item {cut(item)} missing")
            else:
                _exact(item, other, where / SetItem(item), found, limit)
        unexpected = [item for item in b if in_a(item, _MISSING) is _MISSING]
        found.extend(f"{here}: unexpected item {cut(item)}" for item in unexpected)
        del found[limit:]
    elif not _same_leaf(a, b):
        found.append(f"{here}: expected {cut(a)}, got {cut(b)}")


def _exact_mapping(
    a: Mapping[Any, Any], b: Mapping[Any, Any], where: _Where, found: list[str], limit: int
) -> None:
    # Keys are looked up by equality and then compared exactly, so {1: x} and {True: x}
    # (equal keys of different types) are told apart.
    in_b, in_a = counterparts(b), counterparts(a)
    matched = True
    for key in a:
        here = where / key
        other = in_b(key, _MISSING)
        if other is _MISSING:
            matched = False
            found.append(f"{here}: expected {cut(a[key])}, missing")
        else:
            before = len(found)
            _exact(key, other, where.key_of(key), found, limit)
            if len(found) == before:
                _exact(a[key], b[other], here, found, limit)
        if len(found) >= limit:
            return
    for key in b:
        if in_a(key, _MISSING) is _MISSING:
            matched = False
            if len(found) < limit:
                found.append(f"{where / key}: unexpected {cut(b[key])}")
    if matched and len(found) < limit:
        _key_order(a, [in_a(key, _MISSING) for key in b], list(b), where, found)


def _key_order(
    a: Mapping[Any, Any], twins: list[Any], keys: list[Any], where: _Where, found: list[str]
) -> None:
    """Report the keys of ``a`` coming in another order: ``twins`` are the keys of
    ``a`` in the order of the other mapping's ``keys``."""
    mine = list(a)
    if len(mine) != len(twins):
        return  # keys matched twice over (equal moments): their order says nothing
    pairs = enumerate(zip(mine, twins, strict=True))
    first = next((index for index, (left, right) in pairs if left is not right), None)
    if first is None:
        return
    start = f" from key {first} on" if first else ""
    found.append(
        f"{where}: key order differs{start}: expected"
        f" {cut(mine[first:])}, got {cut(keys[first:])}"
    )


def _exact_fields(
    a: dict[str, Any], b: dict[str, Any], where: _Where, found: list[str], limit: int
) -> None:
    for name in [*a, *(name for name in b if name not in a)]:
        left, right = a.get(name, _MISSING), b.get(name, _MISSING)
        if left is _MISSING or right is _MISSING:
            shown = (
                ("missing" if left is _MISSING else cut(left)),
                ("missing" if right is _MISSING else cut(right)),
            )
            found.append(f"{where / FieldName(name)}: expected {shown[0]}, got {shown[1]}")
        else:
            _exact(left, right, where / FieldName(name), found, limit)
        if len(found) >= limit:
            return


def _model_fields(model: pydantic.BaseModel) -> dict[str, Any]:
    values = dict(model.__dict__)
    values.update(model.__pydantic_extra__ or {})
    return values


def _is_zone(value: object) -> bool:
    return isinstance(value, datetime.tzinfo)


def _same_leaf(a: Any, b: Any) -> bool:
    """Compare two values of the same type that hold no nested state."""
    if isinstance(a, float | complex | decimal.Decimal):
        return repr(a) == repr(b)
    if isinstance(a, datetime.datetime | datetime.time):
        offsets = (a.utcoffset(), b.utcoffset())
        return bool(a.replace(tzinfo=None) == b.replace(tzinfo=None)) and offsets[0] == offsets[1]
    if isinstance(a, datetime.tzinfo):
        return bool(a.utcoffset(None) == b.utcoffset(None))
    if isinstance(a, pydantic.SecretStr | pydantic.SecretBytes):
        return bool(a.get_secret_value() == b.get_secret_value())
    try:
        return bool(a == b)
    except Exception:  # an __eq__ that refuses to compare is no evidence of equality
        return False


def cut(value: Any, limit: int = 200) -> str:
    """``repr(value)``, or when longer than ``limit`` characters, a shorter form of it
    that still reads as a value: the first items of each collection and the first
    characters of each string, ``...`` where the rest was left out. It is never cut
    mid-token; the shortest form (containers left out below the top) may still pass
    ``limit`` by a little.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    for items, chars, depth in _BRIEFER:
        text = _brief(value, items, chars, depth)
        if len(text) <= limit:
            break
    return text


# Ever shorter forms: (items per collection, characters per string, levels shown).
_BRIEFER = ((8, 60, 6), (4, 30, 4), (3, 16, 3), (2, 8, 2), (1, 8, 1), (0, 8, 0))


def _brief(value: Any, items: int, chars: int, depth: int) -> str:
    def inner(item: Any) -> str:
        return _brief(item, items, chars, depth - 1)

    def listed(shown: list[str], total: int) -> str:
        more = total - len(shown)
        return ", ".join([*shown, f"... {more} more"] if more else shown)

    if isinstance(value, str | bytes) and type(value) in (str, bytes):
        if len(value) <= chars:
            return repr(value)
        return f"{value[:chars]!r}...({len(value)} {'chars' if type(value) is str else 'bytes'})"
    if type(value) is int and len(text := repr(value)) > chars + 4:
        return f"{text[:chars]}...({len(text) - (value < 0)} digits)"
    containers = (dict, list, tuple, set, frozenset, collections.deque)
    record = isinstance(value, pydantic.BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )
    if not (type(value) in containers or record):
        return repr(value)
    name = type(value).__name__
    if record:
        fields = _record_items(value)
        if depth <= 0:
            return f"{name}(...)"
        shown = [f"{field}={inner(item)}" for field, item in fields[: max(items, 1)]]
        return f"{name}({listed(shown, len(fields))})"
    if depth <= 0 or (items == 0 and value):
        body = "..."
    elif isinstance(value, dict):
        pairs = list(value.items())
        body = listed([f"{inner(k)}: {inner(v)}" for k, v in pairs[:items]], len(pairs))
    else:
        members = list(value)
        body = listed([inner(item) for item in members[:items]], len(members))
        if type(value) is tuple and len(members) == 1:
            body += ","
    if type(value) in (dict, set):
        return f"{{{body}}}" if value else repr(value)
    if type(value) is list:
        return f"[{body}]"
    if type(value) is tuple:
        return f"({body})"
    if type(value) is frozenset:
        return f"frozenset({{{body}}})" if value else repr(value)
    return f"deque([{body}])"


def _record_items(value: Any) -> list[tuple[str, Any]]:
    """A model's or dataclass's fields as its ``repr`` shows them."""
    if isinstance(value, pydantic.BaseModel):
        return [(str(name), item) for name, item in value.__repr_args__() if name is not None]
    return [
        (field.name, getattr(value, field.name, None))
        for field in dataclasses.fields(value)
        if field.repr
    ]
