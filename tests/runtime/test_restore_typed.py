"""A restore that decodes sections straight into their schema: when it does, and that
the restored state is the one decoding then validating gives, whatever the bytes."""

from __future__ import annotations

import copy
from typing import Any, NotRequired

import pytest
from plain_helpers import same_plain
from typing_extensions import TypedDict

from statemigrate import Registry, RestoreError, Service
from statemigrate._model._schema import SchemaVersion
from statemigrate._runtime import _restore
from statemigrate._snapshot import _msgpack
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer
from statemigrate._snapshot._msgpack import pack_data, reference_unpack


class EntryV1(TypedDict):
    name: str
    score: float
    tags: list[str]
    note: NotRequired[str]


class EntryV2(EntryV1):
    hits: int


class StateV1(TypedDict):
    entries: dict[str, EntryV1]


class StateV2(TypedDict):
    entries: dict[str, EntryV2]


def add_hits(data: dict[str, Any]) -> dict[str, Any]:
    for entry in data["entries"].values():
        entry["hits"] = 0
    return data


REGISTRY = Registry()
REGISTRY.add_schema("cache", 1, StateV1)
REGISTRY.add_schema("cache", 2, StateV2)
REGISTRY.add_migration("cache", 1, 2, add_hits)


class Cache:
    def __init__(self, state: Any = None) -> None:
        self.state = state if state is not None else {"entries": {}}

    def export_state(self) -> Any:
        return self.state

    def import_state(self, state: Any) -> None:
        self.state = state


@REGISTRY.migratable("cache", version=1)
class CacheV1(Cache):
    pass


@REGISTRY.migratable("cache", version=2)
class CacheV2(Cache):
    pass


def state(count: int = 3) -> dict[str, Any]:
    return {
        "entries": {
            f"k{i}": {"name": f"n{i}", "score": i / 3, "tags": ["a", "b"]} for i in range(count)
        }
    }


def snapshot_of(data: object, *, version: int = 1) -> bytes:
    fingerprint = REGISTRY.schema_for("cache", version).fingerprint
    section = SectionInput("cache", "default", version, fingerprint, data)
    return encode_snapshot([section], producer=Producer.current("typed-test")).to_bytes()


def restore(blob: bytes, component: Cache) -> Any:
    service = Service("typed-test", registry=REGISTRY)
    service.register(component)
    return service.restore(blob)


def validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every state the schemas' adopt_kept (which adopt calls too) is asked to
    validate, from now on."""
    seen: list[object] = []
    adopt_kept = SchemaVersion.adopt_kept

    def spy(self: SchemaVersion, box: list[Any], **options: Any) -> tuple[Any, bool]:
        seen.append(box[0])
        return adopt_kept(self, box, **options)

    monkeypatch.setattr(SchemaVersion, "adopt_kept", spy)
    return seen


def test_a_restore_without_steps_decodes_straight_into_the_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = validations(monkeypatch)
    blob = snapshot_of(state())
    reader = CacheV1()
    report = restore(blob, reader)
    assert seen == []  # nothing validated after decoding
    assert report.components[0].steps == ()
    assert report.timings["validate"] == 0.0
    expected = REGISTRY.schema_for("cache", 1).validate(state())
    assert same_plain(reader.state, expected)


def test_a_restore_with_a_step_validates_the_steps_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = validations(monkeypatch)
    proofs: list[bool] = []  # or the one walk that proves it plain and fitting
    real = SchemaVersion.adopt_proven

    def proven(self: SchemaVersion, box: list[Any]) -> bool:
        proofs.append(real(self, box))
        return proofs[-1]

    monkeypatch.setattr(SchemaVersion, "adopt_proven", proven)
    reader = CacheV2()
    report = restore(snapshot_of(state()), reader)
    assert len(seen) + proofs.count(True) == 1 and len(seen) + len(proofs) >= 1
    assert report.components[0].steps == ("cache 1 -> 2 (add_hits)",)
    assert all(entry["hits"] == 0 for entry in reader.state["entries"].values())


def test_records_written_in_another_order_come_back_in_declaration_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer keeps its dicts' order; validation writes a record's fields in the
    schema's order, and so must a restore that skips it."""
    written = {"entries": {"k": {"tags": [], "name": "x", "note": "y", "score": 1.0}}}
    seen = validations(monkeypatch)
    reader = CacheV1()
    restore(snapshot_of(written), reader)
    assert len(seen) == 1  # decoded as plain data, then validated
    assert list(reader.state["entries"]["k"]) == ["name", "score", "tags", "note"]


