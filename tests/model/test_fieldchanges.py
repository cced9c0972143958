"""FieldChanges: steps stated as added, renamed and dropped fields, and their proof."""

from __future__ import annotations

import copy
from typing import Any, NotRequired, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate import FieldChanges, Registry
from statemigrate._errors import MigrationStepError, RegistrationError
from statemigrate._runtime import _restore as restore_module
from statemigrate._runtime._restore import plan_proven
from statemigrate.testing import states


class EntryV1(TypedDict):
    id: int
    name: str
    tags: list[str]


class EntryV2(TypedDict):  # hits added at the end
    id: int
    name: str
    tags: list[str]
    hits: int


class EntryV2Middle(TypedDict):  # hits declared before the old fields end
    id: int
    hits: int
    name: str
    tags: list[str]


class EntryV2Renamed(TypedDict):  # name -> title, in its place
    id: int
    title: str
    tags: list[str]


class EntryV2Float(TypedDict):  # hits is a float: an added int would be converted
    id: int
    name: str
    tags: list[str]
    hits: float


class EntryV2Seen(TypedDict):  # seen is a list: every record needs its own
    id: int
    name: str
    tags: list[str]
    seen: list[int]


class EntryPartial(TypedDict):
    id: int
    name: str
    tags: list[str]
    note: NotRequired[str]


def _state(name: str, entry: type) -> Any:
    """A state schema: a dict of ``entry`` records under ``entries``, and a label."""
    return cast(Any, TypedDict)(name, {"entries": dict[str, entry], "label": str})  # type: ignore[valid-type]


StateV1 = _state("StateV1", EntryV1)
StateV2 = _state("StateV2", EntryV2)
StateV2Middle = _state("StateV2Middle", EntryV2Middle)
StateV2Renamed = _state("StateV2Renamed", EntryV2Renamed)
StateV2Float = _state("StateV2Float", EntryV2Float)
StateV2Seen = _state("StateV2Seen", EntryV2Seen)
StateV2Partial = _state("StateV2Partial", EntryPartial)


class StateV2LabelLast(TypedDict):  # the top-level fields change places
    label: str
    entries: dict[str, EntryV2]


ADD_HITS = FieldChanges(add={"hits": 0})
RENAME = FieldChanges(rename={"name": "title"})
ADD_SEEN = FieldChanges(add={"seen": []})


# --- the changes themselves -------------------------------------------------------------


def test_changes_rename_in_place_then_drop_then_add_last() -> None:
    changes = FieldChanges(add={"z": 1}, rename={"b": "bb"}, drop=["c"])
    assert list(changes.apply({"a": 0, "b": 1, "c": 2, "d": 3}).items()) == [
        ("a", 0),
        ("bb", 1),
        ("d", 3),
        ("z", 1),
    ]


def test_missing_fields_to_rename_or_drop_are_no_change_and_none_stays_none() -> None:
    changes = FieldChanges(rename={"b": "bb"}, drop=["c"])
    assert changes.apply({"a": 1}) == {"a": 1}
    assert changes.apply(None) is None


def test_each_record_gets_its_own_copy_of_an_added_container() -> None:
    records: dict[str, Any] = {"x": {}, "y": {}}
    ADD_SEEN.apply_each(records)
    records["x"]["seen"].append(1)
    assert records["y"]["seen"] == []
    assert ADD_SEEN.add == (("seen", []),)  # the value given is never handed out


def test_the_value_to_add_is_copied_when_the_changes_are_made() -> None:
    default: list[int] = []
    changes = FieldChanges(add={"seen": default})
    default.append(1)
    assert changes.apply({}) == {"seen": []}


def test_a_record_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(TypeError, match="add hits changes a dict's fields, not a list"):
        ADD_HITS.apply([1])
    with pytest.raises(TypeError, match="not a int"):
        ADD_HITS.apply_each({"a": {}, "b": 3})


def test_a_rename_onto_a_field_the_record_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="already holds 'title'"):
        RENAME.apply({"name": "x", "title": "y"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one field"),
        ({"drop": "hits"}, "takes field names, not str 'hits'"),
        ({"drop": ["a", "a"]}, "'a' named twice"),
        ({"rename": {"a": "b"}, "drop": ["a"]}, "'a' named twice"),
        ({"rename": {"a": "b"}, "drop": ["b"]}, "'b' named twice"),
        ({"rename": {"a": "a"}}, "'a' named twice"),
        ({"add": {"a": 1}, "drop": ["a"]}, "'a' named twice"),
        ({"rename": {"a": "c"}, "add": {"c": 1}}, "'c' named twice"),
        ({"add": {"a": 1}, "drop": None}, "takes field names, not NoneType None"),
        ({"add": {"": 1}}, "non-empty str"),
        ({"add": {"at": {1, 2}}}, "the value added as 'at' is not plain data"),
    ],
)
def test_bad_changes_are_refused_when_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        FieldChanges(**kwargs)


