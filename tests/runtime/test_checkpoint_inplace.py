"""Incremental checkpoints and values changed in place: a checkpoint that would be
skipped as unchanged runs the in-place watch first, and so does the final one; after a
catch, every checkpoint of the process is a full snapshot."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from typing_extensions import TypedDict

from statemigrate import (
    ChangeTrackingError,
    Checkpointer,
    MemoryStore,
    PreCopySource,
    Registry,
    Service,
    TrackedDict,
)
from statemigrate._model._inplacewatch import InPlaceWatch


class Entry(TypedDict):
    hits: int


class Hits(TypedDict):
    entries: dict[str, Entry]


REGISTRY = Registry()
REGISTRY.add_schema("hits", 1, Hits)


@REGISTRY.migratable("hits", version=1)
class HitCounter:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, Entry] = TrackedDict()


KEYS = [f"k{i}" for i in range(10)]  # fewer than the pool: every record is watched


def counter_service() -> tuple[Service, HitCounter]:
    service = Service("hits", registry=REGISTRY)
    counter = service.register(HitCounter())
    service.start_cold("new")
    for key in KEYS:
        counter.entries[key] = {"hits": 0}
    return service, counter


def restored_hits(store: MemoryStore) -> int:
    service = Service("hits", registry=REGISTRY)
    counter = service.register(HitCounter())
    service.start_from(store)
    return sum(entry["hits"] for entry in counter.entries.values())


def hit_in_place(counter: HitCounter, key: str) -> None:
    counter.entries[key]["hits"] += 1  # no write of the key: the log sees nothing


def hit_and_write(counter: HitCounter, key: str) -> None:
    entry = counter.entries[key]
    entry["hits"] += 1
    counter.entries[key] = entry  # the write that puts the change in the next delta


def checkpoints_after_each(
    checkpointer: Checkpointer, counter: HitCounter, hit: object
) -> list[str]:
    """A hit per key, each followed by a checkpoint; what became of each."""
    outcomes = []
    for key in KEYS:
        hit(counter, key)  # type: ignore[operator]
        try:
            report = checkpointer.checkpoint_now()
        except ChangeTrackingError:
            outcomes.append("caught")
            continue
        outcomes.append(report.reason or "committed")
    return outcomes


@pytest.mark.parametrize("export", ["inline", "fork"])
def test_counters_changed_only_in_place_fail_the_checkpoint_instead_of_being_skipped(
    export: str,
) -> None:
    """The docs' own untracked change and no write at all: every checkpoint used to be
    skipped as unchanged, and a restart lost every hit. Now the one that would skip
    fails, and every one after it is a full snapshot, which holds the hits."""
    service, counter = counter_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock(),
        export=export,  # type: ignore[arg-type]
    )
    checkpointer.checkpoint_now()
    outcomes = checkpoints_after_each(checkpointer, counter, hit_in_place)
    assert outcomes == ["caught"] + ["committed"] * 9
    assert checkpointer.chain_length == 0  # full snapshots, no chain
    assert restored_hits(store) == 10


def blind_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the in-place sample watches no record: what it does at 300,000
    records for most of those changed in place."""
    monkeypatch.setattr(InPlaceWatch, "watch", lambda self, field, records: None)
    monkeypatch.setattr(InPlaceWatch, "seed", lambda self, field, records, *, held: None)


