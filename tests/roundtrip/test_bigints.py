"""Integers past 64 bits: a snapshot holds them as their decimal text, so they come back
exactly where the type says int (or a union that reads the text back as the int), and
are refused at commit, naming their path, where a union would read that text back as
another member. A record's ``mode="before"`` validator changes none of that. An enum or
``Literal`` value that validation does not take back from a snapshot is refused at
registration."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, cast

import pydantic.dataclasses
import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_serializer,
    model_validator,
)
from typing_extensions import TypedDict
from zoo.table import Holder

from statemigrate import ExportError, MemoryStore, RegistrationError, Registry, Service
from statemigrate.testing._exact import exact_differences

RoundTrip = Callable[[object, object], object]  # the round_trip fixture

BIG = 2**70
ABOVE = 2**64  # the first integer msgpack cannot hold
BELOW = -(2**63) - 1  # the last one below


class Keys(BaseModel):
    key: int | str = 0
    keys: list[int | str] = []
    ratio: float | int = 0
    maybe: int | None | str = None
    optional: Annotated[int | str, "kept apart"] | None = None
    by_name: dict[str, int | str] = {}
    nested: list[dict[str, list[int | str]]] = []


class Row(TypedDict):
    v: int | str


class RowOfRows(TypedDict):
    rows: dict[str, Row]


@dataclasses.dataclass
class Pair:
    left: int | str
    right: int = 0


class Pairs(BaseModel):
    pairs: list[Pair] = []


def _tag(value: Any) -> str:
    return "int" if isinstance(value, int) else "str"


Tagged = Annotated[
    Annotated[int, Tag("int")] | Annotated[str, Tag("str")], Discriminator(_tag)
]


class Tags(BaseModel):
    tagged: list[Tagged] = []


class Tree(BaseModel):
    """Recursive: its union is validated back with the schema's definitions."""

    value: int | str = 0
    children: list[Tree] = []


class Leaf(BaseModel):
    n: int = 0


class WithModel(BaseModel):
    with_str: list[str | Leaf | int] = []
    without: list[Leaf | int] = []


class Others(BaseModel):
    """Unions with members that take text other than str: their export is validated
    back as a whole, so they were refused before, but as if their validation were at
    fault."""

    decimal_first: decimal.Decimal | int = 0
    bytes_first: bytes | int = 0


REFUSED = [
    ("int|str", Keys, Keys(key=ABOVE), "key", "str"),
    ("list", Keys, Keys(keys=[5, BIG]), "keys[1]", "str"),
    ("below", Keys, Keys(keys=[BELOW]), "keys[0]", "str"),
    ("float|int", Keys, Keys(ratio=2**65), "ratio", "float"),
    ("int|None|str", Keys, Keys(maybe=BIG), "maybe", "str"),
    ("Optional", Keys, Keys(optional=-BIG), "optional", "str"),
    ("dict", Keys, Keys(by_name={"a": 1, "b": BIG}), "by_name['b']", "str"),
    ("nested", Keys, Keys(nested=[{}, {"x": [1, BIG]}]), "nested[1]['x'][1]", "str"),
    ("typeddict", dict[str, Row], {"a": {"v": 1}, "b": {"v": BIG}}, "['b'].v", "str"),
    (
        "typeddict-in-typeddict",
        RowOfRows,
        {"rows": {"a": {"v": BIG}}},
        "rows['a'].v",
        "str",
    ),
    ("dataclass", Pairs, Pairs(pairs=[Pair(1), Pair(BIG)]), "pairs[1].left", "str"),
    ("tagged", Tags, Tags(tagged=[1, "a", BIG]), "tagged[2]", "str"),
    ("recursive", Tree, Tree(children=[Tree(), Tree(value=BIG)]), "children[1].value", "str"),
    ("with-model", WithModel, WithModel(with_str=[Leaf(), BIG]), "with_str[1]", "str"),
    ("Decimal|int", Others, Others(decimal_first=BIG), "decimal_first", "Decimal"),
    ("bytes|int", Others, Others(bytes_first=BIG), "bytes_first", "bytes"),
]


