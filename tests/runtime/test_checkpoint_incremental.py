"""Incremental checkpoints: a base and chained deltas committed as one object, compacted
into a new base; start_from verifies the whole chain and falls back to previous."""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest
from restore_children.ledger import (
    ledger_service,
    state_after,
    tracked_ledger_service,
)
from typing_extensions import TypedDict

from statemigrate import (
    ChangeTrackingError,
    Checkpointer,
    ConfigurationError,
    MemoryStore,
    Registry,
    RestoreError,
    RestoreReport,
    Service,
    SnapshotError,
    StoreError,
    TrackedDict,
)
from statemigrate._observe._instruments import use_sink
from statemigrate._runtime._chain import chain_frame, is_chain, split_chain
from statemigrate.stores import Buffer
from statemigrate.stores._memory import MemoryRef


def checkpointed(writes: list[int], **options: object) -> tuple[MemoryStore, Checkpointer, int]:
    """A tracked ledger checkpointed incrementally after each batch of ``writes``."""
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service,
        store,
        quiesce=threading.Lock(),
        incremental=True,
        **options,  # type: ignore[arg-type]
    )
    for batch in writes:
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
    return store, checkpointer, ledger.count


def restored_count(data: object) -> int:
    service, ledger = tracked_ledger_service()
    assert service.start_from(data) is not None  # type: ignore[arg-type]
    assert ledger.state() == state_after(ledger.count)
    return ledger.count


def test_every_checkpoint_restores_exactly_the_state_it_took() -> None:
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    lengths = []
    for batch in [2_000, 40, 40, 40, 40, 40]:
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
        lengths.append(checkpointer.chain_length)
        assert is_chain(store.open())
        assert restored_count(store) == ledger.count
    assert lengths == [1, 2, 3, 4, 5, 6]  # small deltas extend the chain


def test_the_chain_is_compacted_after_max_deltas() -> None:
    # Deltas of 50 records on a base of 2,000: far below max_delta_ratio.
    store, checkpointer, count = checkpointed([2_000] + [50] * 6, max_deltas=2)
    assert checkpointer.chain_length == 1  # 7 pieces: base, 2 deltas, base, 2 deltas, base
    assert len(split_chain(store.open())) == 1
    assert restored_count(store) == count


def test_the_chain_is_compacted_when_the_deltas_outgrow_the_base() -> None:
    # The base holds 2,000 items, each delta 150: the third checkpoint is a new base.
    store, checkpointer, count = checkpointed([2_000, 150, 150], max_delta_ratio=0.1)
    assert checkpointer.chain_length == 1
    assert restored_count(store) == count
    _, unbounded, _ = checkpointed([2_000, 150, 150], max_delta_ratio=100.0)
    assert unbounded.chain_length == 3


def test_a_delta_of_most_of_the_state_is_taken_as_a_new_base() -> None:
    """The delta about to be taken counts before it is taken: 1,500 of 2,000 records
    changed would make a delta over half the base, so a new base is taken instead."""
    store, checkpointer, count = checkpointed([2_000, 100, 1_500])
    assert checkpointer.chain_length == 1
    assert restored_count(store) == count


def test_a_first_delta_of_most_of_the_state_is_taken_as_a_new_base() -> None:
    """No delta before it tells the size of the first delta after a base: 1,500 records
    changed of 2,000 still make a new base, and 500 a delta."""
    store, checkpointer, count = checkpointed([2_000, 1_500])
    assert checkpointer.chain_length == 1
    assert len(split_chain(store.open())) == 1
    assert restored_count(store) == count
    _, small, _ = checkpointed([2_000, 500])
    assert small.chain_length == 2


def test_the_first_delta_after_a_base_counts_against_max_delta_ratio() -> None:
    """The first delta after a base is reckoned at the base's size per record: 1,000
    records changed of 5,000 (a fifth of the base) pass a ratio of 0.1."""
    store, checkpointer, count = checkpointed([5_000, 1_000], max_delta_ratio=0.1)
    assert checkpointer.chain_length == 1
    assert restored_count(store) == count
    _, default, _ = checkpointed([5_000, 1_000])
    assert default.chain_length == 2


