"""The migration pipeline (Registry.migrate, run_plan) and the callers that share it."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from pydantic import BaseModel, create_model, field_validator
from typing_extensions import TypedDict

import statemigrate as sm
import statemigrate.testing as kit
from statemigrate._model._migrate import raised_by_user_code, run_plan
from statemigrate._model._schema import SchemaVersion
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer


class SessionsV1(TypedDict):
    entries: dict[str, str]


class Entry(TypedDict):
    value: str
    ttl: int


class SessionsV2(TypedDict):
    entries: dict[str, Entry]


def add_ttl(data: Any) -> Any:
    data["entries"] = {key: {"value": value, "ttl": 60} for key, value in data["entries"].items()}
    return data


def drop_ttl(data: Any) -> Any:
    data["entries"] = {key: entry["value"] for key, entry in data["entries"].items()}
    return data


def sessions(*, lossy_down: bool = True, up: Any = add_ttl) -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("sessions", 1, SessionsV1)
    registry.add_schema("sessions", 2, SessionsV2)
    registry.add_migration("sessions", 1, 2, up, name="add_ttl")
    registry.add_migration("sessions", 2, 1, drop_ttl, lossy=lossy_down)
    return registry


V1 = {"entries": {"a": "x", "b": "y"}}
V2 = {"entries": {"a": {"value": "x", "ttl": 60}, "b": {"value": "y", "ttl": 60}}}


def fresh_v1() -> dict[str, Any]:
    return {"entries": dict(V1["entries"])}


# --- the function itself -------------------------------------------------------------


def test_migrate_plans_applies_validates_and_exports() -> None:
    result = sessions().migrate("sessions", fresh_v1(), 1, 2)
    assert result.data == V2 and result.state == V2
    assert result.step_names == ("sessions 1 -> 2 (add_ttl)",)
    assert (result.plan.source, result.plan.target) == (1, 2)
    assert set(result.timings) == {"copy", "migrate", "validate", "export"}


def test_a_copy_leaves_the_callers_data_as_it_was() -> None:
    data = fresh_v1()
    result = sessions().migrate("sessions", data, 1, 2)
    assert data == V1
    assert result.state["entries"] is not data["entries"]


def test_without_a_copy_the_data_is_handed_over() -> None:
    """copy=False: the steps work on the caller's data itself (no copy is made)."""
    data = fresh_v1()
    sessions().migrate("sessions", data, 1, 2, copy=False)
    assert data == V2  # add_ttl changed it in place


def test_without_validation_the_steps_output_is_returned_as_it_is() -> None:
    result = sessions().migrate("sessions", fresh_v1(), 1, 2, validate=False)
    assert result.data == V2 and result.state is None


def test_without_export_only_the_state_is_returned() -> None:
    result = sessions().migrate("sessions", fresh_v1(), 1, 2, export=False)
    assert result.data is None and result.state == V2


def test_the_same_version_validates_only() -> None:
    result = sessions().migrate("sessions", fresh_v1(), 1, 1)
    assert result.steps == () and result.data == V1


def test_a_lossy_plan_is_refused_unless_allowed() -> None:
    registry = sessions()
    with pytest.raises(sm.LossyMigrationError) as caught:
        registry.migrate("sessions", V2, 2, 1)
    assert caught.value.steps == ["sessions 2 -> 1 (drop_ttl)"]
    assert registry.migrate("sessions", V2, 2, 1, allow_lossy=True).data == V1


def test_no_path_and_unknown_components_are_refused() -> None:
    registry = sessions()
    with pytest.raises(sm.NoMigrationPathError):
        registry.migrate("sessions", V1, 1, 3)
    with pytest.raises(sm.UnknownComponentError):
        registry.migrate("nosuch", V1, 1, 2)


def test_a_failing_step_is_reported_by_name_with_its_exception_chained() -> None:
    def broken(data: Any) -> Any:
        raise KeyError("ttl")

    with pytest.raises(sm.MigrationStepError) as caught:
        sessions(up=broken).migrate("sessions", fresh_v1(), 1, 2, instance="main")
    error = caught.value
    assert error.step == "sessions 1 -> 2 (add_ttl)"
    assert (error.component, error.source, error.target, error.instance) == (
        "sessions", 1, 2, "main"
    )
    assert str(error) == (
        "migration step sessions 1 -> 2 (add_ttl) failed: KeyError: 'ttl' (in sessions/main)"
    )
    assert isinstance(error.__cause__, KeyError)
    assert raised_by_user_code(error) is error.__cause__


