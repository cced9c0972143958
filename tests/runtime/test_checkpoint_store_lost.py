"""Checkpointer: a skip of an unchanged state first confirms that the store still
holds the last checkpoint, and commits it again, with a warning, when something deleted
it behind the store's back (a bucket's lifecycle rule, someone cleaning a directory)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import obstore
import pytest
from restore_children.ledger import Ledger, ledger_service, state_after

from statemigrate import (
    Checkpointer,
    MemoryStore,
    Service,
    StoreError,
    StoreSharedError,
    TmpfsStore,
)
from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.stores import Buffer, MemoryRef, ObjectStore, SnapshotRef, Store
from statemigrate.stores._base import forget_commits
from statemigrate.stores._object_backend import Backend

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


OTHER_WRITER = "committed by another process since this one's last commit"

COMMIT_IN_A_CHILD = """
import sys
from statemigrate import TmpfsStore
from statemigrate.stores import ObjectStore
kind, place = sys.argv[1], sys.argv[2]
store = TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)
store.commit(sys.stdin.buffer.read())
"""


def commit_in_another_process(kind: str, place: str, data: bytes) -> None:
    """Commit ``data`` to ``place`` from a process of its own, as a second service
    sharing the store by mistake would."""
    subprocess.run(
        [sys.executable, "-c", COMMIT_IN_A_CHILD, kind, place], input=data, check=True
    )


SERVE_AND_COMMIT = """
import sys
sys.path.insert(0, sys.argv[4])
from restore_children.ledger import ledger_service
from statemigrate import TmpfsStore
from statemigrate.stores import ObjectStore
kind, place, writes = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)
service, ledger = ledger_service()
for _ in range(writes):
    ledger.write()
service.commit(store)
print(flush=True)
sys.stdin.read()
"""


def committing_process(kind: str, place: str, writes: int) -> subprocess.Popen[bytes]:
    """A service of its own that commits its state after ``writes`` writes to
    ``place``, and runs on until its stdin closes."""
    tests = str(Path(__file__).parent.parent)
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE_AND_COMMIT, kind, place, str(writes), tests],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"\n"  # committed
    return child


READ_THEN_COMMIT = """
import sys
from statemigrate import StoreSharedError, TmpfsStore
from statemigrate.stores import ObjectStore
kind, place = sys.argv[1], sys.argv[2]
store = TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)
data = bytes(store.open())
try:
    store.commit(data)
except StoreSharedError as exc:
    print(exc.since, exc.writer_pid, exc)
else:
    print("committed")
"""


@pytest.fixture(params=["object", "tmpfs"])
def shared_place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A place two processes can both commit to: a directory, or a file:// bucket."""
    if request.param == "tmpfs":
        yield "tmpfs", str(tmp_path / "store")
    else:
        (tmp_path / "bucket").mkdir()
        yield "object", f"file://{tmp_path / 'bucket'}"


def open_place(kind: str, place: str) -> Store:
    return TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)


def elsewhere_spelled(kind: str, place: str) -> Store:
    """The same place spelled another way: through a symbolic link to its parent, or as
    an obstore LocalStore rather than a file:// URL."""
    if kind == "tmpfs":
        store = Path(place)
        link = store.parent.parent / "link"
        link.symlink_to(store.parent)
        return TmpfsStore(link / store.name)
    return ObjectStore(obstore.store.LocalStore(place.removeprefix("file://")))


