"""The instruments: Prometheus naming, bounded labels, and the path with no backend."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

import pytest

import statemigrate as sm
from statemigrate._observe import _instruments
from statemigrate._observe._instruments import (
    INSTRUMENTS,
    RESTORES,
    Instrument,
    emit,
    enabled,
    use_sink,
)
from statemigrate._runtime._checkpointtake import FORK_POSSIBLE
from statemigrate.reference import KVCacheV1, build_registry

# Every label an instrument may carry; each takes few values (names, versions, phases,
# outcomes, store kinds). Snapshot ids, keys, pids or paths are never labels.
BOUNDED_LABELS = {
    "service",
    "component",
    "store",
    "from_version",
    "to_version",
    "phase",
    "outcome",
    "stage",
    "version",
    "kind",
    "final",
}

NAMED = [
    "statemigrate_snapshot_duration_seconds",
    "statemigrate_restore_duration_seconds",
    "statemigrate_handoff_duration_seconds",
    "statemigrate_handoff_pause_seconds",
    "statemigrate_handoffs_total",
    "statemigrate_restores_total",
    "statemigrate_snapshot_bytes",
    "statemigrate_generation",
    "statemigrate_last_snapshot_timestamp_seconds",
    "statemigrate_restoring",
    "statemigrate_restore_progress_ratio",
]


def test_every_required_metric_is_defined_once() -> None:
    names = [instrument.name for instrument in INSTRUMENTS]
    assert len(names) == len(set(names))
    assert [name for name in NAMED if name not in names] == []
    assert next(i for i in INSTRUMENTS if i.name.startswith("statemigrate_restore_dur")).labels == (
        "service",
        "phase",
    )


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=lambda i: i.name)
def test_names_follow_prometheus_conventions(instrument: Instrument) -> None:
    name = instrument.name
    assert re.fullmatch(r"statemigrate_[a-z_]+", name)
    assert name.endswith("_total") == (instrument.kind == "counter")
    if instrument.unit:
        assert name.endswith("_" + instrument.unit)
    if instrument.kind == "histogram":
        assert instrument.unit == "seconds" and list(instrument.buckets) == sorted(
            instrument.buckets
        )
    assert set(instrument.labels) <= BOUNDED_LABELS
    assert instrument.help.endswith(".")


def test_with_no_sink_nothing_is_recorded_and_nothing_fails(committed, fresh) -> None:
    assert not enabled() and _instruments.active_sink() is None
    service, commit = committed
    restored = fresh()
    report = restored.restore(commit)
    assert not report.skipped and restored.status.state == "restored"
    emit(RESTORES, 1.0, "x", "restored")  # a no-op, not an error


def test_with_a_sink_the_same_calls_are_recorded(sink, committed, fresh) -> None:
    """Control for the test above: the calls it makes do record once a sink is in."""
    service, commit = committed
    fresh().restore(commit)
    assert sink.values("statemigrate_restores_total") == [(1.0, ("observed", "restored"))]
    assert enabled()


def test_a_sink_that_raises_is_logged_and_the_restore_goes_on(
    committed, fresh, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
            raise RuntimeError("backend down")

    use_sink(Broken())
    service, commit = committed
    restored = fresh()
    with caplog.at_level(logging.ERROR, logger="statemigrate"):
        report = restored.restore(commit)
    assert not report.skipped and restored.status.ready
    assert "recording statemigrate_restores_total failed" in caplog.text


def test_snapshot_and_commit_record_size_generation_time_and_store(sink) -> None:
    service = sm.Service("observed")
    store = sm.MemoryStore()
    first = service.commit(store)
    second = service.commit(store)
    assert sink.values("statemigrate_snapshot_bytes")[-1] == (second.snapshot.size, ("observed",))
    assert sink.values("statemigrate_generation") == [(1, ("observed",)), (2, ("observed",))]
    assert first.snapshot.generation == 1
    assert [labels for _, labels in sink.values("statemigrate_commits_total")] == [
        ("observed", "memory", "committed")
    ] * 2
    (_, labels), _ = sink.values("statemigrate_commit_duration_seconds")
    assert labels == ("observed", "memory")
    assert len(sink.values("statemigrate_last_snapshot_timestamp_seconds")) == 2


def test_a_snapshot_committed_nowhere_moves_no_gauge_of_the_last_snapshot(sink) -> None:
    """A snapshot taken for a handoff (or by a caller) is in no store: it counts in the
    snapshot time only, not as the snapshot a restart would find."""
    sm.Service("observed").snapshot()
    assert [name for name, _, _ in sink.records] == ["statemigrate_snapshot_duration_seconds"]


def test_a_failed_commit_is_counted_as_failed(sink) -> None:
    class Full:
        def commit(self, data: object) -> object:
            raise sm.StoreError("commit", "full", "no space left")

    with pytest.raises(sm.StoreError):
        sm.Service("observed").commit(Full())  # type: ignore[arg-type]
    assert sink.values("statemigrate_commits_total") == [(1.0, ("observed", "full", "failed"))]


@pytest.mark.parametrize("export", ["inline", *(["fork"] if FORK_POSSIBLE else [])])
def test_every_piece_of_an_incremental_checkpoint_is_a_snapshot_observed(
    sink, export: Literal["inline", "fork"]
) -> None:
    """Incremental checkpoints, bases and deltas alike: the snapshot time observes one
    snapshot per checkpoint committed, a checkpoint skipped as unchanged observes none,
    and a pre-copy source's deltas are observed too."""
    service = sm.Service("observed", registry=build_registry())
    cache = service.register(KVCacheV1())
    service.start_cold("a test")
    checkpointer = sm.Checkpointer(
        service, sm.MemoryStore(), incremental=True, export=export, max_delta_ratio=100.0
    )
    for i in range(400):
        cache.set(f"key:{i}", "first")
    chains = []
    for n in range(6):
        cache.set(f"key:{n}", f"changed {n}")
        report = checkpointer.checkpoint_now()
        assert report.committed is not None
        chains.append(report.committed.snapshot.chain)
    assert checkpointer.checkpoint_now().skipped
    checkpointer.close()
    assert chains == [1, 2, 3, 4, 5, 6]  # a base, then deltas
    committed = sink.values("statemigrate_commits_total")
    assert len(committed) == 6
    assert len(sink.values("statemigrate_snapshot_duration_seconds")) == 6
    with service.precopy_source() as source:
        source.start()
        source.full()
        cache.set("key:0", "again")
        source.delta()
    assert len(sink.values("statemigrate_snapshot_duration_seconds")) == 8
