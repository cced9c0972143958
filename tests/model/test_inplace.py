"""In-place validation (SchemaVersion.adopt and its generated checker) against pydantic:
the same value, types, key order and sharing of containers, or the same error, for any
schema the checker knows and any data, well-formed, mistyped or shared."""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, cast

import pydantic
import pytest
from fastpath_schemas import (
    Choice,
    Either,
    Flat,
    Model,
    Open,
    Partial,
    Positive,
    Record,
    Stamp,
    Stripped,
    Tree,
)
from hypothesis import event, given
from hypothesis import strategies as st
from plain_helpers import same_plain
from schema_specs import PLAIN_TYPES, shapes
from schema_specs import type_of as shared_type_of
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._errors import ValidationError
from statemigrate._model import _accel, _inplace
from statemigrate._model._plaindata import not_plain_output
from statemigrate._model._schema import SchemaVersion


class Color(enum.StrEnum):
    RED = "red"


class Nested(TypedDict):
    flat: Flat
    items: list[Flat]
    by_key: dict[str, Flat]
    maybe: Flat | None
    anything: Any
    counts: dict[int, list[int]]


class Twice(TypedDict):
    first: Flat
    second: Flat


class Bounded(TypedDict):
    count: Annotated[int, pydantic.Field(ge=0, lt=10)]
    ratio: Annotated[float, pydantic.Field(ge=-1, le=1.5, allow_inf_nan=False)]
    deadline: Annotated[float, pydantic.Field(allow_inf_nan=False)] | None
    code: Annotated[str, pydantic.Field(min_length=1, max_length=3)]
    flag: Annotated[bool, pydantic.Field(strict=True)]


class Even(TypedDict):
    a: Annotated[int, pydantic.Field(multiple_of=2)]


class Pattern(TypedDict):
    a: Annotated[str, pydantic.Field(pattern="^x")]


class Short(TypedDict):
    a: Annotated[list[int], pydantic.Field(max_length=3)]


class Pair(TypedDict):
    a: tuple[int, int]


class BytesKeys(TypedDict):
    a: dict[bytes, int]


class Entry(TypedDict):
    score: float
    tags: list[str]
    hits: int


class State(TypedDict):
    entries: dict[str, Entry]


class OldEntry(TypedDict):
    score: float


class OldState(TypedDict):
    entries: dict[str, OldEntry]


def schema_of(type_: object) -> SchemaVersion:
    return SchemaVersion.create("c", 1, type_)


def kept(schema: SchemaVersion, build: Callable[[], object]) -> bool:
    """Whether the checker keeps freshly built data (nothing else refers to it)."""
    assert schema.in_place is not None
    return schema.in_place([build()])


def flat() -> dict[str, Any]:
    return {"a": 1, "b": "x", "c": 1.5, "d": True, "e": b"\x00", "f": None}


# --- which schemas get a checker ---------------------------------------------------


def test_sole_reference_count_is_a_parent_and_one_name_and_a_second_holder_shows() -> None:
    count = _inplace.sole_reference_count()
    holder: list[list[int]] = [[]]
    held = holder[0]
    alone = sys.getrefcount(held)  # counted outside assert: its rewriting adds names
    again = held
    shared = sys.getrefcount(held)
    assert (count, shared) == (alone, alone + 1) and again is held


@pytest.mark.parametrize(
    "type_",
    [Flat, Nested, Partial, Twice, Positive, Bounded, list[int], dict[str, Any], int, Any],
    ids=lambda t: getattr(t, "__name__", str(t)),
)
def test_plain_schemas_get_a_checker(type_: object) -> None:
    assert schema_of(type_).in_place is not None


@pytest.mark.parametrize(
    "type_",
    [Tree, Model, Record, Short, Choice, Either, Pair, Stamp, BytesKeys, Stripped, Open, Even,
     Pattern],
    ids=lambda t: t.__name__,
)
def test_schemas_with_unknown_parts_get_none_and_validate_as_before(type_: object) -> None:
    schema = schema_of(type_)
    assert schema.in_place is None
    with pytest.raises(ValidationError):
        schema.adopt([{"a": object()}])


class FieldName(enum.StrEnum):
    COUNT = "count"


class Disguised(str):
    """A field name whose repr is another field's."""

    def __repr__(self) -> str:
        return "'b'"


