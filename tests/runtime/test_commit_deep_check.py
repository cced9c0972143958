"""What commits must restore: a state with a bad record deep inside is refused at commit
(and by every checkpoint), naming the record, instead of a snapshot no restore takes.

Plain ``TypedDict`` states are written as they are; a commit walks them first. States
read field by field (models, dataclasses, ``dict[int, ...]`` records) refuse a missing
required field as they are read.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, NotRequired

import pytest
from holders import Holder
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypedDict

from statemigrate import (
    Checkpointer,
    CheckpointError,
    ExportError,
    MemoryStore,
    Registry,
    RestoreError,
    Service,
    TrackedDict,
)
from statemigrate._model import _validity
from statemigrate._model._export_leaves import NotExportable
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._validity import UnknownKey, Unsure


class Entry(TypedDict):
    value: str
    hits: int
    score: float
    tags: list[str]
    note: NotRequired[str | None]


class Cache(TypedDict):
    entries: dict[str, Entry]


class Address(TypedDict):
    street: str
    zip: str


class Person(TypedDict):
    name: str
    addr: Address


class People(TypedDict):
    by_id: dict[int, Person]


class Item(BaseModel):
    title: str
    n: int


class Box(BaseModel):
    items: list[Item]


NO_N = Item.model_construct(title="made without its required n")  # type: ignore[call-arg]


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Points:
    points: list[Point]


REGISTRY = Registry()
for name, schema in {"cache": Cache, "people": People, "box": Box, "points": Points}.items():
    REGISTRY.add_schema(name, 1, schema)
HOLDERS: dict[str, Any] = {
    name: REGISTRY.migratable(name, version=1)(type(f"{name}_holder", (Holder,), {}))
    for name in ("cache", "people", "box", "points")
}


def good_entry(**changes: Any) -> dict[str, Any]:
    return {"value": "v", "hits": 1, "score": 0.5, "tags": ["a"], **changes}


def service_holding(component: str, state: Any) -> tuple[Service, Holder]:
    service = Service("deep", registry=REGISTRY)
    holder = HOLDERS[component](state)
    service.register(holder)
    return service, holder


BAD_CACHES = {
    "a missing field": (
        {"k": {"value": "v", "score": 0.5, "tags": []}},
        "at entries['k'].hits: a restore would refuse it: Field required",
    ),
    "a wrong type": (
        {"k": good_entry(hits="many")},
        "at entries['k'].hits: a restore would refuse it: Input should be a valid integer",
    ),
    "None where none is allowed": (
        {"k": good_entry(value=None)},
        "at entries['k'].value: a restore would refuse it: Input should be a valid string",
    ),
    "a bad item in a list": (
        {"k": good_entry(tags=["a", 3])},
        "at entries['k'].tags[1]: a restore would refuse it",
    ),
    "a key that is not a field": (
        {"k": good_entry(debug=True)},
        "at entries['k']['debug']: validation drops this key: it is not a field of its record",
    ),
    "an int its float rounds": (
        {"k": good_entry(score=2**53 + 1)},
        "at entries['k'].score: 9007199254740993 (int) would come back as 9007199254740992.0",
    ),
    "an int its float rounds, after a value the walk leaves to pydantic": (
        {"a": good_entry(hits="3"), "k": good_entry(score=-(10**20) - 1)},
        "at entries['k'].score: -100000000000000000001 (int) would come back as -1e+20 (float)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CACHES))
def test_a_bad_record_in_a_plain_state_is_refused_at_commit_and_the_store_keeps_the_last(
    case: str,
) -> None:
    entries, message = BAD_CACHES[case]
    store = MemoryStore()
    service, holder = service_holding("cache", {"entries": {"ok": good_entry()}})
    first = service.commit(store)
    holder.state = {"entries": {"ok": good_entry(), **entries}}
    with pytest.raises(ExportError) as refused:
        service.commit(store)
    assert message in str(refused.value)
    assert store.open() == first.ref.open()


def test_values_validation_takes_back_as_they_are_or_converts_still_commit() -> None:
    """An int in a float field and a missing optional field validate: no refusal."""
    state = {"entries": {"a": good_entry(score=3), "b": good_entry(note=None), "c": good_entry()}}
    service, _ = service_holding("cache", state)
    committed = service.commit(MemoryStore())
    restoring, restored = service_holding("cache", {"entries": {}})
    restoring.restore(committed.ref)
    assert restored.state == state  # 3 == 3.0: validation made the score a float
    assert type(restored.state["entries"]["a"]["score"]) is float


@pytest.mark.parametrize(
    ("component", "state", "message"),
    [
        (
            "people",
            {"by_id": {1: {"name": "a", "addr": {"zip": "75001"}}}},
            "at by_id[1].addr.street: this required field is missing",
        ),
        (
            "box",
            Box.model_construct(items=[Item(title="ok", n=1), NO_N]),
            "at items[1].n: this required field is missing",
        ),
        ("points", "deleted", "at points[0].y: this required field is missing"),
    ],
)
def test_a_record_read_field_by_field_without_a_required_field_is_refused(
    component: str, state: Any, message: str
) -> None:
    if state == "deleted":
        point = Point(1, 2)
        del point.y
        state = Points([point])
    service, _ = service_holding(component, state)
    with pytest.raises(ExportError) as refused:
        service.commit(MemoryStore())
    assert message in str(refused.value)


@pytest.mark.parametrize("export", ["inline", "fork"])
def test_a_checkpoint_of_a_bad_state_fails_and_the_last_checkpoint_stays(export: str) -> None:
    store = MemoryStore()
    service, holder = service_holding("cache", {"entries": {"ok": good_entry()}})
    service.start_cold("a new cache")
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), export=export)  # type: ignore[arg-type]
    checkpointer.checkpoint_now()
    good = store.open()
    holder.state = {"entries": {"ok": good_entry(), "bad": good_entry(hits=None)}}
    # A forked export reports the child's error as the checkpoint's.
    with pytest.raises((ExportError, CheckpointError), match=r"\['bad'\]\.hits: a restore"):
        checkpointer.checkpoint_now()
    assert store.open() == good


def test_an_incremental_checkpoint_checks_the_records_it_writes() -> None:
    """A delta holds the changed records only: the bad one among them is refused."""

    @REGISTRY.migratable("cache", version=1)
    class TrackedCache:
        def __init__(self) -> None:
            self.entries: TrackedDict[str, Any] = TrackedDict()

    store = MemoryStore()
    service = Service("deep-delta", registry=REGISTRY)
    cache = TrackedCache()
    service.register(cache)
    service.start_cold("a new cache")
    for index in range(500):  # a base large enough that one record makes a delta
        cache.entries[f"k{index}"] = good_entry()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()
    cache.entries["b"] = good_entry()
    checkpointer.checkpoint_now()  # a delta
    assert checkpointer.chain_length == 2
    good = store.open()
    cache.entries["c"] = good_entry(tags="not a list")
    with pytest.raises(ExportError, match=r"entries\['c'\]\.tags"):
        checkpointer.checkpoint_now()
    assert store.open() == good


class Counted(TypedDict):
    entries: dict[str, Entry]
    count: int


REGISTRY.add_schema("counted", 1, Counted)


@REGISTRY.migratable("counted", version=1)
class CountedCache:
    """Records in a TrackedDict (sent by a delta as records) and a field sent whole."""

    def __init__(self) -> None:
        self.entries: TrackedDict[str, Any] = TrackedDict()
        self.count: Any = 0


def counted_service(name: str) -> tuple[Service, CountedCache]:
    service = Service(name, registry=REGISTRY)
    cache = service.register(CountedCache())
    return service, cache


def test_a_whole_field_validation_converts_commits_alike_in_full_and_in_a_delta() -> None:
    """``'5'`` in an ``int`` field beside the records: a commit takes it (validation
    makes it 5), and so does an incremental checkpoint's delta; both restore 5."""
    service, cache = counted_service("counted-full")
    cache.entries["a"] = good_entry()
    cache.count = "5"
    committed = service.commit(MemoryStore())
    restoring, restored = counted_service("counted-full")
    restoring.restore(committed.ref)
    assert restored.count == 5

    service, cache = counted_service("counted-delta")
    service.start_cold("a new cache")
    for index in range(500):  # a base large enough that one record makes a delta
        cache.entries[f"k{index}"] = good_entry()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()
    cache.entries["b"] = good_entry(hits=2)
    cache.count = "5"
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2  # a delta
    restoring, restored = counted_service("counted-delta")
    restoring.start_from(store)
    assert restored.count == 5
    assert restored.entries["b"] == good_entry(hits=2)