def test_a_step_that_forgets_to_return_is_a_step_error() -> None:
    def forgetful(data: Any) -> None:
        data["entries"] = {}

    with pytest.raises(sm.MigrationStepError, match=r"TypeError: .*returned None"):
        sessions(up=forgetful).migrate("sessions", fresh_v1(), 1, 2)


def test_output_that_does_not_fit_the_target_names_the_instance() -> None:
    def half(data: Any) -> Any:
        return {"entries": {"a": {"value": "x"}}}

    with pytest.raises(sm.ValidationError) as caught:
        sessions(up=half).migrate("sessions", fresh_v1(), 1, 2, instance="main")
    assert caught.value.instance == "main" and caught.value.version == 2
    assert str(caught.value).startswith("sessions/main does not fit schema version 2")
    assert raised_by_user_code(caught.value) is caught.value


class Picky(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def explode(cls, value: int) -> int:
        raise RuntimeError("validator bug")


def test_a_validator_that_raises_a_foreign_exception_is_translated() -> None:
    registry = sm.Registry()
    registry.add_schema("picky", 1, Picky)
    with pytest.raises(sm.ValidationError, match="RuntimeError: validator bug") as caught:
        registry.migrate("picky", {"n": 1}, 1, 1)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert raised_by_user_code(caught.value) is caught.value.__cause__


def test_run_plan_takes_any_plan() -> None:
    """A plan the planner would not choose (a lossy step) runs as it is given."""
    registry = sessions(lossy_down=True)
    (down,) = [step for step in registry.steps("sessions") if step.source == 2]
    plan = sm.Plan("sessions", 2, 1, (down,))
    data = {"entries": {"a": {"value": "x", "ttl": 1}}}
    result = run_plan(plan, data, schema=registry.schema_for("sessions", 1))
    assert result.data == {"entries": {"a": "x"}}
    assert data == {"entries": {"a": {"value": "x", "ttl": 1}}}


# --- the callers ---------------------------------------------------------------------


@sm.migratable("sessions", version=2)
class Live:
    def __init__(self) -> None:
        self.entries: dict[str, Any] = {"a": {"value": "x", "ttl": 60}}


def test_a_snapshot_for_older_code_reports_a_failing_step_as_a_step_error() -> None:
    def broken_down(data: Any) -> Any:
        raise ValueError("cannot go back")

    registry = sm.Registry()
    registry.add_schema("sessions", 1, SessionsV1)
    registry.add_schema("sessions", 2, SessionsV2)
    registry.add_migration("sessions", 2, 1, broken_down, name="drop_ttl")
    service = sm.Service("svc", registry=registry)
    live = service.register(Live())
    with pytest.raises(sm.MigrationStepError) as caught:
        service.snapshot(targets={"sessions": 1})
    assert caught.value.step == "sessions 2 -> 1 (drop_ttl)"
    assert "sessions/default" in str(caught.value)
    assert live.entries == {"a": {"value": "x", "ttl": 60}}


def v1_snapshot(registry: sm.Registry, *, generation: int = 0) -> Any:
    """A snapshot of ``fresh_v1()`` at sessions version 1, as ``encode_snapshot`` gives it."""
    v1 = registry.schema_for("sessions", 1)
    return encode_snapshot(
        [SectionInput("sessions", "default", 1, v1.fingerprint, fresh_v1())],
        producer=Producer.current("svc"),
        generation=generation,
    )


def test_a_restore_keeps_its_decoded_data_without_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The restore hands its decoded section to the pipeline, which validates it in
    place: pydantic's copying validation never runs."""
    registry = sessions()
    encoded = v1_snapshot(registry)
    service = sm.Service("svc", registry=registry)
    live = service.register(Live())
    copies: list[object] = []
    real = SchemaVersion.validate

    def spy(self: SchemaVersion, data: object) -> Any:
        copies.append(data)
        return real(self, data)

    monkeypatch.setattr(SchemaVersion, "validate", spy)
    report = service.restore(encoded.to_bytes())
    assert report.components[0].steps == ("sessions 1 -> 2 (add_ttl)",)
    assert live.entries == V2["entries"]
    assert copies == []


def test_a_restore_names_the_failing_step_and_chains_its_exception() -> None:
    def broken(data: Any) -> Any:
        raise KeyError("ttl")

    registry = sessions(up=broken)
    encoded = v1_snapshot(registry)
    service = sm.Service("svc", registry=registry)
    service.register(Live())
    with pytest.raises(sm.RestoreError) as caught:
        service.restore(encoded.to_bytes())
    error = caught.value
    assert (error.phase, error.step) == ("migrate", "sessions 1 -> 2 (add_ttl)")
    assert isinstance(error.__cause__, KeyError)


def test_migrate_snapshot_rewrites_the_named_components() -> None:
    registry = sessions()
    encoded = v1_snapshot(registry, generation=7)
    snapshot = sm.open_snapshot(encoded.to_bytes())
    seen: list[str] = []
    migrated = sm.migrate_snapshot(
        snapshot, {"sessions": 2}, registry=registry, on_section=seen.append
    )
    assert seen == ["sessions/default"]
    assert str(migrated.plans["sessions/default"]) == "sessions 1 -> 2 (add_ttl)"
    again = sm.open_snapshot(migrated.encoded.to_bytes())
    assert again.header.generation == 7
    assert again.header.meta["migrated_from"] == snapshot.header.snapshot_id
    assert again.header.sections[0].version == 2
    assert again.read_section(0) == V2


def test_migrate_snapshot_to_the_version_a_section_has_checks_it_as_a_step_would() -> None:
    """Named at its own version, a section runs no step, yet what is written is held to
    that version's schema: a rewrite never passes on data no restore would take."""
    registry = sessions()
    v1 = registry.schema_for("sessions", 1)
    bad = encode_snapshot(
        [SectionInput("sessions", "default", 1, v1.fingerprint, {"entries": {"a": 5}})],
        producer=Producer.current("svc"),
    )
    snapshot = sm.open_snapshot(bad.to_bytes())
    with pytest.raises(sm.ValidationError, match=r"sessions/default .*entries\['a'\]"):
        sm.migrate_snapshot(snapshot, {"sessions": 1}, registry=registry)
    good = sm.open_snapshot(v1_snapshot(registry).to_bytes())
    rewritten = sm.migrate_snapshot(good, {"sessions": 1}, registry=registry)
    assert sm.open_snapshot(rewritten.encoded.to_bytes()).read_section(0) == V1


class PricesByName(TypedDict):
    by_id: dict[str, str]


class PricesById(TypedDict):
    """``PricesByName`` with its keys retyped in place, version kept."""

    by_id: dict[int, str]


def test_migrate_snapshot_refuses_a_section_another_schema_wrote_under_its_version() -> None:
    """Rewritten, the section would carry this code's fingerprint, and no later restore
    could tell that "007" and "7" were merged into 7."""
    writer = sm.Registry()
    writer.add_schema("prices", 1, PricesByName)
    written = {"by_id": {"007": "bond", "7": "seven"}}
    v1 = writer.schema_for("prices", 1)
    blob = encode_snapshot(
        [SectionInput("prices", "default", 1, v1.fingerprint, written)],
        producer=Producer.current("svc"),
    )
    reader = sm.Registry()
    reader.add_schema("prices", 1, PricesById)
    reader.add_schema("prices", 2, PricesById)
    reader.add_migration("prices", 1, 2, lambda data: data, name="same")
    reader.add_migration("prices", 2, 1, lambda data: data, name="same")
    snapshot = sm.open_snapshot(blob.to_bytes())
    lost = r"\['by_id'\]\['007'\]: this key would be lost"
    for target in (1, 2):
        with pytest.raises(sm.ValidationError, match=lost):
            sm.migrate_snapshot(snapshot, {"prices": target}, registry=reader)


def test_migrate_snapshot_refuses_a_component_the_snapshot_lacks() -> None:
    registry = sessions()
    encoded = v1_snapshot(registry)
    snapshot = sm.open_snapshot(encoded.to_bytes())
    with pytest.raises(sm.ConfigurationError, match="snapshot has no section for nosuch"):
        sm.migrate_snapshot(snapshot, {"nosuch": 1}, registry=registry)


# --- a step's output must be plain data, for every caller alike ----------------------


class Seen(TypedDict):
    value: str
    at: datetime.datetime
    tags: list[str]


class SessionsSeen(TypedDict):
    entries: dict[str, Seen]


def stamp(data: Any) -> Any:
    """Gives pydantic what it would take (a datetime, a set) instead of plain data."""
    data["entries"] = {
        key: {"value": value, "at": datetime.datetime(2026, 1, 2), "tags": {"x"}}
        for key, value in data["entries"].items()
    }
    return data


def unstamp(data: Any) -> Any:
    data["entries"] = {key: entry["value"] for key, entry in data["entries"].items()}
    return data


def stamped() -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("sessions", 1, SessionsV1)
    registry.add_schema("sessions", 2, SessionsSeen)
    registry.add_migration("sessions", 1, 2, stamp)
    registry.add_migration("sessions", 2, 1, unstamp, lossy=True)
    return registry


NOT_PLAIN = "returned data that is not plain at ['entries']["


def test_a_step_whose_output_is_not_plain_is_refused_with_the_step_and_the_path() -> None:
    with pytest.raises(sm.MigrationStepError) as caught:
        stamped().migrate("sessions", fresh_v1(), 1, 2)
    error = caught.value
    assert error.step == "sessions 1 -> 2 (stamp)"
    assert error.path is not None and error.path.startswith("['entries'][")
    assert NOT_PLAIN in str(error) and "\n" not in str(error)
    assert "is not plain data" in error.detail


def test_a_restore_refuses_what_the_testing_kit_refuses() -> None:
    """Whatever a restore does with a step's output, the testing kit predicts."""
    registry = stamped()
    encoded = v1_snapshot(registry)
    service = sm.Service("svc", registry=registry)
    live = service.register(SeenLive())
    with pytest.raises(sm.RestoreError) as caught:
        service.restore(encoded.to_bytes())
    assert (caught.value.phase, caught.value.step) == ("migrate", "sessions 1 -> 2 (stamp)")
    assert NOT_PLAIN in str(caught.value)
    assert live.entries == {}
    with pytest.raises(sm.MigrationStepError, match=r"not plain at \['entries'\]\['[ab]'\]"):
        sm.migrate_snapshot(sm.open_snapshot(encoded.to_bytes()), {"sessions": 2},
                            registry=registry)
    report = kit.check_migrations(registry, max_examples=20, raise_on_failure=False)
    failures = {failure.check: failure for failure in report.failures}
    step = failures["sessions-step-1-2"]
    assert step.what == "step returned data that is not plain"
    assert "is not plain data" in step.detail


class Counted(TypedDict):
    counts: dict[str, int]


class Totalled(TypedDict):
    counts: dict[str, int]
    total: int


def test_a_step_returning_an_int_past_64_bits_is_told_to_return_its_text() -> None:
    """An int past 64 bits reaches a step as its decimal text; one the step returns as
    an int is refused, and the message says which form to return."""
    registry = sm.Registry()
    registry.add_schema("c", 1, Counted)
    registry.add_schema("c", 2, Totalled)

    def add_total(data: dict[str, Any]) -> dict[str, Any]:
        assert data["counts"]["a"] == str(2**64)  # the form the step receives
        data["total"] = sum(int(count) for count in data["counts"].values())
        return data

    registry.add_migration("c", 1, 2, add_total)
    with pytest.raises(sm.MigrationStepError) as caught:
        registry.migrate("c", {"counts": {"a": str(2**64), "b": 1}}, 1, 2)
    detail = caught.value.detail
    assert f"the integer {2**64 + 1} does not fit in 64 bits" in detail
    assert "return an int past 64 bits as its decimal text, str(n)" in detail
    # Returned as its text, the int is valid output.
    fixed = sm.Registry()
    fixed.add_schema("c", 1, Counted)
    fixed.add_schema("c", 2, Totalled)

    def add_total_text(data: dict[str, Any]) -> dict[str, Any]:
        total = sum(int(count) for count in data["counts"].values())
        data["total"] = total if -(2**63) <= total < 2**64 else str(total)
        return data

    fixed.add_migration("c", 1, 2, add_total_text)
    result = fixed.migrate("c", {"counts": {"a": str(2**64), "b": 1}}, 1, 2)
    assert result.state["total"] == 2**64 + 1


def test_the_advice_on_big_ints_is_given_for_big_ints_only() -> None:
    with pytest.raises(sm.MigrationStepError) as caught:
        stamped().migrate("sessions", fresh_v1(), 1, 2)
    assert "decimal text" not in caught.value.detail


@sm.migratable("sessions", version=2)
class SeenLive:
    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}