def test_record_fields_named_by_str_subclasses_get_no_checker() -> None:
    """pydantic keeps such a name object as the key it writes, and its repr need not
    read back as the name: a StrEnum member's does not compile, and one printed as
    another field's name would check that field twice. Such a record goes to pydantic."""
    by_enum = schema_of(TypedDict("ByEnum", {FieldName.COUNT: int}))  # type: ignore[operator]
    assert by_enum.in_place is None and by_enum.typed is None
    adopted = by_enum.adopt([{"count": 1}])
    assert adopted == {"count": 1} and type(next(iter(adopted))) is FieldName  # as pydantic
    disguised = schema_of(TypedDict("Disguised", {Disguised("a"): int, "b": int}))  # type: ignore[operator]
    assert disguised.in_place is None
    with pytest.raises(ValidationError):
        disguised.adopt([{"a": "not an int", "b": 1}])


def test_bounds_of_other_types_than_int_and_float_get_none() -> None:
    assert _inplace.compile_checker({"type": "float", "gt": Decimal("0.5")}) is None
    assert _inplace.compile_checker({"type": "int", "gt": 0.5}) is None
    assert _inplace.compile_checker({"type": "float", "gt": 0.5}) is not None


def test_a_checker_is_not_made_without_reference_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_inplace, "sole_reference_count", lambda: None)
    assert schema_of(Flat).in_place is None


# --- what the checker keeps --------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "build"),
    [
        (Flat, flat),
        (
            Nested,
            lambda: {
                "flat": flat(),
                "items": [flat(), flat()],
                "by_key": {"k": flat()},
                "maybe": None,
                "anything": [[1], {"x": (2,)}],
                "counts": {1: [1, 2], 2: []},
            },
        ),
        (Partial, lambda: {"a": 1}),
        (Partial, lambda: {"a": 1, "c": "x"}),
        (Partial, lambda: {"a": 1, "b": [2], "c": "x"}),
        (Twice, lambda: {"first": flat(), "second": flat()}),
    ],
)
def test_well_formed_data_is_kept_as_it_is(type_: object, build: Callable[[], object]) -> None:
    schema = schema_of(type_)
    assert kept(schema, build)
    box = [build()]
    data_id = id(box[0])
    result = schema.adopt(box)
    assert id(result) == data_id and box == []
    assert same_plain(result, schema.validate(build()))


def state(**changes: Any) -> dict[str, Any]:
    entry = {"score": 1.5, "tags": ["a", "b"], "hits": 0}
    entry.update(changes)
    return {"entries": {"k1": entry, "k2": {"score": 2.5, "tags": [], "hits": 3}}}


SHARED_OUTSIDE = ["a"]

# Data pydantic would convert or copy: the checker must decline each one.
DECLINED: dict[str, Callable[[], object]] = {
    "int for float": lambda: state(score=1),
    "bool for int": lambda: state(hits=True),
    "str subclass value": lambda: state(tags=[Color.RED]),
    "tuple for list": lambda: state(tags=("a",)),
    "extra key": lambda: state(extra=1),
    "keys out of order": lambda: {"entries": {"k": {"tags": [], "score": 1.0, "hits": 0}}},
    "str subclass key": lambda: {"entries": {"k": {"score": 1.0, "tags": [], Color.RED: 1}}},
    "str subclass field name": lambda: {
        "entries": {"k": dict([("score", 1.0), ("tags", []), (StrKey("hits"), 0)])}
    },
    "dict subclass record": lambda: {
        "entries": {"k": OrderedDict(score=1.0, tags=[], hits=0)}
    },
    "one list in two records": lambda: _two_records_sharing([]),
    "one record under two keys": lambda: _one_record_twice(),
    "a list also held outside": lambda: state(tags=SHARED_OUTSIDE),
}


class StrKey(str):
    """A str subclass equal to a field name, as a StrEnum member would be."""


def _two_records_sharing(tags: list[str]) -> dict[str, Any]:
    return {"entries": {f"k{i}": {"score": 1.0, "tags": tags, "hits": 0} for i in range(2)}}


def _one_record_twice() -> dict[str, Any]:
    record = {"score": 1.0, "tags": [], "hits": 0}
    return {"entries": {"k1": record, "k2": record}}


@pytest.mark.parametrize("name", DECLINED)
def test_data_pydantic_would_change_is_declined_and_validated_by_pydantic(name: str) -> None:
    schema = schema_of(State)
    build = DECLINED[name]
    assert not kept(schema, build)
    assert agree(schema, build)


