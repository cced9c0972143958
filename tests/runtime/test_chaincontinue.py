"""A restart continues the checkpoint chain it restored: its first checkpoint is a delta
on the restored pieces, only when the state is exactly the chain's, else a new base."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from chain_releases import RELEASES, SERVICE, cache_of, write_chain
from restore_children.ledger import TrackedLedger, state_after, tracked_ledger_service

from statemigrate import Checkpointer, MemoryStore, RestoreError, Service, TmpfsStore
from statemigrate._model._changes import ComponentChanges
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._runtime._chaincontinue import why_not_continued
from statemigrate._snapshot._format import open_snapshot
from statemigrate._snapshot._header import SnapshotHeader


def headers(data: object) -> list[SnapshotHeader]:
    """The headers of a chain's pieces, base first."""
    return [open_snapshot(piece).header for piece in split_chain(data)]  # type: ignore[arg-type]


def checkpointed_store(batches: list[int]) -> tuple[MemoryStore, int]:
    """A store holding a tracked ledger's chain: a base, then one delta a batch."""
    service, ledger = tracked_ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    for batch in batches:
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
    return store, ledger.count


def restarted(store: object) -> tuple[Service, Any]:
    """A new process's service and ledger, restored from ``store``."""
    service, ledger = tracked_ledger_service(started=False)
    assert service.start_from(store) is not None  # type: ignore[arg-type]
    return service, ledger


@pytest.mark.parametrize("export", ["inline", "fork"])
def test_a_restart_continues_the_chain_it_restored(export: str) -> None:
    """The first checkpoint after the restart commits the old pieces, byte for byte,
    and a delta naming the restored newest piece (its id and generation) as its base,
    at a higher generation; restoring it gives the writes made since the restart."""
    store, count = checkpointed_store([2_000, 40])
    before = bytes(store.open())
    old = headers(before)
    service, ledger = restarted(store)
    assert ledger.count == count
    for _ in range(30):
        ledger.write()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export=export  # type: ignore[arg-type]
    )
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 3
    assert report.child_seconds == 0.0  # no base forked
    after = bytes(store.open())
    pieces = split_chain(after)
    assert [bytes(p) for p in pieces[:2]] == [bytes(p) for p in split_chain(before)]
    new = headers(after)[-1]
    assert new.base is not None
    assert (new.base.snapshot_id, new.base.generation) == (old[-1].snapshot_id, old[-1].generation)
    assert new.generation > old[-1].generation
    _, again = restarted(store)
    assert again.state() == ledger.state() == state_after(ledger.count)


def test_change_tracking_is_opened_once_per_restore_of_a_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restoring a base and five deltas opens change tracking once, on the newest
    piece: opening it seeds the in-place watch from the whole state, so once a piece
    would cost a chain of N deltas N walks of the state. The chain is still continued."""
    store, _ = checkpointed_store([2_000, 10, 10, 10, 10, 10])
    assert len(split_chain(store.open())) == 6
    opened: list[object] = []
    real_open = ComponentChanges.open

    def counted(changes: ComponentChanges) -> None:
        opened.append(changes)
        real_open(changes)

    monkeypatch.setattr(ComponentChanges, "open", counted)
    service, ledger = restarted(store)
    assert len(opened) == 1  # one component, one restore
    ledger.write()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 7
    _, again = restarted(store)
    assert again.state() == ledger.state()


def test_every_restart_of_a_continued_chain_restores_it_exactly() -> None:
    """Kills between restores: restore, write, checkpoint, crash, restore again. Each
    restart restores the base and every delta, old and new, in order; the chain keeps
    growing with increasing generations until its bounds compact it."""
    store, _ = checkpointed_store([2_000])
    lengths = []
    for round_ in range(4):
        service, ledger = restarted(store)
        for _ in range(25 + round_):
            ledger.write()
        checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
        checkpointer.checkpoint_now()
        for _ in range(10):
            ledger.write()
        checkpointer.checkpoint_now()
        lengths.append(checkpointer.chain_length)
        state = ledger.state()
        # "kill -9": no stop(), no final checkpoint; the next process restores.
        _, again = restarted(store)
        assert again.state() == state == state_after(ledger.count)
        generations = [h.generation for h in headers(store.open())]
        assert generations == sorted(set(generations))
    assert lengths == [3, 5, 7, 9]


def test_a_write_made_as_soon_as_the_service_is_ready_is_in_the_first_delta() -> None:
    """A writer that waits for the status to say ready writes once the changes are
    tracked already: its write is in the continued chain's first delta."""
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = tracked_ledger_service(started=False)
    wrote = threading.Event()

    def writer() -> None:
        while not service.status.ready:
            pass  # polls as a readiness probe would, with no delay to miss the instant
        ledger.write()
        wrote.set()

    thread = threading.Thread(target=writer)
    thread.start()
    service.start_from(store)
    thread.join(timeout=60)  # only stops a hang
    assert wrote.is_set()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3
    _, again = restarted(store)
    assert again.state() == ledger.state()