class MeterV1(TypedDict):
    n: int


class MeterV2(TypedDict):
    n: float


@sm.migratable("meter", version=2)
class Meter:
    def __init__(self) -> None:
        self.n: Any = 7


def meters(**lossy: Any) -> sm.Registry:
    """``n: int`` at version 1, ``n: float`` at 2, and a step up that keeps the data."""
    registry = sm.Registry()
    registry.add_schema("meter", 1, MeterV1)
    registry.add_schema("meter", 2, MeterV2)
    registry.add_migration("meter", 1, 2, lambda data: data, name="to_float", **lossy)
    return registry


def test_a_step_whose_output_validation_makes_another_number_is_refused() -> None:
    """Validated as a float, 2**53 + 1 is 2.0**53: refused as an export refuses it."""
    with pytest.raises(sm.ValidationError) as caught:
        meters().migrate("meter", {"n": 2**53 + 1}, source=1, target=2)
    assert "at ['n']: 9007199254740993 (int) would come back as 9007199254740992.0 (float)" in (
        str(caught.value)
    )
    assert "meter 1 -> 2 (to_float)" in str(caught.value)
    exact = meters().migrate("meter", {"n": 2**60}, source=1, target=2)
    assert exact.state == {"n": 2.0**60}


class ReadingV2(BaseModel):
    n: float


