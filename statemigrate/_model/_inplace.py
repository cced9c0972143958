"""In-place validation: skip pydantic's copy when the data already is what it would return.

pydantic validates a ``TypedDict`` schema by building a new dict for every record and a
new list for every list, even when the input already has exactly the declared types.
During a restore the decoded and migrated data belongs to the restore alone, so that copy
buys nothing, and for a large cache it costs about as much as decoding did.

:func:`compile_checker` reads a schema's pydantic core schema. If every node in it is one
this module knows (a ``TypedDict``, ``dict``, ``list``, optional value, ``str``, ``int``,
``float``, ``bool``, ``bytes``, ``None`` or ``Any``; numbers may have bounds and finiteness
and strings lengths, but no other constraint, validator, alias, default or config), it
returns a checker; otherwise ``None``. The checker accepts data
only when pydantic's default (lax) validation would return an equal value with the same
types and key order, without sharing containers with anything else:

- every value has exactly its declared type. pydantic converts an ``int`` where a
  ``float`` is declared, a ``bool`` where an ``int`` is, a ``str`` subclass or a tuple
  for a list, so the checker declines all of those;
- every constrained value passes its constraints as pydantic checks them, which is not
  always as Python would (see ``_value_test``);
- every ``TypedDict`` holds exactly its fields, in declaration order, under plain ``str``
  keys: pydantic drops extra keys and writes the fields in declaration order under its
  own names;
- each dict or list that pydantic would copy is referenced once, by its parent. The
  checker counts references (``sys.getrefcount``): a migration step that put one list
  into every record, or a module-level default into one of them, would otherwise leave
  the restored state sharing it, where pydantic's copy would not.

Whatever the checker declines goes to pydantic, which converts it or says what is wrong,
so the result of a validation never depends on the checker.

The checker is a tree of closures built once per schema, one per node, each running
one loop over every value found at its place. It allocates nothing per value, so for a
large cache it saves pydantic's copy, the memory that copy takes and the freeing of
the input afterwards (``benchmarks/bench_restore.py`` shows the validate phase of a
restore). Where the C extension is built, a dict or list of common records is checked
by one loop in C instead (``_accel``), with the same answers.

A proving checker (``compile_checker(..., proving=True)``) accepts only data that is
also strictly plain: every int of 64 bits, text UTF-8 can encode, str keys, ``Any``
values that pack as they are. A restore asks it first about a step's output, which
then needs no plain-data walk of its own.
"""

from __future__ import annotations

import math
import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

from statemigrate._model import _accel
from statemigrate._model._accel import Fields, RecordsCheck, packs_plain, records_check
from statemigrate._model._coreschema import INERT, STRUCTURE_PARTS, record_fields
from statemigrate._model._coreschema import Unsupported as _Unsupported
from statemigrate._model._plaindata import copy_plain

__all__ = [
    "Collection",
    "DictNode",
    "FieldNode",
    "InPlaceChecker",
    "Node",
    "OptionalNode",
    "RecordNode",
    "RecordsLayout",
    "compile_checker",
    "exact_parts",
    "fits_exactly",
    "list_item",
    "records_layout",
    "schema_tree",
    "sole_reference_count",
]


class InPlaceChecker(Protocol):
    """Takes a one-item list holding the data; True when the data can be kept as it is.

    With ``plain=True`` the caller vouches that the data passed the plain-data check
    (``not_plain_output``): every key is then a plain ``str`` or ``bytes``, and the
    checker skips testing each record key's type (10 to 40% of its time on W1's cache).
    """

    def __call__(self, box: list[Any], *, plain: bool = False) -> bool: ...


@dataclass(frozen=True)
class _Exact:
    """A value of exactly this immutable type, for which ``test`` (if any) holds."""

    type: type
    test: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class _AnyValue:
    """Anything: pydantic returns it as it is, containers included."""


@dataclass(frozen=True)
class _PlainValue:
    """Anything that packs as it is (``packs_plain``): an ``Any`` node, when the checker
    also proves the data plain."""


