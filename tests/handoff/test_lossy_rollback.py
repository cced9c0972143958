"""A rollback handoff through a lossy downgrade is visible: the old process logs one
WARNING per component naming the versions, the steps and the fields lost, its
``handoff ready`` line and report name the versions sent, and the gauge of the last
lossy export is set; the successor, which outlives it, repeats the line and sets the
gauge too."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from lossy_components import assignments_at

from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.handoff import (
    HandoffReport,
    TakeOverReport,
    hand_over,
    receive_handoff,
    take_over,
)


class Gauges:
    def __init__(self) -> None:
        self.labels: list[tuple[str, ...]] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        if instrument.name == "statemigrate_last_lossy_export_timestamp_seconds":
            self.labels.append(tuple(labels))


def roll_back(*, precopy: Any, allow_lossy: Any = True) -> tuple[HandoffReport, TakeOverReport]:
    """Release 2 hands over to release 1 over a socket pair, loss allowed on both sides
    (on the old one, by ``allow_lossy``)."""
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reports: list[HandoffReport] = []

    def old_side() -> None:
        with old, socket.create_server(("127.0.0.1", 0)) as listener:
            reports.append(
                hand_over(
                    assignments_at(2),
                    old,
                    listeners={"http": listener},
                    precopy=precopy,
                    allow_lossy=allow_lossy,
                )
            )

    thread = threading.Thread(target=old_side)
    thread.start()
    successor = assignments_at(1)
    with receive_handoff(new, expect={"http"}) as inheritance:
        taken = take_over(successor, inheritance, precopy=precopy is not False)
        inheritance.listeners["http"].close()
    thread.join(30)  # only stops a hang
    new.close()
    state: Any = successor.components[0].obj.state  # type: ignore[attr-defined]
    assert state == {"users": {"u1": {"flag": "on"}}}
    return reports[0], taken


@pytest.mark.parametrize("precopy", [False, "inline"])
def test_a_lossy_rollback_is_logged_reported_and_counted(
    caplog: pytest.LogCaptureFixture, precopy: Any
) -> None:
    gauges = Gauges()
    previous = use_sink(gauges)
    try:
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            report, taken = roll_back(precopy=precopy)
    finally:
        use_sink(previous)
    line = (
        "assignments exported at version 1 for the successor, from 2 through lossy step"
        " 2 -> 1 (drop_bucket): it loses data in users.*.bucket"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Once on each side, whatever the rounds; the old process is this one here.
    said = f"handoff: pid {os.getpid()} says: {line}"
    assert sorted(warnings) == sorted([said, f"handoff: {line}"])
    assert report.lossy == (line,)
    assert taken.lossy == (line,)
    assert report.versions == {"assignments": 1}
    assert report.to_plain()["versions"] == {"assignments": 1}
    assert "sent assignments v1 (1 through lossy steps)" in report.summary()
    assert gauges.labels == [("flags", "assignments", "2", "1")] * 2


@pytest.mark.parametrize("precopy", [False, "inline"])
def test_a_name_of_no_component_is_warned_about_once_on_the_old_side(
    caplog: pytest.LogCaptureFixture, precopy: Any
) -> None:
    """The old process checks its allow_lossy at each export: pre-copy's source, then
    the snapshot its rounds fall back to (a whole-data step has no deltas)."""
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        roll_back(precopy=precopy, allow_lossy={"assignments", "gone"})
    unknown = [r.getMessage() for r in caplog.records if "no component" in r.getMessage()]
    assert unknown == [
        "allow_lossy names 'gone', no component of service 'flags' (registered:"
        " assignments); ignored"
    ]


def test_a_handoff_at_the_live_versions_names_them_and_no_loss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reports: list[HandoffReport] = []

    def old_side() -> None:
        with old, socket.create_server(("127.0.0.1", 0)) as listener:
            reports.append(hand_over(assignments_at(2), old, listeners={"http": listener}))

    thread = threading.Thread(target=old_side)
    thread.start()
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        with receive_handoff(new, expect={"http"}) as inheritance:
            take_over(assignments_at(2), inheritance)
            inheritance.listeners["http"].close()
        thread.join(30)  # only stops a hang
    new.close()
    assert reports[0].lossy == ()
    assert ", sent assignments v2, " in reports[0].summary()
    assert not [r for r in caplog.records if "lossy" in r.getMessage()]
