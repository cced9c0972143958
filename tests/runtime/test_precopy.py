"""Pre-copy: a full snapshot then chained deltas rebuild the source's state, all or nothing."""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import TypedDict

from statemigrate import (
    ChangeTrackingError,
    ConfigurationError,
    Registry,
    RestoreError,
    Service,
    TrackedDict,
    export_component,
    open_snapshot,
)
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import DeltaBase, Producer
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3, build_registry


class StateV1(TypedDict):
    entries: dict[str, int]
    label: str


class StateV2(TypedDict):
    entries: dict[str, dict[str, int]]
    label: str


REGISTRY = Registry()
REGISTRY.add_schema("cache", 1, StateV1)
REGISTRY.add_schema("cache", 2, StateV2)


@REGISTRY.migration("cache", 1, 2, records="entries")
def wrap(key: str, value: int) -> dict[str, int]:
    if key == "poison":
        raise ValueError("poisoned record")
    return {"n": value}


@REGISTRY.migration("cache", 2, 1, records="entries")
def unwrap(key: str, value: dict[str, int]) -> int:
    return value["n"]


@REGISTRY.migratable("cache", version=1)
class CacheV1:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, int] = TrackedDict()
        self.label = "v1"


@REGISTRY.migratable("cache", version=2)
class CacheV2:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, dict[str, int]] = TrackedDict()
        self.label = "v2"


def _pair(successor: type = CacheV1) -> tuple[Service, Any, Service, Any]:
    source = Service("svc", registry=REGISTRY)
    old = source.register(CacheV1())
    target = Service("svc", registry=REGISTRY)
    new = target.register(successor())
    return source, old, target, new


def _expected(old: CacheV1, successor: Any) -> dict[str, Any]:
    if isinstance(successor, CacheV2):
        return {k: {"n": v} for k, v in old.entries.items()}
    return dict(old.entries)


WRITE = st.tuples(
    st.sampled_from(["set", "del", "label", "round"]),
    st.sampled_from([f"k{i}" for i in range(15)]),
    st.integers(0, 100),
)


@pytest.mark.parametrize("successor", [CacheV1, CacheV2])
@given(start=st.dictionaries(st.sampled_from([f"k{i}" for i in range(15)]), st.integers(0, 9)),
       writes=st.lists(WRITE, max_size=50))
def test_a_full_snapshot_and_its_deltas_rebuild_the_source(
    successor: type, start: dict[str, int], writes: list[tuple[str, str, int]]
) -> None:
    """Property: whatever the writes and wherever the rounds fall, restoring round 0
    and every delta in order gives the source's state (migrated by record steps)."""
    source, old, target, new = _pair(successor)
    old.entries.update(start)
    with source.precopy_source() as pieces:
        pieces.start()
        old.entries["early"] = 1  # between start() and full(): in both, harmlessly
        report = target.restore(pieces.full().to_bytes())
        assert not report.delta and target.accepts_deltas
        for action, key, value in writes:
            if action == "set":
                old.entries[key] = value
            elif action == "del":
                old.entries.pop(key, None)
            elif action == "label":
                old.label = f"label{value}"
            else:
                pending = pieces.pending()
                report = target.restore(pieces.delta().to_bytes())
                assert report.delta and report.records == pending
                assert pieces.pending() == 0
        target.restore(pieces.delta().to_bytes())
    assert dict(new.entries) == _expected(old, new)
    assert new.label == old.label
    assert type(new.entries) is TrackedDict
    assert not old.entries.tracking  # closed: the source stopped recording


def test_restore_takes_the_pieces_as_full_and_delta_return_them() -> None:
    source, old, target, new = _pair(CacheV2)
    old.entries["a"] = 1
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full())
        old.entries["b"] = 2
        report = target.restore(pieces.delta())
    assert report.delta and report.records == 1
    assert dict(new.entries) == {"a": {"n": 1}, "b": {"n": 2}}


