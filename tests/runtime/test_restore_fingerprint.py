"""A section or a delta written by another schema under the same version (its fingerprint
differs): restored when this code reads it back as written, refused when it would not."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Annotated, Any

import pydantic
import pydantic_core
import pytest
from holders import Holder
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from statemigrate import Checkpointer, MemoryStore, Registry, RestoreError, Service, TrackedDict
from statemigrate._model._fingerprint import fingerprint_of
from statemigrate._model._schema import SchemaVersion
from statemigrate._runtime import _delta, _restore
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer


class Entry(TypedDict):
    name: str
    score: float


class Written(TypedDict):
    entries: dict[str, Entry]


class Renamed(BaseModel):
    """``entries`` renamed to ``items`` with no new version; a default makes it optional."""

    items: dict[str, Entry] = Field(default_factory=dict)


class IntEntry(TypedDict):
    name: str
    score: int


class Narrowed(TypedDict):
    entries: dict[str, IntEntry]


class BoundedEntry(TypedDict):
    name: str
    score: Annotated[float, Field(ge=0)]


class Bounded(TypedDict):
    """The same shape with a bound every written value meets: a fingerprint of its own."""

    entries: dict[str, BoundedEntry]


WRITTEN = {"entries": {"a": {"name": "x", "score": 1.5}, "b": {"name": "y", "score": 2.0}}}


def registry_of(schema: type) -> Registry:
    registry = Registry()
    registry.add_schema("cache", 1, schema)
    registry.migratable("cache", version=1)(Holder)
    return registry


def snapshot_written_by(schema: type, state: Any) -> bytes:
    writer = Service("svc", registry=registry_of(schema))
    writer.register(Holder(state))
    return writer.snapshot()[0].to_bytes()


def restore_into(schema: type, live: Any, blob: bytes) -> tuple[Holder, Any]:
    reader = Service("svc", registry=registry_of(schema))
    holder = Holder(live)
    reader.register(holder)
    return holder, reader.restore(blob)


def test_a_field_renamed_without_a_new_version_is_refused_and_nothing_changes() -> None:
    live = Renamed(items={"kept": {"name": "live", "score": 0.5}})
    blob = snapshot_written_by(Written, WRITTEN)
    with pytest.raises(RestoreError) as caught:
        restore_into(Renamed, live, blob)
    error = caught.value
    assert error.phase == "validate"
    assert "written by a different schema" in str(error)
    assert "at ['entries']: this key would be lost" in str(error)
    assert "give the changed schema a new version" in str(error)


def test_the_refused_restore_leaves_the_live_state_as_it_was() -> None:
    live = Renamed(items={"kept": {"name": "live", "score": 0.5}})
    reader = Service("svc", registry=registry_of(Renamed))
    holder = Holder(live)
    reader.register(holder)
    with pytest.raises(RestoreError):
        reader.restore(snapshot_written_by(Written, WRITTEN))
    assert holder.state is live
    assert live.items == {"kept": {"name": "live", "score": 0.5}}


def test_a_narrowed_type_without_a_new_version_is_refused() -> None:
    blob = snapshot_written_by(Written, WRITTEN)
    with pytest.raises(RestoreError) as caught:
        restore_into(Narrowed, {"entries": {}}, blob)
    assert "written by a different schema" in str(caught.value)
    assert "it does not validate" in str(caught.value)


def test_an_int_read_back_where_this_code_has_a_float_restores_as_that_float() -> None:
    """An int written where this code's schema has a float comes back as the equal
    float, as it does when the fingerprints match: nothing is lost."""
    blob = snapshot_written_by(Narrowed, {"entries": {"a": {"name": "x", "score": 3}}})
    holder, report = restore_into(Written, {"entries": {}}, blob)
    assert report.components[0].fingerprint_matches is False
    score = holder.state["entries"]["a"]["score"]
    assert (score, type(score)) == (3.0, float)


def test_an_int_in_a_float_field_of_a_plain_state_restores_after_an_edit_in_place() -> None:
    """A plain TypedDict state is written as it is: an int the code put in a float
    field stays an int in the snapshot, and a harmless edit (a bound) changes the
    fingerprint; the read-back check takes it as validation does."""
    blob = snapshot_written_by(Written, {"entries": {"a": {"name": "x", "score": 1}}})
    holder, report = restore_into(Bounded, {"entries": {}}, blob)
    assert report.components[0].fingerprint_matches is False
    score = holder.state["entries"]["a"]["score"]
    assert (score, type(score)) == (1.0, float)


def test_a_widened_type_that_would_change_a_value_is_refused() -> None:
    """An int that its float would round comes back as another number."""
    blob = snapshot_written_by(Narrowed, {"entries": {"a": {"name": "x", "score": 2**53 + 1}}})
    with pytest.raises(RestoreError) as caught:
        restore_into(Written, {"entries": {}}, blob)
    assert (
        "at ['entries']['a']['score']: 9007199254740993 (int) would come back as"
        " 9007199254740992.0 (float)"
    ) in str(caught.value)


def test_a_schema_that_reads_the_section_back_as_written_restores_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(Written, WRITTEN)
    holder, report = restore_into(Bounded, {"entries": {}}, blob)
    assert report.components[0].fingerprint_matches is False
    assert holder.state == WRITTEN
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "cache/default: snapshot schema fingerprint for version 1 differs from this code's;"
        " checking that this code reads the section back as written"
    ]


def test_a_section_read_back_into_the_schema_it_restores_is_validated_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read-back check validates the section into this code's schema of its version;
    with no step after it, that state is the one restored, not validated again."""
    validations: list[str] = []
    for method in ("validate", "adopt"):
        original = getattr(SchemaVersion, method)

        def counted(
            self: SchemaVersion, data: Any, _method: Any = original, **options: Any
        ) -> Any:
            validations.append(_method.__name__)
            return _method(self, data, **options)

        monkeypatch.setattr(SchemaVersion, method, counted)
    blob = snapshot_written_by(Written, WRITTEN)
    validations.clear()
    holder, report = restore_into(Bounded, {"entries": {}}, blob)
    assert report.components[0].fingerprint_matches is False
    assert holder.state == WRITTEN
    assert validations == ["validate"]


