"""Whether a plain ``TypedDict`` state would pass validation, checked without a copy.

A state whose schema is plain data already (see :meth:`SchemaVersion.export
<statemigrate._model._schema.SchemaVersion.export>`) goes into a snapshot as it is. If a
record deep inside it lacks a field or holds a value of another type, the snapshot
would still be written, and every restore of it would fail validation. Committing such
a snapshot loses the state it was meant to keep, so commits check the state first.

pydantic could tell, but only by building a validated copy of the whole state (about
3 s for a million records). :func:`compile_validity_check` builds, from the same tree
of nodes the in-place checker uses (``statemigrate._model._inplace``), a walk that
copies nothing and accepts only what validation surely accepts: values of exactly the
declared type (an ``int`` where a ``float`` is declared too), records holding every
required field. Anything else raises :class:`Unsure` and the caller asks pydantic,
which decides and names the path. The walk itself refuses two things on its own, which
validation would take without a word: a key in a record that is not one of its fields,
which it would drop (:class:`UnknownKey`), and an ``int`` in a ``float`` field that it
would make another number, ``2**53 + 1`` as ``2.0**53`` (the export's
:class:`NotExportable`, in its words).

The walk makes a Python call per value; a valid state (the usual case) is recognised
about twice as fast by passes of C iterators over columns (see the second half of this
module), and only a state they cannot vouch for is walked.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from functools import partial
from itertools import chain, islice
from operator import itemgetter, methodcaller
from typing import Any

from statemigrate._model._export_leaves import NotExportable, exact_float, located
from statemigrate._model._inplace import (
    DictNode,
    Node,
    OptionalNode,
    RecordNode,
    exact_parts,
    list_item,
)
from statemigrate._model._paths import FieldName

__all__ = [
    "UnknownKey",
    "Unsure",
    "ValidityCheck",
    "compile_column_check",
    "compile_validity_check",
]

ValidityCheck = Callable[[Any], None]
"""Returns when validation surely accepts the value and gives it back as it is (an
``int`` in a ``float`` field as an equal float); raises :class:`Unsure`,
:class:`UnknownKey` or :class:`NotExportable` otherwise."""


class Unsure(Exception):
    """The walk cannot tell: pydantic must decide."""


class UnknownKey(Exception):
    """A record holds a key that is not one of its fields; ``path`` leads to the key."""

    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.path: list[object] = [key]


def compile_validity_check(node: Node) -> ValidityCheck:
    """The check of states of ``node`` (from ``schema_tree``): column by column in C
    first (see below), and where that cannot tell, the walk, which says where."""
    columns = compile_column_check(node)
    walk = _check(node)

    def check(state: Any) -> None:
        if not columns(state):
            walk(state)

    return check


def _check(node: Node) -> ValidityCheck:
    parts = exact_parts(node)
    if parts is not None:
        return _scalar(*parts)
    if isinstance(node, OptionalNode):
        inner = _check(node.inner)

        def optional(value: Any) -> None:
            if value is not None:
                inner(value)

        return optional
    if isinstance(node, RecordNode):
        return _record(node)
    if isinstance(node, DictNode):
        return _dict(node)
    items = list_item(node)
    if items is not None:
        return _list(_check(items))
    return _anything  # Any: validation returns whatever it is given


def _anything(value: Any) -> None:
    return None


def _accepted(expected: type) -> frozenset[type]:
    # Lax validation turns an int into the float declared; nothing else is taken here.
    return frozenset({float, int}) if expected is float else frozenset({expected})


def _scalar(expected: type, test: Callable[[Any], bool] | None) -> ValidityCheck:
    accepted = _accepted(expected)

    def scalar(value: Any) -> None:
        if type(value) not in accepted or (test is not None and not test(value)):
            raise Unsure

    if expected is not float:
        return scalar

    def number(value: Any) -> None:
        scalar(value)
        if type(value) is int:
            exact_float(value)

    return number


def _each(check: ValidityCheck, steps: Iterable[tuple[object, Any]]) -> None:
    """Check every value of ``steps`` (pairs of a key or index and a value); an unknown
    key below one of them gets that step in front of its path."""
    for step, value in steps:
        try:
            check(value)
        except UnknownKey as exc:
            exc.path.insert(0, step)
            raise
        except NotExportable as exc:
            raise located(exc, step) from None


def _list(item: ValidityCheck) -> ValidityCheck:
    def each(value: Any) -> None:
        if type(value) is not list:
            raise Unsure
        _each(item, enumerate(value))

    return each


def _dict(node: DictNode) -> ValidityCheck:
    key_parts = exact_parts(node.key)
    key_types = None if key_parts is None else _accepted(key_parts[0])
    check_value = _check(node.value)

    def entries(value: Any) -> None:
        if type(value) is not dict:
            raise Unsure
        if key_types is not None:
            for key in value:
                if type(key) not in key_types:
                    raise Unsure
        _each(check_value, value.items())

    return entries


def _record(node: RecordNode) -> ValidityCheck:
    """Records are where caches keep their millions of values, so the scalar fields are
    tested inline rather than through a call each."""
    plan: list[tuple[str, bool, frozenset[type] | None, Callable[[Any], bool] | None,
                     ValidityCheck | None]] = []
    for field in node.fields:
        parts = exact_parts(field.node)
        if parts is not None and parts[0] is not float:
            plan.append((field.name, field.required, _accepted(parts[0]), parts[1], None))
        else:  # a float field too, whose ints are each compared with their float
            plan.append((field.name, field.required, None, None, _check(field.node)))
    names = frozenset(field.name for field in node.fields)

    def record(value: Any) -> None:
        if type(value) is not dict:
            raise Unsure
        present = 0
        for name, required, accepted, test, check in plan:
            try:
                field_value = value[name]
            except KeyError:
                if required:
                    raise Unsure from None
                continue
            present += 1
            if accepted is not None:
                if type(field_value) not in accepted or (
                    test is not None and not test(field_value)
                ):
                    raise Unsure
            elif check is not None:
                try:
                    check(field_value)
                except UnknownKey as exc:
                    exc.path.insert(0, FieldName(name))
                    raise
                except NotExportable as exc:
                    raise located(exc, FieldName(name)) from None
        if present != len(value):
            raise UnknownKey(next(key for key in value if key not in names))

    return record


# --- column by column -------------------------------------------------------------------
#
# The walk above makes a Python call per value. Most states are valid, and for those the
# same answer comes from C iterators: all the values at one place of the schema (every
# record's ``hits``, say) form a column, produced again from the root for each question
# asked of it (what types it holds, whether every record has each field), with ``map``,
# ``itertools.chain`` and ``itemgetter`` doing the work. A column that fails a question
# proves nothing by itself (it does not say where): the caller then runs the walk.

Column = Callable[[], Iterable[Any]]
"""Yields, each time it is called, every value at one place of the state."""

ColumnCheck = Callable[[Column], bool]
"""True when every value of the column surely validates, with no unknown key."""

_NONE_TYPE = type(None)
_ABSENT: Any = object()


def compile_column_check(node: Node) -> Callable[[Any], bool]:
    """True when the state surely validates (the walk would return), from C passes over
    the columns of ``node``; False when the walk must tell."""
    check = _column(node, nullable=False)

    def whole(state: Any) -> bool:
        try:
            return check(lambda: (state,))
        except (KeyError, TypeError):  # a field missing where all are required, ...
            return False

    return whole


def _column(node: Node, *, nullable: bool) -> ColumnCheck:
    parts = exact_parts(node)
    if parts is not None:
        return _scalar_column(_accepted(parts[0]), parts[1], nullable, floats=parts[0] is float)
    if isinstance(node, OptionalNode):
        return _column(node.inner, nullable=True)
    if isinstance(node, RecordNode):
        return _record_column(node, nullable)
    if isinstance(node, DictNode):
        return _dict_column(node, nullable)
    items = list_item(node)
    if items is not None:
        return _list_column(_column(items, nullable=False), nullable)
    return lambda column: True  # Any


def _types_within(allowed: frozenset[type], nullable: bool) -> Callable[[Column], bool]:
    allowed = allowed | {_NONE_TYPE} if nullable else allowed
    return lambda column: set(map(type, column())) <= allowed


def _present(column: Column, nullable: bool) -> Column:
    """The values of ``column`` that are not None, where None is allowed."""
    if not nullable:
        return column
    return lambda: filter(partial(operator.is_not, None), column())


def _scalar_column(
    accepted: frozenset[type],
    test: Callable[[Any], bool] | None,
    nullable: bool,
    *,
    floats: bool = False,
) -> ColumnCheck:
    allowed = accepted | {_NONE_TYPE} if nullable else accepted

    def scalars(column: Column) -> bool:
        kinds = set(map(type, column()))
        if not kinds <= allowed:
            return False
        if floats and int in kinds and not all(map(_same_as_float, column())):
            return False  # the walk says which int a float would change
        return test is None or all(map(test, _present(column, nullable)()))

    return scalars


def _same_as_float(value: Any) -> bool:
    """Whether a value of a float column comes back as itself: an int only when its
    float is the same number (see ``exact_float``)."""
    if type(value) is not int:
        return True
    try:
        return float(value) == value
    except OverflowError:
        return False


def _list_column(items: ColumnCheck, nullable: bool) -> ColumnCheck:
    types_fit = _types_within(frozenset({list}), nullable)

    def lists(column: Column) -> bool:
        lists_only = _present(column, nullable)
        return types_fit(column) and items(lambda: chain.from_iterable(lists_only()))

    return lists


CHUNK = 256
"""The values of a dict checked together, column by column. Each column is produced
again from the root for each question, so an unbounded column reads every value of the
dict about twenty times; values written at random in a large state lie far apart in
memory, and each read is then a cache miss: 1,500 records of a 300,000-record state
took ten times longer than 1,500 written one after another. A chunk of this many
records stays in the processor's caches while its questions are asked."""