def test_a_whole_field_validation_refuses_is_refused_alike_by_a_commit_and_a_delta() -> None:
    refusal = "at count: a restore would refuse it: Input should be a valid integer"
    service, cache = counted_service("counted-refused")
    service.start_cold("a new cache")
    for index in range(500):
        cache.entries[f"k{index}"] = good_entry()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()
    good = store.open()
    cache.count = "many"  # no record written: the delta carries the field alone
    with pytest.raises(ExportError) as by_commit:
        service.commit(MemoryStore())
    with pytest.raises(ExportError) as by_delta:
        checkpointer.checkpoint_now()
    assert refusal in str(by_commit.value)
    assert refusal in str(by_delta.value)
    assert store.open() == good


# --- the walk accepts only what pydantic accepts -----------------------------------------

CACHE_SCHEMA = SchemaVersion.create("cache", 1, Cache)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
    st.binary(max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.sampled_from(["value", "hits", "score", "tags", "note", "x"]), inner,
                        max_size=6),
    ),
    max_leaves=8,
)
entries = st.fixed_dictionaries(
    {"value": st.text(max_size=3), "hits": st.integers(), "score": st.floats(allow_nan=False),
     "tags": st.lists(st.text(max_size=2), max_size=2)},
    optional={"note": st.none() | st.text(max_size=2)},
)
mutated_entries = st.one_of(
    entries,
    st.builds(lambda e, k, v: {**e, k: v}, entries,
              st.sampled_from(["value", "hits", "score", "tags", "note", "x"]), values),
    st.builds(lambda e, k: {f: v for f, v in e.items() if f != k}, entries,
              st.sampled_from(["value", "hits", "score", "tags"])),
)
states = st.one_of(
    st.builds(lambda e: {"entries": e}, st.dictionaries(st.text(max_size=2), mutated_entries,
                                                        max_size=3)),
    values,
)