@dataclass(frozen=True)
class OptionalNode:
    inner: Node


@dataclass(frozen=True)
class _List:
    item: Node


@dataclass(frozen=True)
class DictNode:
    key: _Exact | _AnyValue
    value: Node


@dataclass(frozen=True)
class FieldNode:
    name: str
    node: Node
    required: bool


@dataclass(frozen=True)
class RecordNode:
    """A ``TypedDict``: a dict holding its fields in declaration order. ``proving``:
    its scalars carry the tests of plain data (see ``_proving``)."""

    fields: tuple[FieldNode, ...]
    proving: bool = False


Node = _Exact | _AnyValue | _PlainValue | OptionalNode | _List | DictNode | RecordNode

_ANY = _AnyValue()
_SCALARS: Mapping[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "none": type(None),
}
# The keys each kind may carry besides the inert ones; any other key (min_length, strict,
# allow_inf_nan, extras_schema, ...) changes validation, and the checker declines it.
_PARTS: Mapping[str, frozenset[str]] = {
    # strict changes nothing for values of exactly the declared type, the only ones
    # kept; the bounds and lengths become a test (see _value_test).
    "int": frozenset({"strict", "ge", "gt", "le", "lt"}),
    "float": frozenset({"strict", "ge", "gt", "le", "lt", "allow_inf_nan"}),
    "str": frozenset({"strict", "min_length", "max_length"}),
    "bool": frozenset({"strict"}),
    "bytes": frozenset({"strict"}),
    **STRUCTURE_PARTS,
}


def compile_checker(
    core_schema: Mapping[str, Any], *, name: str = "schema", proving: bool = False
) -> InPlaceChecker | None:
    """The in-place checker for ``core_schema``, or None when it has a node not known here.

    ``name`` is kept on the checker (as its ``__qualname__``) for tracebacks and profiles.

    With ``proving``, the checker accepts only data that is also strictly plain (what
    ``strictly_plain`` says True of), so that a restore learns both from one walk over
    a step's output. It is made only where the checks run in C (elsewhere the proof
    would cost what it saves) and for schemas plain data can fill: no dict with int
    keys, field names that are text, no deeper than ``_PROVING_DEPTH``.
    """
    sole = sole_reference_count()
    if sole is None or (proving and not _accel.ACCELERATED):
        return None
    try:
        node = _parse(core_schema, {}, frozenset())
        if proving:
            node = _proving(node, 0)
    except _Unsupported:
        return None
    # By whether the caller vouches for plain keys: two trees of closures, built once.
    # A proving checker takes no one's word: its one tree tests every key.
    tested = _fits(node, sole, nullable=False, keys_plain=False)
    all_fit = {
        False: tested,
        True: tested if proving else _fits(node, sole, nullable=False, keys_plain=True),
    }

    def check(box: list[Any], *, plain: bool = False) -> bool:
        # The box is the data's parent: its one item is checked like any other.
        return len(box) == 1 and all_fit[plain](box)

    check.__qualname__ = f"in-place check of {name}"
    return check


def schema_tree(core_schema: Mapping[str, Any]) -> Node | None:
    """The tree of nodes the checker of ``core_schema`` is built from, or None when the
    checker would decline the schema. Two trees are equal when the schemas validate
    alike (a constrained scalar equals only itself: its test is a closure)."""
    try:
        return _parse(core_schema, {}, frozenset())
    except _Unsupported:
        return None


def exact_parts(node: Node) -> tuple[type, Callable[[Any], bool] | None] | None:
    """The type and constraint test of a scalar node, or None for any other node."""
    return (node.type, node.test) if isinstance(node, _Exact) else None


def list_item(node: Node) -> Node | None:
    """The node of a list node's items, or None for any other node."""
    return node.item if isinstance(node, _List) else None