def test_two_fields_may_swap_names_and_a_name_renamed_away_may_be_added_again() -> None:
    swap = FieldChanges(rename={"a": "b", "b": "a"})
    assert list(swap.apply({"a": 1, "b": 2}).items()) == [("b", 1), ("a", 2)]
    again = FieldChanges(rename={"a": "b"}, add={"a": 0})
    assert again.apply({"a": 1}) == {"b": 1, "a": 0}


def test_the_step_name_says_what_changes() -> None:
    registry = Registry()
    step = registry.add_migration(
        "c", 1, 2, FieldChanges(rename={"a": "b"}, drop=["x"], add={"n": 0}), records="e"
    )
    assert str(step) == "c 1 -> 2 (rename a->b; drop x; add n)"


RECORDS = st.dictionaries(
    st.text(max_size=3),
    st.none()
    | st.dictionaries(st.sampled_from(["a", "b", "c", "hits"]), st.integers(), max_size=4),
    max_size=8,
)


@given(
    RECORDS,
    st.sampled_from(
        [
            ADD_HITS,
            ADD_SEEN,
            FieldChanges(drop=["a", "b"]),
            FieldChanges(drop=["a"], add={"z": [1]}),
            FieldChanges(rename={"a": "x", "c": "y"}, drop=["b"], add={"z": 0}),
        ]
    ),
)
def test_changing_every_record_at_once_equals_changing_each(
    records: dict[str, Any], changes: FieldChanges
) -> None:
    """Property: the C loops of apply_each give what apply gives, record by record."""
    expected = {key: changes.apply(copy.deepcopy(value)) for key, value in records.items()}
    changes.apply_each(records)
    assert records == expected
    assert [list(v or ()) for v in records.values()] == [list(v or ()) for v in expected.values()]


# --- the proof --------------------------------------------------------------------------


def _registry(target: type, changes: FieldChanges, *, records: str | None = "entries") -> Registry:
    registry = Registry()
    registry.add_schema("c", 1, StateV1)
    registry.add_schema("c", 2, target)
    registry.add_migration("c", 1, 2, changes, records=records)
    return registry


def _proven(registry: Registry) -> bool:
    return plan_proven(registry.plan("c", 1, 2), registry)


@pytest.mark.parametrize(
    ("target", "changes", "proven"),
    [
        (StateV2, ADD_HITS, True),
        (StateV2Renamed, RENAME, True),
        (StateV2Seen, ADD_SEEN, True),
        (StateV2Middle, ADD_HITS, False),  # the added field would not be in its place
        (StateV2Float, ADD_HITS, False),  # validation turns the 0 into 0.0
        (StateV2Float, FieldChanges(add={"hits": 0.0}), True),
        (StateV2Partial, FieldChanges(add={"note": "x"}), False),  # a field may be absent
        (StateV2LabelLast, ADD_HITS, False),  # the top-level order changes
        (StateV2, FieldChanges(add={"hits": 0}, drop=["tags"]), False),
    ],
)
def test_which_changes_are_proven(target: type, changes: FieldChanges, proven: bool) -> None:
    assert _proven(_registry(target, changes)) is proven


def test_whole_data_changes_are_proven_on_the_top_level_record() -> None:
    class Top1(TypedDict):
        a: int

    class Top2(TypedDict):
        a: int
        b: str

    registry = Registry()
    registry.add_schema("t", 1, Top1)
    registry.add_schema("t", 2, Top2)
    registry.add_migration("t", 1, 2, FieldChanges(add={"b": ""}))
    assert plan_proven(registry.plan("t", 1, 2), registry)


def test_a_python_step_or_one_with_other_fields_is_never_proven() -> None:
    registry = Registry()
    registry.add_schema("c", 1, StateV1)
    registry.add_schema("c", 2, StateV2)
    registry.add_migration("c", 1, 2, lambda key, value: {**value, "hits": 0}, records="entries")
    assert not _proven(registry)
    registry = Registry()
    registry.add_schema("c", 1, StateV1)
    registry.add_schema("c", 2, StateV2)
    registry.add_migration("c", 1, 2, ADD_HITS, records="entries", other_fields=lambda d: d)
    assert not _proven(registry)


# --- restores: the proven path gives exactly what validation gives ----------------------

PROVEN_CASES = [(StateV2, ADD_HITS), (StateV2Renamed, RENAME), (StateV2Seen, ADD_SEEN)]
UNPROVEN_CASES = [(StateV2Middle, ADD_HITS), (StateV2Float, ADD_HITS)]


def _restore(registry: Registry, state: dict[str, Any]) -> tuple[Any, sm.RestoreReport]:
    class Holder:
        def __init__(self, state: Any = None) -> None:
            self.state = state

        def export_state(self) -> Any:
            return self.state

        def import_state(self, state: Any) -> None:
            self.state = state

    writer = sm.Service("svc")
    writer.register(registry.migratable("c", version=1)(Holder)(copy.deepcopy(state)))
    committed = writer.commit(sm.MemoryStore())
    reader = sm.Service("svc")

    class Successor(Holder):
        pass

    component = registry.migratable("c", version=2)(Successor)()
    reader.register(component)
    report = reader.restore(committed.ref)
    return component.state, report


