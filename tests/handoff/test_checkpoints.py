"""Checkpointers across a handoff, in real processes: the old process's step aside.

Its checkpoints are held back from the moment ``hand_over`` starts (one committing
then finishes first), go on when the handoff fails, and end for good once the
successor owns the state, so that no stale checkpoint replaces the successor's.
"""

from __future__ import annotations

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
from handoff_children.harness import HERE, script, wait_for

import statemigrate as sm

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


def test_a_checkpoint_committing_as_the_handoff_starts_lands_before_the_pause(
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

    # Its commit goes on once the handoff holds the checkpoints back (or, without
    # that, once the writers are paused: the commit then lands inside the pause).
    assert chain.ask(1, "HANDOFF") == "HANDED_OVER"
    checkpoint.join(timeout=HANG_GUARD)

    assert outcome == ["COMMITTED"]
    assert chain.wait_event("commit_done", 1) < chain.wait_event("paused", 1)
    assert restored(tmp_path) == {"a": acked}