def fits_exactly(node: Node, value: Any) -> bool:
    """Whether pydantic's validation of ``value`` against ``node`` returns it as it is.

    The value is checked through a copy of its own, so the references the caller holds
    do not count against it.
    """
    sole = sole_reference_count()
    if sole is None:
        return False
    box = [copy_plain(value)]
    return _fits(node, sole, nullable=False, keys_plain=False)(box)


def _parse(
    schema: Mapping[str, Any], definitions: dict[str, Mapping[str, Any]], resolving: frozenset[str]
) -> Node:
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _PARTS:
        raise _Unsupported(kind)
    if set(schema) - INERT - _PARTS[kind]:
        raise _Unsupported(kind)
    if kind in _SCALARS:
        return _Exact(_SCALARS[kind], _value_test(kind, schema))
    if kind == "any":
        return _ANY
    if kind == "nullable":
        return OptionalNode(_parse(schema["schema"], definitions, resolving))
    if kind == "list":
        return _List(_parse_or_any(schema.get("items_schema"), definitions, resolving))
    if kind == "dict":
        key = _parse_or_any(schema.get("keys_schema"), definitions, resolving)
        if not (key == _ANY or key in (_Exact(str), _Exact(int))):
            raise _Unsupported("dict key")
        assert isinstance(key, (_Exact, _AnyValue))
        return DictNode(key, _parse_or_any(schema.get("values_schema"), definitions, resolving))
    if kind == "typed-dict":
        return _parse_record(schema, definitions, resolving)
    if kind == "definitions":
        known = dict(definitions)
        for definition in schema["definitions"]:
            known[definition["ref"]] = definition
        return _parse(schema["schema"], known, resolving)
    ref = schema["schema_ref"]  # definition-ref
    if ref in resolving or ref not in definitions:
        raise _Unsupported("recursive schema")  # recursion would need a walk, not loops
    return _parse(definitions[ref], definitions, resolving | {ref})


