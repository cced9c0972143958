"""Checkpointers across a handoff, in real processes: the old process's step aside.

Its checkpoints are held back from the moment ``hand_over`` pauses the writers (one
committing then finishes first), go on when the handoff fails, and end for good once
the successor owns the state, so that no stale checkpoint replaces the successor's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff_children import ckpt_server
from handoff_children.aioserver import build_service
from handoff_children.harness import HERE, readline, reap, script, wait_for

import statemigrate as sm
from statemigrate.handoff import HandoffReport, Spawn, SuccessorFailedError, hand_over_async
from statemigrate.reference import KVCacheV1

HANG_GUARD = 60.0  # seconds; a guard against a hung process, not a figure


class Generations:
    """ckpt_server.py's generations in one session, their events read from stdout."""

    def __init__(self, directory: Path, *, every: float) -> None:
        self.directory = directory
        argv = [sys.executable, script("ckpt_server.py"), str(directory), "--every", str(every)]
        self.proc = subprocess.Popen(
            argv, cwd=HERE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True
        )
        self.events: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_event("ready", 1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def index(self, event: str, generation: int) -> int | None:
        return next(
            (
                i
                for i, e in enumerate(list(self.events))
                if e["event"] == event and e["generation"] == generation
            ),
            None,
        )

    def wait_event(self, event: str, generation: int) -> int:
        wait_for(
            lambda: self.index(event, generation) is not None,
            HANG_GUARD,
            f"{event} of generation {generation}",
        )
        found = self.index(event, generation)
        assert found is not None
        return found

    def ask(self, generation: int, line: str) -> str:
        path = str(self.directory / f"g{generation}.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(HANG_GUARD)
            sock.connect(path)
            with sock.makefile("rw") as stream:
                stream.write(line + "\n")
                stream.flush()
                return stream.readline().strip()

    def inc(self, generation: int, name: str, times: int) -> int:
        value = 0
        for _ in range(times):
            reply = self.ask(generation, f"INC {name}").split()
            assert reply[0] == "OK", reply
            value = int(reply[1])
        return value

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=HANG_GUARD)
        self.reader.join(timeout=HANG_GUARD)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def generations(tmp_path: Path) -> Iterator[Any]:
    started: list[Generations] = []

    def start(every: float) -> Generations:
        started.append(Generations(tmp_path, every=every))
        return started[-1]

    yield start
    for chain in started:
        chain.close()


def restored(directory: Path) -> dict[str, int]:
    """The counters a process restarted from the shared store would serve."""
    counters = ckpt_server.Counters()
    with sm.TmpfsStore(directory / "store") as store:
        ckpt_server.service_of(counters).start_from(store)
    return dict(counters.entries)


def test_no_checkpoint_of_the_old_process_replaces_the_successors(
    generations: Any, tmp_path: Path
) -> None:
    # A checkpoint every 50 ms in each process, both to the same store.
    chain = generations(0.05)
    chain.inc(1, "a", 3)
    assert chain.ask(1, "CHECKPOINT") == "COMMITTED"

    assert chain.ask(1, "HANDOFF") == "HANDED_OVER"
    chain.wait_event("ready", 2)
    acked = chain.inc(2, "a", 2)
    assert acked == 5
    assert chain.ask(2, "CHECKPOINT") == "COMMITTED"

    # The old process neither checkpoints on request nor takes the final checkpoint
    # of a clean stop (nor does its thread go on): any would commit a = 3 over the
    # successor's a = 5, and a restart would serve that.
    asked = chain.ask(1, "CHECKPOINT")
    final = chain.ask(1, "EXIT")
    assert restored(tmp_path) == {"a": acked}
    assert (asked, final) == ("SKIPPED", "NONE")


def test_a_failed_handoff_leaves_the_old_process_checkpointing(
    generations: Any, tmp_path: Path
) -> None:
    chain = generations(0.05)
    chain.inc(1, "a", 2)

    assert chain.ask(1, "HANDOFF fail").startswith("FAILED")
    chain.wait_event("failed", 2)
    acked = chain.inc(1, "a", 3)

    # The checkpointer thread commits the writes made after the failure by itself.
    wait_for(
        lambda: json.loads(chain.ask(1, "COMMITTED")) == {"a": acked},
        HANG_GUARD,
        "a checkpoint of the writes made after the failed handoff",
    )
    assert chain.ask(1, "CHECKPOINT") == "COMMITTED"
    assert chain.ask(1, "EXIT") == "FINAL"
    assert restored(tmp_path) == {"a": acked}


def test_a_checkpoint_committing_as_the_handoff_pauses_lands_before_the_pause(
    generations: Any, tmp_path: Path
) -> None:
    # No scheduled checkpoint: only the one asked for below.
    chain = generations(3600.0)
    acked = chain.inc(1, "a", 4)
    assert chain.ask(1, "HOLD") == "HOLDING"
    outcome: list[str] = []
    checkpoint = threading.Thread(target=lambda: outcome.append(chain.ask(1, "CHECKPOINT")))
    checkpoint.start()
    chain.wait_event("commit_started", 1)

    # Its commit goes on once the handoff holds the checkpoints back, just before it
    # pauses the writers (without that, once they are paused: it lands in the pause).
    assert chain.ask(1, "HANDOFF") == "HANDED_OVER"
    checkpoint.join(timeout=HANG_GUARD)

    assert outcome == ["COMMITTED"]
    assert chain.wait_event("commit_done", 1) < chain.wait_event("paused", 1)
    assert restored(tmp_path) == {"a": acked}


def test_the_wait_for_a_slow_commit_under_way_is_not_counted_in_the_pause(
    generations: Any, tmp_path: Path
) -> None:
    """The handoff waits for a commit under way (here, a store that takes 400 ms more)
    before it pauses the writers, which are not held meanwhile: the report's pause
    begins after that commit ended (it counted the wait, and an alert on the pause
    fired for a slow store with no pause at all)."""
    chain = generations(3600.0)
    chain.inc(1, "a", 2)
    assert chain.ask(1, "HOLD 400") == "HOLDING"
    checkpoint = threading.Thread(target=lambda: chain.ask(1, "CHECKPOINT"))
    checkpoint.start()
    chain.wait_event("commit_started", 1)
    assert chain.ask(1, "HANDOFF") == "HANDED_OVER"
    checkpoint.join(timeout=HANG_GUARD)
    done = chain.events[chain.wait_event("commit_done", 1)]
    handed = chain.events[chain.wait_event("handed_over", 1)]
    assert handed["pause"] <= handed["at"] - done["at"]


def test_a_commit_that_does_not_end_fails_the_handoff_and_the_checkpoints_go_on(
    generations: Any, tmp_path: Path
) -> None:
    """The wait for a commit under way is bounded by timeouts.snapshot (the successor
    stops waiting for the snapshot then): a store that hangs fails the handoff, in
    stage pause, instead of hanging it; the old process serves on, and once the commit
    ends its checkpoints go on."""
    chain = generations(3600.0)
    acked = chain.inc(1, "a", 2)
    assert chain.ask(1, "HOLD 3000") == "HOLDING"
    checkpoint = threading.Thread(target=lambda: chain.ask(1, "CHECKPOINT"))
    checkpoint.start()
    chain.wait_event("commit_started", 1)
    assert chain.ask(1, "HANDOFF hasty") == "FAILED pause"
    checkpoint.join(timeout=HANG_GUARD)
    later = chain.inc(1, "a", 1)
    assert later == acked + 1  # still serving its own state
    assert chain.ask(1, "CHECKPOINT") == "COMMITTED"
    assert restored(tmp_path) == {"a": later}


# --- on an event loop: hand_over_async and Checkpointer.run() ----------------------------


class Counting(sm.MemoryStore):
    """A memory store that counts its commits."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def commit(self, data: Any) -> Any:
        ref = super().commit(data)
        self.commits += 1
        return ref


async def _commits_beyond(store: Counting, count: int) -> None:
    while store.commits <= count:
        await asyncio.sleep(0.005)


async def _handoff_with_a_loop_checkpointer(mode: str) -> tuple[object, Counting, list[int]]:
    """hand_over_async of a service whose Checkpointer runs on the same loop; returns
    the outcome, the store, and its commit counts: when the handoff ended, when the
    checkpointer's task ended."""
    cache = KVCacheV1()
    cache.set("k", "v")
    service = build_service(cache)
    service.start_cold("a new cache")
    store = Counting()
    task = asyncio.create_task(sm.Checkpointer(service, store, every=0.01).run())
    await asyncio.wait_for(_commits_beyond(store, 0), HANG_GUARD)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        spawn = Spawn([sys.executable, script("aioserver.py"), mode, "2"], cwd=HERE)
        outcome: object
        try:
            outcome = await hand_over_async(service, spawn, listeners={"tcp": listener})
        except SuccessorFailedError as exc:
            outcome = exc
        counts = [store.commits]
        if isinstance(outcome, HandoffReport):
            # The checkpointer's task ends by itself: the state is the successor's.
            await asyncio.wait_for(task, HANG_GUARD)
            with socket.create_connection(listener.getsockname(), timeout=HANG_GUARD) as sock:
                sock.sendall(b"QUIT\n")
                assert readline(sock) == "BYE"
            assert reap(outcome.successor_pid) == 0
        else:
            # Still this process's state: checkpointed again, and at the task's end.
            await asyncio.wait_for(_commits_beyond(store, store.commits), HANG_GUARD)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, HANG_GUARD)
        counts.append(store.commits)
    return outcome, store, counts


def test_a_loop_checkpointer_ends_by_itself_once_the_successor_owns_the_state() -> None:
    outcome, store, counts = asyncio.run(_handoff_with_a_loop_checkpointer("ok"))

    assert isinstance(outcome, HandoffReport) and outcome.ok
    assert counts[0] == counts[1]  # nothing committed after the handoff, no final one


def test_a_loop_checkpointer_goes_on_after_a_failed_handoff() -> None:
    outcome, store, counts = asyncio.run(_handoff_with_a_loop_checkpointer("fail"))

    assert isinstance(outcome, SuccessorFailedError)
    assert counts[1] > counts[0]