def test_a_delta_whose_base_is_not_the_last_piece_restored_is_refused() -> None:
    source, old, target, new = _pair()
    pieces = source.precopy_source()
    pieces.start()
    full = pieces.full()
    old.entries["a"] = 1
    first = pieces.delta()
    old.entries["b"] = 2
    second = pieces.delta()
    with pytest.raises(RestoreError, match="restored nothing last") as caught:
        target.restore(first.to_bytes())  # nothing restored yet
    assert caught.value.phase == "verify"
    target.restore(full.to_bytes())
    with pytest.raises(RestoreError, match=r"applies to .* gen \d+, but this service restored"):
        target.restore(second.to_bytes())  # skips the first delta
    assert dict(new.entries) == {}
    target.restore(first.to_bytes())
    assert target.restore(first.to_bytes()).skipped  # the same delta again: a no-op
    target.restore(second.to_bytes())
    assert dict(new.entries) == {"a": 1, "b": 2}
    header = open_snapshot(second.to_bytes()).header
    assert header.base is not None and header.base.snapshot_id == first.header.snapshot_id
    assert header.base.generation == first.header.generation < header.generation


def test_a_delta_of_another_chain_is_refused() -> None:
    source, old, target, _ = _pair()
    one = source.precopy_source()
    one.start()
    target.restore(one.full().to_bytes())
    other = source.precopy_source()
    other.start()
    other.full()
    old.entries["x"] = 1
    with pytest.raises(RestoreError, match="applies to"):
        target.restore(other.delta().to_bytes())


def test_a_failing_record_rolls_the_whole_delta_back() -> None:
    """A record that fails its step leaves every component as it was: nothing of the
    delta is applied, not even the records before it."""
    source, old, target, new = _pair(CacheV2)
    old.entries.update({"a": 1, "b": 2})
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    before = (dict(new.entries), new.label)
    old.entries["a"] = 10
    del old.entries["b"]
    old.entries["poison"] = 3
    old.label = "changed"
    with pytest.raises(RestoreError, match="poisoned record") as caught:
        target.restore(pieces.delta().to_bytes())
    assert caught.value.phase == "migrate"
    assert (dict(new.entries), new.label) == before


class _Exploding(TrackedDict[str, int]):
    """A record dict whose writes fail for one key, after others were applied."""

    def __setitem__(self, key: str, value: int) -> None:
        if key == "boom" and value >= 0:
            raise MemoryError("no room for boom")
        super().__setitem__(key, value)


def test_a_failure_while_applying_gives_back_every_touched_key_and_field() -> None:
    source, old, target, new = _pair()
    old.entries.update({"a": 1, "b": 2, "c": 3})
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    new.entries = _Exploding(new.entries)
    before = dict(new.entries)
    old.entries["a"] = 100  # changed
    del old.entries["b"]  # deleted
    old.entries["z"] = 26  # added
    old.entries["boom"] = 1  # fails, after the others
    old.label = "changed"
    with pytest.raises(RestoreError, match="MemoryError: no room for boom") as caught:
        target.restore(pieces.delta().to_bytes())
    assert caught.value.phase == "apply" and caught.value.rollback_failed == ()
    assert dict(new.entries) == before
    assert new.label == "v1"


def test_accepts_deltas_only_when_every_plan_is_record_wise() -> None:
    registry = Registry()
    registry.add_schema("cache", 1, StateV1)
    registry.add_schema("cache", 2, StateV2)
    registry.add_migration(
        "cache", 1, 2,
        lambda d: {**d, "entries": {k: {"n": v} for k, v in d["entries"].items()}},
        name="whole",
    )

    @registry.migratable("cache", version=2)
    class Whole:
        def __init__(self) -> None:
            self.entries: TrackedDict[str, Any] = TrackedDict()
            self.label = ""

    source = Service("svc", registry=REGISTRY)
    source.register(CacheV1())
    pieces = source.precopy_source()
    pieces.start()
    full = pieces.full()
    target = Service("svc", registry=registry)
    target.register(Whole())
    assert not target.accepts_deltas  # nothing restored yet
    target.restore(full.to_bytes())
    assert not target.accepts_deltas
    assert target.why_no_deltas == "cache/default: step cache 1 -> 2 (whole) needs the whole data"
    with pytest.raises(RestoreError, match="whole-data step cannot migrate a delta") as caught:
        target.restore(pieces.delta().to_bytes())
    assert caught.value.phase == "migrate" and caught.value.step == "cache 1 -> 2 (whole)"