def test_no_delta_of_more_than_a_quarter_of_the_records_is_taken_whatever_the_ratio() -> None:
    """A delta costs more per record changed than a full snapshot per record held: past
    a quarter of the records, a base holds the writers no longer, whatever
    max_delta_ratio allows."""
    # The ledger holds 5,000 records once 5,000 writes are made; later writes replace.
    store, checkpointer, count = checkpointed([5_000, 200, 1_400], max_delta_ratio=100.0)
    assert checkpointer.chain_length == 1  # 1,400 of 5,000 changed
    assert restored_count(store) == count
    _, under, _ = checkpointed([5_000, 200, 1_100], max_delta_ratio=100.0)
    assert under.chain_length == 3  # 1,100 of 5,000


def test_a_new_base_resets_the_estimate_of_the_next_delta() -> None:
    """After a compaction, the first delta is bounded by the new base as the first
    delta of the chain was by its base."""
    # Base, delta, delta, base (max_deltas), then 1,000 of 5,000 records changed: a
    # fifth of the new base, past the ratio, though the deltas before were too small
    # to tell a size per record.
    store, checkpointer, count = checkpointed(
        [5_000, 20, 20, 20, 1_000], max_deltas=2, max_delta_ratio=0.1
    )
    assert checkpointer.chain_length == 1
    assert restored_count(store) == count


def test_a_damaged_chain_falls_back_to_the_previous_complete_chain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, _, count = checkpointed([2_000, 30, 30])
    assert len(split_chain(store.open())) == 3
    current = bytearray(store.open())
    current[-5] ^= 0x40  # in the last delta's digest
    previous = store.open_previous()
    store.commit(previous)
    store.commit(bytes(current))
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        assert restored_count(store) == count - 30
    assert "restoring the one before it" in caplog.text


def test_a_chain_missing_a_delta_is_refused_whole() -> None:
    store, _, _ = checkpointed([2_000, 30, 30])
    base, _, last = split_chain(store.open())
    gapped = chain_frame([len(base), len(last)]) + bytes(base) + bytes(last)
    service, ledger = tracked_ledger_service()
    with pytest.raises(Exception, match="piece 1 does not follow piece 0") as caught:
        service.start_from(gapped)
    assert ledger.count == 0
    assert service.status.state == "failed", caught.value


