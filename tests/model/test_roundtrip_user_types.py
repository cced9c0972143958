"""The round-trip contract for types users bring to their schemas: bounded deques, enum
tags, encoded and JSON types, IP and path keys, path-existence types, and the messages
that name a refused part in the user's terms. Each test failed before its fix."""

from __future__ import annotations

import base64
import collections
import enum
import ipaddress
import pathlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pytest
from pydantic import (
    AfterValidator,
    Base64Bytes,
    Base64Str,
    BaseModel,
    Field,
    IPvAnyAddress,
    IPvAnyInterface,
    IPvAnyNetwork,
    Json,
    NewPath,
    RootModel,
    SecretStr,
    create_model,
    field_validator,
)
from pydantic_core import core_schema
from typing_extensions import TypedDict

from statemigrate import ExportError, RegistrationError, Registry, Service, migratable
from statemigrate._model._compare import first_difference
from statemigrate._model._schema import SchemaVersion
from statemigrate.stores import MemoryStore


def schema_of(type_: Any) -> SchemaVersion:
    registry = Registry()
    registry.add_schema("thing", 1, type_)
    return registry.schema_for("thing", 1)


def registration_refusal(type_: Any) -> str:
    with pytest.raises(RegistrationError) as caught:
        Registry().add_schema("thing", 1, type_)
    message = str(caught.value)
    assert "'thing' version 1" in message and "\n" not in message
    return message


def committed_and_restored(model: type[BaseModel], **fields: Any) -> Any:
    """Commit a component holding ``fields`` as attributes, and restore it into a new one."""
    registry = Registry()
    registry.add_schema("thing", 1, model)

    @migratable("thing", version=1)
    class Thing:
        def __init__(self, **values: Any) -> None:
            self.__dict__.update(values)

    store = MemoryStore()
    writer = Service("svc", registry=registry)
    writer.register(Thing(**fields))
    writer.commit(store)
    reader = Service("svc", registry=registry)
    restored = reader.register(Thing(**{name: None for name in fields}))
    reader.restore(store.open())
    return restored


# --- A: a deque's maxlen ----------------------------------------------------------------


class Recent(BaseModel):
    last: collections.deque[int]


def test_a_bounded_deque_is_refused_at_snapshot_saying_how_to_keep_its_maxlen() -> None:
    """Before, it came back with maxlen=None, and the "bounded" deque grew without end."""
    with pytest.raises(ExportError) as caught:
        committed_and_restored(Recent, last=collections.deque([1, 2, 3], maxlen=3))
    error = caught.value
    assert error.path == "last"
    message = str(error)
    assert "maxlen=3 would come back with maxlen=None" in message
    assert "AfterValidator(lambda d: deque(d, maxlen=3))" in message and "\n" not in message


def test_a_deque_of_a_max_length_type_is_refused_too() -> None:
    """pydantic checks ``max_length`` but builds the deque unbounded."""
    bounded = schema_of(Annotated[collections.deque[int], Field(max_length=3)])
    with pytest.raises(ExportError, match="maxlen=3 would come back with maxlen=None"):
        bounded.export(collections.deque([1], maxlen=3))


class RecentBounded(BaseModel):
    last: Annotated[
        collections.deque[int], AfterValidator(lambda d: collections.deque(d, maxlen=3))
    ]


def test_a_deque_whose_validator_sets_its_maxlen_comes_back_bounded() -> None:
    restored = committed_and_restored(RecentBounded, last=RecentBounded(last=[1, 2, 3]).last)
    assert restored.last == collections.deque([1, 2, 3]) and restored.last.maxlen == 3


def test_an_unbounded_deque_is_still_written_without_a_check() -> None:
    schema = schema_of(Recent)
    assert schema.exporter is not None and schema.exporter.exact
    assert schema.export(Recent(last=collections.deque([1, 2]))) == {"last": [1, 2]}


# --- A2: a defaultdict's default_factory -------------------------------------------------


def _hundred() -> int:
    return 100


class Quotas(BaseModel):
    quotas: collections.defaultdict[str, int]


class QuotaRecord(TypedDict):
    quotas: collections.defaultdict[str, int]


class QuotaHolder(BaseModel):
    records: list[QuotaRecord]


class QuotaTeams(RootModel[dict[str, QuotaRecord]]):
    pass


