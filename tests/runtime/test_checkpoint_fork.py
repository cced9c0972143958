"""Checkpoints exported in a forked child: the writers held for the fork only, the
state of the instant of the fork committed, deltas chained from that instant, and a
child that fails, is killed or hangs leaves no commit, no process and no descriptor.

The child's export waits on a :class:`Gate`, a pipe the test opens only once the
writers have gone on: the export cannot finish before they do. Exported inline (the
negative control), it waits with the writers held, gives up and raises, and the
checkpoint fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from handoff_children._fdtable import processes
from restore_children.ledger import (
    Ledger,
    ledger_service,
    state_after,
    tracked_ledger_service,
)

from statemigrate import (
    Checkpointer,
    CheckpointError,
    CheckpointReport,
    ConfigurationError,
    ExportError,
    MemoryStore,
    PreCopySource,
    StoreError,
)
from statemigrate._runtime._chain import split_chain
from statemigrate._runtime._service import Service
from statemigrate._snapshot._format import open_snapshot

# How long an export waits on its gate before it gives up. A forked export's gate is
# always opened (only a hang would reach this); an inline export's never can be, as
# the writers that would open it are held: there the negative control gives up at
# once. Neither is a limit on anything measured.
GIVE_UP = {"fork": 60.0, "inline": 0.2}


class Gate:
    """A pipe: an export (in the forked child) waits until the test opens it."""

    def __init__(self, export: str = "fork") -> None:
        self.read_end, self.write_end = os.pipe()
        self.give_up = GIVE_UP[export]

    def wait(self) -> None:
        ready, _, _ = select.select([self.read_end], [], [], self.give_up)
        if not ready:
            raise RuntimeError("the gate was never opened: the writers were held throughout")

    def open(self) -> None:
        os.write(self.write_end, b"x")

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> Iterator[Gate]:
    """A gate for the test's ``export`` parameter (``fork`` without one)."""
    params = getattr(request.node, "callspec", None)
    made = Gate(params.params.get("export", "fork") if params else "fork")
    yield made
    made.close()


def refused_inline(outcome: list[Any]) -> None:
    """The negative control's outcome: the inline export gave up, the writers held.
    A gate in a component's export_state gives up with the snapshot's ExportError, a
    gate around the whole export with its own error."""
    error = outcome[0]
    if isinstance(error, ExportError):
        error = error.__cause__
    assert isinstance(error, RuntimeError), outcome
    assert "the gate was never opened" in str(error)


class Holding:
    """A ``quiesce`` function: the writers' lock, with events saying when it was held
    and let go."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        try:
            with self.lock:
                self.held.set()
                yield
        finally:
            self.released.set()


def children() -> list[tuple[int, str]]:
    """This process's children, zombies included: (pid, state)."""
    return [(pid, fields[0]) for pid, fields in processes() if int(fields[1]) == os.getpid()]


def descriptors() -> set[str]:
    """What this process's descriptors are open on."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def in_thread(checkpointer: Checkpointer) -> tuple[threading.Thread, list[Any]]:
    """Run ``checkpointer.checkpoint_now()`` in a thread; the list gets its outcome."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(checkpointer.checkpoint_now())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def gated_full(gate: Gate) -> Any:
    """A ``PreCopySource.full`` that waits on ``gate`` first (a chain's base)."""
    original = PreCopySource.full

    def full(self: PreCopySource) -> Any:
        gate.wait()
        return original(self)

    return full


