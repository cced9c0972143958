"""The in-place check of a record whose fields are all required, compiled from source.

This is the hot loop of a restore that runs a migration step in Python: it visits
every record of a cache once. The same check written as a loop over tables of fields
spends most of its time on the loops themselves; written out field by field, as
generated here (the way :mod:`dataclasses` writes ``__init__``), it takes about 0.55 s
for a million six-field records where the table-driven loop took 0.8 s.

The generated function takes the values to check, as every check in
``statemigrate._model._inplace`` does, and answers whether all of them fit. Field names
are written into the source as literals (``repr`` of a ``str`` always reads back as an
equal ``str``); types, tests and nested checks are bound as globals of the function, by
generated names that no field name can clash with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

__all__ = ["ExactList", "Fits", "NestedField", "RecordFields", "Scalar", "compile_record_check"]

Fits = Callable[[Iterable[Any]], bool]
"""Whether every value an iterable yields fits one node. The iterable must yield values
held by their parent only (a list or a dict's values, iterated): each check binds each
value to its loop variable and counts references there (see ``sole_reference_count``
in ``statemigrate._model._inplace``)."""


@dataclass(frozen=True)
class Scalar:
    """A field holding exactly ``type`` (or None, when ``none_too``), passing ``test``."""

    name: str
    type: type
    none_too: bool = False
    test: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class ExactList:
    """A field holding a list, held by the record alone, of items of exactly ``item``."""

    name: str
    item: type
    none_too: bool = False


@dataclass(frozen=True)
class NestedField:
    """A field checked by a check of its own (a nested record, dict or list)."""

    name: str
    fits: Fits


@dataclass(frozen=True)
class RecordFields:
    """Everything the check of one record shape needs."""

    names: tuple[str, ...]
    """Every field, in declaration order: a record holds exactly these keys."""
    scalars: Sequence[Scalar]
    lists: Sequence[ExactList]
    nested: Sequence[NestedField]


def compile_record_check(
    record: RecordFields, sole: int, *, nullable: bool, keys_plain: bool, name: str
) -> Fits:
    """The check that every value is a record of ``record``'s shape held once.

    Args:
        record: the fields and how each is checked.
        sole: the reference count of a container held by its parent only (see
            ``sole_reference_count``).
        nullable: None passes in place of a record.
        keys_plain: the caller knows every key in the data to be a plain ``str`` or
            ``bytes`` (a migration step's output that passed the plain-data check):
            keys equal to the field names are then plain ``str``, without a test of
            each key's type.
        name: the generated function's name in tracebacks and profiles.
    """
    source = _Source(sole)
    source.line(0, "def all_fit(values):")
    source.line(1, "for value in values:")
    source.line(
        2,
        "if type(value) is not dict or getrefcount(value) != sole"
        f" or tuple(value) != {source.bind(record.names)}:",
    )
    if nullable:
        source.line(3, "if value is None:")
        source.line(4, "continue")
    source.line(3, "return False")
    if not keys_plain:
        # A str subclass equal to a field name passes the comparison above; pydantic
        # would write its own plain str in its place.
        source.line(2, "for key in value:")
        source.line(3, "if type(key) is not str:")
        source.line(4, "return False")
    for scalar in record.scalars:
        _write_scalar(source, scalar)
    for exact_list in record.lists:
        _write_list(source, exact_list)
    for nested in record.nested:
        # map() yields the field without the extra reference a local name would add.
        fits, get = source.bind(nested.fits), source.bind(itemgetter(nested.name))
        source.line(2, f"if not {fits}(map({get}, (value,))):")
        source.line(3, "return False")
    source.line(1, "return True")
    return source.compile(name)


def _write_scalar(source: _Source, scalar: Scalar) -> None:
    expected = source.bind(scalar.type)
    source.line(2, f"field = value[{scalar.name!r}]")
    wrong = f"type(field) is not {expected}"
    if scalar.test is not None:
        wrong += f" or not {source.bind(scalar.test)}(field)"
    if scalar.none_too:
        source.line(2, f"if field is not None and ({wrong}):")
    else:
        source.line(2, f"if {wrong}:")
    source.line(3, "return False")


def _write_list(source: _Source, exact_list: ExactList) -> None:
    expected = source.bind(exact_list.item)
    source.line(2, f"items = value[{exact_list.name!r}]")
    source.line(2, "if type(items) is not list or getrefcount(items) != sole:")
    source.line(3, "return False")
    source.line(2, "for item in items:")
    if exact_list.none_too:
        source.line(3, f"if type(item) is not {expected} and item is not None:")
    else:
        source.line(3, f"if type(item) is not {expected}:")
    source.line(4, "return False")


class _Source:
    """The lines of one generated function and the globals it reads."""

    def __init__(self, sole: int) -> None:
        self._lines: list[str] = []
        # type and getrefcount are read from this module's namespace when a check is
        # made, so that a test can make a broken one (tests/model/test_inplace.py).
        self._globals: dict[str, Any] = {"getrefcount": sys.getrefcount, "sole": sole, "type": type}

    def line(self, depth: int, text: str) -> None:
        self._lines.append("    " * depth + text)

    def bind(self, value: object) -> str:
        """A global name for ``value`` (generated: no field name is written bare)."""
        name = f"_bound{len(self._globals)}"
        self._globals[name] = value
        return name

    def compile(self, name: str) -> Fits:
        namespace: dict[str, Any] = {}
        exec(
            "\n".join(self._lines), self._globals, namespace
        )  # our own source, names bound as globals
        function: Fits = namespace["all_fit"]
        function.__qualname__ = name
        return function