def test_the_chain_restored_from_one_store_is_not_continued_in_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = restarted(store)
    ledger.write()
    other = MemoryStore()
    checkpointer = Checkpointer(service, other, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1  # a new base
    assert "checkpoints commit to" in caplog.text
    _, again = restarted(other)
    assert again.state() == ledger.state()


def test_two_tmpfs_store_objects_on_one_directory_are_one_place(tmp_path: Any) -> None:
    """The same place through another object: a second store object on the directory
    (a checkpointer's own, say) continues the chain the first restored."""
    (tmp_path / "ckpt").mkdir(mode=0o700)
    with TmpfsStore(tmp_path / "ckpt") as first, TmpfsStore(tmp_path / "ckpt") as second:
        service, ledger = tracked_ledger_service()
        writer = Checkpointer(service, first, quiesce=threading.Lock(), incremental=True)
        for _ in range(500):
            ledger.write()
        writer.checkpoint_now()
        service, ledger = restarted(first)
        ledger.write()
        checkpointer = Checkpointer(service, second, quiesce=threading.Lock(), incremental=True)
        checkpointer.checkpoint_now()
        assert checkpointer.chain_length == 2
        _, again = restarted(second)
        assert again.state() == ledger.state()


def test_a_chain_restored_through_a_migration_is_not_continued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Release 2 restores release 1's chain through its steps: its state is not the
    chain's bytes, so its first checkpoint is a new base."""
    store = MemoryStore()
    store.commit(write_chain().chain)
    registry = RELEASES["drop_note"]()
    service = Service(SERVICE, registry=registry)
    cache = service.register(cache_of(registry))
    assert service.start_from(store, allow_lossy=True) is not None
    cache.entries["new"] = 1
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1
    assert "not continued" in caplog.text and "cache 1 -> 2" in caplog.text


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"version": 2}, "(a migration ran)"),
        ({"fingerprint": "0" * 32}, "schema fingerprint differs"),
    ],
)
def test_a_section_at_another_version_or_fingerprint_is_not_continued(
    change: dict[str, Any], why: str
) -> None:
    """The judgement on the pieces' headers: every section at the version and schema
    fingerprint this code runs, written by this service."""
    store, _ = checkpointed_store([2_000, 40])
    service, _ = restarted(store)
    pieces = headers(store.open())
    report = service.restore(store.open())  # skipped: restored already
    fresh = replace(report, skipped=False)
    judge = partial(
        why_not_continued,
        service=service.name,
        entries=service._entries,
        history=service._history,
    )
    assert judge(pieces, fresh) is None
    changed = [replace(pieces[0], sections=(replace(pieces[0].sections[0], **change),))]
    assert why in str(judge([*changed, pieces[1]], fresh))
    other = replace(pieces[1].producer, service="another")
    assert "written by service 'another'" in str(
        judge([pieces[0], replace(pieces[1], producer=other)], fresh)
    )
    assert "skipped" in str(judge(pieces, report))


