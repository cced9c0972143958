"""Record steps: one record of a keyed collection at a time, on whole states and deltas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, BeforeValidator, field_validator, model_validator
from typing_extensions import TypedDict

from statemigrate import Registry
from statemigrate._errors import MigrationStepError, RegistrationError
from statemigrate._model._plan import Plan, Step


class V1(TypedDict):
    entries: dict[str, int]
    label: str


class V2(TypedDict):
    entries: dict[str, dict[str, int]]
    label: str


def _wrap(key: str, value: int) -> dict[str, int]:
    return {"n": value, "len": len(key)}


def _whole(data: dict[str, Any]) -> dict[str, Any]:
    data["entries"] = {k: _wrap(k, v) for k, v in data["entries"].items()}
    return data


def _registry(*, records: bool = True) -> Registry:
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_schema("c", 2, V2)
    if records:
        registry.add_migration("c", 1, 2, _wrap, records="entries")
    else:
        registry.add_migration("c", 1, 2, _whole)
    registry.add_migration("c", 2, 1, lambda k, v: v["n"], records="entries", name="unwrap")
    return registry


ENTRIES = st.dictionaries(st.text(max_size=8), st.integers(-(2**40), 2**40), max_size=30)


@given(ENTRIES, st.text(max_size=5))
def test_a_record_step_equals_its_whole_data_mapping(entries: dict[str, int], label: str) -> None:
    """Property: a record step on a whole state gives what mapping every record with
    a whole-data step gives, and keeps the other fields and the key order."""
    by_record = _registry().migrate("c", {"entries": entries, "label": label}, 1, 2)
    by_whole = _registry(records=False).migrate("c", {"entries": entries, "label": label}, 1, 2)
    assert by_record.data == by_whole.data
    assert list(by_record.data["entries"]) == list(entries)
    assert by_record.data["label"] == label


@given(ENTRIES, st.data())
def test_a_record_step_on_part_of_the_records_gives_that_part_of_the_result(
    entries: dict[str, int], data: st.DataObject
) -> None:
    """Property: migrating a subset of the records (a delta) gives exactly the
    migrated whole state restricted to that subset."""
    keys = data.draw(st.sets(st.sampled_from(sorted(entries)))) if entries else set()
    registry = _registry()
    whole = registry.migrate("c", {"entries": entries, "label": "x"}, 1, 2).data
    part = {k: v for k, v in entries.items() if k in keys}
    migrated = registry.migrate("c", {"entries": part, "label": "x"}, 1, 2).data
    assert migrated["entries"] == {k: whole["entries"][k] for k in keys}


def test_plans_know_whether_they_are_record_wise() -> None:
    assert _registry().plan("c", 1, 2).record_wise
    assert _registry().plan("c", 2, 2).record_wise  # no steps at all
    plan = _registry(records=False).plan("c", 1, 2)
    assert not plan.record_wise
    assert [s.name for s in plan.whole_steps] == ["_whole"]


def test_the_decorator_registers_a_record_step() -> None:
    registry = Registry()

    @registry.migration("c", 1, 2, records="entries")
    def bump(key: str, value: int) -> int:
        return value + 1

    step = registry.steps("c")[0]
    assert step.records == "entries" and step.record_wise
    assert step.apply({"entries": {"a": 1}, "other": [1]}) == {"entries": {"a": 2}, "other": [1]}


def test_a_record_step_may_return_none_for_a_record() -> None:
    """None is a value like any other for a record (an optional value)."""
    step = Step("c", 1, 2, lambda k, v: None, records="entries")
    assert step.apply({"entries": {"a": 1}}) == {"entries": {"a": None}}


class Optional2(TypedDict):
    entries: dict[str, dict[str, int] | None]
    label: str


def _forgets(key: str, value: int) -> None:
    """Changes nothing it could change in place, and returns nothing."""


class Kinded(TypedDict):
    type: int


class KindedState(TypedDict):
    entries: dict[str, Kinded]


def test_a_record_step_over_records_with_a_field_named_type_migrates() -> None:
    """Whether a record may be None is read from the core schema, whose record fields
    sit in a mapping by name: one named "type" is a field, not a node's kind (this
    raised a bare TypeError, unhashable dict)."""
    registry = Registry()
    registry.add_schema("c", 1, KindedState)
    registry.add_schema("c", 2, KindedState)
    bump = lambda key, value: {"type": value["type"] + 1}  # noqa: E731
    registry.add_migration("c", 1, 2, bump, records="entries")
    result = registry.migrate("c", {"entries": {"k": {"type": 1}}}, 1, 2)
    assert result.data == {"entries": {"k": {"type": 2}}}


def test_a_record_step_that_returns_none_where_records_cannot_be_none_is_named() -> None:
    """A record step returning None for a record the target cannot hold as None forgot
    its return: the step and the record are named, as for a whole-data step, rather
    than validation failing later on a None with no step named."""
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_migration("c", 1, 2, _forgets, records="entries")
    registry.add_schema("c", 2, V2)  # after the step: the plan asks the registry
    data = {"entries": {"a": 1, "b": 2}, "label": ""}
    with pytest.raises(MigrationStepError) as caught:
        registry.migrate("c", data, 1, 2)
    assert caught.value.step == "c 1 -> 2 (_forgets)"
    assert caught.value.path == "entries['a']"
    detail = "TypeError: record step c 1 -> 2 (_forgets) returned None"
    assert caught.value.detail.startswith(detail)
    assert registry.plan("c", 1, 2).none_refused == {(1, 2)}
    # Plan.apply says the same, with the record in a note.
    with pytest.raises(TypeError, match="returned None") as plain:
        registry.plan("c", 1, 2).apply({"entries": {"a": 1}, "label": ""})
    assert "in record 'a' of field 'entries'" in plain.value.__notes__


def test_a_record_step_may_return_none_where_the_target_takes_it() -> None:
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_schema("c", 2, Optional2)
    registry.add_migration("c", 1, 2, _forgets, records="entries")
    result = registry.migrate("c", {"entries": {"a": 1}, "label": ""}, 1, 2)
    assert result.data == {"entries": {"a": None}, "label": ""}
    assert registry.plan("c", 1, 2).none_refused == frozenset()


class Item(BaseModel):
    n: int


def _before(value: Any) -> Any:
    return value


@pytest.mark.parametrize(
    ("records", "refused"),
    [
        (dict[str, int], True),
        (dict[str, Item], True),
        (dict[str, list[int]], True),
        (dict[str, Item] | None, True),  # the field may be None, not a record in it
        (dict[str, Literal["a", "b"]], True),
        (dict[str, Item | None], False),
        (dict[str, Literal["a", None]], False),
        (dict[str, Any], False),
        (dict[str, Annotated[int, BeforeValidator(_before)]], False),
        (Any, False),
    ],
)
def test_the_registry_knows_where_a_record_cannot_be_none(records: Any, refused: bool) -> None:
    registry = Registry()
    registry.add_schema("c", 2, TypedDict("Records", {"entries": records}))  # type: ignore[operator]
    step = registry.add_migration("c", 1, 2, _forgets, records="entries")
    assert registry.refuses_none(step) is refused


class _DefaultedItem(BaseModel):
    """A record that validation makes of None: a step may return None for it."""

    n: int = 0

    @model_validator(mode="before")
    @classmethod
    def none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value


class _DroppingNone(BaseModel):
    """A component whose field validator drops None records before the dict's check."""

    entries: dict[str, Item]

    @field_validator("entries", mode="before")
    @classmethod
    def drop_none(cls, value: Any) -> Any:
        return {key: item for key, item in value.items() if item is not None}