@pytest.mark.parametrize("export", ["fork", "inline"])
def test_a_forked_base_holds_the_state_of_the_fork_and_the_delta_the_writes_after(
    export: str, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writers go on while the child exports the base; the chain restores the
    state of the instant of the fork, and the next delta carries exactly the writes
    made after it. Inline (the negative control), the writers cannot go on: the
    export gives up and nothing is committed."""
    monkeypatch.setattr(PreCopySource, "full", gated_full(gate))
    service, ledger = tracked_ledger_service()
    for _ in range(1_000):
        ledger.write()
    holding = Holding()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=holding, incremental=True, export=export  # type: ignore[arg-type]
    )
    thread, outcome = in_thread(checkpointer)
    holding.released.wait()
    at_fork = ledger.count
    for _ in range(300):  # while the child exports: it waits for the gate
        with holding.lock:
            ledger.write()
    gate.open()
    thread.join()
    if export == "inline":
        refused_inline(outcome)
        return
    report = outcome[0]
    assert isinstance(report, CheckpointReport), report
    assert report.committed is not None and report.committed.snapshot.chain == 1
    restored, restored_ledger = tracked_ledger_service()
    assert restored.start_from(store) is not None
    assert restored_ledger.state() == state_after(at_fork)
    # The next checkpoint is a delta of exactly the 300 writes after the fork.
    delta = checkpointer.checkpoint_now()
    assert delta.committed is not None and delta.committed.snapshot.chain == 2
    base, piece = (open_snapshot(p) for p in split_chain(store.open()))
    assert piece.header.base is not None
    assert piece.header.base.snapshot_id == base.header.snapshot_id
    assert piece.read_section(0) == {
        "state": {
            "count": at_fork + 300,
            "items": {f"k{n % 5_000}": n for n in range(at_fork + 1, at_fork + 301)},
        },
        "deleted": {"items": []},
        # Keys first written after the fork go to the end; rewritten ones stay put.
        "moved": {"items": sum(1 for n in range(at_fork + 1, at_fork + 301) if n <= 5_000)},
    }
    restored, restored_ledger = tracked_ledger_service()
    assert restored.start_from(store) is not None
    assert restored_ledger.state() == state_after(ledger.count)
    checkpointer.close()


class GatedLedger(Ledger):
    """A ledger whose export waits on a gate."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    def export_state(self) -> dict[str, Any]:
        self.gate.wait()
        return super().export_state()


@pytest.mark.parametrize("export", ["fork", "inline"])
def test_a_writer_blocked_on_the_hold_goes_on_before_the_child_finishes(
    export: str, gate: Gate
) -> None:
    """A writer that blocks on the writers' lock while a full checkpoint holds it gets
    it once the child is forked, and writes, while the child's export still waits on
    the gate (opened only after that write). Inline, the hold lasts as long as the
    export, so the writer never gets the lock in time: the negative control."""
    service, _ = ledger_service()
    service.unregister("ledger")
    ledger = service.register(GatedLedger(gate))
    for _ in range(50):
        ledger.write()
    holding = Holding()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=holding, export=export)  # type: ignore[arg-type]
    thread, outcome = in_thread(checkpointer)
    holding.held.wait()
    wrote = threading.Event()

    def writer() -> None:
        with holding.lock:  # blocks while the checkpoint holds the writers
            ledger.write()
        wrote.set()
        gate.open()

    writing = threading.Thread(target=writer)
    writing.start()
    writing.join()
    thread.join()
    assert wrote.is_set()
    if export == "inline":
        refused_inline(outcome)
        return
    report = outcome[0]
    assert isinstance(report, CheckpointReport), report
    restored, restored_ledger = ledger_service()
    assert restored.start_from(store) is not None
    assert restored_ledger.export_state() == state_after(50)  # the write came after
    assert ledger.count == 51


def test_the_event_loop_serves_while_the_child_exports(gate: Gate) -> None:
    """On an event loop the checkpoint waits for its child without blocking the loop:
    another task opens the gate the child waits on."""
    service, _ = ledger_service()
    service.unregister("ledger")
    ledger = service.register(GatedLedger(gate))
    ledger.write()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store)

    async def main() -> CheckpointReport:
        async def opener() -> None:
            await asyncio.sleep(0)
            gate.open()

        task = asyncio.create_task(opener())
        report = await checkpointer.checkpoint()
        await task
        return report

    assert not asyncio.run(main()).skipped
    assert store.open()