class ReadingsV2(BaseModel):
    readings: dict[str, ReadingV2]


def test_a_model_schema_finds_the_rounded_int_among_many_records() -> None:
    """A model schema's validation always copies: its float columns are looked at, and
    the one int among them is walked to and named."""
    registry = sm.Registry()
    registry.add_schema("readings", 1, create_model("ReadingsV1", readings=(dict[str, Any], ...)))
    registry.add_schema("readings", 2, ReadingsV2)
    registry.add_migration("readings", 1, 2, lambda data: data, name="typed")
    data = {"readings": {f"r{i}": {"n": float(i)} for i in range(100)}}
    assert registry.migrate("readings", data, source=1, target=2).state.readings["r7"].n == 7.0
    data["readings"]["r42"]["n"] = 2**53 + 1
    said = re.escape("at readings['r42'].n: 9007199254740993")
    with pytest.raises(sm.ValidationError, match=said):
        registry.migrate("readings", data, source=1, target=2)


def test_a_step_declared_lossy_for_the_field_may_round_it() -> None:
    registry = meters(lossy=("n",))
    result = registry.migrate("meter", {"n": 2**53 + 1}, source=1, target=2, allow_lossy=True)
    assert result.state == {"n": 2.0**53}


def test_a_restore_through_a_step_that_rounds_an_int_changes_no_component() -> None:
    registry = meters()
    v1 = registry.schema_for("meter", 1)
    encoded = encode_snapshot(
        [SectionInput("meter", "default", 1, v1.fingerprint, {"n": 2**53 + 1})],
        producer=Producer.current("svc"),
        generation=0,
    )
    service = sm.Service("svc", registry=registry)
    live = service.register(Meter())
    with pytest.raises(sm.RestoreError, match="would come back as 9007199254740992.0"):
        service.restore(encoded.to_bytes())
    assert live.n == 7