def verdict(check: _validity.ValidityCheck, state: Any) -> str:
    try:
        check(state)
    except Unsure:
        return "unsure"
    except UnknownKey:
        return "unknown key"
    except NotExportable:
        return "changed"
    return "valid"


def pydantic_verdict(state: Any) -> str:
    try:
        validated = CACHE_SCHEMA.adapter.validate_python(state)
    except Exception:
        return "refused"
    return "kept" if validated == state else "changed"


def agreement(check: _validity.ValidityCheck, state: Any) -> bool:
    """What the walk claims, pydantic confirms: a valid state validates to itself (up to
    an int read as a float), and a state with an unknown key loses something."""
    claimed, actual = verdict(check, state), pydantic_verdict(state)
    if claimed == "valid":
        return actual == "kept"
    if claimed == "unknown key":
        return actual in ("changed", "refused")
    if claimed == "changed":
        return actual == "changed"
    return True


@settings(max_examples=400, deadline=None)
@given(states)
@example({"entries": {"k": good_entry(score=2**53 + 1)}})  # its float is 2.0**53
def test_what_the_walk_accepts_pydantic_accepts_unchanged(state: Any) -> None:
    assert CACHE_SCHEMA.validity is not None
    assert agreement(CACHE_SCHEMA.validity, state)