def _dict_column(node: DictNode, nullable: bool) -> ColumnCheck:
    types_fit = _types_within(frozenset({dict}), nullable)
    key_parts = exact_parts(node.key)
    keys_fit = None if key_parts is None else _types_within(_accepted(key_parts[0]), False)
    values = _column(node.value, nullable=False)

    def dicts(column: Column) -> bool:
        if not types_fit(column):
            return False
        present = _present(column, nullable)
        if keys_fit is not None and not keys_fit(lambda: chain.from_iterable(present())):
            return False
        pending = chain.from_iterable(map(dict.values, present()))
        while chunk := tuple(islice(pending, CHUNK)):
            if not values(partial(iter, chunk)):
                return False
        return True

    return dicts


def _record_column(node: RecordNode, nullable: bool) -> ColumnCheck:
    types_fit = _types_within(frozenset({dict}), nullable)
    fields = [(field.name, field.required, _column(field.node, nullable=False))
              for field in node.fields]
    everything_required = all(required for _, required, _ in fields)
    count = len(fields)

    def records(column: Column) -> bool:
        if not types_fit(column):
            return False
        present = _present(column, nullable)
        if everything_required:
            # Every record of exactly as many keys as fields, each field found in each
            # (a missing one raises KeyError): no record lacks one or holds another.
            if not set(map(len, present())) <= {count}:
                return False
            return all(
                check(partial(_mapped, itemgetter(name), present)) for name, _, check in fields
            )
        held = sum(map(len, present()))
        found = 0
        for name, required, check in fields:
            has = methodcaller("__contains__", name)
            if required and not all(map(has, present())):
                return False
            found += sum(map(has, present()))
            if not check(partial(_field_values, methodcaller("get", name, _ABSENT), present)):
                return False
        return found == held

    return records


def _mapped(get: Callable[[Any], Any], present: Column) -> Iterable[Any]:
    return map(get, present())


def _field_values(get: Callable[[Any], Any], present: Column) -> Iterable[Any]:
    """The values of an optional field, in the records that hold it."""
    return filter(partial(operator.is_not, _ABSENT), map(get, present()))