def test_a_delta_failing_after_its_base_was_applied_leaves_the_components_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chain is restored all or nothing, like each of its pieces: a delta refused in
    validation after the base went in puts the base back out, so whatever follows (a
    refusal to start, or a cold start) starts from the components as they were."""
    store, _, _ = checkpointed([2_000, 30])
    service, ledger = tracked_ledger_service()
    real_restore = service._restore_piece  # each piece of a chain is restored by it
    pieces: list[int] = []

    def restore_refusing_deltas(source: object, **options: object) -> RestoreReport:
        pieces.append(1)
        if len(pieces) > 1:
            raise RestoreError("validate", "refused for the test", component="ledger/default")
        return real_restore(source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_restore_piece", restore_refusing_deltas)
    with pytest.raises(RestoreError, match="refused for the test"):
        service.start_from(store)
    assert len(pieces) == 2  # the base was applied before the delta failed
    assert ledger.count == 0
    assert ledger.state() == state_after(0)


def test_restore_reads_a_chain_as_start_from_does() -> None:
    """``restore`` is given what the store holds (a base and its deltas) as bytes, as
    the store's reference, or as the checkpoint's CommitReport: each restores the
    whole chain."""
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    for batch in [2_000, 30, 30]:
        for _ in range(batch):
            ledger.write()
        last = checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3 and last.committed is not None
    for source in (store.open(), last.committed.ref, last.committed):
        restored, copy = tracked_ledger_service()
        report = restored.restore(source)
        assert report.delta  # the report of the chain's last piece
        assert (copy.count, copy.state()) == (ledger.count, state_after(ledger.count))
        assert restored.status.state == "restored"


def test_restore_of_a_chain_is_all_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delta refused after the base went in: ``restore`` raises and every component
    is as it was before, as with one snapshot."""
    store, _, _ = checkpointed([2_000, 30])
    service, ledger = tracked_ledger_service()
    for _ in range(5):
        ledger.write()
    real_restore = service._restore_piece
    pieces: list[int] = []

    def restore_refusing_deltas(source: object, **options: object) -> RestoreReport:
        pieces.append(1)
        if len(pieces) > 1:
            raise RestoreError("validate", "refused for the test", component="ledger/default")
        return real_restore(source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_restore_piece", restore_refusing_deltas)
    with pytest.raises(RestoreError, match="refused for the test"):
        service.restore(store.open())
    assert len(pieces) == 2
    assert (ledger.count, ledger.state()) == (5, state_after(5))


def test_every_truncation_of_a_frame_raises_a_snapshot_error() -> None:
    """Property: a chain cut anywhere is refused, never split into pieces."""
    store, _, _ = checkpointed([100, 10])
    data = bytes(store.open())
    for end in range(len(data)):
        with pytest.raises(SnapshotError):
            pieces = split_chain(data[:end])
            raise AssertionError(f"cut at {end} gave {len(pieces)} pieces")


def test_a_flipped_bit_in_the_frame_is_refused() -> None:
    store, _, _ = checkpointed([100, 10])
    data = bytearray(store.open())
    frame = len(chain_frame([1, 1]))
    for offset in range(frame):
        flipped = bytearray(data)
        flipped[offset] ^= 0x01
        with pytest.raises(SnapshotError):
            split_chain(flipped)


def test_a_frame_declaring_too_many_pieces_is_refused() -> None:
    head = struct.pack("<8sII", b"\x89SMCHAIN", 1 << 20, 0)
    with pytest.raises(SnapshotError, match="declares 1048576 pieces"):
        split_chain(head + bytes(64))


def test_untracked_components_get_full_checkpoints(caplog: pytest.LogCaptureFixture) -> None:
    service, ledger = ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        for _ in range(2):
            ledger.write()
            checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 0
    assert not is_chain(store.open())
    assert "are full snapshots: ledger" in caplog.text
    fresh, restored = ledger_service()
    fresh.start_from(store)
    assert restored.count == 2


def test_stop_ends_the_chain_and_the_next_checkpoint_is_a_new_base() -> None:
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    for _ in range(100):
        ledger.write()
    checkpointer.checkpoint_now()
    ledger.write()
    checkpointer.stop()  # the final checkpoint is a delta; tracking stops after it
    assert len(split_chain(store.open())) == 2
    ledger.write()
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1
    assert restored_count(store) == 102


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_deltas", 0), ("max_deltas", True), ("max_deltas", 1 << 16), ("max_delta_ratio", 0)],
)
def test_bad_chain_bounds_are_refused(option: str, value: object) -> None:
    service, _ = tracked_ledger_service()
    with pytest.raises(ConfigurationError, match=option):
        Checkpointer(service, MemoryStore(), incremental=True, **{option: value})  # type: ignore[arg-type]


def test_on_an_event_loop_checkpoints_chain_too() -> None:
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, incremental=True)

    async def twice() -> None:
        for batch in (2_000, 10):
            for _ in range(batch):
                ledger.write()
            await checkpointer.checkpoint()

    asyncio.run(twice())
    assert checkpointer.chain_length == 2
    assert restored_count(store) == 2_010


class Timestamps:
    """A metrics sink keeping the staleness gauge's values."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def record(self, instrument: Any, value: float, labels: Any) -> None:
        if instrument.name == "statemigrate_last_snapshot_timestamp_seconds":
            self.values.append(value)


class Gauges:
    """A metrics sink keeping each gauge's values, by name."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def record(self, instrument: Any, value: float, labels: Any) -> None:
        if instrument.kind == "gauge":
            self.values.setdefault(instrument.name, []).append(value)