class NestedQuotas(BaseModel):
    by_team: dict[str, collections.defaultdict[str, int]]
    history: list[collections.defaultdict[str, int]]
    inner: Quotas | None = None


def _custom() -> collections.defaultdict[str, int]:
    return collections.defaultdict(_hundred, {"alice": 99})


@pytest.mark.parametrize(
    ("schema", "state", "path"),
    [
        (Quotas, Quotas(quotas=_custom()), "quotas"),
        (Quotas, Quotas(quotas=collections.defaultdict(lambda: 100)), "quotas"),
        # A TypedDict's fields named as in every other path. Before, the state
        # compared as the dict it is had its fields read as keys: ['quotas'].
        (QuotaRecord, {"quotas": _custom()}, "quotas"),
        (QuotaHolder, QuotaHolder(records=[{"quotas": collections.defaultdict(int)},
                                           {"quotas": _custom()}]), "records[1].quotas"),
        (QuotaTeams, QuotaTeams({"ops": {"quotas": _custom()}}), "root['ops'].quotas"),
        (NestedQuotas, NestedQuotas(by_team={"ops": _custom()}, history=[]), "by_team['ops']"),
        (NestedQuotas, NestedQuotas(by_team={}, history=[_custom()]), "history[0]"),
        (NestedQuotas, NestedQuotas(by_team={}, history=[], inner=Quotas(quotas=_custom())),
         "inner.quotas"),
    ],
    ids=["model-field", "lambda", "typeddict-field", "typeddict-in-list", "typeddict-in-root",
         "dict-value", "list-item", "nested-model"],
)
def test_a_defaultdict_whose_factory_would_not_come_back_is_refused_at_snapshot(
    schema: Any, state: Any, path: str
) -> None:
    """Before, it committed and restored with ``int`` for its factory: a new user's
    quota was 0 instead of 100, with nothing in the log."""
    with pytest.raises(ExportError) as caught:
        schema_of(schema).export(state)
    error = caught.value
    assert error.path == path
    message = str(error)
    assert "a defaultdict with default_factory=" in message
    assert "would come back with default_factory=int" in message
    assert "Annotated[V, Field(default_factory=...)]" in message
    assert "import_state" in message and "\n" not in message


def test_the_repro_model_is_refused_and_not_restored_with_another_factory() -> None:
    class Limits(BaseModel):
        quotas: collections.defaultdict[str, int] = Field(
            default_factory=lambda: collections.defaultdict(lambda: 100)
        )

    with pytest.raises(ExportError, match="default_factory=.*<lambda> would come back"):
        committed_and_restored(Limits, quotas=Limits().quotas)


class DeclaredQuotas(BaseModel):
    quotas: collections.defaultdict[str, Annotated[int, Field(default_factory=_hundred)]] = (
        Field(default_factory=dict, validate_default=True)
    )


class RebuiltQuotas(BaseModel):
    quotas: Annotated[
        collections.defaultdict[str, int],
        AfterValidator(lambda d: collections.defaultdict(lambda: 100, d)),
    ]


def test_a_factory_its_type_declares_comes_back() -> None:
    state = DeclaredQuotas()
    state.quotas["alice"] -= 1
    restored = committed_and_restored(DeclaredQuotas, quotas=state.quotas)
    assert restored.quotas == {"alice": 99} and restored.quotas.default_factory is _hundred
    assert restored.quotas["bob"] == 100


def test_a_factory_a_validator_makes_again_comes_back() -> None:
    """The validator's lambda is made anew by each validation: the same function, with
    the same code and closure, is the same factory."""
    state = RebuiltQuotas(quotas={"alice": 99})
    restored = committed_and_restored(RebuiltQuotas, quotas=state.quotas)
    assert restored.quotas["bob"] == 100 and dict(restored.quotas) == {"alice": 99, "bob": 100}


def test_a_defaultdict_of_the_inferred_factory_and_a_dict_field_are_unchanged() -> None:
    assert schema_of(Quotas).export(Quotas(quotas=collections.defaultdict(int, a=1))) == {
        "quotas": {"a": 1}
    }
    # Under a dict field a defaultdict comes back a dict, as validation makes it.
    plain = schema_of(dict[str, int])
    assert plain.exporter is not None and plain.exporter.exact
    assert plain.export(collections.defaultdict(_hundred, a=1)) == {"a": 1}