class _Defaulting(BaseModel):
    entries: dict[str, _DefaultedItem]


@pytest.mark.parametrize("target", [_DroppingNone, _Defaulting])
def test_a_validator_that_takes_none_records_lets_a_step_return_none(target: type) -> None:
    """A before validator on the field, or on the record's model (inside its node), may
    drop or fill a None record: the step's None is the validator's to judge. Both
    were refused as a forgotten ``return``."""
    registry = Registry()
    registry.add_schema("c", 2, target)
    step = registry.add_migration(
        "c", 1, 2, lambda key, value: None if value["n"] < 0 else value, records="entries"
    )
    assert registry.refuses_none(step) is False
    validated = target.model_validate({"entries": {"a": None, "b": {"n": 1}}})  # type: ignore[attr-defined]
    assert validated.entries["b"].n == 1


def test_a_record_that_was_none_may_stay_none() -> None:
    """A step that maps None to None returned what it was given; the target's
    validation speaks for itself then."""
    step = Step("c", 1, 2, lambda k, v: None, records="entries")
    assert step.apply({"entries": {"a": None}}, none_refused=True) == {"entries": {"a": None}}


@pytest.mark.parametrize("data", [{"entries": [1, 2]}, {"other": {}}, [1]])
def test_a_record_step_needs_a_dict_under_its_field(data: Any) -> None:
    registry = Registry()
    registry.add_migration("c", 1, 2, lambda k, v: v, records="entries", name="same")
    with pytest.raises(MigrationStepError, match="needs a dict under field 'entries'"):
        registry.migrate("c", data, 1, 2, validate=False)