# --- the last step's output checked in one walk --------------------------------------


def test_the_last_steps_output_is_proven_plain_and_fitting_in_one_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the target schema has a proving checker (the C checks are built), the
    output that passes it owes no plain-data check of its own and is kept as it is;
    output that fails it gets the plain-data check, whose refusal names the step."""
    from statemigrate._model import _migrate

    if sm.Registry().add_schema("probe", 1, SessionsV2).in_place_plain is None:
        pytest.skip("the C checks are not built here")
    plain_checks: list[object] = []
    real = _migrate._check_plain

    def counted(step: Any, data: Any, instance: str | None) -> bool:
        plain_checks.append(step)
        return real(step, data, instance)

    monkeypatch.setattr(_migrate, "_check_plain", counted)
    result = sessions().migrate("sessions", fresh_v1(), 1, 2, copy=False)
    assert result.data == V2 and plain_checks == []

    def surrogate(data: Any) -> Any:
        data["entries"] = {"k": {"value": "\ud800", "ttl": 1}}
        return data

    where = r"not plain at \['entries'\]\['k'\]\['value'\]"
    with pytest.raises(sm.MigrationStepError, match=where):
        sessions(up=surrogate).migrate("sessions", fresh_v1(), 1, 2)
    assert len(plain_checks) == 1
