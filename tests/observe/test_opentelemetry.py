"""The OpenTelemetry backend, read back through the SDK's in-memory reader."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import statemigrate as sm
import statemigrate.metrics
from statemigrate._observe._instruments import (
    COMMIT_OUTCOMES,
    HANDOFF_STAGES,
    RESTORE_OUTCOMES,
    TAKEOVER_OUTCOMES,
)
from statemigrate.handoff._report import HandoffReport, record_handoff, record_takeover


@pytest.fixture
def reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    statemigrate.metrics.use_opentelemetry(MeterProvider(metric_readers=[reader]))
    return reader


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Each metric by name: its unit and its points by attributes."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "statemigrate"
            for metric in scope.metrics:
                points = {
                    frozenset((point.attributes or {}).items()): point
                    for point in metric.data.data_points
                }
                found[metric.name] = (metric.unit, points)
    return found


def test_a_restore_is_recorded_as_its_report_says(reader, committed, fresh) -> None:
    service, commit = committed
    report = fresh().restore(commit)
    found = collected(reader)
    service_only = frozenset({("service", "observed")})

    unit, points = found["statemigrate_restores"]  # a counter: _total is the exporter's
    assert unit == ""
    assert points[service_only | {("outcome", "restored")}].value == 1
    unit, points = found["statemigrate_restore_duration_seconds"]
    assert unit == "s"
    for phase, seconds in report.timings.items():
        point = points[service_only | {("phase", phase)}]
        assert point.count == 1 and point.sum == pytest.approx(seconds, rel=1e-9)
        assert tuple(point.explicit_bounds)[:3] == (0.001, 0.0025, 0.005)
    unit, points = found["statemigrate_snapshot_bytes"]
    assert unit == "By" and points[service_only].value == commit.snapshot.size
    _, points = found["statemigrate_component_restores"]
    assert (
        points[
            service_only | {("component", "kvcache"), ("from_version", "1"), ("to_version", "2")}
        ].value
        == 1
    )
    unit, points = found["statemigrate_restore_progress_ratio"]
    assert unit == "1" and points[service_only].value == 1
    _, points = found["statemigrate_build_info"]
    assert points[frozenset({("version", sm.__version__)})].value == 1


def test_a_failed_restore_is_counted(reader, committed) -> None:
    service, commit = committed
    with pytest.raises(sm.RestoreError):
        sm.Service("someone-else").restore(commit)
    _, points = collected(reader)["statemigrate_restores"]
    assert points[frozenset({("service", "someone-else"), ("outcome", "failed")})].value == 1


def test_checkpoints_that_fail_to_commit_leave_the_last_snapshot_gauges(
    reader, checkpointing
) -> None:
    """As with prometheus_client: the gauges describe the snapshot the store holds."""
    service_only = frozenset({("service", "observed")})
    names = (
        "statemigrate_last_snapshot_timestamp_seconds",
        "statemigrate_generation",
        "statemigrate_snapshot_bytes",
    )

    def gauges() -> dict[str, float]:
        found = collected(reader)
        return {name: found[name][1][service_only].value for name in names}

    good = checkpointing.checkpointer.checkpoint_now().committed
    assert good is not None
    kept = gauges()
    assert kept["statemigrate_generation"] == good.snapshot.generation == 1
    assert kept["statemigrate_snapshot_bytes"] == good.snapshot.size
    checkpointing.store.down = True
    checkpointing.changed_and_failed(3)
    assert gauges() == kept
    _, points = collected(reader)["statemigrate_commits"]
    failed = service_only | {("store", "unreachable"), ("outcome", "failed")}
    assert points[failed].value == 3


def test_counters_series_exist_at_zero_before_any_event(reader) -> None:
    """As with prometheus_client: an exporter shows them at 0, so the first event is
    an increase."""
    service = sm.Service("zeroes")
    sm.Checkpointer(service, sm.MemoryStore(), quiesce=threading.Lock(), export="inline")
    found = collected(reader)
    service_only = frozenset({("service", "zeroes")})
    _, points = found["statemigrate_handoffs"]
    for stage in HANDOFF_STAGES:
        assert points[service_only | {("outcome", "failed"), ("stage", stage)}].value == 0
    _, points = found["statemigrate_handoff_takeovers"]
    for outcome in TAKEOVER_OUTCOMES:
        assert points[service_only | {("outcome", outcome)}].value == 0
    # Every handoff series names its service, as every other service's metric does.
    for name in ("statemigrate_handoffs", "statemigrate_handoff_takeovers"):
        assert all(dict(attributes).get("service") for attributes in found[name][1])
    _, points = found["statemigrate_restores"]
    for outcome in RESTORE_OUTCOMES:
        assert points[frozenset({("service", "zeroes"), ("outcome", outcome)})].value == 0
    _, points = found["statemigrate_commits"]
    for outcome in COMMIT_OUTCOMES:
        labels = {("service", "zeroes"), ("store", "memory"), ("outcome", outcome)}
        assert points[frozenset(labels)].value == 0


def test_handoff_instruments_carry_the_service(reader) -> None:
    """As with prometheus_client: both sides of a handoff name the service."""
    record_handoff(
        HandoffReport(
            outcome="failed",
            transport="spawn",
            stage="handshake",
            pause_seconds=0.25,
            timings={"total": 1.5},
        ),
        service="handed",
    )
    record_takeover(
        service="taken", predecessor_died=False, pause_seconds=0.5, pieces=(), final="snapshot"
    )
    found = collected(reader)
    handed = frozenset({("service", "handed"), ("outcome", "failed")})
    _, points = found["statemigrate_handoffs"]
    assert points[handed | {("stage", "handshake")}].value == 1
    _, points = found["statemigrate_handoff_pause_seconds"]
    assert points[handed].sum == 0.25
    _, points = found["statemigrate_handoff_duration_seconds"]
    assert points[handed].sum == 1.5
    taken = frozenset({("service", "taken"), ("outcome", "committed")})
    _, points = found["statemigrate_last_takeover_pause_seconds"]
    assert points[taken].value == 0.5
    _, points = found["statemigrate_handoff_takeover_pause_seconds"]
    assert points[taken].sum == 0.5