READ_BACK_SECONDS = 100.0


def read_back_takes_long(monkeypatch: pytest.MonkeyPatch, module: Any, check: str) -> None:
    """Make ``module``'s read-back ``check`` take READ_BACK_SECONDS on ``module``'s
    clock (its ``time``), which otherwise keeps time as usual."""
    offset = [0.0]
    monkeypatch.setattr(
        module, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0])
    )
    original = getattr(module, check)

    def slow(*args: Any) -> Any:
        offset[0] += READ_BACK_SECONDS
        return original(*args)

    monkeypatch.setattr(module, check, slow)


def test_the_read_back_check_counts_in_validate_and_the_phases_add_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="statemigrate")
    blob = snapshot_written_by(Written, WRITTEN)
    read_back_takes_long(monkeypatch, _restore, "read_back")
    started = time.perf_counter()
    _, report = restore_into(Bounded, {"entries": {}}, blob)
    whole = time.perf_counter() - started + READ_BACK_SECONDS
    assert set(report.timings) == {"read", "verify", "decode", "migrate", "validate", "apply"}
    assert report.timings["validate"] >= READ_BACK_SECONDS
    assert sum(report.timings.values()) <= whole
    assert "validate 100" in report.summary()
    assert "cache/default: the section reads back as written (checked in 100" in caplog.text


class ByName(TypedDict):
    by_id: dict[str, str]


class ById(TypedDict):
    """``ByName`` with its keys retyped in place: ``"007"`` and ``"7"`` both become 7."""

    by_id: dict[int, str]


class FloatIds(TypedDict):
    by_id: dict[float, str]


class ByDecimal(TypedDict):
    by_price: dict[Decimal, int]


class ByFloat(TypedDict):
    """``ByDecimal`` retyped in place: keys that differ past a float's precision merge."""

    by_price: dict[float, int]


