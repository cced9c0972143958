"""The checkpoint gate a handoff works: suspended (after the commits under way), resumed,
ended; what a Checkpointer does meanwhile, in its thread and on an event loop."""

from __future__ import annotations

import asyncio
import select
import threading
from collections.abc import Iterable
from typing import Any

from restore_children.ledger import Ledger, ledger_service

from statemigrate import Checkpointer, MemoryStore, Service
from statemigrate._runtime._service import CheckpointGate
from statemigrate.stores import Buffer

HANG_GUARD = 60.0  # seconds; a guard against a hang, not a figure


class Waiting(MemoryStore):
    """A memory store whose commits, once begun, wait until ``gate`` is no longer
    open: a commit under way as a handoff starts."""

    def __init__(self, gate: CheckpointGate) -> None:
        super().__init__()
        self.gate = gate
        self.waiting = False
        self.began = threading.Event()
        self.ended = 0

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        if self.waiting:
            self.began.set()
            while self.gate.open:
                threading.Event().wait(0.001)
        ref = super().commit(data)
        self.ended += 1
        return ref


def commit_under_way(
    service: Service, ledger: Ledger
) -> tuple[Waiting, Checkpointer, threading.Thread]:
    """A checkpoint of a change to ``ledger``, taken in a thread, its store commit
    begun and waiting for ``service``'s gate to close."""
    store = Waiting(service._checkpoints)
    checkpointer = Checkpointer(service, store)
    ledger.write()
    store.waiting = True
    under_way = threading.Thread(target=checkpointer.checkpoint_now)
    under_way.start()
    assert store.began.wait(HANG_GUARD)
    return store, checkpointer, under_way


def test_suspend_waits_for_the_commit_under_way_and_lets_no_other_commit() -> None:
    service, ledger = ledger_service()
    gate = service._checkpoints
    store, checkpointer, under_way = commit_under_way(service, ledger)

    gate.suspend()

    assert store.ended == 1  # the commit under way landed before suspend() returned
    under_way.join(HANG_GUARD)
    assert checkpointer.last is not None and not checkpointer.last.skipped
    store.waiting = False
    assert checkpointer.checkpoint_now(force=True).skipped
    assert store.ended == 1
    gate.resume()
    assert not checkpointer.checkpoint_now().skipped
    assert store.ended == 2


def test_a_checkpoint_refused_at_its_commit_is_not_taken_for_committed() -> None:
    """A handoff that starts while the snapshot is taken: nothing is written, and the
    change it held is still to be checkpointed once the handoff failed."""
    service, ledger = ledger_service()
    gate = service._checkpoints
    store = Waiting(gate)
    changes = [0]

    class SuspendingOnce:
        """Holds nobody; the first time the writers go on, a handoff starts."""

        suspended = False

        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            if not self.suspended:
                self.suspended = True
                gate.suspend()

    checkpointer = Checkpointer(
        service, store, quiesce=SuspendingOnce(), changes=lambda: changes[0]
    )
    ledger.write()
    changes[0] += 1

    report = checkpointer.checkpoint_now()

    assert report.skipped and store.ended == 0
    gate.resume()  # the handoff failed
    assert not checkpointer.checkpoint_now().skipped  # the change is still pending
    assert store.ended == 1


def test_nested_suspensions_hold_the_gate_until_the_last_resume() -> None:
    """A second handoff refused while one runs must not reopen the gate."""
    gate = CheckpointGate()
    gate.suspend()
    gate.suspend()
    gate.resume()
    assert not gate.open
    gate.resume()
    assert gate.open
    gate.end()
    gate.resume()
    assert not gate.open and gate.ended


def test_an_ended_gate_stops_the_thread_and_the_final_checkpoint() -> None:
    service, ledger = ledger_service()
    store = Waiting(service._checkpoints)
    checkpointer = Checkpointer(service, store, every=0.005, quiesce=threading.Lock())
    checkpointer.start()
    thread = checkpointer._thread
    assert thread is not None
    assert service._checkpoints.running == 1
    ledger.write()

    service._checkpoints.end()
    thread.join(HANG_GUARD)
    assert not thread.is_alive()  # it stopped by itself
    committed = store.ended

    assert checkpointer.stop() is None  # and no final checkpoint
    assert store.ended == committed
    assert service._checkpoints.running == 0


def test_suspend_nowait_gives_a_descriptor_readable_once_the_commit_under_way_ended() -> None:
    service, ledger = ledger_service()
    gate = service._checkpoints
    assert gate.suspend_nowait() is None  # nothing under way: suspended at once
    gate.resume()
    store, checkpointer, under_way = commit_under_way(service, ledger)

    fd = gate.suspend_nowait()

    assert fd is not None
    try:
        assert select.select([fd], [], [], HANG_GUARD)[0] == [fd]
        assert store.ended == 1 and gate.committing == 0
    finally:
        gate.done_waiting(fd)
    under_way.join(HANG_GUARD)
    assert checkpointer.checkpoint_now(force=True).skipped


def test_a_loop_checkpoint_commits_through_the_gate_in_its_thread() -> None:
    service, ledger = ledger_service()
    gate = service._checkpoints
    store = Waiting(gate)
    checkpointer = Checkpointer(service, store)
    ledger.write()

    async def scenario() -> None:
        store.waiting = True
        under_way = asyncio.create_task(checkpointer.checkpoint())
        while not store.began.is_set():
            await asyncio.sleep(0.001)
        fd = gate.suspend_nowait()
        assert fd is not None
        readable = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(fd, readable.set_result, None)
        await readable  # the loop serves meanwhile: the commit is in a worker thread
        asyncio.get_running_loop().remove_reader(fd)
        gate.done_waiting(fd)
        assert store.ended == 1
        assert not (await under_way).skipped
        store.waiting = False
        assert (await checkpointer.checkpoint(force=True)).skipped

    asyncio.run(scenario())
    assert store.ended == 1