def test_a_component_without_tracking_makes_deltas_impossible() -> None:
    registry = Registry()
    registry.add_schema("cache", 1, StateV1)

    @registry.migratable("cache", version=1)
    class Plain:
        def __init__(self) -> None:
            self.entries: dict[str, int] = {}
            self.label = ""

    service = Service("svc", registry=registry)
    service.register(Plain())
    pieces = service.precopy_source()
    assert not pieces.deltas_possible and pieces.why_no_deltas == "not started"
    pieces.start()
    assert not pieces.deltas_possible
    assert "cache/default cannot tell what changed" in (pieces.why_no_deltas or "")
    assert pieces.pending() == 0
    with pytest.raises(ConfigurationError, match="no delta can be written"):
        pieces.delta()
    assert pieces.full().header.base is None  # the full snapshot still works


def test_targets_that_need_a_whole_data_step_make_deltas_impossible() -> None:
    registry = Registry()
    registry.add_schema("cache", 1, StateV1)
    registry.add_schema("cache", 2, StateV2)
    registry.add_migration("cache", 2, 1, lambda d: d, name="whole_down")

    @registry.migratable("cache", version=2)
    class Newer:
        def __init__(self) -> None:
            self.entries: TrackedDict[str, Any] = TrackedDict()
            self.label = ""

    service = Service("svc", registry=registry)
    service.register(Newer())
    pieces = service.precopy_source(targets={"cache": 1})
    pieces.start()
    assert not pieces.deltas_possible
    assert "whole_down" in (pieces.why_no_deltas or "")


def test_deltas_for_an_older_target_go_through_record_steps() -> None:
    """A rollback to older code: the source writes version 1 deltas from version 2."""
    source = Service("svc", registry=REGISTRY)
    old = source.register(CacheV2())
    target = Service("svc", registry=REGISTRY)
    new = target.register(CacheV1())
    old.entries["a"] = {"n": 1}
    with source.precopy_source(targets={"cache": 1}) as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        old.entries["b"] = {"n": 2}
        delta = pieces.delta()
        assert delta.header.sections[0].version == 1
        report = target.restore(delta.to_bytes())
    assert report.components[0].steps == ()  # migrated on the way out
    assert dict(new.entries) == {"a": 1, "b": 2}


def test_full_again_in_the_same_process_takes_a_new_identity() -> None:
    source, old, target, new = _pair()
    pieces = source.precopy_source()
    pieces.start()
    first = pieces.full()
    old.entries["a"] = 1
    second = pieces.full()  # e.g. a fallback inside the pause
    assert second.header.snapshot_id != first.header.snapshot_id
    assert second.header.generation > first.header.generation
    old.entries["b"] = 2
    delta = pieces.delta()
    assert delta.header.base is not None
    assert delta.header.base.snapshot_id == second.header.snapshot_id
    target.restore(first.to_bytes())
    target.restore(second.to_bytes())
    target.restore(delta.to_bytes())
    assert dict(new.entries) == {"a": 1, "b": 2}


def test_round_0_written_by_a_forked_child_chains_with_the_parents_deltas() -> None:
    """full() in a child forked after start(); the parent's deltas chain to it, and a
    full() the parent writes later does not reuse round 0's identity."""
    source, old, target, new = _pair()
    old.entries.update({f"k{i}": i for i in range(100)})
    pieces = source.precopy_source()
    pieces.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            with os.fdopen(write, "wb") as out:
                out.write(pieces.full().to_bytes())
        finally:
            os._exit(0)
    os.close(write)
    old.entries["k1"] = -1  # written while the child encodes its image
    with os.fdopen(read, "rb") as inp:
        round0 = inp.read()
    os.waitpid(pid, 0)
    target.restore(round0)
    old.entries["late"] = 7
    target.restore(pieces.delta().to_bytes())
    assert dict(new.entries) == dict(old.entries)
    again = pieces.full()
    assert again.header.snapshot_id != open_snapshot(round0).header.snapshot_id


def test_start_twice_and_pieces_before_start_are_refused() -> None:
    source, _, _, _ = _pair()
    pieces = source.precopy_source()
    with pytest.raises(ConfigurationError, match="start"):
        pieces.full()
    pieces.start()
    with pytest.raises(ConfigurationError, match="started already"):
        pieces.start()
    pieces.close()
    assert not pieces.deltas_possible


