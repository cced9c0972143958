"""Defaults in generated steps: the plain form a snapshot would hold, read from the type
(not pydantic's serialized JSON Schema default), a TODO where there is none, and modules
that load and upgrade to exactly the field's default."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    computed_field,
    create_model,
    field_serializer,
    model_serializer,
)
from pydantic.json_schema import PydanticJsonSchemaWarning
from stub_helpers import evolve
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._errors import ExportError, MigrationCheckError
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.evolution._fielddefaults import field_default
from statemigrate.evolution._makemigration import MigrationStub
from statemigrate.testing import check_migrations, plain_data
from statemigrate.testing._anyvalues import rich_values
from statemigrate.testing._exact import exact_differences


def upgraded(registry: Registry, component: str, state: Any) -> Any:
    """``state`` of version 1 committed and restored by a service that runs version 2."""

    class Holder:
        def __init__(self, state: Any = None) -> None:
            self.state = state

        def export_state(self) -> Any:
            return self.state

        def import_state(self, state: Any) -> None:
            self.state = state

    old: Any = registry.migratable(component, version=1)(type("Old", (Holder,), {}))
    new: Any = registry.migratable(component, version=2)(type("New", (Holder,), {}))
    writer = sm.Service("svc", registry=registry)
    writer.register(old(state))
    reader = sm.Service("svc", registry=registry)
    restored = reader.register(new())
    reader.restore(writer.commit(sm.MemoryStore()))
    return restored.state


def loaded(registry: Registry, tmp_path: Path) -> Registry:
    registry.load_migrations(tmp_path / "migrations")
    return registry


@contextmanager
def json_schema_warnings_ignored() -> Iterator[None]:
    """pydantic warns when a default has no JSON form (bytes that are not UTF-8) and
    leaves it out of the JSON Schema; the type still has it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        yield


# --- serializers never reach a default ---------------------------------------------------


class SettingsV1(BaseModel):
    name: str


class Cfg(BaseModel):
    token: str = Field("default-token", exclude=True)  # kept out of API output
    limit: int = 1


