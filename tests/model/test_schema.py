"""Schema versions: fingerprints, canonical JSON Schema, validation, and export round trips."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import os
import subprocess
import sys
import textwrap
import typing
import uuid
from typing import Annotated, Any, Literal, NotRequired

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from statemigrate._errors import RegistrationError, ValidationError
from statemigrate._model._fingerprint import canonical_json_schema
from statemigrate._model._plaindata import is_plain
from statemigrate._model._schema import SchemaVersion

# --- fingerprints -------------------------------------------------------------------------

# Defined as source text so the very same definitions can run in a child process.
SOURCE = textwrap.dedent(
    """
    import enum
    from typing import Literal
    from pydantic import BaseModel, Field
    from typing_extensions import TypedDict
    from statemigrate._model._schema import SchemaVersion

    class Mode(enum.Enum):
        A = "a"
        B = "b"

    class Entry(TypedDict):
        value: str
        ttl: float | None

    class Sessions(BaseModel):
        entries: dict[str, Entry]
        modes: set[Mode]
        kind: Literal["x", "y", "z"] = "x"
        tags: frozenset[str] = Field(default=frozenset(), description="free-form tags")

    FINGERPRINTS = [
        SchemaVersion.create("sessions", 1, Sessions).fingerprint,
        SchemaVersion.create("entry", 1, Entry).fingerprint,
        SchemaVersion.create("plain", 1, dict[str, list[int]]).fingerprint,
    ]
    """
)


def fingerprints_here() -> list[str]:
    namespace: dict[str, Any] = {}
    # dont_inherit: the source must not pick up this module's postponed annotations.
    code = compile(SOURCE, "<schemas>", "exec", dont_inherit=True)
    exec(code, namespace)
    return list(namespace["FINGERPRINTS"])


@pytest.mark.slow
def test_fingerprint_is_the_same_in_another_process() -> None:
    script = SOURCE + "\nprint(' '.join(FINGERPRINTS))\n"
    child_env = {**os.environ, "PYTHONHASHSEED": "12345"}  # different set/str hashing
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env,
        check=True,
    )
    assert result.stdout.split() == fingerprints_here()


def test_fingerprint_format() -> None:
    for value in fingerprints_here():
        assert len(value) == 32 and int(value, 16) >= 0


def fp(type_: object) -> str:
    return SchemaVersion.create("c", 1, type_).fingerprint


class Base(BaseModel):
    name: str
    count: int
    tags: list[str] = []


def test_fingerprint_changes_with_the_shape() -> None:
    class FieldRetyped(BaseModel):
        name: str
        count: float
        tags: list[str] = []

    class FieldAdded(BaseModel):
        name: str
        count: int
        tags: list[str] = []
        extra: int = 0

    class FieldRenamed(BaseModel):
        name: str
        total: int
        tags: list[str] = []

    class NowOptional(BaseModel):
        name: str
        count: int | None
        tags: list[str] = []

    class DefaultChanged(BaseModel):
        name: str
        count: int
        tags: list[str] = ["x"]

    variants: list[type[BaseModel]] = [
        Base, FieldRetyped, FieldAdded, FieldRenamed, NowOptional, DefaultChanged
    ]
    assert len({fp(v) for v in variants}) == len(variants)


def test_fingerprint_ignores_cosmetic_changes() -> None:
    class Renamed(BaseModel):
        """A docstring becomes a JSON Schema description; it is cosmetic."""

        model_config = pydantic.ConfigDict(title="Another title")
        count: int = Field(description="how many", title="Count!", examples=[3])
        name: str  # declared in another order
        tags: list[str] = []

    assert fp(Renamed) == fp(Base)


class InnerA(TypedDict):
    value: str


class OuterA(TypedDict):
    entries: dict[str, InnerA]


class InnerB(TypedDict):
    value: str


class OuterB(TypedDict):
    entries: dict[str, InnerB]


class InnerC(TypedDict):
    value: bytes


class OuterC(TypedDict):
    entries: dict[str, InnerC]


def test_fingerprint_ignores_nested_class_names() -> None:
    Outer, Cache, Other = OuterA, OuterB, OuterC
    assert fp(Outer) == fp(Cache)
    assert fp(Other) != fp(Cache)


def test_a_field_called_title_is_not_cosmetic() -> None:
    class WithTitle(TypedDict):
        title: str
        body: str

    class WithoutTitle(TypedDict):
        body: str

    schema = SchemaVersion.create("doc", 1, WithTitle).json_schema()
    assert set(schema["properties"]) == {"title", "body"}
    assert sorted(schema["required"]) == ["body", "title"]
    assert "title" not in schema and "title" not in schema["properties"]["title"]
    assert fp(WithTitle) != fp(WithoutTitle)


def test_title_inside_a_default_value_is_kept() -> None:
    raw = {
        "type": "object",
        "title": "X",
        "properties": {"meta": {"title": "Meta", "default": {"title": "kept"}}},
    }
    assert canonical_json_schema(raw) == {
        "type": "object",
        "properties": {"meta": {"default": {"title": "kept"}}},
    }


def test_recursive_schema_is_canonical() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = []

    class Tree(BaseModel):
        label: str
        children: list[Tree] = []

    schema = SchemaVersion.create("tree", 1, Node).json_schema()
    assert set(schema["$defs"]) == {"d0"}
    assert fp(Node) == fp(Tree)


def test_discriminator_mapping_follows_renamed_definitions() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        good: bool

    class Pets(BaseModel):
        pet: Cat | Dog = Field(discriminator="kind")

    schema = SchemaVersion.create("pets", 1, Pets).json_schema()
    mapping = schema["properties"]["pet"]["discriminator"]["mapping"]
    assert set(mapping.values()) <= {f"#/$defs/{name}" for name in schema["$defs"]}


# --- registration-time checks -------------------------------------------------------------


class TypingPlain(typing.TypedDict):
    x: int


class TypingHolder(TypedDict):
    inner: TypingPlain


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic accepts it from 3.12 on")
def test_typing_typeddict_is_refused_with_a_hint() -> None:
    """Both at the top level and nested inside a typing_extensions TypedDict."""
    for type_ in (TypingPlain, TypingHolder):
        with pytest.raises(RegistrationError, match="typing_extensions.TypedDict"):
            SchemaVersion.create("c", 1, type_)


def test_locally_defined_nested_type_gets_a_hint() -> None:
    class Local(TypedDict):
        value: str

    class Holder(TypedDict):
        entries: dict[str, Local]

    with pytest.raises(RegistrationError, match="at module level"):
        SchemaVersion.create("c", 1, Holder)


def test_type_pydantic_cannot_use_is_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(RegistrationError, match="pydantic cannot use") as info:
        SchemaVersion.create("c", 1, Opaque)
    assert isinstance(info.value.__cause__, pydantic.PydanticSchemaGenerationError)


def test_kinds_and_fields() -> None:
    class TD(TypedDict):
        a: int
        b: NotRequired[str]

    @dataclasses.dataclass
    class DC:
        x: int
        y: int = 0

    assert (SchemaVersion.create("c", 1, TD).kind, SchemaVersion.create("c", 1, TD).fields) == (
        "typeddict",
        ("a", "b"),
    )
    assert SchemaVersion.create("c", 1, TD).required_fields == {"a"}
    model = SchemaVersion.create("c", 1, Base)
    assert (model.kind, model.fields, model.required_fields) == (
        "model",
        ("name", "count", "tags"),
        frozenset({"name", "count"}),
    )
    dc = SchemaVersion.create("c", 1, DC)
    assert (dc.kind, dc.fields, dc.required_fields) == ("dataclass", ("x", "y"), frozenset({"x"}))
    other = SchemaVersion.create("c", 1, dict[str, int])
    assert (other.kind, other.fields) == ("other", ())
    assert str(model) == "c version 1"


# --- validation ---------------------------------------------------------------------------


def test_validation_error_is_ours_and_chained() -> None:
    schema = SchemaVersion.create("sessions", 2, Base)
    with pytest.raises(ValidationError) as info:
        schema.validate({"name": "n", "count": "many", "tags": [1]})
    err = info.value
    assert isinstance(err.__cause__, pydantic.ValidationError)
    assert (err.component, err.version) == ("sessions", 2)
    assert [e["loc"] for e in err.errors] == [("count",), ("tags", 0)]
    assert all("input" not in e for e in err.errors)  # never a copy of a whole cache
    assert str(err).startswith("sessions does not fit schema version 2: count:")


class Stock(TypedDict):
    quantity: Annotated[int, Field(ge=0)]


class Inventory(TypedDict):
    items: dict[str, Stock]
    users: dict[int, dict[str, bool]]


def test_validation_errors_name_paths_in_the_one_form() -> None:
    """Before, pydantic's location was joined with dots: the key '' read
    ``items..quantity``, a key ``items.SKU-00000.quantity``, an int key's own error
    ``users..[key]``. Now as every other message: keys in brackets, fields dotted."""
    schema = SchemaVersion.create("inventory", 5, Inventory)
    data = {
        "items": {"": {"quantity": -1}, "SKU-00000": {"quantity": -1}},
        "users": {"x": {}},
    }
    with pytest.raises(ValidationError) as info:
        schema.validate(data)
    assert str(info.value) == (
        "inventory does not fit schema version 5:"
        " items[''].quantity: Input should be greater than or equal to 0;"
        " items['SKU-00000'].quantity: Input should be greater than or equal to 0;"
        " users key 'x': Input should be a valid integer, unable to parse string as an integer"
    )
    top = SchemaVersion.create("c", 1, dict[int, int])
    with pytest.raises(ValidationError) as info:
        top.validate({"a": 1})
    assert str(info.value).startswith("c does not fit schema version 1: (root) key 'a': ")


def test_validation_summary_counts_the_rest() -> None:
    schema = SchemaVersion.create("c", 1, dict[str, int])
    with pytest.raises(ValidationError, match="and 2 more errors"):
        schema.validate({k: "x" for k in "abcde"})


# --- export round trips -------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Inner(BaseModel):
    when: datetime.datetime
    day: datetime.date
    tags: set[str]


class Rich(BaseModel):
    id: uuid.UUID
    color: Color
    level: Level
    price: decimal.Decimal
    span: datetime.timedelta
    raw: bytes
    pair: tuple[int, str]
    by_number: dict[int, float]
    inner: Inner
    history: list[Inner] = []
    note: str | None = None


utc_datetimes = st.datetimes(timezones=st.sampled_from([datetime.UTC, None]))
inners = st.builds(
    Inner, when=utc_datetimes, day=st.dates(), tags=st.sets(st.text(max_size=5), max_size=4)
)
rich_models = st.builds(
    Rich,
    id=st.uuids(),
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    price=st.decimals(allow_nan=False, allow_infinity=False, places=3),
    span=st.timedeltas(),
    raw=st.binary(max_size=16),
    pair=st.tuples(st.integers(-(2**63), 2**63), st.text(max_size=5)),
    by_number=st.dictionaries(st.integers(-1000, 1000), st.floats(allow_nan=False), max_size=4),
    inner=inners,
    history=st.lists(inners, max_size=2),
    note=st.none() | st.text(max_size=8),
)
RICH = SchemaVersion.create("rich", 1, Rich)


@given(rich_models)
def test_model_export_round_trips(model: Rich) -> None:
    """Property: export gives plain data, and validating it gives the model back."""
    data = RICH.export(model)
    assert is_plain(data)
    assert RICH.validate(data) == model


def test_model_export_shapes() -> None:
    model = Rich(
        id=uuid.UUID(int=1),
        color=Color.GREEN,
        level=Level.HIGH,
        price=decimal.Decimal("1.50"),
        span=datetime.timedelta(seconds=90),
        raw=b"\xff\x00",
        pair=(1, "a"),
        by_number={3: 0.5},
        inner=Inner(
            when=datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
            day=datetime.date(2024, 5, 1),
            tags={"b", "a", "c"},
        ),
    )
    data = RICH.export(model)
    assert data["id"] == "00000000-0000-0000-0000-000000000001"
    assert (data["color"], data["level"], data["price"]) == ("green", 2, "1.50")
    assert type(data["level"]) is int
    assert data["raw"] == b"\xff\x00"
    assert data["pair"] == [1, "a"]
    assert data["by_number"] == {"3": 0.5}
    assert data["inner"] == {
        "when": "2024-05-01T12:00:00Z",
        "day": "2024-05-01",
        "tags": ["a", "b", "c"],
    }


class EntryTD(TypedDict):
    value: str
    ttl: float | None


class CacheTD(TypedDict):
    entries: dict[str, EntryTD]
    note: NotRequired[str]


CACHE = SchemaVersion.create("cache", 1, CacheTD)
cache_states = st.fixed_dictionaries(
    {
        "entries": st.dictionaries(
            st.text(max_size=8),
            st.fixed_dictionaries(
                {"value": st.text(max_size=8), "ttl": st.none() | st.floats(allow_nan=False)}
            ),
            max_size=8,
        )
    },
    optional={"note": st.text(max_size=8)},
)


@given(cache_states)
def test_typeddict_export_is_the_state_itself(state: dict[str, Any]) -> None:
    """Property: a TypedDict state exports as itself (no copy) and validates back equal."""
    assert CACHE.export(state) is state
    assert CACHE.validate(CACHE.export(state)) == state


@dataclasses.dataclass
class Point:
    x: int
    y: float
    at: datetime.date
    labels: frozenset[str] = frozenset()


POINT = SchemaVersion.create("point", 1, Point)


@given(
    st.builds(
        Point,
        x=st.integers(-(2**63), 2**63),
        y=st.floats(allow_nan=False),
        at=st.dates(),
        labels=st.frozensets(st.text(max_size=4), max_size=3),
    )
)
def test_dataclass_export_round_trips(point: Point) -> None:
    """Property: a dataclass state exports to plain data that validates back equal."""
    data = POINT.export(point)
    assert is_plain(data)
    assert POINT.validate(data) == point


def test_bare_type_export_is_plain() -> None:
    numbers = SchemaVersion.create("numbers", 1, dict[int, tuple[str, datetime.date]])
    state = {1: ("a", datetime.date(2020, 1, 2))}
    data = numbers.export(state)
    assert data == {"1": ["a", "2020-01-02"]} and is_plain(data)
    assert numbers.validate(data) == state


def test_model_dict_form_is_converted() -> None:
    day = datetime.date(2020, 1, 2)
    data = POINT.export({"x": 1, "y": 2.0, "at": day, "labels": frozenset({"b", "a"})})
    assert data == {"x": 1, "y": 2.0, "at": "2020-01-02", "labels": ["a", "b"]}


def test_export_of_a_foreign_object_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="cannot export"):
        RICH.export(Point(1, 2.0, datetime.date(2020, 1, 1)))


class DecimalBound(TypedDict):
    low: Annotated[float, Field(gt=decimal.Decimal("0.5"))]


def test_a_decimal_bound_registers_and_counts_in_the_fingerprint() -> None:
    schema = SchemaVersion.create("bounded", 1, DecimalBound)
    assert schema.validate({"low": 1.0}) == {"low": 1.0}
    with pytest.raises(ValidationError):
        schema.validate({"low": 0.5})
    assert schema.fingerprint != SchemaVersion.create("bounded", 1, DecimalBoundOther).fingerprint


class DecimalBoundOther(TypedDict):
    low: Annotated[float, Field(gt=decimal.Decimal("0.25"))]