def _kills_itself(self: object, *args: object, **kwargs: object) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def _hangs(self: object, *args: object, **kwargs: object) -> Any:
    time.sleep(3600)


def _raises(self: object, *args: object, **kwargs: object) -> Any:
    raise RuntimeError("export exploded")


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize(
    ("full", "message"),
    [
        (_kills_itself, "child was killed by SIGKILL"),
        (_hangs, "ran past its deadline"),
        (_raises, "failed (status 1): RuntimeError: export exploded"),
    ],
)
def test_a_child_killed_hung_or_failing_commits_nothing_and_leaves_nothing(
    full: Any, message: str, incremental: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint fails with a ``CheckpointError`` naming the reason, nothing is
    committed, the child is reaped (no zombie) and no descriptor stays open; the
    next checkpoint commits."""
    service, ledger = tracked_ledger_service()
    for _ in range(100):
        ledger.write()
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=incremental, export_timeout=1.0
    )
    before_children, before_fds = children(), descriptors()
    with monkeypatch.context() as patch:
        # Both kinds of checkpoints export through a source's full() or _snapshot().
        patch.setattr(PreCopySource, "full", full)
        patch.setattr(type(service), "_snapshot", full)
        with pytest.raises(CheckpointError, match=re.escape(message)) as caught:
            checkpointer.checkpoint_now()
    assert caught.value.service == service.name
    assert checkpointer.failures == 1 and checkpointer.last_error is caught.value
    assert children() == before_children
    assert descriptors() == before_fds
    with pytest.raises(StoreError):
        store.open()
    assert checkpointer.chain_length == 0
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and checkpointer.failures == 0
    restored, restored_ledger = tracked_ledger_service()
    assert restored.start_from(store) is not None
    assert restored_ledger.state() == state_after(100)
    checkpointer.close()
    assert children() == before_children


def test_a_handoff_suspending_checkpoints_while_the_child_exports_stops_the_commit(
    gate: Gate,
) -> None:
    """The gate's rules hold as for an inline export: suspended while the child runs,
    the checkpoint commits nothing and reports itself skipped."""
    service, _ = ledger_service()
    service.unregister("ledger")
    ledger = service.register(GatedLedger(gate))
    ledger.write()
    holding = Holding()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=holding)
    thread, outcome = in_thread(checkpointer)
    holding.released.wait()
    service._checkpoints.suspend()
    gate.open()
    thread.join()
    assert outcome[0].skipped and outcome[0].pause_seconds > 0
    with pytest.raises(StoreError):
        store.open()
    service._checkpoints.resume()


@pytest.mark.parametrize("incremental", [False, True])
def test_a_forked_checkpoint_names_the_serving_process_as_its_producer(
    incremental: bool,
) -> None:
    """The child only writes the bytes: the producer is the process whose state it is.
    The child is reaped: no child of this process is left that was not there before
    (a zombie an earlier test left behind is not this checkpoint's)."""
    before = children()
    service, ledger = tracked_ledger_service() if incremental else ledger_service()
    for _ in range(10):
        ledger.write()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, export="fork", incremental=incremental)
    report = checkpointer.checkpoint_now()
    checkpointer.close()
    assert report.committed is not None
    (full,) = split_chain(store.open()) if incremental else [store.open()]
    producer = open_snapshot(full).header.producer
    assert (producer.pid, producer.service) == (os.getpid(), service.name)
    assert [child for child in children() if child not in before] == []


def test_the_export_options_are_checked() -> None:
    service, _ = ledger_service()
    with pytest.raises(ConfigurationError, match="export: must be 'fork' or 'inline'"):
        Checkpointer(service, MemoryStore(), export="thread")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="export_timeout"):
        Checkpointer(service, MemoryStore(), export_timeout=0)
    assert Checkpointer(service, MemoryStore()).export == "fork"