class Counted:
    """A metrics sink that keeps each event's instrument name and labels."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[str, ...]]] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        self.events.append((instrument.name, tuple(labels)))


def test_a_checkpoint_that_finds_another_process_s_snapshot_is_refused_and_counted(
    shared_place: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A second service sharing the store by mistake commits after this one's last
    checkpoint. Committing over it would lose the other's acknowledged writes at the
    next restart; skipping as unchanged would hide the sharing: every checkpoint is
    refused (StoreSharedError, counted as a conflict in the metrics), the other's
    snapshot stays, and the checkpointer's failures say so."""
    kind, place = shared_place
    store = open_place(kind, place)
    service, ledger, checkpointer = checkpointed(store)
    other = committing_process(kind, place, 5)
    other.communicate(b"")
    other_pid = other.pid
    assert restored(store) == state_after(5)
    counted = Counted()
    previous = use_sink(counted)
    try:
        with pytest.raises(StoreSharedError, match="committed by another process") as refused:
            checkpointer.checkpoint_now()
        ledger.write()
        with pytest.raises(StoreSharedError):
            checkpointer.checkpoint_now()
    finally:
        use_sink(previous)
    assert refused.value.place in str(refused.value)
    # It says who committed over it, and that that process is gone: the store holds
    # its state, which a restart would restore.
    assert refused.value.writer_pid == other_pid and refused.value.writer_running is False
    assert f"process {other_pid} has exited since" in str(refused.value)
    assert checkpointer.failures == 2
    assert isinstance(checkpointer.last_error, StoreSharedError)
    commits = [labels for name, labels in counted.events if name == "statemigrate_commits_total"]
    assert commits == [(service.name, kind, "conflict")] * 2
    assert restored(store) == state_after(5)
    assert LOST not in caplog.text