def bounded(**changes: Any) -> dict[str, Any]:
    record = {"count": 0, "ratio": -1.0, "deadline": None, "code": "abc", "flag": True}
    record.update(changes)
    return record


def test_values_within_their_constraints_are_kept() -> None:
    schema = schema_of(Bounded)
    assert kept(schema, bounded)
    assert kept(schema, lambda: bounded(count=9, ratio=1.5, deadline=1e300, code="a"))


@pytest.mark.parametrize(
    "changes",
    [
        {"count": -1},
        {"count": 10},
        {"ratio": 1.6},
        {"ratio": math.nan},
        {"deadline": math.inf},
        {"deadline": -math.inf},
        {"code": ""},
        {"code": "abcd"},
    ],
    ids=repr,
)
def test_values_outside_their_constraints_are_declined_and_refused_by_pydantic(
    changes: dict[str, Any],
) -> None:
    schema = schema_of(Bounded)
    assert not kept(schema, lambda: bounded(**changes))
    with pytest.raises(ValidationError):
        schema.adopt([bounded(**changes)])


def test_a_strict_field_is_declined_and_validated_in_lax_mode() -> None:
    """Restores validate in lax mode (snapshots carry datetimes as text even for strict
    fields), so a strict bool given 1 is converted, by pydantic, not kept."""
    schema = schema_of(Bounded)
    assert not kept(schema, lambda: bounded(flag=1))
    assert schema.adopt([bounded(flag=1)])["flag"] is True


@pytest.mark.parametrize(
    ("op", "bound", "value"),
    [("lt", 2**53 + 1, 2.0**53), ("gt", 2**53 + 3, 2.0**53 + 4), ("gt", -(2**53) - 1, -(2.0**53))],
    ids=["lt 2**53+1", "gt 2**53+3", "gt -2**53-1"],
)
def test_a_float_beyond_an_int_bound_as_pydantic_rounds_it_is_declined(
    op: str, bound: int, value: float
) -> None:
    """pydantic compares a float with its int bound rounded to a float: 2**53 is less
    than 2**53 + 1, but not less than 2**53, which that bound becomes."""
    constraint: dict[str, Any] = {op: bound}
    schema = schema_of(Annotated[float, pydantic.Field(**constraint)])
    assert not kept(schema, lambda: value)
    with pytest.raises(ValidationError):
        schema.adopt([value])


def test_a_float_within_an_int_bound_as_pydantic_rounds_it_is_kept() -> None:
    schema = schema_of(Annotated[float, pydantic.Field(le=2**53 + 1, ge=-(2**53) - 1)])
    assert kept(schema, lambda: 2.0**53) and kept(schema, lambda: -(2.0**53))
    assert agree(schema, 2.0**53)


@pytest.mark.parametrize("text", ["\ud800", "a\udfff", "\udbff\udc00"], ids=ascii)
@pytest.mark.parametrize("length", [{"min_length": 1}, {"max_length": 3}, {"min_length": 0}])
def test_a_string_holding_a_surrogate_under_a_length_constraint_is_declined(
    text: str, length: dict[str, Any]
) -> None:
    """pydantic measures a constrained string as UTF-8 text, which a surrogate code
    point is not: it refuses the string, whatever its length."""
    schema = schema_of(Annotated[str, pydantic.Field(**length)])
    assert not kept(schema, lambda: text)
    with pytest.raises(ValidationError):
        schema.adopt([text])


def test_a_string_holding_a_surrogate_without_constraints_is_kept_as_pydantic_keeps_it() -> None:
    schema = schema_of(dict[str, str])
    assert kept(schema, lambda: {"\ud800": "a\udfff"})
    assert agree(schema, lambda: {"\ud800": "a\udfff"})


def test_missing_fields_are_declined_and_reported_by_pydantic() -> None:
    schema = schema_of(State)
    with pytest.raises(ValidationError) as caught:
        schema.adopt([{"entries": {"k": {"score": 1.0}}}])
    assert "tags" in str(caught.value)


def test_the_root_is_declined_while_the_caller_still_holds_it() -> None:
    schema = schema_of(State)
    data = state()
    assert schema.in_place is not None and not schema.in_place([data])
    result = schema.adopt([data])
    assert result is not data and same_plain(result, data)