@pytest.mark.parametrize("export", ["inline", "fork"])
def test_after_a_catch_checkpoints_stay_full_and_hold_changes_no_sample_sees(
    export: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once caught, the habit is not forgotten: the chain used to trust deltas again
    after its next full base, so a later change in place that no sample watched was
    skipped as unchanged and lost. Every checkpoint after the catch is full (said once),
    and a restore holds every hit."""
    service, counter = counter_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock(),
        export=export,  # type: ignore[arg-type]
    )
    checkpointer.checkpoint_now()
    hit_in_place(counter, "k0")
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        with pytest.raises(ChangeTrackingError):
            checkpointer.checkpoint_now()
        blind_sample(monkeypatch)
        reports = []
        for key in KEYS[1:]:
            hit_in_place(counter, key)
            reports.append(checkpointer.checkpoint_now())
    assert restored_hits(store) == 10
    assert [r.reason or "committed" for r in reports] == ["committed"] * 9
    assert all(r.committed is not None and r.committed.snapshot.chain == 0 for r in reports)
    caught = [r for r in caplog.records if "caught changing a value in place" in r.getMessage()]
    full = [r for r in caught if "checkpoints of hits are full snapshots" in r.getMessage()]
    assert len(caught) == 2 and len(full) == 1  # the catch, and its cost, each said once
    (warning,) = [r for r in caught if r not in full]
    assert "hits/default" in warning.getMessage()
    assert "['entries']['k0']" in warning.getMessage()
    assert "check_change_tracking" in warning.getMessage()


def test_a_scheduled_checkpoint_that_catches_one_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, counter = counter_service()
    checkpointer = Checkpointer(
        service, MemoryStore(), every=3600.0, incremental=True, quiesce=threading.Lock()
    )
    checkpointer.checkpoint_now()
    hit_in_place(counter, "k3")
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        checkpointer._tick()  # what the checkpoint thread runs
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    opening = f"checkpoint of hits to {checkpointer.store!r} failed (1 in a row)"
    assert opening in record.getMessage()
    assert "['entries']['k3']" in record.getMessage()
    assert isinstance(checkpointer.last_error, ChangeTrackingError)


def test_hits_written_again_or_no_hits_at_all_pass() -> None:
    """Negative control: the same hits with their keys written again are deltas, and
    an idle service's checkpoints are still skipped as unchanged, without a word."""
    service, counter = counter_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock()
    )
    checkpointer.checkpoint_now()
    assert checkpoints_after_each(checkpointer, counter, hit_and_write) == ["committed"] * 10
    idle = [checkpointer.checkpoint_now().reason for _ in range(3)]
    assert idle == ["unchanged"] * 3
    assert checkpointer.failures == 0
    assert restored_hits(store) == 10


def test_without_the_check_the_in_place_hits_are_skipped_and_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Negative control: with the check before a skip turned off, the user's report
    comes back: every checkpoint skipped as unchanged, every hit lost."""
    monkeypatch.setattr(PreCopySource, "check_in_place", lambda self: None)
    service, counter = counter_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock()
    )
    checkpointer.checkpoint_now()
    assert checkpoints_after_each(checkpointer, counter, hit_in_place) == ["unchanged"] * 10
    assert restored_hits(store) == 0


def test_a_final_checkpoint_that_catches_one_commits_a_full_snapshot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """There is no next checkpoint to take the base after stop(): the final one takes
    it, with an error in the log, and a restart finds the hits."""
    service, counter = counter_service()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, every=3600.0, incremental=True, quiesce=threading.Lock()
    )
    checkpointer.checkpoint_now()
    for key in KEYS:
        hit_in_place(counter, key)
    with caplog.at_level(logging.ERROR, logger="statemigrate"):
        report = checkpointer.stop()
    assert report is not None and report.committed is not None
    assert report.committed.snapshot.chain == 0  # a full snapshot, not a chain's base
    (record,) = caplog.records
    assert record.getMessage().startswith("final checkpoint of hits: hits: a delta misses")
    assert record.getMessage().endswith("committing a full snapshot instead")
    assert restored_hits(store) == 10


def test_a_final_checkpoint_on_a_loop_that_catches_one_commits_a_full_snapshot() -> None:
    service, counter = counter_service()
    store = MemoryStore()

    async def main() -> None:
        checkpointer = Checkpointer(
            service, store, every=3600.0, incremental=True, quiesce=asyncio.Lock()
        )
        await checkpointer.checkpoint()
        task = asyncio.create_task(checkpointer.run())
        await asyncio.sleep(0)  # the task waits for its first checkpoint
        hit_in_place(counter, "k0")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert restored_hits(store) == 1