# --- B: parts no snapshot can carry, refused at registration ------------------------------


class Kind(enum.Enum):
    P = "p"
    Q = "q"


class TaggedP(BaseModel):
    k: Literal[Kind.P] = Kind.P


class TaggedQ(BaseModel):
    k: Literal[Kind.Q] = Kind.Q


class EnumTagged(BaseModel):
    items: list[Annotated[TaggedP | TaggedQ, Field(discriminator="k")]]


class Blob(BaseModel):
    data: Base64Bytes


class Text(BaseModel):
    data: Base64Str


class Cfg(BaseModel):
    raw: Json[dict[str, int]]


class BlobKeys(BaseModel):
    by_blob: dict[Base64Bytes, int]


class TextKeys(BaseModel):
    by_text: list[dict[Base64Str, int]]


@pytest.mark.parametrize(
    ("schema", "field", "reason"),
    [
        (EnumTagged, "items.[item].k", "Literal[Kind.P] does not validate back"),
        (Blob, "data", "Base64Bytes holds the decoded value"),
        (Text, "data", "Base64Str holds the decoded value"),
        (Cfg, "raw", "Json[...] holds the parsed value"),
        (BlobKeys, "by_blob.[key]", "Base64Bytes holds the decoded value"),
        (TextKeys, "by_text.[item].[key]", "Base64Str holds the decoded value"),
    ],
)
def test_a_part_that_validation_would_not_take_back_is_refused_at_registration(
    schema: type[BaseModel], field: str, reason: str
) -> None:
    """Before, these registered, and every snapshot of a non-empty state was refused."""
    message = registration_refusal(schema)
    assert f"field {field}: {reason}" in message


class Reading(enum.Enum):
    MISSING = float("nan")
    ZERO = 0.0


class Sensor(BaseModel):
    last: Reading


class Missing(BaseModel):
    last: Literal[1.5, float("nan")] = 1.5  # type: ignore[valid-type]


@pytest.mark.parametrize(
    ("schema", "what"),
    [
        (Sensor, "field last: enum Reading has the member MISSING = nan"),
        (dict[str, Reading], "field [value]: enum Reading has the member MISSING = nan"),
        (Missing, "field last: Literal value nan"),
    ],
    ids=["enum", "enum-in-dict", "literal"],
)
def test_a_nan_value_is_refused_at_registration(schema: Any, what: str) -> None:
    """Before, it registered and committed, and every restore failed: "Input should be
    nan or 0.0" (NaN equals nothing, not even itself, so no value validates into it)."""
    message = registration_refusal(schema)
    assert what in message
    assert "NaN equals nothing, not even itself" in message


class Signed(enum.Enum):
    NEGATIVE_ZERO = -0.0
    ONE = 1.0
    INF = float("inf")
    TEXT = "1"
    RAW = b"1"
    NOTHING = None


class SignedHolder(BaseModel):
    values: list[Signed]
    zero: Literal[-0.0] = -0.0  # type: ignore[valid-type]


def test_float_and_mixed_enum_values_still_round_trip() -> None:
    """``-0.0`` and ``0.0`` are one member (Enum makes equal values aliases), and pydantic
    takes each of these values back as its member."""
    schema = schema_of(SignedHolder)
    state = SignedHolder(values=list(Signed))
    again = schema.validate(schema.export(state))
    assert again.values == list(Signed) and first_difference(state, again) is None
    assert repr(again.zero) == "-0.0"


class StrKind(enum.StrEnum):
    P = "p"
    Q = "q"


class StrTaggedP(BaseModel):
    k: Literal[StrKind.P] = StrKind.P


class StrTaggedQ(BaseModel):
    k: Literal[StrKind.Q] = StrKind.Q


class StrTagged(BaseModel):
    items: list[Annotated[StrTaggedP | StrTaggedQ, Field(discriminator="k")]]


def test_a_union_tagged_by_a_str_enum_still_round_trips() -> None:
    """pydantic takes a str enum's member back from its value: nothing to refuse."""
    schema = schema_of(StrTagged)
    state = StrTagged(items=[StrTaggedQ(), StrTaggedP()])
    assert first_difference(state, schema.validate(schema.export(state))) is None