def _by_validation(registry: Registry, state: dict[str, Any]) -> Any:
    """What the ordinary pipeline gives: the steps' output validated by pydantic."""
    migrated = registry.migrate("c", copy.deepcopy(state), 1, 2, validate=False).data
    return registry.schema_for("c", 2).validate(migrated)


def _shape(value: Any) -> Any:
    """Value, types and key order, comparable with ==."""
    if isinstance(value, dict):
        return ("dict", [(key, _shape(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(item) for item in value])
    return (type(value).__name__, value)


@pytest.mark.parametrize(("target", "changes"), PROVEN_CASES + UNPROVEN_CASES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_restore_through_field_changes_equals_validating_their_output(
    target: type, changes: FieldChanges, data: st.DataObject
) -> None:
    """Property: whether the changes are proven (nothing validated after them) or not,
    the restored state is what pydantic returns for their output, in value, types and
    key order, with no container shared between records."""
    registry = _registry(target, changes)
    state = data.draw(states(registry, "c", 1))
    restored, report = _restore(registry, state)
    assert _shape(restored) == _shape(_by_validation(registry, state))
    # An int past 64 bits is text in the plain form, so a state drawn in that form
    # holds text where validation makes an int: such a restore validates, proven or not.
    as_valid = _shape(registry.schema_for("c", 1).validate(copy.deepcopy(state)))
    if as_valid == _shape(state):
        assert (report.timings["validate"] == 0.0) is ((target, changes) in PROVEN_CASES)
    containers = [
        id(v)
        for entry in restored["entries"].values()
        for v in entry.values()
        if isinstance(v, list)
    ]
    assert len(containers) == len(set(containers))


def test_a_wrong_proof_is_caught_by_the_restore_property(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: proving the changes that add hits in the middle makes the
    restore keep a key order validation would not, and the comparison sees it."""
    monkeypatch.setattr(restore_module, "proves", lambda *args: True)
    registry = _registry(StateV2Middle, ADD_HITS)
    state = {"entries": {"k": {"id": 1, "name": "n", "tags": []}}, "label": ""}
    restored, report = _restore(registry, state)
    assert report.timings["validate"] == 0.0
    assert _shape(restored) != _shape(_by_validation(registry, state))


def test_changes_that_cannot_be_made_are_a_step_error_naming_them() -> None:
    registry = _registry(StateV2Renamed, RENAME)
    with pytest.raises(MigrationStepError, match=r"c 1 -> 2 \(rename name->title\).*already"):
        registry.migrate("c", {"entries": {"k": {"name": "n", "title": "t"}}, "label": ""}, 1, 2)


def test_the_restore_report_names_the_changes_it_ran() -> None:
    registry = _registry(StateV2Renamed, RENAME)
    state = {"entries": {"k": {"id": 1, "name": "n", "tags": []}}, "label": ""}
    restored, report = _restore(registry, state)
    assert report.components[0].steps == ("c 1 -> 2 (rename name->title)",)
    assert restored["entries"]["k"] == {"id": 1, "title": "n", "tags": []}


class CountV1(TypedDict):
    n: int


class CountV2(TypedDict):
    n: int
    hits: int


class CacheStateV1(TypedDict):
    entries: dict[str, CountV1]


class CacheStateV2(TypedDict):
    entries: dict[str, CountV2]


def test_field_changes_migrate_the_deltas_of_a_pre_copy() -> None:
    """A pre-copy from v1 to v2: round 0 and the deltas after it all go through the
    field changes, so the successor holds every record with its added field."""
    registry = Registry()
    registry.add_schema("cache", 1, CacheStateV1)
    registry.add_schema("cache", 2, CacheStateV2)
    registry.add_migration("cache", 1, 2, FieldChanges(add={"hits": 0}), records="entries")
    registry.add_migration(
        "cache", 2, 1, FieldChanges(drop=["hits"]), records="entries", lossy=True
    )

    class Cache:
        def __init__(self) -> None:
            self.entries: sm.TrackedDict[str, Any] = sm.TrackedDict()

    @registry.migratable("cache", version=1)
    class Old(Cache):
        pass

    @registry.migratable("cache", version=2)
    class New(Cache):
        pass

    source, target = sm.Service("svc", registry=registry), sm.Service("svc", registry=registry)
    old, new = source.register(Old()), target.register(New())
    old.entries.update({"a": {"n": 1}, "b": {"n": 2}})
    with source.precopy_source() as pieces:
        pieces.start()
        report = target.restore(pieces.full().to_bytes())
        assert report.components[0].steps == ("cache 1 -> 2 (add hits)",)
        old.entries["c"] = {"n": 3}
        old.entries["a"] = {"n": 10}
        del old.entries["b"]
        report = target.restore(pieces.delta().to_bytes())
        assert report.delta and report.records == 3
    assert dict(new.entries) == {"a": {"n": 10, "hits": 0}, "c": {"n": 3, "hits": 0}}