def test_a_failed_delta_ends_the_chain_until_a_full_snapshot() -> None:
    source, old, _, _ = _pair()
    pieces = source.precopy_source()
    pieces.start()
    pieces.full()
    old.entries["bad"] = object()
    with pytest.raises(Exception, match="object"):
        pieces.delta()
    assert not pieces.deltas_possible
    assert "a delta failed" in (pieces.why_no_deltas or "")
    del old.entries["bad"]
    pieces.full()
    assert pieces.deltas_possible


def test_a_check_in_place_that_catches_a_change_ends_deltas_for_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing pending, a caller that skips the delta checks the watched records
    instead; a value changed in place there ends the chain, so the next piece is a full
    snapshot, which holds the change. The service remembers the catch: no later piece
    of this source, nor any other source of the service, is a delta, and it says so
    once."""
    source = Service("svc", registry=REGISTRY)
    old = source.register(CacheV2())
    old.entries["a"] = {"n": 1}
    with source.precopy_source() as pieces:
        pieces.start()
        pieces.full()  # "a" is in the pool from here
        pieces.check_in_place()
        assert pieces.deltas_possible
        old.entries["a"]["n"] = 2  # no write
        assert pieces.pending() == 0
        with caplog.at_level(logging.WARNING, logger="statemigrate"):
            with pytest.raises(ChangeTrackingError, match=r"\['entries'\]\['a'\]"):
                pieces.check_in_place()
        assert not pieces.deltas_possible
        target = Service("svc", registry=REGISTRY)
        new = target.register(CacheV2())
        target.restore(pieces.full().to_bytes())
        assert not pieces.deltas_possible  # a full snapshot no longer ends it
        why = pieces.why_no_deltas or ""
        assert why.startswith("cache/default was caught changing a value in place at")
        assert "['entries']['a']" in why and "by a pre-copy hand-over" in why
        with pytest.raises(ConfigurationError, match="no delta can be written: cache/default"):
            pieces.delta()
    assert new.entries["a"] == {"n": 2}
    with source.precopy_source() as later:
        later.start()
        assert later.why_no_deltas == why
        later.full()
        old.entries["a"]["n"] = 3
        with pytest.raises(ChangeTrackingError):
            later.check_in_place()  # caught again: nothing more is said
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert set(source._in_place.caught) == {"cache/default"}
    fresh = Service("svc", registry=REGISTRY)
    fresh.register(CacheV2())
    with fresh.precopy_source() as others:
        others.start()
        assert others.deltas_possible  # another service caught nothing


def test_a_delta_is_refused_by_a_component_not_restored_from_its_base() -> None:
    source, old, target, _ = _pair()
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    target.unregister("cache")
    target.register(CacheV1())  # registered since: its state is not the base's
    old.entries["a"] = 1
    with pytest.raises(RestoreError, match="not restored from its base"):
        target.restore(pieces.delta().to_bytes())


# --- the reference cache: default path (v1, v2) and the records protocol (v3) ----------

REFERENCE = build_registry()


def _reference_pair(old_cls: type, new_cls: type) -> tuple[Service, Any, Service, Any]:
    source = Service("kv", registry=REFERENCE)
    old = source.register(old_cls())
    target = Service("kv", registry=REFERENCE)
    new = target.register(new_cls())
    return source, old, target, new


@pytest.mark.parametrize(
    ("old_cls", "new_cls"),
    [(KVCacheV1, KVCacheV3), (KVCacheV3, KVCacheV3), (KVCacheV2, KVCacheV1),
     (KVCacheV3, KVCacheV2), (KVCacheV1, KVCacheV2)],
)
def test_the_reference_cache_pre_copies_across_its_releases(old_cls: type, new_cls: type) -> None:
    source, old, target, new = _reference_pair(old_cls, new_cls)
    for i in range(50):
        old.set(f"k{i}", f"v{i}")
    with source.precopy_source() as pieces:
        pieces.start()
        assert pieces.deltas_possible, pieces.why_no_deltas
        target.restore(pieces.full().to_bytes(), allow_lossy=True)
        assert target.accepts_deltas
        old.set("k1", "changed")
        old.delete("k2")
        old.get("k3")  # a read that moves the entry (and counts a hit in v3)
        old.set("new", "entry")
        report = target.restore(pieces.delta().to_bytes(), allow_lossy=True)
    assert report.delta and report.records == 4
    want = REFERENCE.migrate(
        "kvcache", export_component(old, registry=REFERENCE), old.__statemigrate__.version,
        new.__statemigrate__.version, allow_lossy=True,
    ).data
    assert export_component(new, registry=REFERENCE) == want


def test_a_failure_in_import_records_gives_back_every_record() -> None:
    source, old, target, new = _reference_pair(KVCacheV3, KVCacheV3)
    for i in range(5):
        old.set(f"k{i}", f"v{i}")
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    before = export_component(new, registry=REFERENCE)
    old.set("k0", "changed")
    old.delete("k1")
    old.set("k9", "new")
    real = new.import_records
    calls: list[int] = []

    def failing(field: str, records: Any, deleted: Any) -> None:
        calls.append(1)
        real(field, records, deleted)  # half-applied, then
        if len(calls) == 1:
            raise OSError("disk full")

    new.import_records = failing
    with pytest.raises(RestoreError, match="OSError: disk full") as caught:
        target.restore(pieces.delta().to_bytes())
    assert caught.value.rollback_failed == ()
    assert export_component(new, registry=REFERENCE) == before


def test_a_custom_component_without_the_records_protocol_takes_no_deltas() -> None:
    source, old, target, new = _reference_pair(KVCacheV1, KVCacheV3)
    pieces = source.precopy_source()
    pieces.start()
    new.import_records = None  # as a class without the protocol
    target.restore(pieces.full().to_bytes())
    assert not target.accepts_deltas
    assert "no import_records/export_records" in (target.why_no_deltas or "")
    old.set("a", "b")
    with pytest.raises(RestoreError, match="no import_records/export_records"):
        target.restore(pieces.delta().to_bytes())
    assert "a" not in new


# --- other schema kinds and keys ---------------------------------------------------------


class Ticket(pydantic.BaseModel):
    owner: str
    when: datetime.datetime


class Board(pydantic.BaseModel):
    tickets: dict[int, Ticket]
    title: str = ""


MODELS = Registry()
MODELS.add_schema("board", 1, Board)


@MODELS.migratable("board", version=1)
class BoardComponent:
    def __init__(self) -> None:
        self.tickets: TrackedDict[int, Ticket] = TrackedDict()
        self.title = ""


def test_a_model_schema_with_int_keys_pre_copies() -> None:
    """Keys and values go through the schema's plain form both ways: int keys, models
    and datetimes come back as they were, deleted int keys included."""
    source = Service("svc", registry=MODELS)
    old = source.register(BoardComponent())
    target = Service("svc", registry=MODELS)
    new = target.register(BoardComponent())
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    old.tickets.update({i: Ticket(owner=f"o{i}", when=when) for i in range(5)})
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        old.tickets[7] = Ticket(owner="new", when=when)
        del old.tickets[2]
        old.title = "board"
        target.restore(pieces.delta().to_bytes())
    assert dict(new.tickets) == dict(old.tickets)
    assert all(type(key) is int for key in new.tickets)
    assert new.title == "board"


def _crafted(target: Service, data: object) -> bytes:
    """A delta on top of what ``target`` restored last, holding ``data`` as its section,
    as written by the schema ``target`` runs (so no read-back check runs first)."""
    base = DeltaBase(target._history.last_restored or "", target._history.restored_generation or 0)
    fingerprint = REGISTRY.schema_for("cache", 1).fingerprint
    sections = [SectionInput("cache", "default", 1, fingerprint, data)]
    producer = Producer.current("svc")
    return encode_snapshot(sections, producer=producer, base=base, generation=99).to_bytes()


@pytest.mark.parametrize(
    ("data", "phase", "message"),
    [
        ([], "decode", "a delta section is a map"),
        ({"state": {}}, "decode", "a delta section is a map"),
        ({"state": {}, "deleted": {"entries": "k"}}, "decode", "a delta section is a map"),
        ({"state": {}, "deleted": {"entries": []}}, "decode", "has no map of records"),
        ({"state": {"entries": {"a": "x"}, "label": ""}, "deleted": {"entries": []}},
         "validate", "entries"),
        ({"state": {"entries": {}, "label": ""}, "deleted": {"entries": [1]}},
         "validate", "a deleted key of record field 'entries'"),
        ({"state": {"entries": {}, "label": "", "extra": {}}, "deleted": {"extra": []}},
         "validate", "validation drops this key: it is not a field of its record"),
    ],
)
def test_a_malformed_delta_section_is_refused_and_nothing_changes(
    data: object, phase: str, message: str
) -> None:
    source, old, target, new = _pair()
    old.entries["a"] = 1
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    with pytest.raises(RestoreError, match=message) as caught:
        target.restore(_crafted(target, data))
    assert caught.value.phase == phase
    assert dict(new.entries) == {"a": 1} and new.label == "v1"


def test_a_delta_of_another_service_is_refused_before_its_base_is_looked_at() -> None:
    source, _, target, _ = _pair()
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    other = Service("other", registry=REGISTRY)
    other.register(CacheV1())
    foreign = other.precopy_source()
    foreign.start()
    foreign.full()
    with pytest.raises(RestoreError, match="written by service 'other'"):
        target.restore(foreign.delta().to_bytes())


class _FailingAt(TrackedDict[str, int]):
    """A record dict whose n-th write from now on fails (None: never)."""

    fail_at: int | None = None

    def __setitem__(self, key: str, value: int) -> None:
        self._tick()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._tick()
        super().__delitem__(key)

    def pop(self, key: Any, default: Any = None, /) -> Any:
        self._tick()
        return super().pop(key, default)

    def _tick(self) -> None:
        if self.fail_at is not None:
            if self.fail_at == 0:
                self.fail_at = None
                raise MemoryError("injected")
            self.fail_at -= 1


@given(
    start=st.dictionaries(st.sampled_from([f"k{i}" for i in range(12)]), st.integers(0, 9)),
    writes=st.lists(WRITE, min_size=1, max_size=30),
    fail_at=st.integers(0, 40),
)
def test_a_failure_injected_at_any_write_of_a_delta_leaves_the_state_as_it_was(
    start: dict[str, int], writes: list[tuple[str, str, int]], fail_at: int
) -> None:
    """Property: wherever applying a delta fails, the component is exactly as before
    (values, key set and label); the same delta then applies cleanly."""
    source, old, target, new = _pair()
    old.entries.update(start)
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    new.entries = _FailingAt(new.entries)
    for action, key, value in writes:
        if action == "set":
            old.entries[key] = value
        elif action == "del":
            old.entries.pop(key, None)
        else:
            old.label = f"label{value}"
    delta = pieces.delta().to_bytes()
    before = (dict(new.entries), new.label)
    new.entries.fail_at = fail_at
    try:
        target.restore(delta)
    except RestoreError as exc:
        assert exc.phase == "apply" and exc.rollback_failed == ()
        assert (dict(new.entries), new.label) == before
        new.entries.fail_at = None
        target.restore(delta)
    assert dict(new.entries) == dict(old.entries) and new.label == old.label


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3) | st.binary(max_size=2),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3) | st.binary(max_size=2), inner, max_size=3),
    max_leaves=12,
)
SECTION = PLAIN | st.fixed_dictionaries(
    {
        "state": st.dictionaries(
            st.sampled_from(["entries", "label", "x"]),
            PLAIN | st.dictionaries(st.text(max_size=3), PLAIN, max_size=3),
            max_size=3,
        ),
        "deleted": st.dictionaries(
            st.sampled_from(["entries", "label", "x"]), st.lists(PLAIN, max_size=3), max_size=2
        ),
    }
)


@given(data=SECTION)
def test_any_delta_section_raises_only_a_restore_error_or_applies(data: object) -> None:
    """Property: whatever plain data a delta's section holds, the restore applies it
    or raises RestoreError with every component as it was."""
    source, old, target, new = _pair()
    old.entries["a"] = 1
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    try:
        target.restore(_crafted(target, data))
    except RestoreError:
        assert dict(new.entries) == {"a": 1} and new.label == "v1"
    else:
        assert all(type(key) is str and type(v) is int for key, v in new.entries.items())
        assert type(new.label) is str
        assert type(new.entries) is TrackedDict  # even when it came whole


def test_a_collection_sent_whole_in_a_delta_stays_tracked() -> None:
    """A dict field the writer did not track comes whole; the successor's
    TrackedDict is replaced by one of the new items, not by a plain dict."""
    source, old, target, new = _pair()
    old.entries["a"] = 1
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    target.restore(_crafted(target, {"state": {"entries": {"b": 2}, "label": "x"}, "deleted": {}}))
    assert type(new.entries) is TrackedDict and dict(new.entries) == {"b": 2}
    assert new.label == "x"


def test_a_rollback_keeps_the_order_of_the_keys() -> None:
    """Deletions come after every set of every component, so a failure while setting
    leaves the keys in their order (an LRU cache's order means something), even in a
    component whose records were applied before the one that failed."""
    source = Service("svc", registry=REGISTRY)
    first, second = CacheV1(), CacheV1()
    source.register(first, instance="one")
    source.register(second, instance="two")
    target = Service("svc", registry=REGISTRY)
    one, two = CacheV1(), CacheV1()
    target.register(one, instance="one")
    target.register(two, instance="two")
    first.entries.update({"a": 1, "b": 2, "c": 3})
    pieces = source.precopy_source()
    pieces.start()
    target.restore(pieces.full().to_bytes())
    two.entries = _Exploding(two.entries)
    del first.entries["a"]
    first.entries["c"] = 30
    second.entries["boom"] = 1  # fails in the second component, after the first's records
    with pytest.raises(RestoreError, match="no room for boom"):
        target.restore(pieces.delta().to_bytes())
    assert list(one.entries.items()) == [("a", 1), ("b", 2), ("c", 3)]


def test_deltas_follow_a_restore_with_a_component_added_and_one_dropped() -> None:
    """The new code registers a component the old one lacks and drops one it had: the
    deltas change what both have, leave the new one alone and skip the dropped one."""
    source = Service("svc", registry=REGISTRY)
    kept = source.register(CacheV1(), instance="kept")
    dropped = source.register(CacheV1(), instance="dropped")
    target = Service("svc", registry=REGISTRY)
    mine = target.register(CacheV1(), instance="kept")
    added = target.register(CacheV1(), instance="added")
    added.entries["fresh"] = 1
    with source.precopy_source() as pieces:
        pieces.start()
        report = target.restore(pieces.full().to_bytes())
        assert report.missing == ("cache/added",) and report.unknown == ("cache/dropped",)
        assert target.accepts_deltas and target.why_no_deltas is None
        kept.entries["k"] = 1
        dropped.entries["d"] = 2
        report = target.restore(pieces.delta().to_bytes())
    assert report.unknown == ("cache/dropped",) and report.missing == ("cache/added",)
    assert dict(mine.entries) == {"k": 1} and dict(added.entries) == {"fresh": 1}


def test_why_no_deltas_names_the_obstacle() -> None:
    target = Service("svc", registry=REGISTRY)
    assert not target.accepts_deltas
    assert target.why_no_deltas == "no full snapshot restored yet"


class TitledV2(TypedDict):
    entries: dict[str, dict[str, int]]
    title: str


TITLED = Registry()
TITLED.add_schema("cache", 1, StateV1)
TITLED.add_schema("cache", 2, TitledV2)


def _retitle(others: dict[str, Any]) -> dict[str, Any]:
    return {"title": others["label"].upper()}


TITLED.add_migration(
    "cache", 1, 2, lambda k, v: {"n": v}, name="wrap_and_retitle", records="entries",
    other_fields=_retitle,
)


@TITLED.migratable("cache", version=1)
class Untitled:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, int] = TrackedDict()
        self.label = "v1"


@TITLED.migratable("cache", version=2)
class Titled:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, dict[str, int]] = TrackedDict()
        self.title = ""


def test_a_record_step_with_other_fields_migrates_the_deltas_too() -> None:
    source = Service("svc", registry=TITLED)
    old = source.register(Untitled())
    target = Service("svc", registry=TITLED)
    new = target.register(Titled())
    old.entries["a"] = 1
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        assert target.accepts_deltas
        assert (dict(new.entries), new.title) == ({"a": {"n": 1}}, "V1")
        old.entries["b"] = 2
        old.label = "renamed"
        report = target.restore(pieces.delta().to_bytes())
    assert report.components[0].steps == ("cache 1 -> 2 (wrap_and_retitle)",)
    assert (dict(new.entries), new.title) == ({"a": {"n": 1}, "b": {"n": 2}}, "RENAMED")