@pytest.mark.parametrize(
    ("schema", "state", "path", "comes_back_as"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_a_big_int_a_union_reads_back_as_another_member_is_refused(
    round_trip: RoundTrip, schema: object, state: object, path: str, comes_back_as: str
) -> None:
    """Before, a union of plain scalars was taken to round-trip by construction, so
    nothing validated it back: ``int | str`` committed and restored the int as a str,
    ``float | int`` as a float."""
    if not isinstance(state, BaseModel):
        state = TypeAdapter(cast(Any, schema)).validate_python(state)
    with pytest.raises(ExportError) as caught:
        round_trip(schema, state)
    error = caught.value
    assert error.path == path
    assert "does not fit in 64 bits" in error.detail
    assert f"reads that text back as a {comes_back_as}" in error.detail
    # A kind of value snapshots cannot hold, not a validation that changes what it made.
    assert not error.by_validation
    assert "\n" not in str(error)


class Exact(BaseModel):
    int_first: list[int | float] = []
    with_decimal: list[int | decimal.Decimal] = []
    with_bytes: list[int | bytes] = []
    with_bool: list[bool | int] = []
    with_date: list[int | datetime.date] = []
    optional: int | None = None
    u64: list[int | str] = []
    tagged: list[Tagged] = []
    with_model: WithModel = WithModel()


def test_a_big_int_a_union_reads_back_as_itself_round_trips(round_trip: RoundTrip) -> None:
    """Unions whose lax validation gives the text back to the int member stay exact."""
    state = Exact(
        int_first=[BIG, -BIG, 1.5],
        with_decimal=[BIG, decimal.Decimal("1.5")],
        with_bytes=[BIG, b"x"],
        with_bool=[BIG, True],
        with_date=[BIG, datetime.date(2024, 5, 1)],
        optional=-BIG,
        u64=[2**64 - 1, -(2**63), "x"],  # within msgpack's range: no text at all
        tagged=[1, "a"],
        with_model=WithModel(with_str=["a", Leaf(n=BIG)], without=[Leaf(n=BIG), BIG]),
    )
    restored = round_trip(Exact, state)
    assert isinstance(restored, Exact)
    assert not exact_differences(state, restored)
    assert type(restored.int_first[0]) is int and restored.int_first[0] == BIG
    assert type(restored.optional) is int and restored.optional == -BIG


def test_small_ints_in_unions_are_unaffected(round_trip: RoundTrip) -> None:
    state = Keys(key=5, keys=[1, "1"], ratio=3, maybe=-2, by_name={"a": 2**64 - 1, "b": "c"})
    restored = round_trip(Keys, state)
    assert isinstance(restored, Keys)
    assert not exact_differences(state, restored)
    assert type(restored.ratio) is int


class Legacy(BaseModel):
    """Takes its field under an old name too, as a ``mode="before"`` validator does."""

    size: int
    hidden: str = Field(default="", exclude=True)
    when: int = 0

    @field_serializer("when")
    def _api_form(self, when: int) -> str:
        return f"t{when}"

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "old_size" in data:
            data = {**data, "size": data["old_size"]}
            del data["old_size"]
        return data


@pydantic.dataclasses.dataclass
class LegacyPair:
    left: int

    @model_validator(mode="before")
    @classmethod
    def _as_is(cls, data: Any) -> Any:
        return data


class LegacyHolder(BaseModel):
    one: Legacy
    many: list[Legacy] = []
    pairs: list[LegacyPair] = []


def test_a_big_int_in_a_record_with_a_before_validator_round_trips(
    round_trip: RoundTrip,
) -> None:
    """Before, a model or dataclass whose fields sit under a ``mode="before"`` validator
    was written by its values' own types (through pydantic's serializer): an int past
    64 bits in an int field was refused, a ``field_serializer``'s output was written
    (and refused validated back), an ``exclude=True`` field was left out."""
    state = LegacyHolder(
        one=Legacy(size=BIG, hidden="kept", when=3),
        many=[Legacy(size=-BIG), Legacy.model_validate({"old_size": ABOVE})],
        pairs=[LegacyPair(BIG), LegacyPair(BELOW)],
    )
    restored = round_trip(LegacyHolder, state)
    assert isinstance(restored, LegacyHolder)
    assert not exact_differences(state, restored)
    assert type(restored.one.size) is int and restored.one.size == BIG
    assert restored.one.hidden == "kept" and restored.one.when == 3
    assert restored.pairs[1].left == BELOW


class Bumped(BaseModel):
    size: int

    @model_validator(mode="before")
    @classmethod
    def _bump(cls, data: Any) -> Any:
        return {"size": int(data["size"]) + 1} if isinstance(data, dict) else data


def test_a_before_validator_is_still_checked_by_validating_back(round_trip: RoundTrip) -> None:
    """Its fields are read as declared, but what the validator makes of them is checked."""
    with pytest.raises(ExportError) as caught:
        round_trip(Bumped, Bumped(size=BIG))
    assert caught.value.path == "size" and caught.value.by_validation


class Huge(enum.IntEnum):
    SMALL = -1
    HUGE = 2**70


class Unsigned(enum.IntEnum):
    ONE = 1
    TOP = 2**63  # msgpack holds it, pydantic's int enums do not take it


class Mixed(enum.Enum):
    TOP = 2**64 - 1
    BOTTOM = -(2**63)


class Wide(enum.Enum):
    WIDE = 2**70
    NAME = "name"


class HugeField(BaseModel):
    size: Huge = Huge.SMALL


class HugeValues(BaseModel):
    model_config = ConfigDict(use_enum_values=True)

    size: Huge = Huge.SMALL


# 2**70 and 'x'; 2**64 - 1 and -(2**63); 2**64 - 1 (a Literal takes no expressions)
WideLiteral = Literal[1180591620717411303424, "x"]
MixedLiteral = Literal[18446744073709551615, -9223372036854775808]
TopLiteral = Literal[18446744073709551615]

UNRESTORABLE = [
    ("list", list[Huge], "[item]", "enum Huge has the member HUGE"),
    ("model-field", HugeField, "size", "enum Huge has the member HUGE"),
    ("use_enum_values", HugeValues, "size", "enum Huge has the member HUGE"),
    ("key", dict[Huge, int], "[key]", "enum Huge has the member HUGE"),
    ("optional", Huge | None, "(root)", "enum Huge has the member HUGE"),
    ("unsigned", dict[str, Unsigned], "[value]", "enum Unsigned has the member TOP"),
    ("plain-enum", list[Mixed], "[item]", "enum Mixed has the member TOP"),
    ("plain-enum-wide", Wide, "(root)", "enum Wide has the member WIDE"),
    ("literal", list[WideLiteral], "[item]", f"Literal value {2**70}"),
    ("literal-mixed", MixedLiteral, "(root)", f"Literal value {2**64 - 1}"),
]


@pytest.mark.parametrize(
    ("schema", "path", "what"),
    [case[1:] for case in UNRESTORABLE],
    ids=[case[0] for case in UNRESTORABLE],
)
def test_an_enum_or_literal_value_no_snapshot_brings_back_is_refused_at_registration(
    schema: object, path: str, what: str
) -> None:
    """Before, these registered: a snapshot holding the member was refused every time
    (past 64 bits), or committed and failed every restore (``Unsigned.TOP``,
    ``Mixed.TOP``: pydantic validates neither from the int a snapshot holds)."""
    with pytest.raises(RegistrationError) as caught:
        Registry().add_schema("thing", 1, schema)
    message = str(caught.value)
    assert f"field {path}: {what}" in message
    assert "outside signed 64 bits" in message and "\n" not in message


class Extremes(enum.IntEnum):
    TOP = 2**63 - 1
    BOTTOM = -(2**63)


class Alone(enum.IntEnum):
    TOP = 2**63  # alone in its enum, pydantic takes it


class Edges(BaseModel):
    ints: list[Extremes] = []
    by_int: dict[Extremes, Extremes] = {}
    alone: Alone = Alone.TOP
    literal: TopLiteral = 18446744073709551615


def test_enum_and_literal_values_validation_takes_back_still_round_trip(
    round_trip: RoundTrip,
) -> None:
    state = Edges(
        ints=[Extremes.TOP, Extremes.BOTTOM],
        by_int={Extremes.BOTTOM: Extremes.TOP},
        alone=Alone.TOP,
    )
    restored = round_trip(Edges, state)
    assert isinstance(restored, Edges)
    assert not exact_differences(state, restored)
    assert restored.ints == [Extremes.TOP, Extremes.BOTTOM] and restored.alone is Alone.TOP


class Count(BaseModel):
    n: int = 0
    counts: dict[str, int] = {}


@pytest.fixture
def unlimited_int_text() -> Iterator[None]:
    """Python turning ints of any length into text, as a service may set it."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("limit", ["python-default", "unlimited"])
def test_an_int_too_long_for_pydantic_to_parse_back_is_refused(
    round_trip: RoundTrip, request: pytest.FixtureRequest, limit: str
) -> None:
    """pydantic validates an int of any size, but parses at most 4,300 digits of text.
    Before, such an int raised a bare ValueError from Python's own limit on int-to-text
    conversion at snapshot, or, with that limit lifted, committed and failed every
    restore."""
    if limit == "unlimited":
        request.getfixturevalue("unlimited_int_text")
    longest = 10**4300 - 1  # 4,300 digits
    fits = Count(n=longest, counts={"neg": -longest})
    restored = round_trip(Count, fits)
    assert isinstance(restored, Count) and not exact_differences(fits, restored)
    with pytest.raises(ExportError) as caught:
        round_trip(Count, Count(counts={"a": 1, "b": -(10**4300)}))
    error = caught.value
    assert error.path == "counts['b']" and "more than 4300 digits" in error.detail
    assert not error.by_validation and "\n" not in str(error)


def test_equal_sets_holding_big_ints_export_alike() -> None:
    """A set's plain form is sorted, so equal sets give equal bytes; an int past 64 bits
    is text among ints, which do not sort together, and such a set was left in
    iteration order, which differs between two equal sets."""
    registry = Registry()
    registry.add_schema("s", 1, set[int])
    version = registry.schema_for("s", 1)
    items = [0, 7073, -(2**82), 61868]
    one, other = set(items), set(reversed(items))
    assert version.export(one, walk=True) == version.export(other, walk=True)
    assert version.export(one, walk=True) == [str(-(2**82)), 0, 7073, 61868]


class ByIntKey(BaseModel):
    by_int: dict[int, str] = {}


class Counted(TypedDict):
    n: int


TOO_LONG = 10**4301
TOO_LONG_POSITIONS = [
    ("bare", int, TOO_LONG, "(root)"),
    ("list", list[int], [1, TOO_LONG], "[1]"),
    ("dict-value", dict[str, int], {"a": 1, "b": TOO_LONG}, "['b']"),
    ("dict-key", dict[int, str], {1: "a", TOO_LONG: "b"}, "[<an int of 14288 bits>]"),
    ("model-key", ByIntKey, ByIntKey(by_int={TOO_LONG: "x"}), "by_int[<an int of 14288 bits>]"),
    ("typeddict", Counted, {"n": -TOO_LONG}, "n"),
    ("union", int | float, TOO_LONG, "(root)"),
]


@pytest.mark.parametrize(
    ("schema", "state", "path"),
    [case[1:] for case in TOO_LONG_POSITIONS],
    ids=[case[0] for case in TOO_LONG_POSITIONS],
)
def test_an_int_too_long_to_parse_back_is_refused_wherever_it_is(
    schema: object, state: object, path: str
) -> None:
    """An int of more than 4,300 digits is refused by the library, with its path, in
    every position, and nothing is committed. Before, a bare int, a list's item, a
    dict's value (a plain state goes to the packer as it is) and a dict key (its path
    rendered with repr) raised Python's own ValueError while the message was written."""
    registry = Registry()
    registry.add_schema("c", 1, schema)
    holder: type[Holder] = registry.migratable("c", version=1)(type("Holder", (Holder,), {}))
    service = Service("svc", registry=registry)
    service.register(holder(state))
    store = MemoryStore()
    with pytest.raises(ExportError) as caught:
        service.commit(store)
    assert caught.value.path == path
    assert "more than 4300 digits" in caught.value.detail
    assert store.commits == 0


class Tallies(BaseModel):
    ordered: collections.OrderedDict[str, int] = collections.OrderedDict()
    by_id: collections.OrderedDict[int, int] = collections.OrderedDict()
    counted: collections.Counter[str] = collections.Counter()


def test_big_ints_in_an_ordered_dict_or_a_counter_round_trip(round_trip: RoundTrip) -> None:
    """An ``OrderedDict`` or a ``Counter`` holds ints past 64 bits, as values and as
    keys, as a dict does. Before, both were converted by their values' own types,
    which refuse such an int (``does not fit in 64 bits``)."""
    state = Tallies(
        ordered=collections.OrderedDict([("z", BIG), ("a", 1), ("m", BELOW)]),
        by_id=collections.OrderedDict([(ABOVE, -BIG), (2, 3)]),
        counted=collections.Counter({"x": BIG, "y": -1}),
    )
    restored = round_trip(Tallies, state)
    assert isinstance(restored, Tallies) and not exact_differences(state, restored)
    assert list(restored.ordered) == ["z", "a", "m"]
    assert type(restored.counted) is collections.Counter


class Record(TypedDict):
    n: int


class Records(TypedDict):
    total: int
    recs: dict[str, Record]


@pytest.mark.parametrize("total", [1, ABOVE, BELOW], ids=["small", "above", "below"])
@pytest.mark.parametrize("n", ["5", 5.0], ids=["str", "float"])
def test_a_value_validation_converts_commits_whatever_other_fields_hold(
    round_trip: RoundTrip, total: int, n: object
) -> None:
    """A plain ``TypedDict`` state is written as it is, and ``"5"`` in an int field is
    restored as ``5``, as validation makes it. A big int elsewhere in the state has
    it walked instead, and the walk refused that value (``expected an int, found
    str``): it now keeps it as the state as it is keeps it."""
    restored = round_trip(Records, {"total": total, "recs": {"a": {"n": n}}})
    assert restored == {"total": total, "recs": {"a": {"n": 5}}}
    assert type(cast(Any, restored)["recs"]["a"]["n"]) is int


@pytest.mark.parametrize("total", [1, ABOVE], ids=["small", "above"])
def test_a_value_validation_refuses_is_refused_whatever_other_fields_hold(
    round_trip: RoundTrip, total: int
) -> None:
    """The walk keeps what validation would refuse as well, and the commit's check of
    the state refuses it, as without the big int."""
    with pytest.raises(ExportError) as caught:
        round_trip(Records, {"total": total, "recs": {"a": {"n": None}}})
    assert caught.value.path == "recs['a'].n"