class SettingsV2(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64")
    name: str
    blob: bytes = b"\xff\x00hello"
    cfg: Cfg = Cfg(token="custom-token", limit=5)


def test_a_default_is_its_plain_form_not_its_serialized_json(tmp_path: Path) -> None:
    """The JSON Schema shows the bytes as base64 text and the model without its excluded
    field; validation took both, and the upgrade gave ``b'_wBoZWxsbw=='`` and the
    class's own token."""
    registry, stub = evolve(tmp_path, "settings", SettingsV1, SettingsV2)
    assert stub.todos == ()
    assert (
        'FieldChanges(add={"blob": b"\\xff\\x00hello", "cfg": {"token": "custom-token",'
        ' "limit": 5}})'
    ) in stub.code
    state = upgraded(loaded(registry, tmp_path), "settings", SettingsV1(name="n"))
    assert exact_differences(SettingsV2(name="n"), state) == []


class Masked(BaseModel):
    secret: str
    ratio: float

    @field_serializer("ratio")
    def _percent(self, ratio: float) -> str:
        return f"{ratio:.0%}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def shout(self) -> str:
        return self.secret.upper()


class Opaque(BaseModel):
    inner: int

    @model_serializer
    def _hidden(self) -> dict[str, Any]:
        return {"masked": True}


class ServedV2(BaseModel):
    name: str
    masked: Masked = Masked(secret="s", ratio=0.25)
    opaque: Opaque = Opaque(inner=7)
    when: datetime.timedelta = datetime.timedelta(seconds=90)
    model_config = ConfigDict(ser_json_timedelta="float")


def test_serializers_and_computed_fields_stay_out_of_a_default(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "served", SettingsV1, ServedV2)
    assert '"masked": {"secret": "s", "ratio": 0.25}' in stub.code
    assert '"opaque": {"inner": 7}' in stub.code
    assert '"when": "PT1M30S"' in stub.code
    state = upgraded(loaded(registry, tmp_path), "served", SettingsV1(name="n"))
    assert exact_differences(ServedV2(name="n"), state) == []


class CountsV2(BaseModel):
    name: str
    big: int = 2**70
    small: int = -(2**63) - 1
    ratio: float = 1  # an int default of a float field: validation makes it 1.0


def test_an_int_past_64_bits_is_written_as_its_digits(tmp_path: Path) -> None:
    """It was written as an int, which FieldChanges refuses: the module did not load."""
    registry, stub = evolve(tmp_path, "counts", SettingsV1, CountsV2)
    assert stub.todos == ()
    expected = '"big": "1180591620717411303424", "ratio": 1.0, "small": "-9223372036854775809"'
    assert expected in stub.code
    state = upgraded(loaded(registry, tmp_path), "counts", SettingsV1(name="n"))
    assert exact_differences(CountsV2(name="n", ratio=1.0), state) == []


class ItemV1(TypedDict):
    price: int


class ItemV2(TypedDict):
    price: int
    code: Annotated[bytes, Field(default=b"\x00\xff")]
    scale: Annotated[float, Field(default=math.inf)]


class ShopV1(BaseModel):
    items: dict[str, ItemV1]


class ShopV2(BaseModel):
    model_config = ConfigDict(ser_json_bytes="hex", ser_json_inf_nan="null")
    items: dict[str, ItemV2]


def test_a_default_inside_records_is_written_by_a_step_function(tmp_path: Path) -> None:
    with json_schema_warnings_ignored():
        registry, stub = evolve(tmp_path, "shop", ShopV1, ShopV2)
    assert 'obj["code"] = b"\\x00\\xff"' in stub.code
    assert 'obj["scale"] = float("inf")' in stub.code
    state = upgraded(loaded(registry, tmp_path), "shop", ShopV1(items={"a": {"price": 3}}))
    expected = ShopV2(items={"a": {"price": 3, "code": b"\x00\xff", "scale": math.inf}})
    assert exact_differences(expected, state) == []


class ProfileV1(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64")
    name: str
    avatar: bytes = b"\x89PNG"


def test_a_removed_fields_default_is_read_from_the_released_type(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "profile", ProfileV1, SettingsV1)
    assert 'FieldChanges(add={"avatar": b"\\x89PNG"})' in stub.code
    loaded(registry, tmp_path)
    down = registry.plan("profile", 2, 1, allow_lossy=True)
    assert down.apply({"name": "n"}) == {"name": "n", "avatar": b"\x89PNG"}


def test_without_the_released_type_the_frozen_default_is_used_with_a_note(
    tmp_path: Path,
) -> None:
    registry = Registry()
    registry.add_schema("profile", 1, ProfileV1)
    sm.freeze_schemas(registry, tmp_path / "schemas")
    edited = Registry()  # version 1 changed in place: the released type is gone
    edited.add_schema("profile", 1, SettingsV1)
    stub = sm.make_migration(
        edited, "profile", schemas_dir=tmp_path / "schemas", migrations_dir=tmp_path / "m"
    )
    assert 'FieldChanges(add={"avatar": "iVBORw=="})' in stub.code  # all the file holds
    (note,) = [note for note in stub.notes if "released type is not registered" in note]
    assert "(avatar)" in note and "as pydantic serializes them" in note


# --- a default with no plain form is a TODO -------------------------------------------


class NoPlainV2(BaseModel):
    name: str
    count: int = "many"  # type: ignore[assignment]  # pydantic does not check defaults
    label: str = "\ud800"
    pair: Any = (1, 2)


def test_a_default_with_no_plain_form_is_a_todo_that_fails_the_checks(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "noplain", SettingsV1, NoPlainV2)
    assert [todo.split(",")[0] for todo in stub.todos] == [
        "count is new",
        "label is new",
        "pair is new",
    ]
    assert "the default 'many' has no plain form: expected an int, found str" in stub.todos[0]
    assert "lone surrogate" in stub.todos[1]
    assert "a tuple value ((1, 2)) is not plain data under Any" in stub.todos[2]
    assert "FieldChanges(add=" not in stub.code
    with pytest.raises(MigrationCheckError, match="noplain 1 -> 2 is not finished"):
        check_migrations(loaded(registry, tmp_path))


class LegacyV1(BaseModel):
    name: str
    mode: int = "auto"  # type: ignore[assignment]


def test_a_removed_field_whose_old_default_has_no_plain_form_is_a_downgrade_todo(
    tmp_path: Path,
) -> None:
    registry, stub = evolve(tmp_path, "legacy", LegacyV1, SettingsV1)
    (todo,) = stub.todos
    assert todo.startswith("mode was removed, and the old version's default cannot be")
    assert 'FieldChanges(drop=["mode"])' in stub.code  # the upgrade needs nothing
    loaded(registry, tmp_path)
    with pytest.raises(NotImplementedError, match="legacy 2 -> 1 is not finished"):
        registry.plan("legacy", 2, 1, allow_lossy=True).apply({"name": "n"})


class FactoryV2(BaseModel):
    name: str
    tags: list[str] = Field(default_factory=lambda: ["fresh"])


def test_a_default_made_by_a_factory_is_left_to_validation(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "factory", SettingsV1, FactoryV2)
    assert '# "tags" is optional and has no default: left absent' in stub.code
    state = upgraded(loaded(registry, tmp_path), "factory", SettingsV1(name="n"))
    assert state == FactoryV2(name="n", tags=["fresh"])


# --- finding the field in the type ------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    label: bytes = b"\xfe"


class Leaf(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64")
    value: bytes = b"\xfa"


class Tree(BaseModel):
    maybe: Leaf | None = None
    many: list[Leaf] = []
    rooted: RootModel[dict[str, Leaf]] = RootModel[dict[str, Leaf]]({})
    points: tuple[Point, ...] = ()


@pytest.mark.parametrize(
    ("parent", "name", "plain"),
    [
        ((), "maybe", None),
        (("maybe",), "value", b"\xfa"),
        (("many", "*"), "value", b"\xfa"),
        (("rooted", "*"), "value", b"\xfa"),
        (("points", "*"), "label", b"\xfe"),
    ],
)
def test_a_field_is_found_through_optionals_lists_root_models_and_tuples(
    parent: tuple[str, ...], name: str, plain: Any
) -> None:
    found = field_default(_tree(), parent, name)
    assert (found.kind, found.plain) == ("value", plain)


def _tree() -> SchemaVersion:
    with json_schema_warnings_ignored():
        return SchemaVersion.create("tree", 1, Tree)


def test_a_field_not_in_the_type_is_refused_not_guessed() -> None:
    found = field_default(_tree(), ("nowhere",), "value")
    assert found.kind == "refused" and "nowhere.value was not found" in found.reason


# --- the property: any default upgrades to itself, or is a TODO the snapshot agrees with --


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**63 - 1


class Hidden(BaseModel):
    """Everything a model may customise for other outputs, none of it a snapshot's."""

    model_config = ConfigDict(ser_json_bytes="base64", ser_json_inf_nan="strings")
    token: str = Field("t", exclude=True)
    raw: bytes = b""
    ratio: float = 0.0

    @field_serializer("ratio")
    def _text(self, ratio: float) -> str:
        return repr(ratio)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        return len(self.raw)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)  # every code point UTF-8 has
_INTS = st.integers() | st.integers(-(2**80), 2**80) | st.sampled_from([2**63, 2**64, -(2**63) - 1])
_FLOATS = st.floats() | st.sampled_from([math.inf, -math.inf, math.nan, -0.0])
_HIDDEN = st.builds(Hidden, token=_TEXT, raw=st.binary(max_size=8), ratio=_FLOATS)

_DEFAULTS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (str, _TEXT),
    (bytes, st.binary(max_size=8)),
    (int, _INTS),
    (float, _FLOATS),
    (bool, st.booleans()),
    (int | None, st.none() | _INTS),
    (dict[str, list[float]], st.dictionaries(_TEXT, st.lists(_FLOATS, max_size=3), max_size=3)),
    (list[dict[str, bytes]], st.lists(st.dictionaries(_TEXT, st.binary(), max_size=2), max_size=2)),
    (dict[int, str], st.dictionaries(_INTS, _TEXT, max_size=3)),
    (tuple[int, ...], st.lists(_INTS, max_size=3).map(tuple)),
    (frozenset[str], st.frozensets(_TEXT, max_size=3)),
    (Any, plain_data() | rich_values()),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
    (datetime.datetime, st.datetimes(timezones=st.none() | st.timezones())),
    (datetime.date, st.dates()),
    (datetime.time, st.times()),
    (datetime.timedelta, st.timedeltas()),
    (decimal.Decimal, st.decimals()),
    (uuid.UUID, st.uuids()),
    (Hidden, _HIDDEN),
    (list[Hidden], st.lists(_HIDDEN, max_size=2)),
    (Cfg, st.builds(Cfg, token=_TEXT, limit=_INTS)),
]

_CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "ser_json_bytes": st.sampled_from(["utf8", "base64", "hex"]),
        "ser_json_inf_nan": st.sampled_from(["null", "constants", "strings"]),
        "ser_json_timedelta": st.sampled_from(["iso8601", "float"]),
    },
)

