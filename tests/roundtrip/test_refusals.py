"""Values that cannot come back as they are: refused at commit with one line naming the
component, the version and the field, never committed to restore changed or not at all."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import pathlib
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict

from statemigrate import ExportError, MemoryStore, RegistrationError, Registry, Service

RoundTrip = Callable[[object, object], object]  # the round_trip fixture

SECONDS_OFFSET = datetime.timezone(datetime.timedelta(minutes=5, seconds=37))


class Stamps(BaseModel):
    at: datetime.datetime | None = None
    daily: datetime.time | None = None
    by_time: dict[datetime.datetime, int] = {}


class Moment(datetime.datetime):
    pass


class Day(datetime.date):
    pass


class Span(datetime.timedelta):
    pass


class Tag(uuid.UUID):
    pass


class Blob(bytes):
    pass


class Leaves(BaseModel):
    at: datetime.datetime | None = None
    day: datetime.date | None = None
    span: datetime.timedelta | None = None
    tag: uuid.UUID | None = None
    blob: bytes | None = None


def refused(round_trip: RoundTrip, state: BaseModel) -> ExportError:
    with pytest.raises(ExportError) as caught:
        round_trip(type(state), state)
    message = str(caught.value)
    assert "thing version 1" in message and "\n" not in message
    return caught.value


@pytest.mark.parametrize(
    ("state", "path"),
    [
        (Stamps(at=datetime.datetime(2024, 5, 1, 12, tzinfo=SECONDS_OFFSET)), "at"),
        (Stamps(daily=datetime.time(7, 30, tzinfo=SECONDS_OFFSET)), "daily"),
        (Stamps(by_time={datetime.datetime(2024, 5, 1, tzinfo=SECONDS_OFFSET): 1}), "by_time"),
    ],
    ids=["datetime", "time", "datetime-key"],
)
def test_a_utc_offset_with_seconds_is_refused(
    round_trip: RoundTrip, state: Stamps, path: str
) -> None:
    """ISO 8601 text holds an offset's hours and minutes: the seconds came back as +00:00."""
    error = refused(round_trip, state)
    assert error.path.startswith(path) and "0:05:37" in str(error)


def test_a_whole_minute_offset_still_round_trips(round_trip: RoundTrip) -> None:
    offset = datetime.timezone(-datetime.timedelta(hours=23, minutes=59))
    at = datetime.datetime(2024, 5, 1, tzinfo=offset)
    restored = round_trip(Stamps, Stamps(at=at))
    assert isinstance(restored, Stamps) and restored.at == at
    assert restored.at is not None and restored.at.utcoffset() == at.utcoffset()