def test_one_process_committing_through_several_store_objects_is_one_writer(
    shared_place: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A Checkpointer's store, a preStop export through a store object of its own (as
    kubernetes.md's recipe does), a restart's new store object: one writer, no ERROR."""
    kind, place = shared_place
    service, ledger, checkpointer = checkpointed(open_place(kind, place))
    for _ in range(3):
        ledger.write()
        assert checkpointer.checkpoint_now().committed is not None
    service.commit(open_place(kind, place))  # the preStop export
    service.commit(elsewhere_spelled(kind, place))  # the same place, spelled otherwise
    ledger.write()
    assert checkpointer.checkpoint_now().committed is not None
    restarted, restarted_ledger = ledger_service()
    writer = open_place(kind, place)
    assert restarted.start_from(writer) is not None
    restarted_ledger.write()
    restarted.commit(writer)
    restarted.commit(writer)
    assert OTHER_WRITER not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


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


def test_a_process_that_took_its_state_back_commits_over_its_successor_s_checkpoint(
    shared_place: tuple[str, str]
) -> None:
    """A successor that died after COMMIT may have checkpointed the state it owned for a
    moment; the old process that took the state back is the one writer again
    (forget_commits, called by the handoff), so its checkpoints are not refused."""
    kind, place = shared_place
    store = open_place(kind, place)
    service, ledger, checkpointer = checkpointed(store)
    other, _ = ledger_service()
    commit_in_another_process(kind, place, other.snapshot()[0].to_bytes())
    with pytest.raises(StoreSharedError):
        checkpointer.checkpoint_now()
    forget_commits()
    ledger.write()
    checkpointer.checkpoint_now()
    assert restored(store) == state_after(2)


def test_a_commit_from_another_thread_right_after_a_swap_is_this_process_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two threads of one process commit one after the other, the second as soon as the
    first one's pointer swap applied, before that commit returned: the second finds a
    snapshot this process committed, not another writer's, and commits."""
    backend_store = obstore.store.MemoryStore()
    first, second = ObjectStore(backend_store), ObjectStore(backend_store)
    first.commit(b"one")  # this process has committed here: the check applies
    swap = Backend.swap
    nested: list[SnapshotRef] = []
    started: list[bool] = []

    def swap_then_commit_again(backend: Backend, *args: Any) -> Any:
        result = swap(backend, *args)
        if not started:
            started.append(True)
            nested.append(second.commit(b"three"))  # the other thread's turn
        return result

    monkeypatch.setattr(Backend, "swap", swap_then_commit_again)
    first.commit(b"two")
    assert [bytes(second.open(ref)) for ref in nested] == [b"three"]


@pytest.mark.parametrize("before", [0, 1], ids=["started-cold", "restored"])
def test_a_first_checkpoint_that_finds_a_snapshot_its_start_did_not_read_is_refused(
    tmp_path: Path, before: int
) -> None:
    """Two instances start on one prefix: this one's start read it (empty, or the
    other's generation 1), then the other commits. This one's first checkpoint would
    replace a state it never restored, losing the other's acknowledged writes without
    a word: it is refused (StoreSharedError, a conflict in the metrics), and the
    other's snapshot stays."""
    (tmp_path / "bucket").mkdir()
    place = f"file://{tmp_path / 'bucket'}"
    other, other_ledger = ledger_service()
    if before:
        commit_in_another_process("object", place, other.snapshot()[0].to_bytes())
    store = ObjectStore(place)
    service, ledger = ledger_service()
    assert (service.start_from(store) is None) == (not before)
    for _ in range(5):
        other_ledger.write()
    commit_in_another_process("object", place, other.snapshot()[0].to_bytes())
    ledger.write()
    checkpointer = Checkpointer(service, store, export="inline")
    counted = Counted()
    previous = use_sink(counted)
    try:
        since_start = "since this one read the store at its start"
        with pytest.raises(StoreSharedError, match=since_start) as refused:
            checkpointer.checkpoint_now()
    finally:
        use_sink(previous)
    assert refused.value.since == "start" and refused.value.place == place
    commits = [labels for name, labels in counted.events if name == "statemigrate_commits_total"]
    assert commits == [(service.name, "object", "conflict")]
    assert restored(ObjectStore(place)) == state_after(5)


def test_a_first_checkpoint_over_the_snapshot_its_start_read_goes_on(tmp_path: Path) -> None:
    """The negative control of the test above: nothing committed between the start's
    read and the first checkpoint, which replaces the snapshot restored, as a restart's
    does."""
    (tmp_path / "bucket").mkdir()
    place = f"file://{tmp_path / 'bucket'}"
    other, _ = ledger_service()
    commit_in_another_process("object", place, other.snapshot()[0].to_bytes())
    store = ObjectStore(place)
    service, ledger = ledger_service()
    assert service.start_from(store) is not None
    ledger.write()
    assert Checkpointer(service, store, export="inline").checkpoint_now().committed is not None
    assert restored(ObjectStore(place)) == state_after(1)


@pytest.mark.slow  # a child process of its own, which imports a service
def test_a_second_copy_that_restored_a_running_service_s_checkpoint_is_refused(
    shared_place: tuple[str, str],
) -> None:
    """A second copy of a service, started by mistake with the same configuration,
    restores the running one's latest checkpoint and commits. Its commit is the one
    refused (StoreSharedError, since "running", naming the running process), and the
    running service's checkpoints go on: it used to be the other way round, the
    running one's every checkpoint refused from then on, for good."""
    kind, place = shared_place
    store = open_place(kind, place)
    service, ledger, checkpointer = checkpointed(store)
    copy = subprocess.run(
        [sys.executable, "-c", READ_THEN_COMMIT, kind, place],
        capture_output=True,
        check=True,
        text=True,
    )
    since, pid, message = copy.stdout.split(" ", 2)
    assert (since, pid) == ("running", str(os.getpid()))
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "which still runs: two services commit to the same place" in message
    ledger.write()
    assert checkpointer.checkpoint_now().committed is not None
    assert restored(open_place(kind, place)) == state_after(2)


@pytest.mark.slow  # a child process of its own, which imports a service
def test_a_first_checkpoint_waits_for_the_process_whose_checkpoint_it_restored(
    shared_place: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A process restores the checkpoint of one that still runs (a reload whose old
    worker finishes its final checkpoint as the new one starts): its first checkpoint
    is refused while that process runs, says so at INFO rather than as a failure,
    and commits at the next attempt once that process has exited."""
    kind, place = shared_place
    running = committing_process(kind, place, 3)
    try:
        store = open_place(kind, place)
        service, ledger = ledger_service()
        assert service.start_from(store) is not None
        ledger.write()
        checkpointer = Checkpointer(service, store, export="inline")
        with pytest.raises(StoreSharedError) as refused:
            checkpointer.checkpoint_now()
        assert refused.value.since == "running"
        assert (refused.value.writer_pid, refused.value.writer_running) == (running.pid, True)
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            checkpointer._retry_after(refused.value)
        waits = [r for r in caplog.records if "first checkpoint of" in r.getMessage()]
        assert [r.levelno for r in waits] == [logging.INFO]
        assert f"is process {running.pid}'s on" in waits[0].getMessage()
    finally:
        running.communicate(b"")
    assert checkpointer.checkpoint_now().committed is not None
    assert restored(open_place(kind, place)) == state_after(4)
