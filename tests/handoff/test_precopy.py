"""Pre-copy handoffs across real processes: rounds under writes, failures, fallbacks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff_children.harness import reap, script
from handoff_children.precopy import build_service

import statemigrate as sm
from statemigrate._runtime._precopy import PreCopySource
from statemigrate._runtime._wait import WaitReadable, drive, poll_readable
from statemigrate.handoff import (
    HandoffError,
    HandoffReport,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    _channel,
    _rounds,
    hand_over,
    hand_over_async,
    receive_handoff,
    take_over,
)
from statemigrate.handoff._drive import Effect
from statemigrate.handoff._fork import export_forked

FILLED = 20_000
#: The last value written to a key, or DELETED when the last write removed it.
DELETED = -1


class Writers:
    """Threads that write the counters like a server's requests, held by ``pause()``.

    A write is acknowledged (put in ``acked``) only once applied. After a handoff
    that succeeded (``stop_accepting``) the state belongs to the successor and the
    writers stop; after ``resume()`` they go on.
    """

    def __init__(self, entries: Any, threads: int = 2) -> None:
        self.entries = entries
        self.cond = threading.Condition()
        self.paused = False
        self.moved = False
        self.stopped = False
        self.acked: dict[str, int] = {}
        self.writes = 0
        self.pauses = 0
        self.resumes = 0
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, number: int) -> None:
        n = 0
        while True:
            with self.cond:
                self.cond.wait_for(lambda: not self.paused or self.moved or self.stopped)
                if self.moved or self.stopped:
                    return
                key = f"w{number}:{n % 5000}"
                if n % 7 == 3 and key in self.entries:
                    del self.entries[key]
                    self.acked[key] = DELETED
                else:
                    self.entries[key] = n
                    self.acked[key] = n
                self.writes += 1
            n += 1
            time.sleep(0.0002)

    def pause(self) -> None:
        with self.cond:
            self.paused = True
            self.pauses += 1

    def resume(self) -> None:
        with self.cond:
            self.paused = False
            self.resumes += 1
            self.cond.notify_all()

    def stop_accepting(self) -> None:
        with self.cond:
            self.moved = True
            self.cond.notify_all()

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        for thread in self.threads:
            thread.join(30)

    def wait_writes(self, more: int) -> None:
        """Wait until ``more`` further writes were acknowledged (the server serves)."""
        target = self.writes + more
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        while self.writes < target and not self.paused and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.writes >= target and not self.paused, "the writers did not go on"


def expected(filled: int, acked: dict[str, int]) -> dict[str, int]:
    state = {f"fill:{i}": i for i in range(filled)}
    for key, value in acked.items():
        if value == DELETED:
            state.pop(key, None)
        else:
            state[key] = value
    return state


@pytest.fixture
def old() -> Iterator[tuple[sm.Service, Any]]:
    service, obj = build_service(1)
    for i in range(FILLED):
        obj.entries[f"fill:{i}"] = i
    yield service, obj


def _successor(
    mode: str, tmp_path: Path, *, step: str = "record", release: int = 2
) -> tuple[Spawn, Path]:
    out = tmp_path / "successor.json"
    env = dict(os.environ, PRECOPY_STEP=step)
    return Spawn([sys.executable, script("precopy.py"), mode, str(release), str(out)], env=env), out


def _hand_over(
    service: sm.Service, writers: Writers, spawn: Spawn, **options: Any
) -> HandoffReport:
    return hand_over(service, spawn, listeners={}, control=writers, **options)


def _result(report: HandoffReport, out: Path) -> dict[str, Any]:
    assert reap(report.successor_pid) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.parametrize("mode", ["fork", "inline"])
def test_precopy_under_writes_loses_no_write(
    old: tuple[sm.Service, Any], tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every acknowledged write (and delete) is in the successor; round 0 and at least
    one delta went while serving, and the pause carried only the last delta."""
    monkeypatch.setattr(_rounds, "MIN_FINAL", 0)  # a delta round for any write at all
    service, obj = old
    spawn, out = _successor("ok", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(200)
        report = _hand_over(service, writers, spawn, precopy=mode)
    assert report.ok and report.final == "delta" and report.fallback is None
    assert [r.kind for r in report.rounds][:2] == ["full", "delta"]
    assert report.rounds[0].size > 0 and report.precopy_seconds > 0
    assert (writers.pauses, writers.resumes) == (1, 0)
    if mode == "fork":
        assert report.fork_seconds > 0
    result = _result(report, out)
    assert result["entries"] == expected(FILLED, writers.acked)
    taken = result["report"]
    assert [r["number"] for r in taken["rounds"]] == [r.number for r in report.rounds]
    assert taken["restore"]["delta"] is True  # the last piece was a delta


def test_capped_rounds_lose_no_write_made_mid_export(
    old: tuple[sm.Service, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delta rounds of a few records each (the rest waits for the next round), and a
    write made in the middle of each round's export, after its records were taken:
    every acknowledged write is in the successor."""
    monkeypatch.setattr(_rounds, "MIN_FINAL", 0)
    monkeypatch.setattr(_rounds, "ROUND_RECORDS", 40)
    monkeypatch.setattr(_rounds, "FINAL_TARGET", 0.0)  # rounds until nothing is left
    service, obj = old
    sections = PreCopySource._sections
    mid_export: dict[str, int] = {}

    def sections_then_write(self: PreCopySource, taken: Any) -> Any:
        # Taken already: this write is past the round's mark, bound for a later piece.
        # Rewriting a filled key that no writer thread touches: an earlier round may
        # have carried its old value.
        key = f"fill:{len(mid_export)}"
        with writers.cond:
            if not writers.paused:  # the last delta, in the pause, takes no writes
                obj.entries[key] = mid_export[key] = FILLED + len(mid_export)
        return sections(self, taken)

    monkeypatch.setattr(PreCopySource, "_sections", sections_then_write)
    spawn, out = _successor("ok", tmp_path)
    with Writers(obj.entries, threads=1) as writers:
        writers.wait_writes(300)
        report = _hand_over(service, writers, spawn, precopy="inline")
    assert report.ok and report.final == "delta"
    deltas = report.rounds[1:]
    assert len(deltas) >= 2 and all(r.records <= 40 for r in deltas)
    assert len(mid_export) >= 2
    result = _result(report, out)
    assert result["entries"] == expected(FILLED, {**writers.acked, **mid_export})


def test_successor_without_precopy_gets_the_snapshot_in_the_pause(
    old: tuple[sm.Service, Any], tmp_path: Path
) -> None:
    """A successor of a release without pre-copy announces nothing, and gets the whole
    state in the pause, as before."""
    service, obj = old
    spawn, out = _successor("no-precopy", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        report = _hand_over(service, writers, spawn)
    assert report.ok and report.final == "snapshot" and report.rounds == ()
    result = _result(report, out)
    assert result["entries"] == expected(FILLED, writers.acked)
    assert result["report"]["rounds"] == []


def test_a_long_restore_of_round_0_is_reported_while_it_lasts(
    old: tuple[sm.Service, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The successor's restore of round 0 falls under HandoffTimeouts.precopy, not
    .ready: while it lasts, the old process says every PROGRESS_EVERY seconds that it
    waits for it, and for how long at most."""
    monkeypatch.setattr(_channel, "PROGRESS_EVERY", 0.2)
    service, obj = old
    spawn, out = _successor("slow-0", tmp_path)
    timeouts = HandoffTimeouts(ready=15.0, precopy=45.0)
    with (
        caplog.at_level(logging.INFO, logger="statemigrate.handoff"),
        Writers(obj.entries) as writers,
    ):
        report = _hand_over(service, writers, spawn, timeouts=timeouts)
    assert report.ok and report.rounds[0].kind == "full"
    assert _result(report, out)["entries"] == expected(FILLED, writers.acked)
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert waits, "nothing said while round 0 was restored"
    assert all(
        line.startswith("handoff: waiting for the successor's restore of round 0")
        and line.endswith(" of at most 45 s")
        for line in waits
    ), waits


def test_old_process_without_precopy_is_taken_over_as_before(
    old: tuple[sm.Service, Any], tmp_path: Path
) -> None:
    """An old process that sends no pieces (precopy=False, as an older release does)
    hands over to a successor that announced pre-copy."""
    service, obj = old
    spawn, out = _successor("ok", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        report = _hand_over(service, writers, spawn, precopy=False)
    assert report.ok and report.final == "snapshot" and report.rounds == ()
    assert _result(report, out)["entries"] == expected(FILLED, writers.acked)


@pytest.mark.parametrize("step", ["whole", "fields"])
def test_whole_data_step_falls_back_to_a_full_snapshot_in_the_pause(
    old: tuple[sm.Service, Any], tmp_path: Path, step: str
) -> None:
    """A successor whose plan has a whole-data step (a Python step, or FieldChanges
    without records=) restores round 0 and says it takes no deltas: the pause carries a
    full snapshot again, reported with the reason."""
    service, obj = old
    spawn, out = _successor("ok", tmp_path, step=step)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        report = _hand_over(service, writers, spawn)
    assert report.ok and report.final == "full"
    assert report.fallback is not None
    assert report.fallback.startswith("the successor cannot apply deltas: ")
    assert "counters" in report.fallback  # the successor names the component
    assert [r.kind for r in report.rounds] == ["full"]
    result = _result(report, out)
    assert result["entries"] == expected(FILLED, writers.acked)
    assert result["report"]["fallback"] == report.fallback
    assert result["report"]["restore"]["delta"] is False


def test_untracked_component_sends_the_full_snapshot_in_the_pause(tmp_path: Path) -> None:
    """A component that cannot tell what changed gets no round 0 at all: the full
    snapshot goes in the pause, and the report names the component."""
    service, obj = build_service(1, tracked=False)
    obj.entries.update({f"fill:{i}": i for i in range(1000)})
    spawn, out = _successor("ok", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        report = _hand_over(service, writers, spawn)
    assert report.ok and report.final == "full" and report.rounds == ()
    assert report.fallback is not None and "cannot tell what changed" in report.fallback
    assert _result(report, out)["entries"] == expected(1000, writers.acked)


@pytest.mark.parametrize(
    ("mode", "status"),
    [("fail-0", 1), ("fail-1", 1), ("die-0", 3), ("die-1", 3)],
)
def test_successor_failing_in_a_round_leaves_the_old_process_serving(
    old: tuple[sm.Service, Any],
    tmp_path: Path,
    mode: str,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A successor that fails (FAILED) or dies while applying round 0 or a delta: the
    old process was never paused, serves on, and reaped the successor."""
    monkeypatch.setattr(_rounds, "MIN_FINAL", 0)
    service, obj = old
    spawn, _out = _successor(mode, tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        with pytest.raises(SuccessorFailedError) as caught:
            _hand_over(service, writers, spawn)
        writers.wait_writes(100)  # still serving
    acked = dict(writers.acked)  # once the writers stopped: each write is acked or not made
    error = caught.value
    assert error.stage == "precopy"
    assert (writers.pauses, writers.resumes) == (0, 0)  # never held
    assert error.report is not None and error.report.pause_seconds == 0
    assert error.exit_status == status
    if mode.startswith("fail"):
        assert f"restore of piece {mode[-1]} broke" in error.detail
    assert dict(obj.entries) == expected(FILLED, acked)
    # Recording stopped with the attempt: a later round 0 starts from a new mark.
    source = service.precopy_source()
    source.start()
    assert source.pending() == 0
    source.close()


def _forked_full_kills_itself(self: PreCopySource) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def _forked_full_hangs(self: PreCopySource) -> Any:
    time.sleep(3600)


@pytest.mark.parametrize(
    ("full", "message"),
    [
        (_forked_full_kills_itself, "killed by SIGKILL"),
        (_forked_full_hangs, "ran past its deadline"),
    ],
)
def test_round_zero_child_killed_or_hung_fails_cleanly(
    old: tuple[sm.Service, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    full: Any,
    message: str,
) -> None:
    """Round 0's child killed by a signal, or hung until its deadline: the handoff fails
    with the reason, the successor is stopped and reaped, and the old process was
    never paused and serves on."""
    monkeypatch.setattr(PreCopySource, "full", full)  # inherited by the forked child
    service, obj = old
    spawn, _out = _successor("ok", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        with pytest.raises(HandoffError) as caught:
            _hand_over(service, writers, spawn, timeouts=HandoffTimeouts(precopy=2.0))
        writers.wait_writes(100)
    acked = dict(writers.acked)  # once the writers stopped: each write is acked or not made
    error = caught.value
    assert error.stage == "precopy" and message in error.detail
    assert (writers.pauses, writers.resumes) == (0, 0)
    assert error.report is not None and error.report.successor_exit is not None
    assert dict(obj.entries) == expected(FILLED, acked)


def test_round_zero_child_runs_below_the_serving_process() -> None:
    """Round 0's child runs at a lower CPU priority than the process that serves: its
    slowness risks nothing (the old process serves its own state meanwhile, and a
    round 0 past its deadline only fails the handoff), so the requests come first. A
    checkpoint's child is the other case (tests/runtime/test_checkpoint_fork.py)."""

    def priority() -> bytes:  # in the child
        return str(os.getpriority(os.PRIO_PROCESS, 0)).encode()

    def perform(effect: Effect) -> object:
        assert isinstance(effect, WaitReadable), effect
        return poll_readable(effect)

    # The deadline only stops a hang; nothing here measures time.
    steps = export_forked(priority, deadline=time.monotonic() + 60.0, stage="precopy")
    exported = drive(steps, perform)
    try:
        noted = int(os.pread(exported.fd, exported.size, 0))
    finally:
        os.close(exported.fd)
    serving = os.getpriority(os.PRIO_PROCESS, 0)
    assert noted == min(serving + 10, 19)  # 19 is the lowest priority there is


def _successor_pids(parent: int) -> list[int]:
    """The children of ``parent`` running the precopy.py successor, from /proc."""
    found = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if script("precopy.py").encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
    return found


_FULL = PreCopySource.full


def _forked_full_kills_the_successor(self: PreCopySource) -> Any:
    """Round 0's export, during which the successor is killed (and is gone)."""
    for pid in _successor_pids(os.getppid()):
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z":
            time.sleep(0.01)  # until only its exit status is left
    return _FULL(self)


def test_successor_killed_during_round_zero_is_reported_as_its_death(
    old: tuple[sm.Service, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The successor dies while round 0 is exported: the send that finds it gone fails
    the handoff as the successor's failure, with its exit status, not a bare broken
    pipe."""
    monkeypatch.setattr(PreCopySource, "full", _forked_full_kills_the_successor)
    service, obj = old
    spawn, _out = _successor("ok", tmp_path)
    with Writers(obj.entries) as writers:
        writers.wait_writes(100)
        with pytest.raises(SuccessorFailedError) as caught:
            _hand_over(service, writers, spawn)
        writers.wait_writes(100)
    acked = dict(writers.acked)  # once the writers stopped: each write is acked or not made
    error = caught.value
    assert error.stage == "precopy"
    assert error.exit_status == -signal.SIGKILL
    assert "the successor hung up during precopy (killed by SIGKILL)" in error.detail
    assert (writers.pauses, writers.resumes) == (0, 0)
    assert dict(obj.entries) == expected(FILLED, acked)


def test_precopy_option_is_checked(old: tuple[sm.Service, Any]) -> None:
    service, _obj = old
    with pytest.raises(sm.ConfigurationError, match="precopy"):
        hand_over(service, Spawn(["true"]), listeners={}, precopy="thread")  # type: ignore[arg-type]


def _slow_full_noting_its_window(out: Path) -> Any:
    """A ``PreCopySource.full`` that sleeps 1 s first, noting when (monotonic clock)."""
    original = PreCopySource.full

    def full(self: PreCopySource) -> Any:
        began = time.monotonic()
        time.sleep(1.0)
        out.write_text(json.dumps([began, time.monotonic()]))
        return original(self)

    return full


@pytest.mark.parametrize(("mode", "serves"), [("fork", True), ("inline", False)])
def test_async_round_zero_in_a_child_leaves_the_loop_serving(
    old: tuple[sm.Service, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    serves: bool,
) -> None:
    """While round 0 is exported in a forked child, the event loop of the old process
    goes on running its other tasks; exported inline, it runs none meanwhile (the
    negative control, and the reason ``fork`` is the default)."""
    window = tmp_path / "window.json"
    monkeypatch.setattr(PreCopySource, "full", _slow_full_noting_its_window(window))
    service, _obj = old
    spawn, out = _successor("ok", tmp_path)
    ticks: list[float] = []

    async def run() -> HandoffReport:
        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        try:
            return await hand_over_async(service, spawn, listeners={}, precopy=mode)  # type: ignore[arg-type]
        finally:
            ticker.cancel()

    report = asyncio.run(run())
    assert report.ok and report.rounds[0].kind == "full"
    assert _result(report, out)["entries"] == expected(FILLED, {})
    began, ended = json.loads(window.read_text())
    during = [t for t in ticks if began <= t <= ended]
    assert bool(during) is serves


def test_a_last_delta_that_fails_sends_the_full_snapshot_in_the_pause(
    old: tuple[sm.Service, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last delta cannot be exported (here: it raises once the writers are held):
    the pause carries a full snapshot instead, reported as the fallback, and the
    successor has every acknowledged write."""
    service, obj = old
    spawn, out = _successor("ok", tmp_path)
    delta = PreCopySource.delta
    with Writers(obj.entries) as writers:

        def failing_when_paused(self: PreCopySource, *, limit: int | None = None) -> Any:
            if writers.paused:
                raise sm.ExportError("counters", 1, "entries", "a broken record")
            return delta(self, limit=limit)

        monkeypatch.setattr(PreCopySource, "delta", failing_when_paused)
        writers.wait_writes(100)
        report = _hand_over(service, writers, spawn)
    assert report.ok and report.final == "full"
    assert report.fallback is not None and report.fallback.startswith("the last delta failed")
    result = _result(report, out)
    assert result["entries"] == expected(FILLED, writers.acked)
    assert result["report"]["fallback"] == report.fallback


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` (not necessarily our child) is gone within ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])  # a hang guard
    finally:
        os.close(pidfd)


def test_old_process_dying_during_the_rounds_leaves_the_successor_without_state(
    tmp_path: Path,
) -> None:
    """The old process is killed while round 0 is exported: the successor never got
    the last piece (it never sent READY), so it exits without serving; round 0's
    child dies with its parent."""
    old = subprocess.Popen(
        [sys.executable, script("precopy_old.py"), str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert old.stderr is not None
        line = ""
        while "started successor pid" not in line:
            line = old.stderr.readline()
            assert line, "the old process ended before starting its successor"
        successor = int(line.split("started successor pid ")[1].split(":")[0])
        marker = tmp_path / "round0"
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        round0 = int(marker.read_text())
        old.kill()
        assert old.wait(30) == -signal.SIGKILL
    finally:
        old.kill()
        old.wait()
        if old.stderr is not None:
            old.stderr.close()
    assert _wait_gone(successor) and _wait_gone(round0)
    assert not (tmp_path / "successor.json").exists()  # it took nothing over


def test_precopy_over_a_socket_sends_the_listeners_with_the_last_piece(
    old: tuple[sm.Service, Any],
) -> None:
    """A successor that connected over a socket (started by someone else) takes the
    pieces, then the last delta with the listeners, in one conversation."""
    service, obj = old
    successor, copy = build_service(2)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    taken: dict[str, Any] = {}

    def take() -> None:
        inheritance = receive_handoff(theirs, expect={"http"})
        with inheritance:
            taken["report"] = take_over(successor, inheritance)
        taken["listeners"] = inheritance.listeners

    thread = threading.Thread(target=take)
    with socket.create_server(("127.0.0.1", 0)) as listener, ours:
        thread.start()
        report = hand_over(service, ours, listeners={"http": listener})
        thread.join(60)
    assert report.ok and report.transport == "socket" and report.final == "delta"
    assert [r.kind for r in report.rounds][0] == "full"
    assert set(taken["listeners"]) == {"http"}
    for sock in taken["listeners"].values():
        sock.close()
    assert taken["report"].rounds[0].kind == "full"
    assert dict(copy.entries) == dict(obj.entries)


def test_the_summary_tells_the_piece_in_the_pause_from_the_rounds_before_it() -> None:
    # "1632 bytes, pre-copy 2 rounds (1 deltas, last 4719 bytes)" read as if the last
    # delta were 4719 bytes, where 1632 bytes went in the pause.
    from statemigrate.handoff._report import Round

    report = HandoffReport(
        outcome="ready",
        transport="spawn",
        successor_pid=42,
        snapshot_size=1632,
        rounds=(Round(0, "full", 380_000), Round(1, "delta", 4719)),
        pause_seconds=0.0171,
    )
    assert (
        "1632 bytes in the pause, pre-copy 2 rounds before it (1 delta, the last 4719 bytes),"
        " pause 17.1ms" in report.summary()
    )
    alone = HandoffReport(
        outcome="ready", transport="spawn", snapshot_size=9, rounds=(Round(0, "full", 380),)
    )
    assert "9 bytes in the pause, pre-copy 1 round before it, pause" in alone.summary()
