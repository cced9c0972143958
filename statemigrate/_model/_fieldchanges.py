"""Steps stated as changes to a record's fields (add, rename, drop), which can be proven.

A step written as a Python function is opaque: whatever it returns is checked against
the target schema value by value, and for a large cache that check costs about half of
what decoding did. A :class:`FieldChanges` step says what it does instead. It runs as
any step does (on a whole state, or as a record step on each record, in a delta too),
and because its effect is known, a restore can prove before it decodes anything that
the step turns every valid state of the source schema into exactly what validating the
result against the target schema would return. It then decodes the section straight
into the source schema (which checks each value as it is built), applies the changes,
and checks nothing again.

``proves`` holds for a step from schema S to schema T when

- both schemas are ones the in-place check knows (see ``statemigrate._model._inplace``);
- the record the step changes is the top level of S and T, or (for a record step) the
  values of the top-level ``dict`` field it names, with every other part of S and T
  alike;
- every field of that record is required in S and in T, so every record holds them all;
- applied to a record holding S's fields in S's order, the changes give T's fields in
  T's declaration order (an added field comes last: declare new fields at the end);
- a kept or renamed field has the same type in S and T, and an added value is exactly
  what validating it against its field's type returns.

Where any of that fails the step still runs, and its output is validated like any
step's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from itertools import compress, repeat
from typing import Any, Final

from statemigrate._errors import RegistrationError
from statemigrate._model._inplace import (
    DictNode,
    FieldNode,
    Node,
    OptionalNode,
    RecordNode,
    fits_exactly,
)
from statemigrate._model._plaindata import copy_plain, not_plain_output

__all__ = ["FieldChanges", "proves"]

_RECORD_ONLY: Final = object()
"""Marks the second argument as absent: the step was called on a whole state."""

_LAYOUTS_KEPT = 64
"""Key orders whose layout is kept per step: records of one schema have a few."""

_SHARED_SAFELY = frozenset({int, float, str, bytes, bool, type(None)})
"""Added values of these types are immutable: every record may hold the same one."""


class FieldChanges:
    """A migration step that adds, renames and drops fields of a record.

    Register it like a step function, as a record step (each record of a ``dict``
    field) or as a whole-data step (the state's own top-level fields)::

        registry.add_migration(
            "sessions", 1, 2, sm.FieldChanges(add={"hits": 0}), records="entries"
        )
        registry.add_migration(
            "sessions", 2, 1, sm.FieldChanges(drop=["hits"]), records="entries",
            lossy=("entries.*.hits",),
        )

    On each record it renames first (a renamed field keeps its place), then drops,
    then adds (an added field goes last, with a fresh copy of its value, so no two
    records share a list or a dict). A rename or a drop of a field the record does
    not hold does nothing; a ``None`` record stays ``None``.

    Args:
        add: new fields and the value each record gets, as plain data.
        rename: old field name to new field name.
        drop: fields to remove.

    Raises:
        RegistrationError: no change at all, a name that is not a non-empty ``str``, a
            field named twice, or an added value that is not plain data.
    """

    __slots__ = ("__name__", "_layouts", "add", "drop", "rename")

    def __init__(
        self,
        *,
        add: Mapping[str, object] | None = None,
        rename: Mapping[str, str] | None = None,
        drop: Iterable[str] = (),
    ) -> None:
        if isinstance(drop, str) or not isinstance(drop, Iterable):
            raise RegistrationError(
                f"FieldChanges(drop=...) takes field names, not {type(drop).__name__} {drop!r}"
            )
        # A copy of each added value: changing the caller's list later changes no step.
        self.add: tuple[tuple[str, object], ...] = tuple(
            (name, copy_plain(value)) for name, value in dict(add or {}).items()
        )
        self.rename: tuple[tuple[str, str], ...] = tuple(dict(rename or {}).items())
        self.drop: tuple[str, ...] = tuple(drop)
        _check(self.add, self.rename, self.drop)
        self.__name__ = _describe(self.add, self.rename, self.drop)
        self._layouts: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[bool, ...] | None]] = {}

    def __call__(self, data_or_key: Any, record: Any = _RECORD_ONLY) -> Any:
        """As a whole-data step ``changes(data)``; as a record step ``changes(key, value)``."""
        return self.apply(data_or_key if record is _RECORD_ONLY else record)

    def apply(self, record: Any) -> Any:
        """The record with the changes made: in place when nothing is renamed.

        Raises:
            TypeError: ``record`` is neither a ``dict`` nor ``None``.
        """
        if record is None:
            return None
        if type(record) is not dict:
            raise TypeError(
                f"{self.__name__} changes a dict's fields, not a {type(record).__name__}"
            )
        if self.rename:
            record = self._renamed(record)
        else:
            for name in self.drop:
                record.pop(name, None)
        for name, value in self.add:
            record[name] = value if type(value) in _SHARED_SAFELY else copy_plain(value)
        return record

    def apply_each(self, records: dict[Any, Any]) -> None:
        """Make the changes on every value of ``records``, as a record step does.

        The same as calling :meth:`apply` on each value, in a fraction of the time:
        adding an immutable value and dropping a field run as C loops over all records;
        a rename rebuilds each record (in C, once the layout of its keys is known).

        Raises:
            TypeError: a value is neither a ``dict`` nor ``None``.
        """
        kinds = set(map(type, records.values()))
        if not kinds <= {dict, type(None)}:
            for key, record in records.items():
                records[key] = self.apply(record)  # raises for the first that is neither
            return
        if self.rename:
            renamed = self._renamed  # renames and drops, rebuilding each record
            for key, record in records.items():
                if record is not None:
                    records[key] = renamed(record)
        dicts: Iterable[dict[str, Any]] = records.values()
        if type(None) in kinds:
            dicts = [record for record in dicts if record is not None]
        for name in () if self.rename else self.drop:
            deque(map(dict.pop, dicts, repeat(name), repeat(None)), maxlen=0)
        for name, value in self.add:
            if type(value) in _SHARED_SAFELY:
                deque(map(dict.__setitem__, dicts, repeat(name), repeat(value)), maxlen=0)
            else:
                for record in dicts:
                    record[name] = copy_plain(value)

    def _renamed(self, record: dict[str, Any]) -> dict[str, Any]:
        # Records of one schema share their keys' order: the new keys and which values
        # to keep are worked out once per order, and each record is rebuilt in C.
        keys = tuple(record)
        layout = self._layouts.get(keys)
        if layout is None:
            layout = self._layout(keys)
            if len(self._layouts) < _LAYOUTS_KEPT:
                self._layouts[keys] = layout
        new_keys, kept = layout
        values = record.values() if kept is None else compress(record.values(), kept)
        return dict(zip(new_keys, values))  # noqa: B905 (as many keys as values kept, by _layout)

    def _layout(self, keys: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[bool, ...] | None]:
        """For records with ``keys`` in this order: the keys after renames and drops,
        and which of the values are kept (None for all)."""
        new_names = dict(self.rename)
        dropped = set(self.drop)
        kept = tuple(key not in dropped for key in keys) if dropped.intersection(keys) else None
        new_keys = tuple(new_names.get(key, key) for key in keys if key not in dropped)
        if len(set(new_keys)) < len(new_keys):
            # Two fields would land on one name: say so rather than keep either.
            landed = next(key for key in new_keys if new_keys.count(key) > 1)
            raise ValueError(f"{self.__name__}: the record already holds {landed!r}")
        return new_keys, kept

    def __repr__(self) -> str:
        return f"FieldChanges({self.__name__})"


def _check(
    add: tuple[tuple[str, object], ...],
    rename: tuple[tuple[str, str], ...],
    drop: tuple[str, ...],
) -> None:
    if not (add or rename or drop):
        raise RegistrationError("FieldChanges needs at least one field to add, rename or drop")
    names = [name for name, _ in add] + [name for pair in rename for name in pair] + list(drop)
    for name in names:
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"FieldChanges: field names are non-empty str, not {name!r}")
    # A field renamed and dropped, renamed onto itself, dropped and added, or renamed to
    # and added, says two things of one field, and only one of them could be meant. A
    # field may be renamed to another's old name (a swap), and a field renamed away
    # may be added again under its old name.
    old_names = [old for old, _ in rename]
    new_names = [new for _, new in rename]
    added = [name for name, _ in add]
    twice = sorted(
        {
            name
            for group in (old_names, new_names, added, drop)
            for name in group
            if group.count(name) > 1
        }
        | {old for old, new in rename if old == new}
        | set(drop).intersection(old_names + new_names + added)
        | set(added).intersection(new_names)
    )
    if twice:
        raise RegistrationError(
            f"FieldChanges: {', '.join(map(repr, twice))} named twice; a field is renamed,"
            " dropped or added once (a swap of two names, or a name renamed away and"
            " added again, is fine)"
        )
    for name, value in add:
        problem = not_plain_output(value)
        if problem is not None:
            raise RegistrationError(
                f"FieldChanges: the value added as {name!r} is not plain data: {problem[1]}"
            )


def _describe(
    add: tuple[tuple[str, object], ...],
    rename: tuple[tuple[str, str], ...],
    drop: tuple[str, ...],
) -> str:
    """A short name for messages: ``rename name->title, drop legacy, add hits``."""
    parts = []
    if rename:
        parts.append("rename " + ", ".join(f"{old}->{new}" for old, new in rename))
    if drop:
        parts.append("drop " + ", ".join(drop))
    if add:
        parts.append("add " + ", ".join(name for name, _ in add))
    return "; ".join(parts)


def proves(changes: FieldChanges, source: Node, target: Node, records: str | None) -> bool:
    """Whether ``changes`` turns every value of ``source`` held as validation returns it
    into exactly what validating the result against ``target`` returns.

    ``source`` and ``target`` are the schemas' trees (``schema_tree``); ``records`` is
    the step's record field, or None for a whole-data step. See the module docstring.
    """
    if records is None:
        return _record_proven(changes, source, target)
    if not (isinstance(source, RecordNode) and isinstance(target, RecordNode)):
        return False
    # Every top-level field alike, in the same order, but for the records' own type.
    if _names(source) != _names(target):
        return False
    if _without(source, records) != _without(target, records):
        return False
    source_records, target_records = _field(source, records), _field(target, records)
    return (
        isinstance(source_records, FieldNode)
        and isinstance(target_records, FieldNode)
        and source_records.required
        and isinstance(source_records.node, DictNode)
        and isinstance(target_records.node, DictNode)
        and source_records.node.key == target_records.node.key
        and _record_proven(changes, source_records.node.value, target_records.node.value)
    )


def _record_proven(changes: FieldChanges, source: Node, target: Node) -> bool:
    if isinstance(source, OptionalNode) and isinstance(target, OptionalNode):
        source, target = source.inner, target.inner  # None stays None
    if not (isinstance(source, RecordNode) and isinstance(target, RecordNode)):
        return False
    if not all(field.required for field in (*source.fields, *target.fields)):
        return False
    # The order the changes leave a record in, found by running them on one.
    placeholders = dict.fromkeys(field.name for field in source.fields)
    order = list(changes.apply(placeholders))
    if order != [field.name for field in target.fields]:
        return False
    old_names = {new: old for old, new in changes.rename}
    source_types = {field.name: field.node for field in source.fields}
    added = dict(changes.add)
    for field in target.fields:
        if field.name in added:
            if not fits_exactly(field.node, added[field.name]):
                return False
        elif source_types.get(old_names.get(field.name, field.name)) != field.node:
            return False
    return True


def _names(record: RecordNode) -> list[tuple[str, bool]]:
    return [(field.name, field.required) for field in record.fields]


def _without(record: RecordNode, name: str) -> tuple[FieldNode, ...]:
    return tuple(field for field in record.fields if field.name != name)


def _field(record: RecordNode, name: str) -> FieldNode | None:
    return next((field for field in record.fields if field.name == name), None)