@pytest.mark.parametrize(
    ("state", "path", "base"),
    [
        (Leaves(at=Moment(2024, 5, 1)), "at", "datetime"),
        (Leaves(day=Day(2024, 5, 1)), "day", "date"),
        (Leaves(span=Span(seconds=3)), "span", "timedelta"),
        (Leaves(tag=Tag(int=7)), "tag", "UUID"),
        (Leaves(blob=Blob(b"x")), "blob", "bytes"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_subclass_pydantic_keeps_is_refused(
    round_trip: RoundTrip, state: Leaves, path: str, base: str
) -> None:
    """pydantic keeps these subclass instances as given; their text came back as the base."""
    assert type(getattr(state, path)).__name__ != base  # pydantic kept the subclass
    error = refused(round_trip, state)
    assert error.path == path and f"subclass of {base}" in str(error)


class Plain(enum.Enum):
    ONE = 1
    TWO = 2


class Mixed(enum.Enum):
    ONE = 1
    BLUE = "blue"


class Perm(enum.IntFlag):
    R = 4
    W = 2


@pytest.mark.parametrize("key", [Plain, Mixed], ids=lambda key: key.__name__)
def test_keys_of_an_enum_whose_int_values_text_does_not_parse_back_are_refused(
    key: type[enum.Enum],
) -> None:
    """Lax validation matches a plain Enum's values as they are: the key "1" is no member.
    Before, such a dict committed and every restore failed."""
    with pytest.raises(RegistrationError) as caught:
        Registry().add_schema("thing", 1, dict[key, int])  # type: ignore[valid-type]
    message = str(caught.value)
    assert f"enum {key.__qualname__}" in message and "IntEnum" in message
    assert "\n" not in message


def test_a_combination_of_flags_as_a_key_is_refused(round_trip: RoundTrip) -> None:
    """Validation takes the members of a flag as keys, not their combinations."""
    with pytest.raises(ExportError) as caught:
        round_trip(dict[Perm, int], {Perm.R: 1, Perm.R | Perm.W: 2})
    assert "not a member of Perm" in str(caught.value)
    assert round_trip(dict[Perm, int], {Perm.R: 1, Perm.W: 2}) == {Perm.R: 1, Perm.W: 2}


class Buffers(TypedDict):
    data: bytearray


def test_a_type_pydantic_has_no_schema_for_is_refused_in_one_line() -> None:
    """pydantic's message for bytearray runs over several paragraphs of advice."""
    with pytest.raises(RegistrationError) as caught:
        Registry().add_schema("thing", 1, Buffers)
    message = str(caught.value)
    assert "\n" not in message and "bytearray" in message and "version 1" in message


Shouted = Annotated[str, AfterValidator(lambda text: text + "!")]


class ShoutedKeys(BaseModel):
    by_name: dict[Shouted, int] = {}


class ShoutedRow(TypedDict):
    name: Shouted


class ShoutedKeysRow(TypedDict):
    by_name: dict[Shouted, int]


@pytest.mark.parametrize(
    ("schema", "state", "path"),
    [
        (ShoutedKeys, ShoutedKeys(by_name={"a": 1}), "by_name['a!']"),
        # A TypedDict's fields as in every other path (before: ['name'], ['by_name']).
        (ShoutedRow, TypeAdapter(ShoutedRow).validate_python({"name": "a"}), "name"),
        (
            ShoutedKeysRow,
            TypeAdapter(ShoutedKeysRow).validate_python({"by_name": {"a": 1}}),
            "by_name['a!']",
        ),
    ],
    ids=["model-key", "typeddict-value", "typeddict-key"],
)
def test_a_validator_that_is_not_idempotent_is_caught_in_keys_and_typeddicts(
    round_trip: RoundTrip, schema: object, state: object, path: str
) -> None:
    """Before, a dict key's validator and a plain TypedDict's validators were never
    checked: the state committed and came back as 'a!!'."""
    with pytest.raises(ExportError) as caught:
        round_trip(schema, state)
    assert caught.value.path == path and "\n" not in str(caught.value)


def test_a_time_whose_zone_gives_it_no_offset_is_refused(round_trip: RoundTrip) -> None:
    """A ZoneInfo gives a time of day no UTC offset: before, it came back naive."""
    zone = zoneinfo.ZoneInfo("America/New_York")
    error = refused(round_trip, Stamps(daily=datetime.time(7, 30, tzinfo=zone)))
    assert error.path == "daily" and "no UTC offset" in str(error)
    with_offset = Stamps(daily=datetime.time(7, 30, tzinfo=datetime.UTC))
    restored = round_trip(Stamps, with_offset)
    assert isinstance(restored, Stamps) and restored.daily is not None
    assert restored.daily.utcoffset() == datetime.timedelta(0)


class Color(enum.StrEnum):
    RED = "red"


class AnyKeys(BaseModel):
    labels: dict  # type: ignore[type-arg]  # keys and values typed Any


def test_keys_typed_any_come_back_as_they_are_str_and_bytes(round_trip: RoundTrip) -> None:
    state = AnyKeys(labels={"a": 1, b"\xff raw": 2})
    restored = round_trip(AnyKeys, state)
    assert isinstance(restored, AnyKeys)
    assert restored.labels == {"a": 1, b"\xff raw": 2}
    assert [type(key) for key in restored.labels] == [str, bytes]


@pytest.mark.parametrize(
    ("key", "kind"), [(Color.RED, "Color"), (7, "int"), (datetime.date(2024, 1, 2), "date")]
)
def test_a_key_typed_any_that_would_come_back_as_another_key_is_refused(
    round_trip: RoundTrip, key: object, kind: str
) -> None:
    """A key typed ``Any`` is validated back as the snapshot holds it: one written as
    its text (a StrEnum member as "red") would come back as another key."""
    with pytest.raises(ExportError) as caught:
        round_trip(AnyKeys, AnyKeys(labels={key: 1}))
    assert f"expected a str or bytes key, found {kind}" in str(caught.value)


class Card(BaseModel):
    last4: str


@dataclasses.dataclass
class Point:
    x: int


class Wallet(BaseModel):
    card: Card | None = None
    cards: list[Card] = []
    by_name: dict[str, Card] = {}
    points: tuple[Point, ...] = ()
    color: Plain | None = None
    home: pathlib.Path | None = None
    count: int = 0


def wallet_component(**fields: object) -> tuple[Service, object]:
    """A component without export_state holding ``fields`` as its attributes."""
    registry = Registry()
    registry.add_schema("wallet", 1, Wallet)

    @registry.migratable("wallet", version=1)
    class Holder:
        def __init__(self) -> None:
            for name, field in Wallet.model_fields.items():
                setattr(self, name, field.default)
            for name, value in fields.items():
                setattr(self, name, value)

    service = Service("app", registry=registry)
    return service, service.register(Holder())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"card": {"last4": "1234"}}, "at card: expected Card, found dict"),
        ({"cards": [Card(last4="1"), {"last4": "2"}]}, "at cards[1]: expected Card, found dict"),
        ({"by_name": {"a": {"last4": "1"}}}, "at by_name['a']: expected Card, found dict"),
        ({"points": ({"x": 1},)}, "at points[0]: expected Point, found dict"),
        ({"color": 1}, "at color: expected a Plain member, found int"),
        ({"home": "/srv"}, "at home: expected a path, found str"),
    ],
    ids=["model", "model in a list", "model in a dict", "dataclass in a tuple", "enum", "path"],
)
def test_a_field_holding_another_kind_than_its_model_enum_or_path_is_refused(
    fields: dict[str, object], message: str
) -> None:
    """A component's attribute holding a dict where a model is declared would come back
    as the model: code that read it as a dict fails after the restore. Refused, like a
    value a model instance holds, wherever it is nested."""
    service, _ = wallet_component(**fields)
    store = MemoryStore()
    with pytest.raises(ExportError, match="cannot be snapshotted") as refused:
        service.commit(store)
    assert str(refused.value).endswith(message)
    assert store.commits == 0


