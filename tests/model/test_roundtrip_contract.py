"""The round-trip contract: every state that snapshots restores unchanged, else it is
refused early (at registration or at snapshot) with a line naming component, version and
path. One test per shape of schema that used to commit and then not restore, or restore
changed."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import ipaddress
import pathlib
import uuid
from typing import Annotated, Any, Generic, TypeVar

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field
from typing_extensions import TypedDict

from statemigrate import (
    ExportError,
    RegistrationError,
    Registry,
    Service,
    StateMigrateError,
)
from statemigrate._model._compare import first_difference

S = TypeVar("S")


class Holder(Generic[S]):
    """A component whose state is one schema value, exported and imported as it is."""

    def __init__(self, state: S | None = None) -> None:
        self.state = state

    def export_state(self) -> S | None:
        return self.state

    def import_state(self, state: S) -> None:
        self.state = state


def round_trip(schema: type[Any] | Any, state: object) -> object:
    """Register ``schema``, snapshot ``state`` and restore it into a fresh component."""
    registry = Registry()
    registry.schema("thing", version=1)(schema)

    @registry.migratable("thing", version=1)
    class Thing(Holder[Any]):
        pass

    writer = Service("svc", registry=registry)
    writer.register(Thing(state))
    encoded, _ = writer.snapshot()
    reader = Service("svc", registry=registry)
    restored = reader.register(Thing())
    reader.restore(encoded.to_bytes())
    assert isinstance(restored, Thing)
    return restored.state


def assert_same(expected: object, actual: object) -> None:
    difference = first_difference(expected, actual)
    assert difference is None, difference


def refusal(schema: type[Any] | Any, state: object) -> ExportError:
    with pytest.raises(ExportError) as caught:
        round_trip(schema, state)
    message = str(caught.value)
    assert "thing" in message and "version 1" in message and "\n" not in message
    return caught.value


# --- non-str dict keys in plain (TypedDict) state -------------------------------------


class IntKeys(TypedDict):
    by_id: dict[int, str]
    by_score: dict[float, int]
    by_flag: dict[bool, str]


def test_typeddict_with_int_float_and_bool_keys_round_trips() -> None:
    state = {"by_id": {1: "a", -7: "b"}, "by_score": {1.5: 1, -0.0: 2}, "by_flag": {True: "y"}}
    assert_same(state, round_trip(IntKeys, state))


class NoneKeys(TypedDict):
    by_nothing: dict[None, str]


class TupleKeys(TypedDict):
    grid: dict[tuple[int, int], str]


@pytest.mark.parametrize("schema", [NoneKeys, TupleKeys])
def test_keys_no_string_parses_back_into_are_refused_at_registration(schema: type) -> None:
    with pytest.raises(RegistrationError, match=r"thing.*version 1.*\[key\].*cannot be stored"):
        Registry().schema("thing", version=1)(schema)


class Cache(TypedDict):
    entries: dict[str, int]
    hits: int


def test_a_plain_typeddict_missing_a_required_field_is_refused_at_snapshot() -> None:
    """Written as it is, it would commit and then fail validation at every restore."""
    error = refusal(Cache, {"entries": {"a": 1}})
    assert error.path == "hits" and "missing" in str(error)


def test_a_plain_typeddict_key_that_is_no_field_is_refused_at_snapshot() -> None:
    """Written as it is, the restore would drop it without a word."""
    error = refusal(Cache, {"entries": {}, "hits": 0, "typo": 1})
    assert error.path == "['typo']"


class OpenCache(TypedDict):
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    hits: int


def test_a_plain_typeddict_that_allows_extra_keys_keeps_them() -> None:
    state = {"hits": 1, "note": "kept"}
    assert_same(state, round_trip(OpenCache, state))


def test_a_plain_typeddict_is_exported_without_a_copy() -> None:
    registry = Registry()

    @registry.schema("thing", version=1)
    class Plain(TypedDict):
        entries: dict[str, list[int]]

    state = {"entries": {"a": [1]}}
    assert registry.schema_for("thing", 1).export(state) is state


# --- aliases, exclusions, serializers and computed fields --------------------------------


class Aliased(BaseModel):
    user_id: int = Field(alias="userId")
    name: str = Field(validation_alias="Name", serialization_alias="NAME")


def test_aliased_fields_round_trip() -> None:
    state = Aliased(userId=5, Name="ann")
    assert_same(state, round_trip(Aliased, state))


class Excluded(BaseModel):
    token: str = Field(exclude=True)
    note: str | None = Field(default=None, exclude=True)


class Serialized(BaseModel):
    when: datetime.datetime
    cents: Annotated[int, PlainSerializer(lambda v: f"{v / 100:.2f} EUR")]

    @pydantic.field_serializer("when")
    def _when_as_epoch(self, value: datetime.datetime) -> float:
        return value.timestamp()


class Computed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int
    height: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def area(self) -> int:
        return self.width * self.height


@pytest.mark.parametrize(
    "state",
    [
        Excluded(token="t0k", note="n"),
        Serialized(when=datetime.datetime(2024, 1, 2, 3, 4, 5), cents=1234),
        Computed(width=2, height=3),
    ],
    ids=lambda state: type(state).__name__,
)
def test_customised_serialization_does_not_reach_the_snapshot(state: BaseModel) -> None:
    assert_same(state, round_trip(type(state), state))


class Client(BaseModel):
    """The shape of many published API models: extra="allow" and camelCase aliases."""

    model_config = ConfigDict(extra="allow")
    request_id: str = Field(alias="requestId")
    retry_after: int | None = Field(default=None, alias="retryAfter")


def test_extra_allow_keeps_aliased_fields_in_their_fields() -> None:
    state = Client(requestId="r1", retryAfter=30, region="eu")
    restored = round_trip(Client, state)
    assert_same(state, restored)
    assert isinstance(restored, Client)
    assert restored.retry_after == 30 and restored.__pydantic_extra__ == {"region": "eu"}


# --- subclasses, Any, secrets -------------------------------------------------------------


class Animal(BaseModel):
    name: str


class Dog(Animal):
    tricks: list[str]


class Kennel(BaseModel):
    resident: Animal


def test_a_subclass_where_its_base_is_declared_is_refused_at_snapshot() -> None:
    error = refusal(Kennel, Kennel(resident=Dog(name="rex", tricks=["sit"])))
    assert error.path == "resident"
    assert "Dog" in str(error) and "Animal" in str(error)


class Loose(BaseModel):
    extra: dict[str, Any]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"when": datetime.datetime(2024, 1, 1)}, "extra['when']"),
        ({"pair": (1, 2)}, "extra['pair']"),
        ({"deep": [{"id": uuid.UUID(int=1)}]}, "extra['deep'][0]['id']"),
    ],
)
def test_values_under_any_that_would_change_are_refused_at_snapshot(
    value: dict[str, Any], path: str
) -> None:
    error = refusal(Loose, Loose(extra=value))
    assert error.path == path


def test_plain_values_under_any_round_trip() -> None:
    state = Loose(extra={"a": [1, 2.5, None, True, b"x", {"b": "c"}]})
    assert_same(state, round_trip(Loose, state))


class Vault(BaseModel):
    password: pydantic.SecretStr
    key: pydantic.SecretBytes


def test_secrets_round_trip_with_their_values() -> None:
    state = Vault(password=pydantic.SecretStr("hunter2"), key=pydantic.SecretBytes(b"\x00k"))
    restored = round_trip(Vault, state)
    assert isinstance(restored, Vault)
    assert restored.password.get_secret_value() == "hunter2"
    assert restored.key.get_secret_value() == b"\x00k"


def test_restored_models_have_every_field_set() -> None:
    """Documented: the plain form carries every field, so all count as set."""
    state = Client(requestId="r1")
    assert state.model_fields_set == {"request_id"}
    restored = round_trip(Client, state)
    assert isinstance(restored, Client)
    assert restored.model_fields_set == {"request_id", "retry_after"}


# --- rich values in plain (TypedDict) and dataclass state ---------------------------------


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Nested(BaseModel):
    label: str


class Rich(TypedDict):
    when: datetime.datetime
    aware: datetime.datetime
    day: datetime.date
    at: datetime.time
    span: datetime.timedelta
    price: decimal.Decimal
    id: uuid.UUID
    where: pathlib.Path
    ip: ipaddress.IPv4Address
    net: ipaddress.IPv6Network
    tags: set[str]
    frozen: frozenset[int]
    recent: collections.deque[int]
    pair: tuple[int, str]
    color: Color
    level: Level
    by_color: dict[Color, int]
    by_level: dict[Level, str]
    by_day: dict[datetime.date, int]
    by_id: dict[uuid.UUID, int]
    point: Point
    nested: Nested
    huge: int


PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
RICH_STATE: dict[str, Any] = {
    "when": datetime.datetime(2024, 5, 1, 12, 30, 1, 250),
    "aware": datetime.datetime(2024, 5, 1, 12, tzinfo=PLUS_TWO),
    "day": datetime.date(2024, 5, 1),
    "at": datetime.time(7, 15, 0, 5),
    "span": datetime.timedelta(days=-1, microseconds=5),
    "price": decimal.Decimal("1.10"),
    "id": uuid.UUID(int=7),
    "where": pathlib.Path("/var/cache/x"),
    "ip": ipaddress.IPv4Address("10.0.0.1"),
    "net": ipaddress.IPv6Network("2001:db8::/32"),
    "tags": {"b", "a"},
    "frozen": frozenset({3, 1}),
    "recent": collections.deque([1, 2]),
    "pair": (1, "a"),
    "color": Color.RED,
    "level": Level.LOW,
    "by_color": {Color.RED: 1},
    "by_level": {Level.LOW: "low"},
    "by_day": {datetime.date(2024, 1, 1): 1},
    "by_id": {uuid.UUID(int=1): 2},
    "point": Point(1, 2),
    "nested": Nested(label="n"),
    "huge": 2**100,
}


def test_typeddict_with_rich_values_round_trips() -> None:
    assert_same(RICH_STATE, round_trip(Rich, RICH_STATE))


@dataclasses.dataclass
class Event:
    when: datetime.datetime
    amount: decimal.Decimal
    seen: set[uuid.UUID]
    count: int


def test_dataclass_with_rich_values_round_trips() -> None:
    when = datetime.datetime(2024, 1, 1)
    state = Event(when, decimal.Decimal("-0.5"), {uuid.UUID(int=3)}, -(2**80))
    assert_same(state, round_trip(Event, state))


def test_a_big_int_in_plain_state_round_trips() -> None:
    class Counters(TypedDict):
        counts: dict[str, int]

    state = {"counts": {"small": 1, "big": 2**64, "negative": -(2**63) - 1}}
    assert_same(state, round_trip(Counters, state))


class Files(TypedDict):
    names: dict[str, str]


def test_a_lone_surrogate_is_refused_at_snapshot_with_its_path() -> None:
    error = refusal(Files, {"names": {"ok": "a", "bad": "caf\udce9"}})
    assert error.path == "names['bad']"
    assert "lone surrogate" in str(error)


def test_a_lone_surrogate_in_a_model_is_refused_at_snapshot_with_its_path() -> None:
    error = refusal(Nested, Nested(label="\udc80"))
    assert error.path == "label"


def test_a_value_of_the_wrong_type_in_plain_state_is_refused_with_its_path() -> None:
    error = refusal(Files, {"names": {"a": datetime.datetime(2024, 1, 1)}})
    assert error.path == "names['a']"


# --- validators and private state ---------------------------------------------------------


class Shouting(BaseModel):
    word: str

    @pydantic.field_validator("word")
    @classmethod
    def _louder(cls, value: str) -> str:
        return value + "!"


class Idempotent(BaseModel):
    word: str

    @pydantic.field_validator("word")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Private(BaseModel):
    name: str
    _hits: int = pydantic.PrivateAttr(default=0)


def test_a_validator_that_changes_its_value_each_time_is_refused_at_snapshot() -> None:
    error = refusal(Shouting, Shouting(word="hi"))
    assert error.path == "word"


def test_an_idempotent_validator_round_trips() -> None:
    state = Idempotent(word="hi")
    assert_same(state, round_trip(Idempotent, state))


def test_private_state_that_would_be_lost_is_refused_at_snapshot() -> None:
    state = Private(name="n")
    state._hits = 3
    error = refusal(Private, state)
    assert "private" in error.path


# --- registration -------------------------------------------------------------------------


# A model builds its validator when its class is made, so pydantic itself refuses these
# there; a TypedDict or a dataclass is built only when it registers.
class BadPattern(TypedDict):
    code: Annotated[str, Field(pattern="([a-z")]


@dataclasses.dataclass
class HugeBound:
    ratio: Annotated[float, Field(lt=10**400)]


@pytest.mark.parametrize("schema", [BadPattern, HugeBound], ids=lambda s: s.__name__)
def test_schemas_pydantic_cannot_build_are_refused_at_registration(schema: type) -> None:
    with pytest.raises(RegistrationError) as caught:
        Registry().schema("thing", version=1)(schema)
    assert "thing" in str(caught.value) and "\n" not in str(caught.value)


class Opaque:
    pass


class Arbitrary(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


def test_an_instance_only_type_is_refused_at_registration_with_its_field() -> None:
    with pytest.raises(RegistrationError, match=r"thing.*Opaque.*no plain form"):
        Registry().schema("thing", version=1)(Arbitrary)


def test_every_refusal_is_a_statemigrate_error() -> None:
    assert issubclass(ExportError, StateMigrateError) and issubclass(ExportError, ValueError)


def test_fingerprint_covers_what_json_schema_shows_and_not_default_factories() -> None:
    """Documented scope of the fingerprint: plain defaults count, factories do not."""
    registry = Registry()

    @registry.schema("a", version=1)
    class A1(BaseModel):
        n: int = 1

    @registry.schema("a", version=2)
    class A2(BaseModel):
        n: int = 2

    @registry.schema("a", version=3)
    class A3(BaseModel):
        n: int = Field(default_factory=lambda: 3)

    @registry.schema("a", version=4)
    class A4(BaseModel):
        n: int = Field(default_factory=lambda: 4)

    fingerprints = [registry.schema_for("a", v).fingerprint for v in (1, 2, 3, 4)]
    assert fingerprints[0] != fingerprints[1]
    assert fingerprints[2] == fingerprints[3]