def test_a_checker_that_raises_leaves_the_data_to_pydantic() -> None:
    schema = dataclasses.replace(schema_of(Flat), in_place=_raising_checker)
    assert same_plain(schema.adopt([flat()]), flat())


def _raising_checker(box: list[Any], *, plain: bool = False) -> bool:
    raise RuntimeError("checker bug")


# --- the property: adopt gives what pydantic gives ------------------------------------


@dataclasses.dataclass(frozen=True)
class Shared:
    """One container built once and placed wherever this name occurs (and kept by the
    test as well when ``outside``)."""

    name: str
    node: object
    outside: bool


@dataclasses.dataclass(frozen=True)
class ListNode:
    items: tuple[object, ...]
    as_tuple: bool = False


@dataclasses.dataclass(frozen=True)
class DictNode:
    items: tuple[tuple[object, object], ...]


def build(node: object, outside: dict[str, object]) -> object:
    """Fresh data from a description; shared names resolve to one object each, and the
    ones marked ``outside`` are also stored in ``outside``."""
    made: dict[str, object] = {}

    def make(node: object) -> object:
        if isinstance(node, Shared):
            if node.name not in made:
                made[node.name] = make(node.node)
                if node.outside:
                    outside[node.name] = made[node.name]
            return made[node.name]
        if isinstance(node, ListNode):
            items = [make(item) for item in node.items]
            return tuple(items) if node.as_tuple else items
        if isinstance(node, DictNode):
            return {key: make(value) for key, value in node.items}
        return node

    return make(node)


def sharing(value: object, outside: dict[str, object]) -> list[tuple[str, str]]:
    """Each container reached, by path: the first path it was met at, or the outside
    name it is, or "" when it is met for the first time and only held by the data."""
    first: dict[int, str] = {}
    names = {id(obj): name for name, obj in outside.items()}
    found: list[tuple[str, str]] = []

    def walk(value: object, path: str) -> None:
        if not isinstance(value, (list, dict)):
            return
        if id(value) in names:
            found.append((path, "outside " + names[id(value)]))
        elif id(value) in first:
            found.append((path, "same as " + first[id(value)]))
            return
        else:
            found.append((path, ""))
        first[id(value)] = path
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            walk(child, f"{path}/{key!r}")

    walk(value, "")
    return found