@pytest.mark.parametrize("export", ["fork", "inline"])
def test_each_committed_piece_reports_the_chain_the_store_holds(export: str) -> None:
    """A delta commits the chain, so it is a snapshot kept: the staleness gauge moves,
    and the size and generation are the chain's, not the last base's."""
    service, ledger = tracked_ledger_service()
    checkpointer = Checkpointer(
        service,
        MemoryStore(),
        quiesce=threading.Lock(),
        incremental=True,
        export=export,  # type: ignore[arg-type]
    )
    sink = Gauges()
    previous = use_sink(sink)
    try:
        committed = []
        for batch in (2_000, 10, 10):
            for _ in range(batch):
                ledger.write()
            report = checkpointer.checkpoint_now().committed
            assert report is not None
            committed.append(report.snapshot)
    finally:
        use_sink(previous)
    assert checkpointer.chain_length == 3
    assert sink.values["statemigrate_snapshot_bytes"] == [s.size for s in committed]
    assert sink.values["statemigrate_generation"] == [s.generation for s in committed]
    assert len(sink.values["statemigrate_last_snapshot_timestamp_seconds"]) == 3


@pytest.mark.parametrize("export", ["fork", "inline"])
def test_an_idle_chain_commits_nothing_and_stays_fresh(export: str) -> None:
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service,
        store,
        quiesce=threading.Lock(),
        incremental=True,
        export=export,  # type: ignore[arg-type]
    )
    for _ in range(100):
        ledger.write()
    assert not checkpointer.checkpoint_now().skipped
    sink = Timestamps()
    previous = use_sink(sink)
    try:
        idle = [checkpointer.checkpoint_now() for _ in range(5)]
    finally:
        use_sink(previous)
    assert all(report.skipped and report.reason == "unchanged" for report in idle)
    assert store.commits == 1 and checkpointer.chain_length == 1
    # An operator's staleness alert reads the gauge: the checkpoint is current.
    assert len(sink.values) == 5
    ledger.write()
    assert not checkpointer.checkpoint_now().skipped  # a record changed
    assert checkpointer.checkpoint_now().skipped
    ledger.count += 1000  # only a field beside the records
    assert not checkpointer.checkpoint_now().skipped
    assert checkpointer.checkpoint_now().skipped
    assert checkpointer.checkpoint_now(force=True).committed is not None
    assert store.commits == 4
    restarted, again = tracked_ledger_service(started=False)
    assert restarted.start_from(store) is not None
    assert again.state() == ledger.state()


def test_a_piece_that_was_not_committed_is_not_taken_for_the_committed_one() -> None:
    service, ledger = tracked_ledger_service()
    store = RefusingStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    assert not checkpointer.checkpoint_now().skipped
    ledger.write()
    store.refuse = True
    with pytest.raises(StoreError):
        checkpointer.checkpoint_now()
    store.refuse = False
    assert not checkpointer.checkpoint_now().skipped  # the delta is committed now
    assert checkpointer.checkpoint_now().skipped
    restarted, again = tracked_ledger_service(started=False)
    assert restarted.start_from(store) is not None
    assert again.state() == ledger.state()


class RefusingStore(MemoryStore):
    """A memory store whose commits fail while ``refuse`` is set."""

    refuse = False

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
        if self.refuse:
            raise StoreError("commit", "memory", "refused for the test")
        return super().commit(data)


class Shelf(TypedDict):
    shelves: dict[str, list[int]]


SHELF_REGISTRY = Registry()
SHELF_REGISTRY.add_schema("shelf", 1, Shelf)


@SHELF_REGISTRY.migratable("shelf", version=1)
class ShelfStore:
    def __init__(self) -> None:
        self.shelves: TrackedDict[str, list[int]] = TrackedDict()