def test_fields_of_their_declared_kinds_and_scalars_validation_converts_are_committed() -> None:
    held = {"cards": [Card(last4="1")], "color": Plain.ONE, "home": pathlib.Path("/srv"),
            "count": "5"}
    service, _ = wallet_component(**held)
    committed = service.commit(MemoryStore())
    restorer, holder = wallet_component()
    restorer.restore(committed.ref)
    assert vars(holder) == {**vars(wallet_component(**held)[1]), "count": 5}


class Dated(TypedDict):
    n: int
    at: datetime.date


class Strict(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    n: int
    at: datetime.date


class DatedByKey(TypedDict):
    recs: dict[str, Dated]


class StrictList(TypedDict):
    recs: list[Strict]


DAY = datetime.date(2026, 1, 1)


@pytest.mark.parametrize(
    ("schema", "state", "message"),
    [
        (Dated, {"n": 1, "at": DAY, "note": "x"},
         "at ['note']: validation drops this key: it is not a field of its record"),
        (DatedByKey, {"recs": {"k": {"n": 1, "at": DAY, "note": "x"}}},
         "at recs['k']['note']: validation drops this key: it is not a field of its record"),
        (StrictList, {"recs": [{"n": 1, "at": DAY}, {"n": 2, "at": DAY, "note": "x"}]},
         "at recs[1]['note']: this key is not a field of its record, which forbids others:"
         " validation refuses it"),
    ],
    ids=["top level", "in a dict", "forbidding others, in a list"],
)
@pytest.mark.parametrize("how", ["snapshot", "commit"])
def test_a_key_that_is_not_a_field_of_a_typeddict_read_field_by_field_is_refused(
    schema: type, state: dict[str, object], message: str, how: str
) -> None:
    """A TypedDict with a field that is not plain (a date) is read field by field: a
    key that is not a field used to be left behind without a word, and the restore
    gave the record without it."""
    registry = Registry()
    registry.add_schema("dated", 1, schema)

    @registry.migratable("dated", version=1)
    class Holder:
        def export_state(self) -> object:
            return state

        def import_state(self, restored: object) -> None:
            raise AssertionError("nothing is restored")

    service = Service("app", registry=registry)
    service.register(Holder())
    with pytest.raises(ExportError) as refused:
        service.snapshot() if how == "snapshot" else service.commit(MemoryStore())
    assert str(refused.value).endswith(message)