def outcome(func: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("value", func())
    except ValidationError as exc:
        return ("error", str(exc))


def agree(
    schema: SchemaVersion, describe: Callable[[], object] | object, *, plain: bool = False
) -> bool:
    """Whether adopt and validate give the same outcome on fresh copies of the data,
    sharing included (adopt's own data in a box that holds the only reference).
    ``plain`` is passed to adopt: the data must then be plain."""
    if callable(describe):
        make: Callable[[dict[str, object]], object] = lambda outside: describe()  # noqa: E731
    else:
        make = lambda outside: build(describe, outside)  # noqa: E731
    ours_outside: dict[str, object] = {}
    theirs_outside: dict[str, object] = {}
    box = [make(ours_outside)]
    assert not plain or not_plain_output(box[0]) is None, "adopt(plain=True) of data not plain"
    ours = outcome(lambda: schema.adopt(box, plain=plain))
    theirs = outcome(lambda: schema.validate(make(theirs_outside)))
    if ours[0] != theirs[0]:
        return False
    if ours[0] == "error":
        return ours[1] == theirs[1]
    return same_plain(ours[1], theirs[1]) and sharing(ours[1], ours_outside) == sharing(
        theirs[1], theirs_outside
    )


PLAIN_LEAVES = ("int", "float", "str", "bool", "bytes", "none", "any")
CONSTRAINED: dict[str, Any] = {
    "small": Annotated[int, pydantic.Field(ge=0, lt=3)],
    "finite": Annotated[float, pydantic.Field(gt=-1, allow_inf_nan=False)],
    "short": Annotated[str, pydantic.Field(max_length=2)],
    "filled": Annotated[str, pydantic.Field(min_length=1)],
}
FIELD_NAMES = st.sampled_from(["a", "b", "c", "d", "tags", "ü", "x y", "'q'"])

# Past 2**53 a float no longer holds every integer: 2**53 + 1 is no float. pydantic
# rounds a float field's int bound to a float (2**53 + 1 down to 2**53, 2**53 + 3 up to
# 2**53 + 4) and compares with that; an int field's bound is compared as it is.
INT_BOUNDS = tuple(sign * (2**53 + step) for step in (1, 3, -1) for sign in (1, -1))
FLOAT_BOUNDS = (*INT_BOUNDS, 2.0**53, -(2.0**53), 0.5, -0.5)
bounded_specs = st.tuples(st.just("bounded"), st.sampled_from(["float", "int"])).flatmap(
    lambda spec: st.tuples(
        *map(st.just, spec),
        st.sampled_from(["lt", "gt", "le", "ge"]),
        st.sampled_from(FLOAT_BOUNDS if spec[1] == "float" else INT_BOUNDS),
    )
)
"""A number with one bound near float precision: ("bounded", kind, op, bound)."""


def at_bound(bound: float) -> list[object]:
    """Numbers at a bound: the floats nearest to it on either side (one of them is what
    it rounds to), and the ints and floats at it and one or a half away from it."""
    exact = Fraction(bound)
    rounded = float(bound)
    below = rounded if Fraction(rounded) < exact else math.nextafter(rounded, -math.inf)
    above = rounded if Fraction(rounded) > exact else math.nextafter(rounded, math.inf)
    values: list[object] = [below, above]
    for step in (-1, Fraction(-1, 2), 0, Fraction(1, 2), 1):
        moved = exact + step
        values.append(float(moved))
        if moved.denominator == 1:
            values.append(int(moved))
    return values


specs = shapes(
    st.sampled_from(PLAIN_LEAVES) | st.sampled_from(tuple(CONSTRAINED)) | bounded_specs,
    FIELD_NAMES,
)


def leaf_type(spec: Any) -> Any:
    """The type of a leaf: plain, constrained or bounded."""
    if isinstance(spec, str):
        return {**PLAIN_TYPES, **CONSTRAINED}[spec]
    _, number, op, bound = spec  # bounded
    return Annotated[PLAIN_TYPES[number], pydantic.Field(**{op: bound})]


def type_of(spec: Any) -> Any:
    return shared_type_of(spec, leaf_type)


def describe(data: st.DataObject, spec: Any) -> object:
    """Data for ``spec``, now and then mistyped or shared in the ways pydantic cares about."""
    if data.draw(st.integers(0, 9)) == 0:  # one node in ten: something unexpected
        return data.draw(odd_values)
    node = _describe_fitting(data, spec)
    if isinstance(node, (ListNode, DictNode)) and data.draw(st.integers(0, 4)) == 0:
        name = data.draw(st.sampled_from(["s1", "s2"]))
        return Shared(name, node, outside=data.draw(st.booleans()))
    return node


def _describe_fitting(data: st.DataObject, spec: Any) -> object:
    if spec == "any":
        return data.draw(odd_values)
    if isinstance(spec, str):
        return data.draw(LEAF_VALUES[spec])
    if spec[0] == "bounded":
        return data.draw(st.sampled_from(at_bound(spec[3])))
    kind, inner = spec
    if kind == "list":
        items = tuple(describe(data, inner) for _ in range(data.draw(st.integers(0, 3))))
        return ListNode(items, as_tuple=data.draw(st.integers(0, 9)) == 0)
    if kind == "dict":
        keys = data.draw(st.lists(st.text(max_size=3), max_size=3, unique=True))
        return DictNode(tuple((key, describe(data, inner)) for key in keys))
    if kind == "optional":
        return None if data.draw(st.booleans()) else describe(data, inner)
    fields = [
        (name, describe(data, shape))
        for name, shape, required in inner
        if required or data.draw(st.booleans())
    ]
    twist = data.draw(st.integers(0, 9))
    if twist == 0 and fields:
        fields.pop(data.draw(st.integers(0, len(fields) - 1)))  # a field missing
    elif twist == 1:
        fields.append(("extra", 1))
    elif twist == 2:
        fields.reverse()
    elif twist == 3 and fields:
        fields[0] = (StrKey(fields[0][0]), fields[0][1])
    return DictNode(tuple(fields))


# Python strings may hold surrogate code points, which are not text in UTF-8.
texts_with_surrogates = st.lists(
    st.sampled_from(["a", "é", "\U0001f600", "\ud800", "\udfff"]), max_size=3
).map("".join)
lone_surrogates = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=1),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(max_size=1),
)