_BOUNDS = (("ge", operator.ge), ("gt", operator.gt), ("le", operator.le), ("lt", operator.lt))
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _value_test(kind: str, schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """The test of a scalar's constraints, or None when it has none.

    The test keeps a value only where pydantic's own check passes it; anything it turns
    away goes to pydantic, which decides. That takes care in two places:

    - pydantic holds the bounds of a ``float`` as floats, so an int bound such as
      ``2**53 + 1`` is rounded (to ``2**53``) before comparing; the test compares with
      ``float(bound)``, which rounds the same way. Bounds of an ``int`` are compared
      exactly by both. Bounds of other types are not known here;
    - pydantic measures a string with a length constraint as UTF-8 text, and refuses
      one holding a surrogate code point (``"\\ud800"``), which a Python ``str`` may
      hold: the test declines every such string, whatever its length.
    """
    if kind == "str":
        shortest = schema.get("min_length", 0)
        longest = schema.get("max_length")
        if "min_length" not in schema and longest is None:
            return None
        if type(shortest) is not int or (longest is not None and type(longest) is not int):
            raise _Unsupported("length")
        search_surrogate = _SURROGATE.search
        return lambda value: (
            shortest <= len(value)
            and (longest is None or len(value) <= longest)
            and (value.isascii() or search_surrogate(value) is None)
        )
    bounds = []
    for key, holds in _BOUNDS:
        if key in schema:
            bound = schema[key]
            if kind == "float" and type(bound) is int:
                try:
                    bound = float(bound)
                except OverflowError:
                    raise _Unsupported("bound") from None
            if type(bound) is not int and not (kind == "float" and type(bound) is float):
                raise _Unsupported("bound")
            bounds.append((holds, bound))
    finite = kind == "float" and schema.get("allow_inf_nan", True) is False
    if not bounds and not finite:
        return None

    def test(value: Any) -> bool:
        for holds, bound in bounds:
            if not holds(value, bound):
                return False
        return not finite or math.isfinite(value)

    return test


def _parse_or_any(
    schema: Mapping[str, Any] | None,
    definitions: dict[str, Mapping[str, Any]],
    resolving: frozenset[str],
) -> Node:
    return _ANY if schema is None else _parse(schema, definitions, resolving)


def _parse_record(
    schema: Mapping[str, Any], definitions: dict[str, Mapping[str, Any]], resolving: frozenset[str]
) -> RecordNode:
    fields = [
        FieldNode(name, _parse(field_schema, definitions, resolving), required)
        for name, field_schema, required in record_fields(schema)
    ]
    return RecordNode(tuple(fields))


def sole_reference_count() -> int | None:
    """What ``sys.getrefcount`` reports for a container that only its parent holds, once
    a local name is bound to it: the checkers compare every dict and list with this.

    A checker binds a container to a name in one of four ways: by subscript, or as the
    loop variable over a list, over a dict's values, or over a ``map`` of a getter. The
    figure depends on the interpreter (whether the name and the call's argument count),
    so it is measured here in all four ways; None when they disagree or the interpreter
    has no reference counts, and then no checker is made.
    """
    getrefcount = getattr(sys, "getrefcount", None)
    if getrefcount is None:
        return None

    def by_subscript(holder: list[object]) -> int:
        held = holder[0]
        return int(getrefcount(held))

    def by_loop(holder: Iterable[object]) -> int:
        for held in holder:
            return int(getrefcount(held))
        raise AssertionError("unreachable: the holder has one item")

    counts = {
        by_subscript([[]]),
        by_loop([[]]),
        by_loop({"": []}.values()),
        by_loop(map(itemgetter(0), ([[]],))),
    }
    return counts.pop() if len(counts) == 1 else None


Fits = Callable[[Iterable[Any]], bool]
"""Whether every value an iterable yields fits one node. The iterable must yield values
held by their parent only (a list or a dict's values, iterated): each check binds each
value to its loop variable and counts references there (see sole_reference_count)."""


def _fits(node: Node, sole: int, *, nullable: bool, keys_plain: bool) -> Fits:
    """The check of values against ``node``; None passes too when ``nullable``.
    ``keys_plain``: every key in the data is known to be a plain ``str`` or ``bytes``."""
    if isinstance(node, _AnyValue):
        return _all_anything
    if isinstance(node, _PlainValue):
        return _all_plain
    if isinstance(node, OptionalNode):
        return _fits(node.inner, sole, nullable=True, keys_plain=keys_plain)
    if isinstance(node, _Exact):
        return _exact_fits(node, nullable)
    if isinstance(node, _List):
        return _list_fits(node, sole, nullable, keys_plain)
    if isinstance(node, DictNode):
        return _dict_fits(node, sole, nullable, keys_plain)
    if all(field.required for field in node.fields):
        return _required_record_fits(node, sole, nullable, keys_plain)
    return _record_fits(node, sole, nullable, keys_plain)


def _all_anything(values: Iterable[Any]) -> bool:
    return True


def _all_plain(values: Iterable[Any]) -> bool:
    return all(map(packs_plain, values))


def _exact_fits(node: _Exact, nullable: bool) -> Fits:
    expected, test = node.type, node.test

    def all_fit(values: Iterable[Any]) -> bool:
        for value in values:
            if type(value) is not expected and not (nullable and value is None):
                return False
        return True

    def all_fit_tested(values: Iterable[Any]) -> bool:
        assert test is not None
        for value in values:
            if value is None:
                if not nullable:
                    return False
            elif type(value) is not expected or not test(value):
                return False
        return True

    return all_fit if test is None else all_fit_tested


def _list_fits(node: _List, sole: int, nullable: bool, keys_plain: bool) -> Fits:
    in_c = _records_in_c(node.item, None)
    item_fits = in_c or _fits(node.item, sole, nullable=False, keys_plain=keys_plain)
    return _container_fits(list, item_fits, sole, nullable)


def _dict_fits(node: DictNode, sole: int, nullable: bool, keys_plain: bool) -> Fits:
    in_c = _records_in_c(node.value, node.key.type if isinstance(node.key, _Exact) else None)
    if in_c is not None:
        return _container_fits(dict, in_c, sole, nullable)
    keys_fit = _fits(node.key, sole, nullable=False, keys_plain=keys_plain)
    values_fit = _fits(node.value, sole, nullable=False, keys_plain=keys_plain)

    def contents_fit(value: dict[Any, Any]) -> bool:
        return keys_fit(value) and values_fit(value.values())

    return _container_fits(dict, contents_fit, sole, nullable)


def _records_in_c(node: Node, key_type: type | None) -> RecordsCheck | None:
    """The C check of a dict or list whose values are ``node``'s records, or None
    when it is not in use or ``node`` is not such a record (see :func:`_flat_fields`).
    In a proving tree (see :func:`_proving`) the scalars carry the plain tests, and the
    C check makes them.

    It checks what ``_required_record_fits`` does, keys included (``keys_plain`` only
    spares the Python loop a test the C loop does at no cost).
    """
    if not isinstance(node, RecordNode):
        return None
    fields = _flat_fields(node, proving=node.proving)
    # A proving tree's dicts have str keys (see _proving), as the plain check needs.
    return None if fields is None else records_check(fields, key_type, plain=node.proving)


def _flat_fields(node: RecordNode, *, proving: bool = False) -> Fields | None:
    """Each field of a flat record as ``_cchecks.c`` reads it (name, type, kind letter),
    or None unless the record is flat: all fields required, each an unconstrained scalar
    (optional or not), a list of those, or ``Any``."""
    fields: list[tuple[str, type, str]] = []
    for field in node.fields:
        if not field.required:
            return None
        scalar = _exact_type(field.node, proving=proving)
        listed = field.node.item if isinstance(field.node, _List) else None
        item = None if listed is None else _exact_type(listed, proving=proving)
        if isinstance(field.node, (_AnyValue, _PlainValue)):
            fields.append((field.name, object, "a"))
        elif scalar is not None:
            fields.append((field.name, scalar[0], "o" if scalar[1] else "e"))
        elif item is not None:
            fields.append((field.name, item[0], "m" if item[1] else "l"))
        else:
            return None
    return tuple(fields)


@dataclass(frozen=True)
class Collection:
    """A ``dict[str, record]`` or ``list[record]`` of flat records in a layout."""

    field: str | None
    """The root record's field that holds it, or None for the root itself."""
    is_map: bool
    fields: Fields


@dataclass(frozen=True)
class RecordsLayout:
    """A schema whose data is collections of flat records: one at the root, or each in
    a field of a root record whose other fields are flat (see :func:`_flat_fields`)."""

    root: Fields | None
    """The root record's fields, collection fields marked ``c``; None for a root
    collection."""
    collections: tuple[Collection, ...]


def records_layout(node: Node | None) -> RecordsLayout | None:
    """The layout of a schema made of collections of flat records, or None for any
    other schema. The snapshot layer reads such data's bytes in C (``_accel``)."""
    collection = _collection(node, None)
    if collection is not None:
        return RecordsLayout(None, (collection,))
    if not isinstance(node, RecordNode):
        return None
    root: list[tuple[str, type, str]] = []
    collections: list[Collection] = []
    for field in node.fields:
        if not field.required:
            return None
        collection = _collection(field.node, field.name)
        if collection is not None:
            collections.append(collection)
            root.append((field.name, object, "c"))
            continue
        flat = _flat_fields(RecordNode((field,)))
        if flat is None:
            return None
        root.extend(flat)
    return RecordsLayout(tuple(root), tuple(collections)) if collections else None


def _collection(node: Node | None, field: str | None) -> Collection | None:
    if isinstance(node, DictNode) and node.key == _Exact(str):
        is_map, record = True, node.value
    elif isinstance(node, _List):
        is_map, record = False, node.item
    else:
        return None
    fields = _flat_fields(record) if isinstance(record, RecordNode) else None
    return None if fields is None else Collection(field, is_map, fields)


def _container_fits(
    container: type, contents_fit: Callable[[Any], bool], sole: int, nullable: bool
) -> Fits:
    """The check of values that must each be a ``container`` held once, whose contents
    ``contents_fit`` checks."""
    getrefcount = sys.getrefcount  # bound once: read in every call

    def all_fit(values: Iterable[Any]) -> bool:
        for value in values:
            if type(value) is not container or getrefcount(value) != sole:
                if nullable and value is None:
                    continue
                return False
            if not contents_fit(value):
                return False
        return True

    return all_fit


def _required_record_fits(record: RecordNode, sole: int, nullable: bool, keys_plain: bool) -> Fits:
    """The check of the common record, whose fields are all required.

    Plain loops over the fields: on CPython 3.11 they beat building tuples of types in
    C (``tuple(map(type, ...))``), whose call overhead outweighs six type tests.
    Scalars, with or without bounds, and lists of one exact type are checked here
    without a call, since caches are full of them (counters, deadlines, tags); other
    containers go to their own check. With ``keys_plain``, the keys are not tested one
    by one: equal to the field names, plain ``str`` or ``bytes`` keys are those names.
    """
    names = tuple(field.name for field in record.fields)
    scalars: list[tuple[str, type]] = []
    optional_scalars: list[tuple[str, type]] = []
    tested_scalars: list[tuple[str, type, Callable[[Any], bool], bool]] = []
    exact_lists: list[tuple[str, type, bool]] = []
    nested: list[tuple[Callable[[Any], Any], Fits]] = []
    for field in record.fields:
        node = field.node
        scalar = node.inner if isinstance(node, OptionalNode) else node
        item = _exact_type(node.item) if isinstance(node, _List) else None
        if isinstance(scalar, _Exact) and scalar.test is None:
            (optional_scalars if scalar is not node else scalars).append((field.name, scalar.type))
        elif isinstance(scalar, _Exact) and scalar.test is not None:
            tested_scalars.append((field.name, scalar.type, scalar.test, scalar is not node))
        elif item is not None:
            exact_lists.append((field.name, *item))
        elif not isinstance(node, _AnyValue):
            field_fits = _fits(node, sole, nullable=False, keys_plain=keys_plain)
            nested.append((itemgetter(field.name), field_fits))
    getrefcount = sys.getrefcount

    def all_fit(values: Iterable[Any]) -> bool:
        for value in values:
            if type(value) is not dict or getrefcount(value) != sole or tuple(value) != names:
                if nullable and value is None:
                    continue
                return False
            if not keys_plain:
                for key in value:
                    if type(key) is not str:  # equal to a field name, yet a str subclass
                        return False
            for name, expected in scalars:
                if type(value[name]) is not expected:
                    return False
            for name, expected in optional_scalars:
                field_value = value[name]
                if field_value is not None and type(field_value) is not expected:
                    return False
            for name, expected, test, none_too in tested_scalars:
                field_value = value[name]
                if field_value is None:
                    if not none_too:
                        return False
                elif type(field_value) is not expected or not test(field_value):
                    return False
            for name, expected, none_too in exact_lists:
                items = value[name]
                if type(items) is not list or getrefcount(items) != sole:
                    return False
                for item in items:
                    if type(item) is not expected and not (none_too and item is None):
                        return False
            for get, field_fits in nested:
                if not field_fits(map(get, (value,))):  # yields the field, adding no reference
                    return False
        return True

    return all_fit


def _record_fits(record: RecordNode, sole: int, nullable: bool, keys_plain: bool) -> Fits:
    """The check of a record with fields that may be absent, one field at a time."""
    names = tuple(field.name for field in record.fields)
    keys_fit = _keys_fit(names, frozenset(f.name for f in record.fields if f.required))
    fields = tuple(
        (
            field.name,
            itemgetter(field.name),
            _fits(field.node, sole, nullable=False, keys_plain=keys_plain),
        )
        for field in record.fields
        if not isinstance(field.node, _AnyValue)
    )

    def contents_fit(value: dict[str, Any]) -> bool:
        if not keys_fit(tuple(value)):
            return False
        for name, get, field_fits in fields:
            if name in value and not field_fits(map(get, (value,))):
                return False
        return True

    return _container_fits(dict, contents_fit, sole, nullable)


def _exact_type(node: Node, *, proving: bool = False) -> tuple[type, bool] | None:
    """The type every non-None value of ``node`` has exactly, and whether None is
    allowed too; None when ``node`` is not a scalar or its values have a test (other
    than a plain test, with ``proving``: the C check makes those)."""
    inner = node.inner if isinstance(node, OptionalNode) else node
    if isinstance(inner, _Exact) and (
        inner.test is None or (proving and inner.test in _PLAIN_TESTS.values())
    ):
        return inner.type, inner is not node
    return None


# --- proving plain data --------------------------------------------------------------

_PROVING_DEPTH = 64
"""The most levels of containers a proving checker's schema may have: an ``Any`` value
then has 64 more before ``packs_plain`` leaves it to ormsgpack, whose limit is 255."""


def _plain_int(value: int) -> bool:
    return -(2**63) <= value < 2**63  # past this, strictly_plain asks ormsgpack


def _plain_text(value: str) -> bool:
    # UTF-8 cannot encode a lone surrogate; msgpack's lengths are 32-bit.
    return len(value) <= 0x3FFFFFFF and (value.isascii() or _SURROGATE.search(value) is None)


def _plain_bytes(value: bytes) -> bool:
    return len(value) <= 0xFFFFFFFF


_PLAIN_TESTS: Mapping[type, Callable[[Any], bool]] = {
    int: _plain_int,
    str: _plain_text,
    bytes: _plain_bytes,
}
"""What a scalar of each type must also pass to be plain data; the other scalar types
(float, bool, None) always are."""


def _proving(node: Node, depth: int) -> Node:
    """``node`` with every test that plain data adds: ints of 64 bits, text UTF-8 can
    encode, str keys only, ``Any`` as plain data. Lists and dicts past 2**32 items,
    which msgpack cannot hold, are not looked for: no machine holds one in memory.

    Raises:
        _Unsupported: a dict with int keys (never plain), a field name UTF-8 cannot
        encode, or more than ``_PROVING_DEPTH`` levels.
    """
    if depth > _PROVING_DEPTH:
        raise _Unsupported("too deep to prove plain")
    if isinstance(node, _Exact):
        plain = _PLAIN_TESTS.get(node.type)
        if plain is None:
            return node
        if node.test is None:
            return _Exact(node.type, plain)
        test = node.test
        return _Exact(node.type, lambda value: test(value) and plain(value))
    if isinstance(node, _AnyValue):
        return _PLAIN
    if isinstance(node, OptionalNode):
        return OptionalNode(_proving(node.inner, depth))
    if isinstance(node, _List):
        return _List(_proving(node.item, depth + 1))
    if isinstance(node, DictNode):
        if node.key not in (_ANY, _Exact(str)):
            raise _Unsupported("int keys")
        return DictNode(_Exact(str, _plain_text), _proving(node.value, depth + 1))
    if isinstance(node, RecordNode):
        if not all(_plain_text(field.name) for field in node.fields):
            raise _Unsupported("field name")
        return RecordNode(
            tuple(
                FieldNode(field.name, _proving(field.node, depth + 1), field.required)
                for field in node.fields
            ),
            proving=True,
        )
    return node


_PLAIN = _PlainValue()


def _keys_fit(
    names: tuple[str, ...], required: frozenset[str]
) -> Callable[[tuple[object, ...]], bool]:
    """A test that keys are plain strs among ``names``, in that order, with every
    required one."""
    position = {name: index for index, name in enumerate(names)}

    def fits(keys: tuple[object, ...]) -> bool:
        last = -1
        for key in keys:
            index = position.get(key, -1) if type(key) is str else -1
            if index <= last:
                return False
            last = index
        return required.issubset(keys)

    return fits