Where = Literal["model", "typeddict", "records"]


@dataclasses.dataclass(frozen=True)
class Case:
    annotation: Any
    default: Any
    config: ConfigDict
    where: Where


@st.composite
def cases(draw: st.DrawFn) -> Case:
    annotation, values = draw(st.sampled_from(_DEFAULTS))
    where: Where = draw(st.sampled_from(["model", "typeddict", "records"]))
    return Case(annotation, draw(values), cast(ConfigDict, draw(_CONFIGS)), where)


class BaseV1(TypedDict):
    name: str


class RecordsV1(BaseModel):
    items: dict[str, BaseV1]


def _versions(case: Case) -> tuple[Any, Any, Any]:
    """Version 1, version 2 (version 1 with the field ``value`` added with the case's
    default) and a state of version 1."""
    if case.where == "model":
        model: Any = create_model(
            "ModelV2",
            __config__=case.config,
            name=(str, ...),
            value=(case.annotation, case.default),
        )
        return SettingsV1, model, SettingsV1(name="n")
    fields = {"name": str, "value": Annotated[case.annotation, Field(default=case.default)]}
    record: Any = cast(Any, TypedDict)("RecordV2", fields)
    record.__pydantic_config__ = case.config
    if case.where == "typeddict":
        return BaseV1, record, {"name": "n"}
    records: Any = create_model(
        "RecordsV2", __config__=case.config, items=(dict[str, record], ...)
    )
    return RecordsV1, records, RecordsV1(items={"k": {"name": "n"}})


