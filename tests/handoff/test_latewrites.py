"""The old process's warning of records written after a handoff's last piece was taken."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable

import pytest
from handoff_children.precopy import build_service
from inprocess_handoff import hand_over_in_process

import statemigrate as sm
from statemigrate._runtime._latewrites import LateWrites
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffReport,
    hand_over,
    hand_over_async,
    receive_handoff,
    take_over,
)
from statemigrate.handoff._service import PreCopy

LATE = "handoff: component counters/default had"


def _hand_over_in_process(
    service: sm.Service,
    successor: sm.Service,
    *,
    precopy: PreCopy,
    stop_accepting: Callable[[], object] | None = None,
) -> HandoffReport:
    control = ControlCallbacks(stop_accepting=stop_accepting)
    return hand_over_in_process(service, successor, control=control, precopy=precopy)


def _late_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(LATE)]


@pytest.mark.parametrize("precopy", ["inline", False])
def test_a_write_after_the_last_piece_is_warned_of(
    precopy: PreCopy, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer the pause does not hold (a GET's background task, say) writes after the
    last piece (a delta, or the snapshot without pre-copy) was taken: the successor
    never gets it, and the old process says so once, naming the component."""
    service, obj = build_service(1)
    for i in range(100):
        obj.entries[f"k{i}"] = i
    successor, copy = build_service(1)

    def late_writer() -> None:
        # After SERVING: the state is the successor's, and these writes stay here.
        obj.entries["k1"] = -1
        obj.entries["late"] = 1
        obj.entries["late"] = 2

    with caplog.at_level(logging.INFO, logger="statemigrate"):
        report = _hand_over_in_process(
            service, successor, precopy=precopy, stop_accepting=late_writer
        )
    assert report.ok
    assert "late" not in copy.entries and copy.entries["k1"] == 1  # lost, as warned
    [line] = _late_lines(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith(
        f"{LATE} 2 distinct record(s) (keys) written, 3 write(s) in all, after the last"
        " piece was taken"
    )
    assert "BackgroundTasks" in message and "safe_methods=()" in message
    assert "docs/servers.md" in message
    # The marks are closed: the dict records nothing once the handoff ended.
    assert not obj.entries.tracking


@pytest.mark.parametrize("precopy", ["inline", False])
def test_a_clean_handoff_warns_of_nothing(
    precopy: PreCopy, caplog: pytest.LogCaptureFixture
) -> None:
    service, obj = build_service(1)
    for i in range(100):
        obj.entries[f"k{i}"] = i
    successor, copy = build_service(1)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        report = _hand_over_in_process(service, successor, precopy=precopy)
    assert report.ok and dict(copy.entries) == dict(obj.entries)
    assert _late_lines(caplog) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not obj.entries.tracking


def test_a_failed_handoff_stops_watching(caplog: pytest.LogCaptureFixture) -> None:
    """A successor that fails after the last piece leaves no mark open behind."""
    service, obj = build_service(1)
    obj.entries["a"] = 1
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def fail() -> None:
        with receive_handoff(theirs) as inheritance:
            inheritance.hello({"counters": [1]}).release()
            inheritance.failed("refused for the test")

    thread = threading.Thread(target=fail)
    with ours, theirs:
        thread.start()
        with pytest.raises(sm.HandoffError):
            hand_over(service, ours, listeners={}, precopy=False)
        thread.join(60)  # only stops a hang
    assert not obj.entries.tracking
    obj.entries["b"] = 2  # served on, as before
    assert _late_lines(caplog) == []


def test_a_control_that_drains_keeps_the_marks_and_tells_them_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server control with ``keep_late_writes`` (a server adapter, which drains after
    the move) gets the marks: the handoff neither warns at SERVING nor closes them, so
    writes made while the old process drains are counted too."""
    service, obj = build_service(1)
    obj.entries["k"] = 0
    successor, _ = build_service(1)
    kept: list[LateWrites] = []

    class Draining:
        async def pause(self) -> None:
            return None

        async def resume(self) -> None:
            return None

        async def stop_accepting(self) -> None:
            obj.entries["late"] = 1  # before SERVING was told

        def keep_late_writes(self, marks: LateWrites) -> None:
            kept.append(marks)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def take() -> None:
        with receive_handoff(theirs) as inheritance:
            take_over(successor, inheritance)

    thread = threading.Thread(target=take)
    with ours, theirs, caplog.at_level(logging.INFO, logger="statemigrate"):
        thread.start()
        report = asyncio.run(hand_over_async(service, ours, listeners={}, control=Draining()))
        thread.join(60)  # only stops a hang
    assert report.ok and _late_lines(caplog) == []
    [marks] = kept
    obj.entries["draining"] = 1  # a websocket left on the old process, say
    assert [records for records, _ in marks.written().values()] == [2]
    marks.close()
    assert not obj.entries.tracking