LEAF_VALUES: dict[str, st.SearchStrategy[object]] = {
    "int": st.integers() | st.booleans(),
    "float": st.floats() | st.integers(-5, 5),
    "str": st.text(max_size=4) | st.just(Color.RED) | texts_with_surrogates,
    "bool": st.booleans() | st.integers(0, 1),
    "bytes": st.binary(max_size=4) | st.text(max_size=2),
    "none": st.none(),
    "small": st.integers(-2, 4),
    "finite": st.floats(min_value=-2) | st.just(-1.0),
    "short": st.text(max_size=3) | texts_with_surrogates,
    "filled": st.text(max_size=2) | texts_with_surrogates,
}
odd_values: st.SearchStrategy[object] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.builds(lambda items: ListNode(tuple(items)), st.lists(inner, max_size=3))
    | st.builds(
        lambda items: DictNode(tuple(items.items())),
        st.dictionaries(st.text(max_size=2), inner, max_size=3),
    ),
    max_leaves=6,
)


def leaves_of(spec: Any) -> list[Any]:
    """The leaves of a schema shape."""
    if isinstance(spec, str) or spec[0] == "bounded":
        return [spec]
    kind, inner = spec
    if kind == "record":
        return [leaf for _, shape, _ in inner for leaf in leaves_of(shape)]
    return leaves_of(inner)


LEAF_SCHEMAS: dict[str, SchemaVersion] = {}


def leaf_schema(leaf: Any) -> SchemaVersion:
    """The schema of a leaf, made once. Keyed by ``repr``: the bounds 2**53 and 2.0**53
    are equal, but not the same bound."""
    key = repr(leaf)
    if key not in LEAF_SCHEMAS:
        LEAF_SCHEMAS[key] = schema_of(type_of(leaf))
    return LEAF_SCHEMAS[key]


def at_the_bounds_of(leaf: tuple[str, str, str, float]) -> list[tuple[Any, object]]:
    """A number bounded near float precision, swept at its bound: every number at it
    under each kind of bound (gt, ge, lt, le) there, for an int and a float."""
    _, _, _, bound = leaf
    kinds = ("int", "float") if type(bound) is int else ("float",)
    return [
        (("bounded", kind, op, bound), value)
        for kind in kinds
        for op in ("gt", "ge", "lt", "le")
        for value in at_bound(bound)
    ]


@pytest.mark.parametrize("loops", ["C where built", "Python only"])
@given(specs, st.data())
def test_adopt_gives_what_pydantic_gives(loops: str, spec: Any, data: st.DataObject) -> None:
    """For any schema shape and any data, adopt's outcome equals validate's: the same
    value with the same types and key order and the same sharing, or the same error.
    So it does with the records checked by the C loop (where it was built) and by the
    Python loop alone.

    So it does for the scalar leaves of the shape on their own, where nothing else makes
    the checker decline: a bounded number at its bound (swept as ``at_the_bounds_of``
    says), and a string leaf with a few strings that may hold surrogates, unconstrained
    and under each length constraint."""
    with pytest.MonkeyPatch.context() as patch:
        if loops == "Python only":
            patch.setattr(_accel, "ACCELERATED", False)
        schema = schema_of(type_of(spec))
    assert schema.in_place is not None
    node = describe(data, spec)
    fresh: dict[str, object] = {}
    event("kept" if schema.in_place([build(node, fresh)]) else "declined")
    assert agree(schema, node)
    if not_plain_output(build(node, {})) is None:  # as a migration step's output is
        event("plain")
        assert agree(schema, node, plain=True)
    for leaf in leaves_of(spec):
        if leaf in ("str", "short", "filled"):
            texts = data.draw(st.lists(lone_surrogates | st.text(max_size=3), min_size=1))
            cases = [(kind, text) for kind in ("str", "short", "filled") for text in texts]
        elif leaf[0] == "bounded":
            cases = at_the_bounds_of(leaf)
        else:
            continue
        for scalar, value in cases:
            assert agree(leaf_schema(scalar), value), (scalar, value)


# --- negative controls: broken checkers are caught -----------------------------------


def entries_node(*records: tuple[str, object]) -> DictNode:
    return DictNode((("entries", DictNode(records)),))


def record_node(tags: object) -> DictNode:
    return DictNode((("score", 1.0), ("tags", tags), ("hits", 0)))