def test_a_component_the_chain_did_not_restore_makes_a_new_base(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A component registered before the restore that the chain has no section for
    would be missing from every delta's base: a new base holds it."""
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = tracked_ledger_service(started=False)
    extra = service.register(TrackedLedger(), instance="extra")
    service.start_from(store)
    extra.items["x"] = 1
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1
    assert "ledger/extra is not in the snapshot" in caplog.text
    again, _ = tracked_ledger_service(started=False)
    restored_extra = again.register(TrackedLedger(), instance="extra")
    again.start_from(store)
    assert dict(restored_extra.items) == {"x": 1}


def test_a_component_registered_after_the_restore_makes_a_new_base(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = restarted(store)
    extra = service.register(TrackedLedger(), instance="extra")
    extra.items["x"] = 1
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1
    assert "registered or unregistered since" in caplog.text


def test_a_section_no_component_claims_makes_a_new_base(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A chain holding a component this code no longer registers: continuing it would
    carry that section on in every restart."""
    service, ledger = tracked_ledger_service()
    service.register(TrackedLedger(), instance="extra")
    store = MemoryStore()
    Checkpointer(service, store, quiesce=threading.Lock(), incremental=True).checkpoint_now()
    service, ledger = restarted(store)
    ledger.write()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1
    assert "claimed by no component" in caplog.text


def test_a_restore_of_bytes_or_a_full_checkpointer_continues_nothing() -> None:
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = tracked_ledger_service(started=False)
    service.start_from(bytes(store.open()))
    incremental = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    incremental.checkpoint_now()
    assert incremental.chain_length == 1
    service, ledger = restarted(store)
    assert service._chains.held is not None
    full = Checkpointer(service, store, quiesce=threading.Lock())
    full.checkpoint_now()
    assert service._chains.held is None  # dropped: its tracking costs nothing more
    assert not is_chain(store.open())


def test_a_restore_after_start_up_drops_the_chain_held() -> None:
    """A restore of anything else replaces the state the chain held described."""
    store, _ = checkpointed_store([2_000, 40])
    service, ledger = restarted(store)
    other, _ = checkpointed_store([100])
    service.restore(other.open(), allow_older=True, force=True)
    assert service._chains.held is None
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 1


def test_the_continued_chain_keeps_the_replay_rules() -> None:
    """The continued chain is judged by its newest piece: the chain before it, restored
    into a service that restored the continued one, is refused as a replay."""
    store, _ = checkpointed_store([2_000, 40])
    before = bytes(store.open())
    service, ledger = restarted(store)
    ledger.write()
    Checkpointer(service, store, quiesce=threading.Lock(), incremental=True).checkpoint_now()
    again, _ = restarted(store)
    with pytest.raises(RestoreError, match="older"):
        again.restore(before)


def test_a_chain_held_is_not_continued_in_a_forked_copy() -> None:
    """A child forked after the restore (a gunicorn worker of a master that restored)
    holds a copy of the chain whose tracking is its parent's."""
    store, _ = checkpointed_store([2_000, 40])
    service, _ = restarted(store)
    held = service._chains.held
    assert held is not None
    held.pid = -1  # as a forked child sees it: another process restored it
    assert service._chains.claim(store) is None
    assert "forked" in service._chains.why_not


def test_a_chain_no_incremental_checkpointer_asks_for_stops_being_tracked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A service that restores from a store and has no incremental checkpointer does
    not record its writes for ever: the chain held is dropped when the wait ends, and
    a checkpointer made later starts a new base and says why."""
    monkeypatch.setattr("statemigrate._runtime._chaincontinue.UNCLAIMED_SECONDS", 0.05)
    store, _ = checkpointed_store([500, 10])
    service, ledger = restarted(store)
    held = service._chains.held
    assert held is not None
    assert wait_until(lambda: service._chains.held is None)
    ledger.write()
    caplog.set_level(logging.INFO, logger="statemigrate")
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 1
    assert "no incremental checkpointer asked for it within 0.05 s" in caplog.text
    _, again = restarted(store)
    assert again.state() == ledger.state()


def test_an_incremental_checkpointer_made_first_keeps_the_chain_however_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpointer made before the restore (as the integrations make theirs) keeps
    the chain held past the wait for one, for its first checkpoint."""
    monkeypatch.setattr("statemigrate._runtime._chaincontinue.UNCLAIMED_SECONDS", 0.05)
    store, _ = checkpointed_store([500, 10])
    service, ledger = tracked_ledger_service(started=False)
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    assert service.start_from(store) is not None
    threading.Event().wait(0.5)  # ten times the wait: a timer would have fired
    assert service._chains.held is not None
    ledger.write()
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 3


def wait_until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` became true within a generous time (polled)."""
    deadline = time.monotonic() + 30.0
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_write_made_when_the_status_first_says_ready_is_in_the_continued_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer that waits for readiness writes at the first moment the status says
    ready. The status must not say so between the chain's pieces: a write made after
    the base and before the deltas would be in the state but not in the changes
    tracked from the newest piece, so missing from the continued chain."""
    store, _ = checkpointed_store([2_000, 40, 30])
    service, ledger = tracked_ledger_service(started=False)
    tracker = service._tracker
    said = tracker.restored
    seen: list[int] = []

    def restored(**facts: Any) -> None:
        said(**facts)
        if service.status.ready and not seen:
            seen.append(facts["generation"])
            ledger.items["written-when-ready"] = -1  # the waiting writer's first write

    monkeypatch.setattr(tracker, "restored", restored)
    assert service.start_from(store) is not None
    assert seen == [headers(store.open())[-1].generation]  # ready once: at the newest
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 4
    _, again = restarted(store)
    assert again.state() == ledger.state()
    assert again.items["written-when-ready"] == -1