def test_negative_control_the_property_flags_a_walk_that_takes_a_str_for_an_int(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted = _validity._accepted
    monkeypatch.setattr(
        _validity, "_accepted",
        lambda expected: accepted(expected) | {str} if expected is int else accepted(expected),
    )
    assert CACHE_SCHEMA.tree is not None
    broken = _validity.compile_validity_check(CACHE_SCHEMA.tree)
    state = {"entries": {"k": good_entry(hits="3")}}
    assert verdict(broken, state) == "valid"
    assert not agreement(broken, state)


@settings(max_examples=400, deadline=None)
@given(states)
@example({"entries": {"k": good_entry(score=2**53 + 1)}})
def test_the_columns_pass_only_what_the_walk_passes(state: Any) -> None:
    """The C passes column by column never accept what the walk refuses or doubts."""
    assert CACHE_SCHEMA.tree is not None
    columns = _validity.compile_column_check(CACHE_SCHEMA.tree)
    walk = _validity._check(CACHE_SCHEMA.tree)
    if columns(state):
        assert verdict(walk, state) == "valid"


@settings(max_examples=200, deadline=None)
@given(states)
def test_the_columns_in_chunks_of_one_or_two_pass_only_what_the_walk_passes(state: Any) -> None:
    """The same property with chunks so small that the dicts of the states above span
    several (the default chunk holds 256 records)."""
    assert CACHE_SCHEMA.tree is not None
    columns = _validity.compile_column_check(CACHE_SCHEMA.tree)
    walk = _validity._check(CACHE_SCHEMA.tree)
    default = _validity.CHUNK
    try:
        for size in (1, 2):
            _validity.CHUNK = size
            if columns(state):
                assert verdict(walk, state) == "valid"
    finally:
        _validity.CHUNK = default


@pytest.mark.parametrize("last", [good_entry(hits=[3]), good_entry(debug=True), {"value": "v"}])
def test_a_bad_record_past_the_first_chunks_is_found(last: dict[str, Any]) -> None:
    """Records are checked a chunk at a time: a bad one in the last chunk still fails
    the columns and is refused at commit, named."""
    entries = {f"k{i}": good_entry() for i in range(2 * _validity.CHUNK + 1)}
    entries["last"] = last
    state = {"entries": entries}
    assert CACHE_SCHEMA.tree is not None
    columns = _validity.compile_column_check(CACHE_SCHEMA.tree)
    assert not columns(state)
    assert columns({"entries": dict(entries, last=good_entry())})
    with pytest.raises(ExportError, match="last"):
        CACHE_SCHEMA.check_restorable(state)


def test_negative_control_columns_that_skip_the_field_count_pass_an_unknown_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records are told apart from records with one more key by their length only."""
    monkeypatch.setattr(_validity, "_record_column", _record_column_without_lengths)
    assert CACHE_SCHEMA.tree is not None
    broken = _validity.compile_column_check(CACHE_SCHEMA.tree)
    state = {"entries": {"k": good_entry(debug=True)}}
    assert broken(state)
    assert verdict(_validity._check(CACHE_SCHEMA.tree), state) == "unknown key"


def _record_column_without_lengths(node: Any, nullable: bool) -> Any:
    fields = [(f.name, _validity._column(f.node, nullable=False)) for f in node.fields]

    def records(column: Any) -> bool:
        def values_of(name: str) -> Any:
            return lambda: (record[name] for record in column() if name in record)

        return all(check(values_of(name)) for name, check in fields)

    return records


# --- a value no member of a union of plain scalars takes ---------------------------------


@dataclasses.dataclass
class Price:
    amount: int | float  # a stdlib dataclass: nothing validates it


@dataclasses.dataclass
class Prices:
    items: list[Price]


class Tag(BaseModel):
    id: int | str = 0


class Tags(BaseModel):
    tags: list[Tag]


class Rec(TypedDict):
    a: int | str


class Recs(TypedDict):
    by_id: dict[int, Rec]  # int keys: read field by field


for _name, _schema in {"prices": Prices, "tags": Tags, "recs": Recs}.items():
    REGISTRY.add_schema(_name, 1, _schema)
    HOLDERS[_name] = REGISTRY.migratable(_name, version=1)(type(f"{_name}_holder", (Holder,), {}))

def unvalidated(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` with values of the wrong type, as untyped code makes it."""
    return cls(*args, **kwargs)


UNION_CASES = {
    "a str in a dataclass's int | float": (
        "prices",
        Prices([Price(1), unvalidated(Price, "9.99x")]),
        "at items[1].amount: a str fits no member",
    ),
    "None in a dataclass's int | float": (
        "prices",
        Prices([unvalidated(Price, None)]),
        "at items[0].amount: a NoneType fits no member",
    ),
    "None in a constructed model's int | str": (
        "tags",
        Tags(tags=[Tag.model_construct(**unvalidated(dict, id=None))]),
        "at tags[0].id: a NoneType fits",
    ),
    "a tuple in a record's int | str": (
        "recs", {"by_id": {1: {"a": (1,)}}}, "at by_id[1].a: a tuple fits no member"
    ),
}


@pytest.mark.parametrize("case", sorted(UNION_CASES))
def test_a_value_no_member_of_a_union_takes_is_refused_at_commit(case: str) -> None:
    component, state, message = UNION_CASES[case]
    service, _ = service_holding(component, state)
    with pytest.raises(ExportError) as refused:
        service.commit(MemoryStore())
    assert message in str(refused.value)


def test_a_value_a_union_converts_still_commits_and_restores_as_validation_makes_it() -> None:
    """A str of digits in a dataclass's ``int | float``: lax validation reads it as a
    number, so the union takes it, and the restore gives what validation gives."""
    service, _ = service_holding("prices", Prices([unvalidated(Price, "7")]))
    committed = service.commit(MemoryStore())
    restoring, restored = service_holding("prices", Prices([]))
    restoring.restore(committed.ref)
    assert restored.state == Prices([Price(7)])


class Loose(TypedDict):
    entries: dict[str, Any]


REGISTRY.add_schema("loose", 1, Loose)
HOLDERS["loose"] = REGISTRY.migratable("loose", version=1)(type("loose_holder", (Holder,), {}))


def test_a_map_that_holds_itself_is_refused_instead_of_walked_forever() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    service, _ = service_holding("loose", {"entries": {"k": looped}})
    with pytest.raises(ExportError, match=r"nested deeper than 1024 levels \(or a map or list"):
        service.commit(MemoryStore())


def test_an_int_too_large_for_a_float_field_is_refused_with_its_path() -> None:
    service, _ = service_holding("cache", {"entries": {"k": good_entry(score=10**400)}})
    with pytest.raises(ExportError, match=r"\['k'\]\.score: an integer too large for a float"):
        service.commit(MemoryStore())


# Service.snapshot() writes a plain state unchecked (a handoff's pause does not pay for
# the walk); the successor's restore must then refuse what validation would change.
CHANGED_SILENTLY = {
    "a key that is not a field": (
        {"k": good_entry(debug=True)},
        "at entries['k']['debug']: validation drops this key: it is not a field",
    ),
    "an int its float rounds": (
        {"k": good_entry(score=2**53 + 1)},
        "at entries['k'].score: 9007199254740993 (int) would come back as",
    ),
    "an int its float rounds, after a value validation converts": (
        {"a": good_entry(hits="3"), "k": good_entry(score=-(2**60) - 1)},
        # Past a value the commit's check leaves to pydantic, the data is compared with
        # validation's copy; the path found there is named as the check names paths.
        "at entries['k'].score: -1152921504606846977 (int) would come back as",
    ),
}


@pytest.mark.parametrize("case", sorted(CHANGED_SILENTLY))
def test_an_unchecked_snapshot_that_validation_would_change_is_refused_by_the_restore(
    case: str,
) -> None:
    entries, message = CHANGED_SILENTLY[case]
    service, _ = service_holding("cache", {"entries": {"ok": good_entry(), **entries}})
    unchecked, _ = service.snapshot()
    before = {"entries": {"old": good_entry()}}
    restoring, restored = service_holding("cache", before)
    with pytest.raises(RestoreError) as refused:
        restoring.restore(unchecked)
    assert refused.value.phase == "validate"
    assert message in str(refused.value) and "Service.snapshot()" in str(refused.value)
    assert restored.state == before


def test_an_unchecked_snapshot_validation_takes_as_it_is_or_converts_restores() -> None:
    """The restore's comparison passes what validation converts by design: an int in a
    float field (an equal float), a number's text in an int field."""
    state = {"entries": {"a": good_entry(score=3), "b": good_entry(hits="4"), "c": good_entry()}}
    service, _ = service_holding("cache", state)
    unchecked, _ = service.snapshot()
    restoring, restored = service_holding("cache", {"entries": {}})
    restoring.restore(unchecked)
    assert restored.state == {"entries": {**state["entries"], "b": good_entry(hits=4)}}
    assert type(restored.state["entries"]["a"]["score"]) is float