def test_a_value_changed_in_place_fails_its_delta_and_the_next_checkpoints_are_full() -> None:
    """A delta that finds a value changed in place fails; the checkpoints after it are
    full snapshots for the rest of the process's life, and hold the change (a delta
    would not)."""
    service = Service("shelves", registry=SHELF_REGISTRY)
    shelf = service.register(ShelfStore())
    service.start_cold("new")
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock()
    )
    shelf.shelves.update((f"k{i}", list(range(20))) for i in range(2000))  # deltas stay small
    shelf.shelves["a"] = [1]
    checkpointer.checkpoint_now()  # the base
    shelf.shelves["b"] = [1]
    checkpointer.checkpoint_now()  # a delta: "b" is watched from here
    shelf.shelves["b"].append(2)  # no write
    shelf.shelves["c"] = [3]
    with pytest.raises(ChangeTrackingError, match=r"\['shelves'\]\['b'\]"):
        checkpointer.checkpoint_now()
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 0  # a full snapshot, no chain
    again = Service("shelves", registry=SHELF_REGISTRY)
    back = again.register(ShelfStore())
    again.start_from(store)
    assert {key: back.shelves[key] for key in "abc"} == {"a": [1], "b": [1, 2], "c": [3]}
    assert len(back.shelves) == 2003


BACK_TO_BACK = "now run back to back"


def timed(checkpointer: Checkpointer, ledger: Any, seconds: list[float]) -> list[int]:
    """Checkpoints after a write each, scheduled as if they had taken ``seconds`` (the
    durations are given, not measured); returns the chain length each committed."""
    for i in range(1000):  # enough records that one write makes a delta, not a base
        ledger.items[f"filler{i}"] = i
    chains = []
    for taken in seconds:
        ledger.write()
        report = checkpointer.checkpoint_now()
        assert report.committed is not None
        chains.append(report.committed.snapshot.chain)
        checkpointer._next_after(report, taken)
    return chains


def test_a_slow_base_followed_by_fast_deltas_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first full base after a start or a take-over takes longer than every, the
    deltas after it milliseconds: nothing runs back to back, so nothing is said,
    again after a later slow base."""
    service, ledger = tracked_ledger_service()
    checkpointer = Checkpointer(
        service, MemoryStore(), every=1.0, export="inline", incremental=True
    )
    chains = timed(checkpointer, ledger, [3.16, 0.003, 0.002, 0.004])
    assert chains == [1, 2, 3, 4]
    checkpointer.close()  # the next checkpoint starts a new chain: a slow base again
    assert timed(checkpointer, ledger, [8.71, 0.003]) == [1, 2]
    assert BACK_TO_BACK not in caplog.text


def test_checkpoints_that_keep_running_over_are_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Negative control of the test above: two slow checkpoints in a row (here a base
    and a delta) do run back to back, and the log says so once, with every to raise
    above the slowest."""
    service, ledger = tracked_ledger_service()
    checkpointer = Checkpointer(
        service, MemoryStore(), every=1.0, export="inline", incremental=True
    )
    chains = timed(checkpointer, ledger, [3.16, 1.5, 2.0, 0.1, 4.0, 4.0])
    assert chains[:5] == [1, 2, 3, 4, 5]  # warned at the first delta, not at the base
    assert caplog.text.count(BACK_TO_BACK) == 1
    assert "2 checkpoints of ledger-service in a row" in caplog.text
    assert "raise every above 3.2 s" in caplog.text
    assert "incremental=True" not in caplog.text


def test_the_advice_follows_what_ran_over(caplog: pytest.LogCaptureFixture) -> None:
    """Full checkpoints running over are told of incremental checkpoints; an
    incremental chain that is a new base every time, of max_delta_ratio; checkpoints
    whose store's commit took most of their time, of the store, not of every."""
    service, ledger = tracked_ledger_service()
    full = Checkpointer(service, MemoryStore(), every=1.0, export="inline")
    timed(full, ledger, [2.0, 2.0])
    assert "checkpoint incrementally (incremental=True" in caplog.text
    caplog.clear()
    rebased = Checkpointer(
        service, MemoryStore(), every=1.0, export="inline", incremental=True, max_delta_ratio=1e-9
    )
    assert timed(rebased, ledger, [2.0, 2.0]) == [1, 1]
    assert "each is a new full base" in caplog.text and "max_delta_ratio" in caplog.text
    caplog.clear()
    slow_store = Checkpointer(service, MemoryStore(), every=1.0, export="inline")
    for commit_seconds in (3.9, 4.0):  # of 4.1 s each: given, not measured
        ledger.write()
        report = slow_store.checkpoint_now()
        assert report.committed is not None
        committed = replace(report.committed, commit_seconds=commit_seconds)
        slow_store._next_after(replace(report, committed=committed), 4.1)
    assert "(4.10 s, 4.10 s)" in caplog.text
    assert "the memory store's commits took 3.90 s and 4.00 s of that" in caplog.text
    assert "raise every" not in caplog.text
    assert "incremental=True" not in caplog.text