@pytest.mark.parametrize("records", ["", 3])
def test_records_must_name_a_field(records: Any) -> None:
    with pytest.raises(RegistrationError, match="records must name a top-level field"):
        Step("c", 1, 2, lambda k, v: v, records=records)


def test_a_failing_record_step_is_named() -> None:
    registry = Registry()

    def explode(key: str, value: int) -> int:
        raise ValueError(f"bad record {key}")

    registry.add_migration("c", 1, 2, explode, records="entries")
    with pytest.raises(MigrationStepError, match=r"c 1 -> 2 \(explode\).*bad record b"):
        registry.migrate("c", {"entries": {"b": 1}}, 1, 2, validate=False)


def test_a_record_step_error_says_which_record_it_raised_on() -> None:
    registry = Registry()

    def needs_n(key: str, value: dict[str, int]) -> int:
        return value["n"]

    registry.add_migration("c", 1, 2, needs_n, records="entries")
    data = {"entries": {"a": {"n": 1}, "b": {}}}
    with pytest.raises(MigrationStepError) as caught:
        registry.migrate("c", data, 1, 2, validate=False)
    assert caught.value.path == "entries['b']"
    assert caught.value.detail == "KeyError: 'n' (on the record at entries['b'])"
    assert isinstance(caught.value.__cause__, KeyError)  # the step's own error, chained
    with pytest.raises(KeyError) as plain:  # Plan.apply lets it through, with a note
        registry.plan("c", 1, 2).apply({"entries": {"b": {}}})
    assert "in record 'b' of field 'entries'" in plain.value.__notes__


def test_a_record_step_error_counts_and_names_the_other_records_it_fails_on() -> None:
    # One deploy per failing record otherwise: the operator learns of them one by one.
    registry = Registry()

    def needs_n(key: str, value: dict[str, int]) -> int:
        return value["n"]

    registry.add_migration("c", 1, 2, needs_n, records="entries")
    entries = {f"r{i}": ({"n": i} if i % 2 else {}) for i in range(10)}
    with pytest.raises(MigrationStepError) as caught:
        registry.migrate("c", {"entries": entries}, 1, 2, validate=False)
    assert caught.value.path == "entries['r0']"
    assert caught.value.detail == (
        "KeyError: 'n' (on the record at entries['r0']; 4 more records failed too"
        " (at entries['r2'], entries['r4'], entries['r6'], ...))"
    )
    lone = {"entries": {"a": {"n": 1}, "b": {}, "c": {"n": 3}}}
    with pytest.raises(MigrationStepError) as alone:
        registry.migrate("c", lone, 1, 2, validate=False)
    assert alone.value.detail == "KeyError: 'n' (on the record at entries['b'])"