def test_dict_keys_retyped_in_place_are_refused_not_merged() -> None:
    """pydantic writes the same JSON Schema for both; the fingerprint tells them apart,
    and the read-back check finds the key the merge would lose."""
    live = {"by_id": {1: "live"}}
    blob = snapshot_written_by(ByName, {"by_id": {"007": "bond", "7": "seven"}})
    reader = Service("svc", registry=registry_of(ById))
    holder = Holder(live)
    reader.register(holder)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "validate"
    assert "at ['by_id']['007']: this key would be lost" in str(caught.value)
    assert holder.state is live and live == {"by_id": {1: "live"}}


def test_decimal_keys_retyped_as_floats_in_place_are_refused() -> None:
    written = {"by_price": {Decimal("0.1000000000000000000001"): 1, Decimal("0.1"): 2}}
    blob = snapshot_written_by(ByDecimal, written)
    with pytest.raises(RestoreError) as caught:
        restore_into(ByFloat, {"by_price": {}}, blob)
    assert "at ['by_price']['0.1000000000000000000001']: this key would be lost" in str(
        caught.value
    )


def test_keys_retyped_in_place_that_all_come_back_restore_with_the_mismatch_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Plain data holds int keys as text: ``"7"`` written under ``dict[str, str]`` reads
    back as written under ``dict[int, str]``. Nothing is lost, so the restore goes on,
    and it reports that another schema wrote the section."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(ByName, {"by_id": {"7": "seven"}})
    holder, report = restore_into(ById, {"by_id": {}}, blob)
    assert holder.state == {"by_id": {7: "seven"}}
    assert report.components[0].fingerprint_matches is False
    assert "differs from this code's" in caplog.text


def test_a_snapshot_of_an_earlier_release_restores_once_with_the_warning_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Releases before key types counted gave ``dict[int, str]`` the fingerprint of its
    JSON Schema alone; such a snapshot reads back as written, and the warning says why
    the fingerprints differ."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ById)
    former = fingerprint_of(pydantic_core.to_jsonable_python(adapter.json_schema()))
    assert former != registry_of(ById).schema_for("cache", 1).fingerprint
    blob = encode_snapshot(
        [SectionInput("cache", "default", 1, former, {"by_id": {"7": "seven"}})],
        producer=Producer.current("svc"),
    ).to_bytes()
    holder, report = restore_into(ById, {"by_id": {}}, blob)
    assert holder.state == {"by_id": {7: "seven"}}
    assert report.components[0].fingerprint_matches is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "equals it as computed without the Python types this schema records" in warning
    assert "either a release that did not record such types wrote the snapshot" in warning