def _unique(text: str) -> str:
    if text.startswith("!"):
        raise ValueError("marked twice")
    return "!" + text


class Inner(BaseModel):
    s: Annotated[str, AfterValidator(_unique)]


class Outer(BaseModel):
    d: dict[str, list[Inner]]


def test_a_plain_form_that_does_not_validate_back_is_refused_at_its_path() -> None:
    """Before, the path was ``(root)``, whatever the depth."""
    with pytest.raises(ExportError) as caught:
        schema_of(Outer).export(Outer(d={"k": [Inner(s="a")]}))
    assert caught.value.path == "d['k'][0].s"
    assert "does not validate back: Value error, marked twice" in str(caught.value)


class Encoded(BaseModel):
    blob: Annotated[bytes, AfterValidator(base64.b64decode)]


def test_a_component_whose_fields_do_not_validate_again_is_refused_as_an_export() -> None:
    """Before: a ValidationError, "does not fit schema version 1", as if the state were
    wrong; it is the schema's validator that does not take its own output back."""
    with pytest.raises(ExportError) as caught:
        committed_and_restored(Encoded, blob=Encoded(blob=b"aGVsbG8=").blob)
    error = caught.value
    assert error.path == "blob" and error.by_validation
    assert "validating the component's fields to export them refuses this value" in str(error)


# --- C: IP address and path keys; messages in the user's terms ---------------------------


class Keyed(BaseModel):
    by_ip: dict[ipaddress.IPv4Address, int]
    by_net: dict[ipaddress.IPv6Interface, int]
    by_path: dict[pathlib.Path, int]


def test_ip_address_and_path_keys_round_trip() -> None:
    """Before, refused at registration, though their text parses back exactly."""
    restored = committed_and_restored(
        Keyed,
        by_ip={ipaddress.IPv4Address("10.0.0.1"): 1},
        by_net={ipaddress.IPv6Interface("::1/64"): 2},
        by_path={pathlib.Path("/srv/a"): 3, pathlib.Path("rel/b"): 4},
    )
    assert restored.by_ip == {ipaddress.IPv4Address("10.0.0.1"): 1}
    assert restored.by_net == {ipaddress.IPv6Interface("::1/64"): 2}
    assert list(restored.by_path) == [pathlib.Path("/srv/a"), pathlib.Path("rel/b")]


class AnyKeyed(BaseModel):
    by_ip: dict[IPvAnyAddress, int]
    by_net: dict[IPvAnyNetwork, int]
    by_interface: dict[IPvAnyInterface, int]


ANY_KEYED: dict[str, dict[Any, int]] = {
    "by_ip": {
        ipaddress.IPv4Address("10.0.0.1"): 1,
        ipaddress.IPv6Address("::1"): 2,
        ipaddress.IPv6Address("::ffff:10.0.0.1"): 3,  # IPv4-mapped: an IPv6Address still
        ipaddress.IPv6Address("fe80::1%eth0"): 4,
    },
    "by_net": {ipaddress.IPv4Network("10.0.0.0/8"): 1, ipaddress.IPv6Network("2001:db8::/32"): 2},
    "by_interface": {
        ipaddress.IPv4Interface("10.0.0.1/24"): 1,
        ipaddress.IPv6Interface("fe80::1/64"): 2,
    },
}


def test_ipvany_keys_round_trip_as_the_same_class_and_value() -> None:
    """Before, refused at registration as "a custom type", though the hint listed IP
    address keys: the text of an IPv4 class parses back into it, any other into the
    IPv6 class."""
    restored = committed_and_restored(AnyKeyed, **ANY_KEYED)
    for name, written in ANY_KEYED.items():
        back = getattr(restored, name)
        assert [(type(k), k, v) for k, v in back.items()] == [
            (type(k), k, v) for k, v in written.items()
        ]


def test_an_ipvany_key_of_another_type_is_refused_at_snapshot() -> None:
    """A key held as text would come back as an address: not what the state held."""
    held_as_text: dict[Any, int] = {"10.0.0.1": 1}
    state = AnyKeyed.model_construct(by_ip=held_as_text, by_net={}, by_interface={})
    with pytest.raises(ExportError) as caught:
        schema_of(AnyKeyed).export(state)
    assert caught.value.path == "by_ip['10.0.0.1']"
    assert "expected an IPv4Address or IPv6Address key, found str" in str(caught.value)