@pytest.mark.parametrize("loop", [False, True])
def test_a_hold_that_fails_to_let_go_after_the_fork_leaves_no_child(loop: bool) -> None:
    """``resume()`` raising once the child is forked: the checkpoint fails with that
    error, and the child is killed and reaped, in a thread and on an event loop."""
    service, ledger = ledger_service()
    ledger.write()

    class Server:
        def pause(self) -> None:
            pass

        def resume(self) -> None:
            raise RuntimeError("resume failed")

    class AsyncServer:
        async def pause(self) -> None:
            pass

        async def resume(self) -> None:
            raise RuntimeError("resume failed")

    before_children, before_fds = children(), descriptors()
    store = MemoryStore()
    with pytest.raises(RuntimeError, match="resume failed"):
        if loop:
            asyncio.run(Checkpointer(service, store, quiesce=AsyncServer()).checkpoint())
        else:
            Checkpointer(service, store, quiesce=Server()).checkpoint_now()
    assert children() == before_children
    assert descriptors() == before_fds
    with pytest.raises(StoreError):
        store.open()


@pytest.mark.parametrize("incremental", [False, True])
def test_a_checkpoint_child_runs_at_the_priority_of_the_serving_process(
    incremental: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until a forked checkpoint commits, a crash loses every write since the last
    one: its child (a full checkpoint's, or a chain's base's) must not run at a lower
    CPU priority than the process that serves, or saturated cores starve it. The child
    notes its priority in a file as it exports."""
    noted = tmp_path / "priority"
    serving = os.getpid()
    original = Service._snapshot

    def snapshot(self: Service, **options: Any) -> Any:
        if os.getpid() != serving:  # in the child
            noted.write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))
        return original(self, **options)

    monkeypatch.setattr(Service, "_snapshot", snapshot)
    service, ledger = tracked_ledger_service() if incremental else ledger_service()
    for _ in range(10):
        ledger.write()
    checkpointer = Checkpointer(service, MemoryStore(), export="fork", incremental=incremental)
    report = checkpointer.checkpoint_now()
    checkpointer.close()
    assert report.committed is not None
    assert int(noted.read_text()) == os.getpriority(os.PRIO_PROCESS, 0)


def test_the_log_line_of_a_forked_checkpoint_says_how_long_its_child_took(
    gate: Gate, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A child slow to get the CPU shows in its checkpoint's log line and report: the
    child's time from the fork to the commit, the wait included, beside the encode
    figure (which leaves the wait out). Here the child waits on a gate the test holds
    shut for a while after the writers went on, as a starved child waits for a core.
    A delta after it forks no child and says nothing of one."""
    caplog.set_level(logging.INFO, "statemigrate")
    monkeypatch.setattr(PreCopySource, "full", gated_full(gate))
    service, ledger = tracked_ledger_service()
    for _ in range(100):
        ledger.write()
    holding = Holding()
    checkpointer = Checkpointer(service, MemoryStore(), quiesce=holding, incremental=True)
    thread, outcome = in_thread(checkpointer)
    holding.released.wait()  # forked by now: the fork is made with the writers held
    shut = time.perf_counter()
    time.sleep(0.3)
    waited = time.perf_counter() - shut
    gate.open()
    thread.join()
    report = outcome[0]
    assert isinstance(report, CheckpointReport), report
    assert report.committed is not None and report.committed.snapshot.chain == 1
    assert report.child_seconds >= waited
    assert report.child_seconds <= report.seconds
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoint:")]
    assert re.search(r"; encode \d+\.\d ms", line), line
    assert line.endswith(f"; child {report.child_seconds:.1f} s (fork to commit)"), line
    caplog.clear()
    ledger.write()
    delta = checkpointer.checkpoint_now()
    checkpointer.close()
    assert delta.committed is not None and delta.committed.snapshot.chain == 2
    assert delta.child_seconds == 0.0
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoint:")]
    assert "child" not in line, line