# --- a restore while a chain runs --------------------------------------------------------


class OnlyEntries(TypedDict):
    entries: dict[str, int]


ENTRIES_REGISTRY = Registry()
ENTRIES_REGISTRY.add_schema("only-entries", 1, OnlyEntries)


@ENTRIES_REGISTRY.migratable("only-entries", version=1)
class EntriesCache:
    """Records only: no field beside them changes with a write."""

    def __init__(self) -> None:
        self.entries: TrackedDict[str, int] = TrackedDict()


@pytest.mark.parametrize("export", ["inline", "fork"])
def test_a_restore_while_a_chain_runs_starts_a_new_chain(
    export: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented recovery, `service.restore(...)` with an incremental checkpointer
    running, replaces the components' TrackedDicts: the next checkpoint starts a new
    base holding the restored state and the writes since, instead of failing on the
    replaced dict at every attempt (and at the final checkpoint) for good."""
    service = Service("entries", registry=ENTRIES_REGISTRY)
    cache = service.register(EntriesCache())
    service.start_cold("test")
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export=export  # type: ignore[arg-type]
    )
    cache.entries["a"] = 1
    assert checkpointer.checkpoint_now().committed is not None
    first = bytes(store.open())  # a store keeps its latest: the operator's older copy
    cache.entries["b"] = 2
    checkpointer.checkpoint_now()
    service.restore(first, allow_older=True)
    assert dict(cache.entries) == {"a": 1}
    cache.entries["c"] = 3
    caplog.set_level(logging.INFO, logger="statemigrate")
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 1
    assert "restored a snapshot since the chain began" in caplog.text
    cache.entries["d"] = 4
    assert checkpointer.checkpoint_now().committed is not None  # a delta on the new base
    again = Service("entries", registry=ENTRIES_REGISTRY)
    restored = again.register(EntriesCache())
    assert again.start_from(store) is not None
    assert dict(restored.entries) == {"a": 1, "c": 3, "d": 4}


def test_a_checkpoint_that_fails_before_its_commit_counts_as_a_failed_commit() -> None:
    """An operator's alert on failed commits sees a checkpoint that failed before it
    reached the store (here a watched record changed in place), once, not only the
    staleness an interval later; a commit that fails in the store is counted once too."""
    records: list[tuple[str, tuple[str, ...]]] = []

    class Sink:
        def record(self, instrument: Any, value: float, labels: Any) -> None:
            records.append((instrument.name, tuple(labels)))

    class Refusing(MemoryStore):
        def commit(self, data: Any) -> Any:
            raise StoreError("commit", "memory://", "refused")

    previous = use_sink(Sink())
    try:
        service, _ = ledger_service()
        with pytest.raises(StoreError):
            Checkpointer(service, Refusing()).checkpoint_now()
        service, ledger = ledger_service()
        checkpointer = Checkpointer(service, MemoryStore(), every=60.0)
        checkpointer._taker.take = _raising  # type: ignore[method-assign,assignment]
        with pytest.raises(RuntimeError):
            checkpointer.checkpoint_now()
    finally:
        use_sink(previous)
    failed = [
        labels
        for name, labels in records
        if name == "statemigrate_commits_total" and labels[-1] == "failed"
    ]
    assert failed == [
        ("ledger-service", "refusing", "failed"),
        ("ledger-service", "memory", "failed"),
    ]


def _raising(*args: object) -> None:
    raise RuntimeError("the export failed")
