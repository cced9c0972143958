"""Exports through lossy steps said out loud: one INFO line per component naming the
versions, the steps and the fields lost, and the gauge of the last lossy export, for
snapshot(targets=...) and commit(targets=...); nothing for loss-free exports."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest
from lossy_components import assignments_at, lossy_both_ways
from lossy_components import service_at as lossy_service_at

from statemigrate import LossyMigrationError
from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.stores import MemoryStore


class Gauges:
    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...]]] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        if instrument.name == "statemigrate_last_lossy_export_timestamp_seconds":
            self.seen.append((instrument.name, tuple(labels)))


@pytest.fixture
def gauges() -> Iterator[Gauges]:
    sink = Gauges()
    previous = use_sink(sink)
    try:
        yield sink
    finally:
        use_sink(previous)


def lossy_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and "lossy" in r.getMessage()
    ]


def test_snapshot_through_a_lossy_step_names_the_step_and_the_fields(
    caplog: pytest.LogCaptureFixture, gauges: Gauges
) -> None:
    service = assignments_at(2)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        service.snapshot(targets={"assignments": 1}, allow_lossy=True)
    assert lossy_lines(caplog) == [
        "assignments exported at version 1, from 2 through lossy step 2 -> 1 (drop_bucket):"
        " it loses data in users.*.bucket"
    ]
    assert gauges.seen == [
        ("statemigrate_last_lossy_export_timestamp_seconds", ("flags", "assignments", "2", "1"))
    ]


def test_commit_through_lossy_steps_warns_once_per_component(
    caplog: pytest.LogCaptureFixture, gauges: Gauges
) -> None:
    """Every component that loses something is named, each once; a step that declares
    no field says so."""
    service = lossy_service_at(2, [5, 4, 3], lossy_both_ways())
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        service.commit(MemoryStore(), targets={"catalog": 1, "orders": 1}, allow_lossy=True)
    assert lossy_lines(caplog) == [
        f"{name} exported at version 1, from 2 through lossy step 2 -> 1 (first_two):"
        " the fields it loses not declared"
        for name in ("catalog", "orders")
    ]
    assert [labels for _, labels in gauges.seen] == [
        ("shop", "catalog", "2", "1"),
        ("shop", "orders", "2", "1"),
    ]


def test_no_word_of_loss_without_a_lossy_step(
    caplog: pytest.LogCaptureFixture, gauges: Gauges
) -> None:
    """The live versions, and an announcement made by the caller already, say nothing."""
    from statemigrate._runtime._lossyexport import lossy_announced

    service = assignments_at(2)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        service.snapshot()
        service.snapshot(targets={"assignments": 2})
        with lossy_announced():
            service.snapshot(targets={"assignments": 1}, allow_lossy=True)
    assert lossy_lines(caplog) == []
    assert gauges.seen == []


def test_a_refused_lossy_export_says_nothing_of_loss(
    caplog: pytest.LogCaptureFixture, gauges: Gauges
) -> None:
    service = assignments_at(2)
    with caplog.at_level(logging.INFO, logger="statemigrate"), pytest.raises(LossyMigrationError):
        service.commit(MemoryStore(), targets={"assignments": 1})
    assert lossy_lines(caplog) == []
    assert gauges.seen == []