def test_the_warning_names_a_schema_without_the_types_as_a_cause_as_likely_as_a_release(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """This release wrote the snapshot with ``dict[str, str]``; the code now says
    ``dict[int, str]``. The fingerprint is the one earlier releases computed for the
    code's schema, so it cannot tell which: the warning names the field and both
    causes, and does not say that an earlier release wrote the snapshot."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(ByName, {"by_id": {"7": "seven"}})
    holder, report = restore_into(ById, {"by_id": {}}, blob)
    assert holder.state == {"by_id": {7: "seven"}}
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "(field `by_id`: dict keys int)" in warning
    assert "or a schema of version 1 without them did" in warning
    assert "an earlier release wrote the snapshot" not in warning


def test_a_fingerprint_of_another_schema_with_recorded_types_gets_no_release_clause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``dict[int, str]`` written, ``dict[float, str]`` read: no release before this
    one computed that fingerprint for the code's schema, so none is named."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(ById, {"by_id": {7: "seven"}})
    with pytest.raises(RestoreError):  # 7 comes back as 7.0
        restore_into(FloatIds, {"by_id": {}}, blob)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "release" not in warning
    assert warning.endswith("differs from this code's; checking that this code reads the"
                            " section back as written")


# --- deltas -----------------------------------------------------------------------------


class Records:
    """A component whose one record field takes deltas."""

    def __init__(self) -> None:
        self.by_id: TrackedDict[Any, str] = TrackedDict()


def records_service(schema: type, *, version: int = 1, step: bool = False) -> tuple[Service, Any]:
    registry = Registry()
    registry.add_schema("prices", 1, schema)
    if step:
        registry.add_schema("prices", 2, ById)
        registry.add_migration("prices", 1, 2, lambda key, value: value, records="by_id")
        registry.add_migration("prices", 2, 1, lambda key, value: value, records="by_id")
    held: type[Records] = type("Held", (Records,), {})
    component = registry.migratable("prices", version=version)(held)
    service = Service("svc", registry=registry)
    return service, service.register(component())


def full_and_delta(
    initial: dict[str, Any], change: Any, *, schema: type = ByName
) -> tuple[bytes, bytes]:
    """A pre-copy's full snapshot of ``initial``, then its delta after ``change``."""
    source, live = records_service(schema)
    live.by_id.update(initial)
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    full = precopy.full().to_bytes()
    change(live.by_id)
    return full, precopy.delta().to_bytes()


def test_a_delta_whose_records_merge_under_retyped_keys_is_refused() -> None:
    """Its base reads back as written ("7" is 7 either way); the delta's new "007"
    would overwrite 7's value."""
    full, delta = full_and_delta({"7": "seven"}, lambda d: d.update({"007": "bond"}))
    reader, held = records_service(ById)
    assert reader.restore(full).components[0].fingerprint_matches is False
    with pytest.raises(RestoreError) as caught:
        reader.restore(delta)
    assert caught.value.phase == "validate"
    assert "at ['by_id']['007']: this key would be lost" in str(caught.value)
    assert dict(held.by_id) == {7: "seven"}


class IntValues(TypedDict):
    by_id: dict[str, int]


class FloatValues(TypedDict):
    """``IntValues`` with its values widened in place to floats."""

    by_id: dict[str, float]


def test_a_delta_of_ints_read_back_as_floats_applies() -> None:
    """A delta follows the full section's rule: an int comes back as the equal float."""
    full, delta = full_and_delta({"a": 1}, lambda d: d.update(b=2, c=True), schema=IntValues)
    reader, held = records_service(FloatValues)
    reader.restore(full)
    assert reader.restore(delta).components[0].fingerprint_matches is False
    assert [(k, v, type(v)) for k, v in held.by_id.items()] == [
        ("a", 1.0, float), ("b", 2.0, float), ("c", 1.0, float)
    ]


def test_a_delta_deleting_a_key_that_reads_back_as_another_is_refused() -> None:
    """A key written and deleted between the pieces is deleted by the delta; read as 7
    under retyped keys, it would delete the record 7."""

    def add_and_delete(d: TrackedDict[Any, str]) -> None:
        d["007"] = "bond"
        del d["007"]

    full, delta = full_and_delta({"7": "seven"}, add_and_delete)
    reader, held = records_service(ById)
    reader.restore(full)
    with pytest.raises(RestoreError) as caught:
        reader.restore(delta)
    assert "at deleted['by_id'][0]: '007' (str) would come back as '7' (str)" in str(caught.value)
    assert dict(held.by_id) == {7: "seven"}


def test_a_delta_whose_records_merge_after_a_record_step_is_refused() -> None:
    """Fingerprints match here (version 1 wrote it, a step brings it to version 2, whose
    keys are ints); records that validation merges still refuse the delta."""
    source, live = records_service(ByName, step=True)
    live.by_id.update({"7": "seven"})
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    full = precopy.full().to_bytes()
    live.by_id.update({"7": "SEVEN", "007": "bond"})  # one key updated, one added
    delta = precopy.delta().to_bytes()
    reader, held = records_service(ByName, version=2, step=True)
    reader.restore(full)
    with pytest.raises(RestoreError) as caught:
        reader.restore(delta)
    assert caught.value.phase == "validate"
    assert "holds 2 records in the delta and 1 after validation" in str(caught.value)
    assert dict(held.by_id) == {7: "seven"}


# --- one warning a restore --------------------------------------------------------------


def test_a_checkpoint_chain_warns_of_a_differing_fingerprint_once_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its base and each of its deltas carry the same fingerprint: one WARNING (the
    base's), and one INFO line counting the pieces that repeated it."""
    caplog.set_level(logging.INFO, logger="statemigrate")
    writer, live = records_service(ByName)
    writer.start_cold("test")
    store = MemoryStore()
    checkpointer = Checkpointer(
        writer, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=1000.0
    )
    live.by_id.update({str(number): "base" for number in range(2_000)})
    for number in range(5):
        checkpointer.checkpoint_now()  # the base, then four deltas
        live.by_id[str(number)] = f"v{number}"
    assert checkpointer.chain_length == 5
    reader, held = records_service(ById)
    reader.start_from(store)
    assert len(held.by_id) == 2_000 and held.by_id[3] == "v3"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "schema fingerprint for version 1 differs" in warnings[0]
    counts = [r.getMessage() for r in caplog.records if "more piece(s)" in r.getMessage()]
    assert counts == [
        "prices/default: 4 more piece(s) of this restore carried the same schema"
        " fingerprint for version 1 as the one warned of above"
    ]


def test_a_take_overs_pieces_warn_once_and_each_restore_warns_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A take-over's pre-copy pieces are one restore (as the successor's take-over
    restores them): one WARNING for them all. A restore after it warns on its own."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    source, live = records_service(ByName)
    live.by_id.update({"1": "one"})
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    pieces = [precopy.full().to_bytes()]
    for number in range(2, 18):
        live.by_id[str(number)] = "more"
        pieces.append(precopy.delta().to_bytes())
    reader, held = records_service(ById)
    with reader._one_restore():
        for piece in pieces:
            reader.restore(piece)
    assert len(held.by_id) == 17
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    again, _ = records_service(ById)
    again.restore(pieces[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2


def test_a_delta_read_back_check_counts_in_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    full, delta = full_and_delta({"7": "seven"}, lambda d: d.update({"8": "eight"}))
    reader, held = records_service(ById)
    reader.restore(full)
    read_back_takes_long(monkeypatch, _delta, "delta_read_back_problem")
    report = reader.restore(delta)
    assert report.delta and dict(held.by_id) == {7: "seven", 8: "eight"}
    assert report.timings["validate"] >= READ_BACK_SECONDS


class SupplierNamed(BaseModel):
    supplier: str = Field(default="", alias="supplierName")


class VendorNamed(BaseModel):
    """``supplier`` renamed ``vendor`` in place, under the same alias."""

    vendor: str = Field(default="", alias="supplierName")


class AliasedRecord(TypedDict):
    score: Annotated[int, Field(alias="points")]


def test_a_field_renamed_under_the_same_alias_is_refused_not_emptied() -> None:
    """Snapshots hold fields by their Python names. The fingerprint hashed the aliases,
    so this rename kept it: the restore skipped the read-back check and the renamed
    field came back empty, its data dropped as an unknown key, with no word."""
    written = registry_of(SupplierNamed).schema_for("cache", 1)
    renamed = registry_of(VendorNamed).schema_for("cache", 1)
    assert written.fingerprint != renamed.fingerprint
    blob = snapshot_written_by(SupplierNamed, SupplierNamed(supplierName="ACME"))
    with pytest.raises(RestoreError) as caught:
        restore_into(VendorNamed, VendorNamed(), blob)
    assert "at ['supplier']: this key would be lost" in str(caught.value)


def test_fingerprints_name_fields_by_their_names_in_typeddicts_too() -> None:
    aliased = SchemaVersion.create("cache", 1, AliasedRecord)
    assert list(aliased.json_schema()["properties"]) == ["score"]
    assert list(aliased.json_schema(by_alias=True)["properties"]) == ["points"]


def test_a_snapshot_fingerprinted_by_aliases_restores_with_the_warning_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Releases that hashed aliases gave this schema another fingerprint: such a
    snapshot reads back as written, and the warning says why the fingerprints differ."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    schema = registry_of(SupplierNamed).schema_for("cache", 1)
    former = fingerprint_of(schema.json_schema(by_alias=True))
    assert former != schema.fingerprint
    blob = encode_snapshot(
        [SectionInput("cache", "default", 1, former, {"supplier": "ACME"})],
        producer=Producer.current("svc"),
    ).to_bytes()
    holder, report = restore_into(SupplierNamed, SupplierNamed(), blob)
    assert holder.state == SupplierNamed(supplierName="ACME")
    assert report.components[0].fingerprint_matches is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "equals it as computed with its fields' aliases in place of their names" in warning
