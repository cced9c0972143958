"""Checkpointer: a skip of an unchanged state first confirms that the store still
holds the last checkpoint, and commits it again, with a warning, when something deleted
it behind the store's back (a bucket's lifecycle rule, someone cleaning a directory)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import obstore
import pytest
from restore_children.ledger import Ledger, ledger_service, state_after

from statemigrate import Checkpointer, MemoryStore, Service, StoreError, TmpfsStore
from statemigrate.stores import Buffer, MemoryRef, ObjectStore, SnapshotRef, Store

LOST = "no longer holds the last checkpoint; committing the unchanged state again"


def restored(store: Store) -> object:
    service, ledger = ledger_service()
    assert service.start_from(store) is not None
    return ledger.export_state()


def wipe_prefix(store: ObjectStore) -> None:
    """Delete every object under the store's prefix, as a lifecycle rule would."""
    backend = store._backend
    for listed in obstore.list(backend.store, prefix=backend.prefix or None):
        for meta in listed:
            obstore.delete(backend.store, meta["path"])


def another_writer(store: Store) -> Store:
    """A second store on the same place, as another process sharing it would open."""
    if isinstance(store, TmpfsStore):
        return TmpfsStore(store.directory)
    assert isinstance(store, ObjectStore)
    return ObjectStore(store._backend.store, prefix=store._backend.prefix)


def object_store() -> Iterator[tuple[ObjectStore, Callable[[], None]]]:
    store = ObjectStore("memory://")
    yield store, lambda: wipe_prefix(store)


def tmpfs_store(base: Path) -> Iterator[tuple[TmpfsStore, Callable[[], None]]]:
    with TmpfsStore(base / "store") as store:

        def wipe() -> None:
            for name in ("current", "previous"):
                (base / "store" / name).unlink(missing_ok=True)

        yield store, wipe


@pytest.fixture(params=["object", "tmpfs"])
def lost_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Store, Callable[[], None]]]:
    if request.param == "object":
        yield from object_store()
    else:
        yield from tmpfs_store(tmp_path)


def checkpointed(store: Store) -> tuple[Service, Ledger, Checkpointer]:
    service, ledger = ledger_service()
    ledger.write()
    checkpointer = Checkpointer(service, store, changes=lambda: ledger.count, export="inline")
    assert checkpointer.checkpoint_now().committed is not None
    return service, ledger, checkpointer


def test_an_unchanged_state_is_committed_again_once_the_store_lost_it(
    lost_store: tuple[Store, Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    """The store is wiped after one commit: the next checkpoint of the unchanged state
    commits it, says so, and a restart restores it; once the store holds it again the
    checkpoints after it are skipped as unchanged."""
    store, wipe = lost_store
    _, _, checkpointer = checkpointed(store)
    assert checkpointer.checkpoint_now().reason == "unchanged"
    wipe()
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.reason == ""
    assert LOST in caplog.text
    assert restored(store) == state_after(1)
    assert [checkpointer.checkpoint_now().reason for _ in range(3)] == ["unchanged"] * 3
    assert caplog.text.count(LOST) == 1


OTHER_WRITER = "committed by another writer since this store's last commit"


def test_a_snapshot_another_writer_committed_over_an_idle_one_is_committed_over_again(
    lost_store: tuple[Store, Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    """A second service sharing the store by mistake commits after this one's last
    checkpoint. Skipping as unchanged would leave the other's state for a restart to
    restore, this one's lost: the idle checkpointer commits its state again, and the
    store says two writers share it, in an ERROR line."""
    store, _ = lost_store
    _, _, checkpointer = checkpointed(store)
    other, other_ledger = ledger_service()
    for _ in range(5):
        other_ledger.write()
    writer = another_writer(store)
    other.commit(writer)
    assert restored(store) == state_after(5)
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.reason == ""
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and OTHER_WRITER in errors[0].getMessage()
    assert LOST not in caplog.text
    assert restored(store) == state_after(1)
    assert [checkpointer.checkpoint_now().reason for _ in range(3)] == ["unchanged"] * 3
    # The other service's next commit finds this one's in its place: it says so too.
    other_ledger.write()
    other.commit(writer)
    assert caplog.text.count(OTHER_WRITER) == 2
    if isinstance(writer, TmpfsStore):
        writer.close()


def test_one_writer_committing_again_and_again_is_never_taken_for_two(
    lost_store: tuple[Store, Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    """A restart's new store object commits over what its predecessor left: no error;
    nor does a writer committing over its own commits, changed or not."""
    store, _ = lost_store
    service, ledger, checkpointer = checkpointed(store)
    for _ in range(3):
        ledger.write()
        assert checkpointer.checkpoint_now().committed is not None
    restarted, restarted_ledger = ledger_service()
    writer = another_writer(store)
    assert restarted.start_from(writer) is not None
    restarted_ledger.write()
    restarted.commit(writer)
    restarted.commit(writer)
    assert OTHER_WRITER not in caplog.text
    if isinstance(writer, TmpfsStore):
        writer.close()


def test_the_loop_checkpoint_confirms_the_store_too() -> None:
    """checkpoint() on an event loop: the same confirmation, asked in a worker thread."""
    store = ObjectStore("memory://")
    service, ledger = ledger_service()
    ledger.write()
    checkpointer = Checkpointer(service, store, changes=lambda: ledger.count, export="inline")

    async def main() -> list[str]:
        reasons = [(await checkpointer.checkpoint()).reason]
        reasons.append((await checkpointer.checkpoint()).reason)
        wipe_prefix(store)
        reasons.append((await checkpointer.checkpoint()).reason)
        reasons.append((await checkpointer.checkpoint()).reason)
        return reasons

    assert asyncio.run(main()) == ["", "unchanged", "", "unchanged"]
    assert restored(store) == state_after(1)


def test_a_store_that_cannot_be_asked_is_committed_to() -> None:
    """When the store cannot say whether it holds the last checkpoint, the state is
    committed rather than skipped unchecked: the commit's own failure is what the
    checkpointer reports and counts."""

    class Unanswering(MemoryStore):
        broken = False

        def holds(self, ref: SnapshotRef) -> bool:
            if self.broken:
                raise StoreError("open", "memory:unanswering", "cannot reach it")
            return True

        def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
            if self.broken:
                raise StoreError("write", "memory:unanswering", "cannot reach it")
            return super().commit(data)

    store = Unanswering()
    _, _, checkpointer = checkpointed(store)
    store.broken = True
    with pytest.raises(StoreError, match="cannot reach it"):
        checkpointer.checkpoint_now()
    assert checkpointer.failures == 1
    store.broken = False
    assert checkpointer.checkpoint_now().reason == "unchanged"


def test_checkpoints_go_on_once_the_tmpfs_directory_is_removed(tmp_path: Path) -> None:
    """rm -rf of a TmpfsStore's directory while the service runs: the next checkpoint
    (unchanged state or not) commits into a re-created directory, and a restart
    restores it instead of starting cold."""
    with TmpfsStore(tmp_path / "store") as store:
        _, ledger, checkpointer = checkpointed(store)
        shutil.rmtree(tmp_path / "store")
        assert checkpointer.checkpoint_now().committed is not None
        ledger.write()
        assert checkpointer.checkpoint_now().committed is not None
        assert checkpointer.failures == 0
    with TmpfsStore(tmp_path / "store") as restart:
        assert restored(restart) == state_after(2)