def test_counting_the_other_failures_stops_at_a_bound() -> None:
    from statemigrate._model._recordfailures import MAX_COUNTED

    registry = Registry()
    calls: list[str] = []

    def explode(key: str, value: int) -> int:
        calls.append(key)
        raise ValueError("no")

    registry.add_migration("c", 1, 2, explode, records="entries")
    entries = {f"r{i}": i for i in range(MAX_COUNTED + 50)}
    with pytest.raises(MigrationStepError) as caught:
        registry.migrate("c", {"entries": entries}, 1, 2, validate=False)
    assert len(calls) == MAX_COUNTED + 1
    assert f"; {MAX_COUNTED:,} or more records failed too (at entries['r1']," in (
        caught.value.detail
    )


def test_plan_of_mixed_steps_is_not_record_wise() -> None:
    steps = (
        Step("c", 1, 2, lambda k, v: v, records="entries"),
        Step("c", 2, 3, lambda d: d),
    )
    plan = Plan("c", 1, 3, steps)
    assert not plan.record_wise
    assert plan.whole_steps == (steps[1],)


class W1(TypedDict):
    entries: dict[str, int]
    label: str


class W2(TypedDict):
    entries: dict[str, int]
    title: str
    version_note: str


def _rename(others: dict[str, Any]) -> dict[str, Any]:
    others["title"] = others.pop("label")
    others["version_note"] = "from 1"
    return others


def _with_other_fields() -> Registry:
    registry = Registry()
    registry.add_schema("c", 1, W1)
    registry.add_schema("c", 2, W2)
    registry.add_migration(
        "c", 1, 2, lambda k, v: v * 2, name="double", records="entries", other_fields=_rename
    )
    return registry


@given(ENTRIES.map(lambda d: {k: v % 1000 for k, v in d.items()}), st.text(max_size=4))
def test_other_fields_change_the_fields_beside_the_records(
    entries: dict[str, int], label: str
) -> None:
    """Property: the records are mapped one by one and the other fields by the
    whole-data part, on a whole state and on a delta's part of the records alike."""
    registry = _with_other_fields()
    whole = registry.migrate("c", {"entries": entries, "label": label}, 1, 2).data
    assert whole == {
        "entries": {k: v * 2 for k, v in entries.items()},
        "title": label,
        "version_note": "from 1",
    }
    part = dict(list(entries.items())[::2])
    delta = registry.migrate("c", {"entries": part, "label": label}, 1, 2).data
    assert delta == {**whole, "entries": {k: whole["entries"][k] for k in part}}


def test_other_fields_belong_to_record_steps_and_return_the_other_fields() -> None:
    with pytest.raises(RegistrationError, match="for a record step only"):
        Step("c", 1, 2, lambda d: d, other_fields=lambda d: d)
    step = Step("c", 1, 2, lambda k, v: v, records="entries", other_fields=lambda d: None)
    with pytest.raises(TypeError, match="must return a dict of the fields other than"):
        step.apply({"entries": {}, "label": ""})
    sneaky = Step(
        "c", 1, 2, lambda k, v: v, records="entries", other_fields=lambda d: {"entries": {}}
    )
    with pytest.raises(TypeError, match="must return a dict of the fields other than"):
        sneaky.apply({"entries": {"a": 1}})
    assert _with_other_fields().plan("c", 1, 2).record_wise


class _CheckedV2(BaseModel):
    """A component whose model_validator wraps its fields in pydantic's schema."""

    entries: dict[str, Item]

    @model_validator(mode="before")
    @classmethod
    def as_given(cls, value: Any) -> Any:
        return value


def test_a_record_step_finds_its_field_behind_a_model_validator() -> None:
    """The validator's node stands between the model and its fields: the field was not
    found, and the step refused at registration (``names no field``)."""
    registry = Registry()
    registry.add_schema("c", 1, TypedDict("Records", {"entries": dict[str, Any]}))  # type: ignore[operator]
    registry.add_schema("c", 2, _CheckedV2)
    registry.add_migration("c", 1, 2, lambda key, value: value, records="entries")
    result = registry.migrate("c", {"entries": {"a": {"n": 1}}}, 1, 2)
    assert result.data == {"entries": {"a": {"n": 1}}}