def _value(state: Any, where: Where) -> Any:
    if where == "model":
        return state.value
    record = state if where == "typeddict" else state.items["k"]
    return record["value"]


def _snapshot_refuses(schema: SchemaVersion, state: Any) -> bool:
    try:
        schema.export(state, walk=True, check=True)
    except ExportError:
        return True
    return False


def _migrated(case: Case, folder: Path) -> tuple[Registry, MigrationStub, Any]:
    old, new, state = _versions(case)
    with json_schema_warnings_ignored():
        registry, stub = evolve(folder, "c", old, new)
    return loaded(registry, folder), stub, state


@pytest.mark.slow
@given(cases())
def test_a_generated_default_upgrades_to_exactly_the_fields_default(case: Case) -> None:
    """For a field added with any default (text of any code point, bytes, ints past 64
    bits, floats with infinities, NaN and -0.0, nested containers, enums, datetimes,
    decimals, UUIDs, models with excluded fields, serializers and computed fields, under
    any ``ser_json_*`` settings; at the top of a model or a TypedDict or inside records):
    the generated module loads, and either restoring a version 1 snapshot as version 2
    gives the field exactly its default, or the stub holds a TODO for the field and no
    snapshot could hold that default either."""
    with tempfile.TemporaryDirectory() as scratch:
        registry, stub, state = _migrated(case, Path(scratch))
        v2 = registry.schema_for("c", 2)
        expected = v2.validate(
            {"name": "n"} if case.where != "records" else {"items": {"k": {"name": "n"}}}
        )
        event("a TODO" if stub.todos else "upgraded")
        if stub.todos:
            assert all("value is new" in todo for todo in stub.todos), stub.todos
            assert _snapshot_refuses(v2, expected), stub.todos
            return
        assert not _snapshot_refuses(v2, expected)
        restored = upgraded(registry, "c", state)
        assert exact_differences(_value(expected, case.where), _value(restored, case.where)) == []