SHARING_EXAMPLES = {
    "one record under two keys": entries_node(
        ("k1", Shared("r", record_node(ListNode(())), outside=False)),
        ("k2", Shared("r", record_node(ListNode(())), outside=False)),
    ),
    "one list in two records": entries_node(
        ("k1", record_node(Shared("t", ListNode(("a",)), outside=False))),
        ("k2", record_node(Shared("t", ListNode(("a",)), outside=False))),
    ),
    "a list also held outside": entries_node(
        ("k", record_node(Shared("o", ListNode(("a",)), outside=True))),
    ),
    "the root also held outside": Shared("root", entries_node(), outside=True),
}


def test_negative_control_a_checker_that_ignores_sharing_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the reference count, shared and outside-held containers are kept, and
    the comparison of sharing with pydantic's result notices every one. (The Python
    loop is broken here; tests/model/test_cchecks.py breaks the C one.)"""
    monkeypatch.setattr(_accel, "ACCELERATED", False)
    sound = schema_of(State)
    assert all(agree(sound, example) for example in SHARING_EXAMPLES.values())
    count = _inplace.sole_reference_count()
    monkeypatch.setattr(_inplace, "sys", types.SimpleNamespace(getrefcount=lambda obj: count))
    broken = schema_of(State)
    diverging = [name for name, example in SHARING_EXAMPLES.items() if not agree(broken, example)]
    assert diverging == list(SHARING_EXAMPLES)


def test_negative_control_a_checker_that_lets_bool_pass_for_int_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_type = type

    def lenient_type(obj: object) -> type:
        return int if real_type(obj) is bool else real_type(obj)

    monkeypatch.setattr(_accel, "ACCELERATED", False)
    monkeypatch.setattr(_inplace, "type", lenient_type, raising=False)
    broken = schema_of(State)
    assert not agree(broken, lambda: state(hits=True))


# --- in a restore --------------------------------------------------------------------


DEFAULT_TAGS = ["new"]


def make_service(registry: sm.Registry, version: int, entries: dict[str, Any]) -> sm.Service:
    @registry.migratable("cache", version=version)
    class Cache:
        def __init__(self) -> None:
            self.entries = entries

    service = sm.Service("svc")
    service.register(Cache())
    return service


def entries_of(service: sm.Service) -> Any:
    (registered,) = service.components
    return cast(Any, registered.obj).entries


def registry_with(step: Callable[[dict[str, Any]], dict[str, Any]]) -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("cache", 1, OldState)
    registry.add_schema("cache", 2, State)
    registry.add_migration("cache", 1, 2, step)
    return registry


def add_tags_sharing_a_default(data: dict[str, Any]) -> dict[str, Any]:
    for entry in data["entries"].values():
        entry["tags"] = DEFAULT_TAGS  # one list for every record: a classic step mistake
        entry["hits"] = 0
    return data


def add_fresh_tags(data: dict[str, Any]) -> dict[str, Any]:
    for entry in data["entries"].values():
        entry["tags"] = []
        entry["hits"] = 0
    return data


def restore_v1_into_v2(
    step: Callable[[dict[str, Any]], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], int]:
    """Restore two v1 entries into a v2 service; the entries and pydantic's call count."""
    calls = []
    validate = SchemaVersion.validate

    def counting(self: SchemaVersion, data: object) -> Any:
        calls.append(self.version)
        return validate(self, data)

    monkeypatch.setattr(SchemaVersion, "validate", counting)
    registry = registry_with(step)
    old = make_service(registry, 1, {"a": {"score": 1.0}, "b": {"score": 2.0}})
    encoded, _ = old.snapshot()
    new = make_service(registry, 2, {})
    new.restore(encoded.to_bytes())
    return entries_of(new), len(calls)


def test_a_restore_keeps_the_migrated_data_without_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries, pydantic_calls = restore_v1_into_v2(add_fresh_tags, monkeypatch)
    assert entries == {"a": {"score": 1.0, "tags": [], "hits": 0},
                       "b": {"score": 2.0, "tags": [], "hits": 0}}
    assert pydantic_calls == 0


def test_a_step_that_shares_one_list_still_restores_independent_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries, pydantic_calls = restore_v1_into_v2(add_tags_sharing_a_default, monkeypatch)
    assert pydantic_calls == 1
    entries["a"]["tags"].append("changed")
    assert entries["b"]["tags"] == ["new"] and DEFAULT_TAGS == ["new"]
