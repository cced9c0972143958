"""HELD after SERVING: the successor's pause gauge takes the old process's own figure
in a handoff between two processes of this release, and either side of an earlier
release (a successor that does not announce it, an old process that never sends it)
still hands over."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from lossy_components import assignments_at

from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffReport,
    TakeOverReport,
    hand_over,
    receive_handoff,
    take_over,
)
from statemigrate.handoff._receive import Inheritance


class Gauge:
    def __init__(self) -> None:
        self.values: list[float] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        if instrument.name == "statemigrate_last_takeover_pause_seconds":
            self.values.append(value)


def hand_over_in_process(
    *, successor_hears: bool
) -> tuple[HandoffReport, TakeOverReport, Inheritance]:
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reports: list[HandoffReport] = []
    # stop_accepting() takes a moment, which only the old process's figure holds.
    control = ControlCallbacks(stop_accepting=lambda: time.sleep(0.05))

    def old_side() -> None:
        with old, socket.create_server(("127.0.0.1", 0)) as listener:
            reports.append(
                hand_over(assignments_at(2), old, listeners={"http": listener}, control=control)
            )

    thread = threading.Thread(target=old_side)
    thread.start()
    with receive_handoff(new, expect={"http"}) as inheritance:
        inheritance._hears_held = successor_hears  # False: as an earlier release
        taken = take_over(assignments_at(2), inheritance)
        inheritance.listeners["http"].close()
    thread.join(30)  # only stops a hang
    new.close()
    watch = getattr(inheritance, "held_watch", None)
    if watch is not None:
        watch.join(30)  # only stops a hang
    return reports[0], taken, inheritance


@pytest.fixture
def gauge() -> Any:
    sink = Gauge()
    previous = use_sink(sink)
    yield sink
    use_sink(previous)


def test_the_successor_reports_the_old_process_figure(gauge: Gauge) -> None:
    report, taken, _ = hand_over_in_process(successor_hears=True)
    assert report.ok
    assert taken.pause_seconds < report.pause_seconds  # stop_accepting() is not in it
    assert gauge.values == [taken.pause_seconds, report.pause_seconds]


def test_a_successor_of_an_earlier_release_is_told_nothing(gauge: Gauge) -> None:
    """It does not announce HELD: the old process sends none, and both go on."""
    report, taken, inheritance = hand_over_in_process(successor_hears=False)
    assert report.ok and not report.problems
    assert getattr(inheritance, "held_watch", None) is None
    assert gauge.values == [taken.pause_seconds]
