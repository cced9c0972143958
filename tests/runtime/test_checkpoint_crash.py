"""kill -9 of a service that writes and checkpoints: every restart restores exactly the
state of a checkpoint the service committed, at most one interval (plus a checkpoint)
old; never torn, never unrestorable. Two broken checkpointers fail the same check.

A child (``restore_children/checkpoint_child.py``) restores the ledger from a
TmpfsStore, writes without pause and checkpoints every ``EVERY`` seconds; it reports
every write, every snapshot sent to the store and every commit on a pipe. The test
kills it with SIGKILL at a random instant, reads what it reported, then restores the
store into a fresh service, as a restarted process would. The next child goes on
from that state, in the same directory.

``STATEMIGRATE_CHECKPOINT_TRIALS`` sets the number of kills (10 by default, 200 under
``STATEMIGRATE_SOAK=1``), for full and for incremental checkpoints alike.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from restore_children.ledger import ledger_service, state_after, tracked_ledger_service

from statemigrate import RestoreError, TmpfsStore

CHILD = Path(__file__).resolve().parents[1] / "restore_children" / "checkpoint_child.py"
TESTS = str(Path(__file__).resolve().parents[1])
SOAK = os.environ.get("STATEMIGRATE_SOAK") == "1"
TRIALS = int(os.environ.get("STATEMIGRATE_CHECKPOINT_TRIALS", "200" if SOAK else "10"))
EVERY = 0.2
# The restored state may be older than the last acknowledged write by the interval,
# the checkpoint that was restored and the one that the kill cut short, plus this much
# for the scheduling of two processes on a shared machine.
SCHEDULING = 1.0


@dataclass
class Reported:
    """What a child reported before it died."""

    start: int = -1
    started: str = ""
    ready_at: float = 0.0
    writes: dict[int, float] = field(default_factory=dict)
    committed: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def add(self, line: str) -> None:
        kind, *rest = line.split()
        if kind == "r":
            self.start, self.started = int(rest[0]), rest[1]
        elif kind == "w":
            self.writes[int(rest[0])] = float(rest[1])
        elif kind == "s":
            self.in_flight.append(int(rest[0]))
        elif kind == "c":
            self.committed.append(int(rest[0]))
            self.in_flight = [n for n in self.in_flight if n > int(rest[0])]
            self.durations.append(float(rest[2]) - float(rest[1]))
        elif kind not in ("ready", "m"):
            raise AssertionError(f"unexpected line from the child: {line!r}")

    def allowed(self) -> set[int]:
        """The states a restart may find: the last acknowledged checkpoint (the state
        restored at start if none was), or one sent to the store after it whose
        commit the kill may or may not have cut short."""
        last = self.committed[-1] if self.committed else self.start
        return {last, *self.in_flight}


@dataclass
class Totals:
    trials: int = 0
    checkpoints: int = 0
    writes: int = 0
    torn: int = 0
    failures: int = 0
    wrong: int = 0
    mid_commit: int = 0
    restored_in_flight: int = 0
    max_age: float = 0.0
    problems: list[str] = field(default_factory=list)

    def caught(self) -> int:
        return self.torn + self.failures + self.wrong

    def summary(self, mode: str) -> str:
        return (
            f"{mode}: {self.trials} kills, {self.writes} acknowledged writes,"
            f" {self.checkpoints} checkpoints acknowledged, {self.mid_commit} kills between a"
            f" snapshot and its commit's acknowledgement ({self.restored_in_flight} of them"
            f" restored that snapshot); torn {self.torn}, restore"
            f" failures {self.failures}, not an acknowledged checkpoint {self.wrong};"
            f" max age {self.max_age * 1000:.0f} ms (every {EVERY * 1000:.0f} ms)"
        )


def run_child(directory: Path, mode: str, stderr: Path, *, wait: float | None) -> Reported:
    """Start a child, let it run ``wait`` seconds after it is ready (or until it is half
    way through an in-place commit, when ``wait`` is None), SIGKILL it, and return
    everything it reported."""
    env = {**os.environ, "PYTHONPATH": TESTS}
    with open(stderr, "ab") as errors:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(directory), mode, str(EVERY)],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    reported = Reported()
    buffer = b""
    kill_at: float | None = None
    killed = False
    try:
        while True:
            timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic())
            if not killed:
                ready, _, _ = select.select([fd], [], [], 120 if timeout is None else timeout)
                if not ready:
                    if kill_at is None:
                        raise AssertionError(f"the child went silent:\n{stderr.read_text()}")
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode()
                reported.add(line)
                if line == "ready":
                    reported.ready_at = time.monotonic()
                    if wait is not None:
                        kill_at = reported.ready_at + wait
                elif line == "m" and wait is None and not killed:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
    finally:
        if proc.poll() is None and not killed:
            os.kill(proc.pid, signal.SIGKILL)
        status = proc.wait()
        proc.stdout.close()
    assert status == -signal.SIGKILL, f"the child ended by itself ({status}):\n{stderr.read_text()}"
    assert buffer == b"", "a line was cut: lines are written whole"
    return reported


def check_restart(
    directory: Path, reported: Reported, totals: Totals, *, incremental: bool = False
) -> int:
    """Restore what the killed child left into a fresh service; count what is wrong.

    Returns the count restored (what the next child starts from)."""
    if incremental:
        service, tracked = tracked_ledger_service()
        read_state = tracked.state
    else:
        service, ledger = ledger_service()
        read_state = ledger.export_state
    try:
        with TmpfsStore(directory) as store:
            service.start_from(store)
    except RestoreError as exc:
        totals.failures += 1
        totals.problems.append(f"restore failed: {exc}")
        return -1
    state = read_state()
    count = state["count"]
    if state != state_after(count):
        totals.torn += 1
        totals.problems.append(f"torn: count {count} with other writes in the items")
    if count not in reported.allowed():
        totals.wrong += 1
        totals.problems.append(f"restored {count}, expected one of {sorted(reported.allowed())}")
    if reported.writes:
        last = max(reported.writes)
        written_at = reported.writes.get(count, reported.ready_at)
        age = max(0.0, reported.writes[last] - written_at)
        totals.max_age = max(totals.max_age, age)
        longest = max(reported.durations, default=EVERY)
        if age > max(EVERY, longest) + longest + SCHEDULING:
            totals.problems.append(f"restored state {age:.3f} s older than the last write")
    totals.trials += 1
    totals.mid_commit += bool(reported.in_flight)
    totals.restored_in_flight += count in reported.in_flight
    totals.checkpoints += len(reported.committed)
    totals.writes += len(reported.writes)
    return count


def kill_trials(
    base: Path, mode: str, trials: int, *, seed: int, waits: tuple[float, float] = (0.05, 1.0)
) -> Totals:
    rng = random.Random(seed)
    directory = base / "store"
    totals = Totals()
    expected_start = 0
    incremental = mode in ("incremental", "deltaonly")
    for _ in range(trials):
        reported = run_child(directory, mode, base / "child.stderr", wait=rng.uniform(*waits))
        if expected_start >= 0 and reported.start != expected_start:
            totals.problems.append(
                f"the child restored {reported.start}, the previous check {expected_start}"
            )
        expected_start = check_restart(directory, reported, totals, incremental=incremental)
        if expected_start < 0:
            break  # nothing more to learn from an unrestorable directory
    print(totals.summary(mode))
    return totals


@pytest.mark.slow
def test_kill_9_restarts_from_an_acknowledged_checkpoint_never_torn(tmp_path: Path) -> None:
    totals = kill_trials(tmp_path, "good", TRIALS, seed=20240611)
    assert totals.problems == []
    assert (totals.trials, totals.torn, totals.failures, totals.wrong) == (TRIALS, 0, 0, 0)
    assert totals.checkpoints > TRIALS  # the kills landed among many checkpoints


@pytest.mark.slow
def test_kill_9_with_incremental_checkpoints_restarts_from_an_acknowledged_one(
    tmp_path: Path,
) -> None:
    """The same check with a base and deltas committed as one chain, compacted every
    8 deltas: kills land in writes, deltas, compactions and commits of the chain."""
    totals = kill_trials(tmp_path, "incremental", TRIALS, seed=20261205)
    assert totals.problems == []
    assert (totals.trials, totals.torn, totals.failures, totals.wrong) == (TRIALS, 0, 0, 0)
    # Each commit copies the whole chain through the slowed store, so fewer commit
    # between two kills than with full checkpoints of the small ledger.
    assert totals.checkpoints > TRIALS // 2


@pytest.mark.slow
def test_negative_control_deltas_committed_without_their_base_are_caught(
    tmp_path: Path,
) -> None:
    """A checkpointer that commits each delta alone, as if the store kept the chain:
    the restart finds a delta whose base is gone, and the check says so."""
    totals = kill_trials(tmp_path, "deltaonly", 3, seed=11, waits=(1.0, 1.5))
    assert totals.caught() >= 1, totals.summary("deltaonly")


@pytest.mark.slow
def test_negative_control_snapshots_without_holding_the_writers_are_caught(
    tmp_path: Path,
) -> None:
    totals = kill_trials(tmp_path, "noquiesce", 5, seed=7)
    assert totals.torn >= 1, totals.summary("noquiesce")


@pytest.mark.slow
def test_negative_control_an_in_place_rewrite_is_caught(tmp_path: Path) -> None:
    """Killed half-way through rewriting ``current``: the restart finds a torn file and
    no previous one, and the check says so."""
    directory = tmp_path / "store"
    totals = Totals()
    reported = run_child(directory, "inplace", tmp_path / "child.stderr", wait=None)
    check_restart(directory, reported, totals)
    assert totals.failures == 1, totals.problems