def test_a_refused_key_type_is_named_as_the_user_declared_it() -> None:
    message = registration_refusal(create_model("M", v=(dict[SecretStr, int], ...)))
    assert "dict keys of type SecretStr cannot be stored" in message
    assert "lax-or-strict" not in message


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (int | str, "dict keys of a union (int | str) cannot be stored"),
        (Literal[b"\xff", b"a"], "dict keys of a Literal cannot be stored"),
        (str | None, "dict keys of a union (str | None) cannot be stored"),
    ],
)
def test_a_refused_key_union_or_literal_is_named_so(key: Any, named: str) -> None:
    message = registration_refusal(create_model("M", v=(dict[key, int], ...)))
    assert named in message


class Custom:
    """A type whose own core schema takes instances as they are, or parses a str."""

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_str]
            ),
        )


@pytest.mark.parametrize(
    ("type_", "says"),
    [
        (Sequence[int], "declare a concrete type such as list[...]"),
        (Custom, "give Custom a pydantic schema of plain data"),
    ],
)
def test_an_instance_check_of_a_type_s_own_schema_is_not_blamed_on_arbitrary_types(
    type_: Any, says: str
) -> None:
    """Before: "accepted only as an instance (arbitrary_types_allowed)", an option
    neither schema uses."""
    message = registration_refusal(create_model("M", v=(type_, ...)))
    assert "field v:" in message and says in message
    assert "arbitrary_types_allowed" not in message


# --- D: path-existence types --------------------------------------------------------------


class Output(BaseModel):
    out: NewPath


def test_a_path_existence_type_is_checked_at_snapshot_like_a_future_date(
    tmp_path: pathlib.Path,
) -> None:
    """Its test is made at export, with pydantic's message and the field's path, and
    the rest of the state is not validated back for it (before: the whole state was,
    and a refusal said ``(root)``)."""
    schema = schema_of(Output)
    assert schema.exporter is not None and schema.exporter.exact
    target = tmp_path / "report.txt"
    state = Output(out=target)
    assert schema.export(state) == {"out": str(target)}
    target.write_text("now it exists")
    with pytest.raises(ExportError) as caught:
        schema.export(state)
    assert caught.value.path == "out"
    assert "breaks a constraint of its type" in str(caught.value)
    assert "Path already exists" in str(caught.value)


def test_a_path_whose_check_raises_oserror_is_refused_with_its_path(
    tmp_path: pathlib.Path,
) -> None:
    """pydantic lets the OSError of a name too long to look up through its validator: it
    is an ExportError naming the field, not a raw OSError out of ``snapshot()``."""
    schema = schema_of(Output)
    state = Output.model_construct(out=tmp_path / ("a" * 5000))
    with pytest.raises(ExportError) as caught:
        schema.export(state)
    assert caught.value.path == "out"
    message = str(caught.value)
    assert "raised OSError" in message and "\n" not in message and len(message) < 400


class Stubborn(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def refuse_badly(cls, value: str) -> str:
        if value == "bad":
            raise RuntimeError("the validator itself failed")
        return value


def test_a_validator_raising_outside_pydantic_errors_refuses_the_export() -> None:
    """A RuntimeError from a user's validator, which pydantic does not wrap, ends the
    export as an ExportError with its cause chained; before, it escaped raw."""
    schema = schema_of(Stubborn)
    with pytest.raises(ExportError) as caught:
        schema.export({"name": "bad"})
    assert "validation raised RuntimeError: the validator itself failed" in str(caught.value)
    cause = caught.value.__cause__
    assert cause is not None and isinstance(cause.__cause__, RuntimeError)


# --- E: a value validation converts ---------------------------------------------------------


class Measured(BaseModel):
    ratio: float


def test_a_bool_in_a_float_field_is_written_as_validation_makes_it() -> None:
    """Before, refused at snapshot, though lax validation takes it (as 1.0), as it takes
    ``True`` in an ``int`` field, which was written as 1."""
    schema = schema_of(Measured)
    plain = schema.export(Measured.model_construct(ratio=True))
    assert plain == {"ratio": 1.0} and type(plain["ratio"]) is float
    assert schema.validate(plain) == Measured(ratio=1.0)