@pytest.mark.parametrize(
    "data",
    [
        {"entries": {"k": {"name": 1, "score": 1.0, "tags": []}}},
        {"entries": {"k": {"name": "x", "tags": []}}},
        {"entries": {"k": {"name": "x", "score": 1.0, "tags": [None]}}},
        {"entries": []},
    ],
    ids=["mistyped", "missing field", "mistyped item", "list for dict"],
)
def test_a_section_that_does_not_fit_its_schema_is_refused_as_before(data: object) -> None:
    """A writer's fingerprint proves nothing: the bytes are validated all the same."""
    reader = CacheV1(state(1))
    with pytest.raises(RestoreError) as caught:
        restore(snapshot_of(data), reader)
    assert caught.value.phase == "validate"
    assert reader.state == state(1)


def test_data_pydantic_converts_is_converted_as_before() -> None:
    """An int for a float field: msgspec would also make it a float, but the bytes go
    the plain way, and pydantic converts it."""
    data = {"entries": {"k": {"name": "x", "score": 2, "tags": []}}}
    reader = CacheV1()
    restore(snapshot_of(data), reader)
    assert same_plain(reader.state, REGISTRY.schema_for("cache", 1).validate(data))
    assert type(reader.state["entries"]["k"]["score"]) is float


def test_a_section_of_another_schema_is_not_decoded_into_this_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fingerprint that differs means another schema wrote the bytes: plain decoding,
    validated once, by the read-back check (no step follows it)."""
    section = SectionInput("cache", "default", 1, "0" * 32, state())
    blob = encode_snapshot([section], producer=Producer.current("typed-test")).to_bytes()
    adopted = validations(monkeypatch)
    validated: list[object] = []
    validate = SchemaVersion.validate

    def spy(self: SchemaVersion, data: object) -> Any:
        validated.append(data)
        return validate(self, data)

    monkeypatch.setattr(SchemaVersion, "validate", spy)
    reader = CacheV1()
    report = restore(blob, reader)
    assert adopted == [] and len(validated) == 1
    assert type(validated[0]) is dict  # the plain decoding, not the typed one
    assert not report.components[0].fingerprint_matches
    assert same_plain(reader.state, reference_unpack(pack_data(state())))


# --- a restore with steps, of collections of flat records ------------------------------
#
# Such bytes are read in C and decoded typed even when a step follows: the step must
# get exactly what plain decoding gives, and still run.


class FlatV1(TypedDict):
    name: str
    score: float
    tags: list[str]


class FlatV2(FlatV1):
    hits: int


class FlatStateV1(TypedDict):
    entries: dict[str, FlatV1]


class FlatStateV2(TypedDict):
    entries: dict[str, FlatV2]


FLAT = Registry()
FLAT.add_schema("flat", 1, FlatStateV1)
FLAT.add_schema("flat", 2, FlatStateV2)
STEP_INPUTS: list[Any] = []


def add_hits_seen(data: dict[str, Any]) -> dict[str, Any]:
    STEP_INPUTS.append(copy.deepcopy(data))
    return add_hits(data)


FLAT.add_migration("flat", 1, 2, add_hits_seen)


@FLAT.migratable("flat", version=2)
class FlatCacheV2(Cache):
    pass


def flat_snapshot(data: object) -> bytes:
    fingerprint = FLAT.schema_for("flat", 1).fingerprint
    section = SectionInput("flat", "default", 1, fingerprint, data)
    return encode_snapshot([section], producer=Producer.current("typed-test")).to_bytes()


def flat_restore(blob: bytes) -> FlatCacheV2:
    reader = FlatCacheV2()
    service = Service("typed-test", registry=FLAT)
    service.register(reader)
    service.restore(blob)
    return reader


@pytest.mark.parametrize(
    "data",
    [state(), {"entries": {"k": {"name": "x", "score": 2, "tags": []}}}],
    ids=["as declared", "int for float"],
)
def test_a_step_gets_what_plain_decoding_gives_and_runs(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    form = FLAT.schema_for("flat", 1).typed
    assert form is not None and form.layout is not None, "the C checks are not in use"
    plain_decodings: list[object] = []
    unpack_data = _msgpack.unpack_data

    def spy(raw: Any, **options: Any) -> object:
        plain_decodings.append(raw)
        return unpack_data(raw, **options)

    monkeypatch.setattr(_msgpack, "unpack_data", spy)
    STEP_INPUTS.clear()
    reader = flat_restore(flat_snapshot(data))
    assert same_plain(STEP_INPUTS, [reference_unpack(pack_data(data))])
    assert all(entry["hits"] == 0 for entry in reader.state["entries"].values())
    # Bytes as declared are decoded typed; an int for a float goes the plain way.
    assert len(plain_decodings) == (0 if data == state() else 1)


def test_negative_control_typed_data_taken_as_the_state_skips_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def as_state(entry: Any, version: int, fingerprint: str, proven: Any) -> tuple[Any, bool]:
        return entry.registry.schema_for(entry.component, version).typed, True

    monkeypatch.setattr(_restore, "_typed_form", as_state)
    STEP_INPUTS.clear()
    reader = flat_restore(flat_snapshot(state()))
    assert STEP_INPUTS == []
    assert not any("hits" in entry for entry in reader.state["entries"].values())
