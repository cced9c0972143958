"""The prometheus_client backend: every instrument registered, values as the reports say."""

from __future__ import annotations

import threading
import time

import pytest
from chain_releases import RELEASES, cache_of, write_chain
from chain_releases import SERVICE as CACHE_SERVICE
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from restore_children.ledger import tracked_ledger_service

import statemigrate as sm
import statemigrate.metrics
from statemigrate._observe._instruments import (
    COMMIT_OUTCOMES,
    HANDOFF_STAGES,
    INSTRUMENTS,
    RESTORE_OUTCOMES,
    TAKEOVER_OUTCOMES,
)
from statemigrate._runtime._chain import split_chain
from statemigrate._snapshot._format import open_snapshot
from statemigrate.handoff._report import record_takeover
from statemigrate.reference import KVCacheV1, build_registry


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    statemigrate.metrics.use_prometheus(registry)
    return registry


def test_every_instrument_is_registered_before_anything_happens(registry) -> None:
    names = {family.name for family in registry.collect()}
    # prometheus_client names a counter's family without its _total suffix.
    assert {i.name.removesuffix("_total") for i in INSTRUMENTS} == names
    assert registry.get_sample_value("statemigrate_build_info", {"version": sm.__version__}) == 1


def test_a_restore_is_recorded_as_its_report_says(registry, committed, fresh) -> None:
    service, commit = committed
    restored = fresh()
    report = restored.restore(commit)
    labels = {"service": "observed"}

    def sample(name: str, **more: str) -> float | None:
        return registry.get_sample_value(name, {**labels, **more})

    assert sample("statemigrate_restores_total", outcome="restored") == 1
    assert (
        sample(
            "statemigrate_component_restores_total",
            component="kvcache",
            from_version="1",
            to_version="2",
        )
        == 1
    )
    for phase, seconds in report.timings.items():
        assert sample("statemigrate_restore_duration_seconds_count", phase=phase) == 1
        assert sample("statemigrate_restore_duration_seconds_sum", phase=phase) == (
            pytest.approx(seconds, rel=1e-9)
        )
    assert sample("statemigrate_generation") == report.generation == 1
    assert sample("statemigrate_restoring") == 0
    assert sample("statemigrate_restore_progress_ratio") == 1
    # The writer's side, recorded in the same registry (one process here).
    assert sample("statemigrate_snapshot_bytes") == commit.snapshot.size
    assert sample("statemigrate_snapshot_duration_seconds_count") == 1
    assert sample("statemigrate_commits_total", store="memory", outcome="committed") == 1

    assert restored.restore(commit).skipped
    assert sample("statemigrate_restores_total", outcome="skipped") == 1
    assert sample("statemigrate_restore_duration_seconds_count", phase="read") == 1


STALENESS = (
    "statemigrate_last_snapshot_timestamp_seconds",
    "statemigrate_generation",
    "statemigrate_snapshot_bytes",
)


def test_checkpoints_that_fail_to_commit_leave_the_last_snapshot_gauges(
    registry, checkpointing
) -> None:
    """While the store is down, the gauges an operator alerts on still describe the
    snapshot it holds: the staleness alert can fire."""

    def gauges() -> dict[str, float | None]:
        labels = {"service": "observed"}
        return {name: registry.get_sample_value(name, labels) for name in STALENESS}

    good = checkpointing.checkpointer.checkpoint_now().committed
    assert good is not None
    kept = gauges()
    assert kept["statemigrate_generation"] == good.snapshot.generation == 1
    assert kept["statemigrate_snapshot_bytes"] == good.snapshot.size
    checkpointing.store.down = True
    checkpointing.changed_and_failed(3)
    assert gauges() == kept
    counted = {"service": "observed", "store": "unreachable"}
    assert (
        registry.get_sample_value("statemigrate_commits_total", {**counted, "outcome": "failed"})
        == 3
    )
    # The snapshots were taken all the same.
    assert (
        registry.get_sample_value(
            "statemigrate_snapshot_duration_seconds_count", {"service": "observed"}
        )
        == 4
    )

    checkpointing.store.down = False
    again = checkpointing.checkpointer.checkpoint_now().committed
    assert again is not None and again.snapshot.generation == 5
    now = gauges()
    assert now["statemigrate_generation"] == 5
    assert now["statemigrate_snapshot_bytes"] == again.snapshot.size
    stamped, before = (g["statemigrate_last_snapshot_timestamp_seconds"] for g in (now, kept))
    assert stamped is not None and before is not None and stamped >= before


def test_a_failed_restore_is_counted_and_nothing_else_moves(registry, committed) -> None:
    service, commit = committed
    other = sm.Service("someone-else")
    with pytest.raises(sm.RestoreError):
        other.restore(commit)
    assert (
        registry.get_sample_value(
            "statemigrate_restores_total", {"service": "someone-else", "outcome": "failed"}
        )
        == 1
    )
    # Created at 0 with the service, and still there.
    assert (
        registry.get_sample_value(
            "statemigrate_restores_total", {"service": "someone-else", "outcome": "restored"}
        )
        == 0
    )
    assert other.status.state == "failed"


def test_enabling_twice_on_one_registry_registers_once(registry, committed, fresh) -> None:
    statemigrate.metrics.use_prometheus(registry)
    service, commit = committed
    fresh().restore(commit)
    assert (
        registry.get_sample_value(
            "statemigrate_restores_total", {"service": "observed", "outcome": "restored"}
        )
        == 1
    )


def test_a_name_taken_in_the_registry_is_a_clear_error() -> None:
    registry = CollectorRegistry()
    Gauge("statemigrate_generation", "someone else's", registry=registry)
    with pytest.raises(sm.ConfigurationError) as caught:
        statemigrate.metrics.use_prometheus(registry)
    assert caught.value.option == "registry"
    assert "statemigrate_generation" in str(caught.value)


def test_disabling_stops_recording(registry, committed, fresh) -> None:
    statemigrate.metrics.disable_metrics()
    service, commit = committed
    fresh().restore(commit)
    # Absent, or at 0 when a service of that name was declared before.
    assert not registry.get_sample_value(
        "statemigrate_restores_total", {"service": "observed", "outcome": "restored"}
    )


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(sm.ConfigurationError, match=r"statemigrate\[prometheus\]"):
        statemigrate.metrics.use_prometheus()
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    with pytest.raises(sm.ConfigurationError, match=r"statemigrate\[opentelemetry\]"):
        statemigrate.metrics.use_opentelemetry()


def test_every_series_an_alert_counts_exists_at_zero_before_any_event(registry) -> None:
    """increase() sees a rise only from a sample before it: a series first scraped at 1
    (a failure counted before any scrape saw it) never fires an alert."""
    service = sm.Service("zeroes")
    sm.Checkpointer(service, sm.MemoryStore(), quiesce=threading.Lock(), export="inline")
    text = generate_latest(registry).decode()
    assert 'statemigrate_handoffs_total{outcome="ready",service="zeroes",stage=""} 0.0' in text

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    for stage in HANDOFF_STAGES:
        assert (
            sample("statemigrate_handoffs_total", service="zeroes", outcome="failed", stage=stage)
            == 0
        )
    for outcome in ("ready", "failed"):
        assert sample("statemigrate_handoff_pause_seconds_count", service="zeroes",
                      outcome=outcome) == 0
        assert sample("statemigrate_handoff_duration_seconds_count", service="zeroes",
                      outcome=outcome) == 0
    for outcome in TAKEOVER_OUTCOMES:
        assert sample("statemigrate_handoff_takeovers_total", service="zeroes",
                      outcome=outcome) == 0
        assert sample("statemigrate_handoff_takeover_pause_seconds_count", service="zeroes",
                      outcome=outcome) == 0
    for outcome in RESTORE_OUTCOMES:
        assert sample("statemigrate_restores_total", service="zeroes", outcome=outcome) == 0
    for outcome in COMMIT_OUTCOMES:
        assert (
            sample("statemigrate_commits_total", service="zeroes", store="memory", outcome=outcome)
            == 0
        )
    # Gauges hold what happened: none is made up before it does.
    timestamp = "statemigrate_last_restore_timestamp_seconds"
    assert sample(timestamp, service="zeroes", outcome="failed") is None


def test_every_handoff_series_names_its_service(registry) -> None:
    """Handoff metrics carry the ``service`` label as every other service's metric
    does: each series, declared or recorded, names the service handed over or taking
    over, and none exists without one."""
    sm.Service("labelled")
    record_takeover(
        service="labelled", predecessor_died=False, pause_seconds=0.5, pieces=("full",),
        final="delta",
    )
    handoff_families = [
        family
        for family in registry.collect()
        if family.name.startswith(("statemigrate_handoff", "statemigrate_last_takeover"))
    ]
    assert {family.name for family in handoff_families} >= {
        "statemigrate_handoffs",
        "statemigrate_handoff_duration_seconds",
        "statemigrate_handoff_pause_seconds",
        "statemigrate_handoff_takeovers",
        "statemigrate_handoff_takeover_pause_seconds",
        "statemigrate_handoff_takeover_pieces",
        "statemigrate_last_takeover_timestamp_seconds",
        "statemigrate_last_takeover_pause_seconds",
    }
    samples = [sample for family in handoff_families for sample in family.samples]
    assert samples and all(sample.labels.get("service") for sample in samples)
    assert registry.get_sample_value(
        "statemigrate_handoff_takeover_pieces_total",
        {"service": "labelled", "kind": "full", "final": "delta"},
    ) == 1
    assert registry.get_sample_value(
        "statemigrate_handoffs_total", {"service": "labelled", "outcome": "ready", "stage": ""}
    ) == 0


def test_a_service_made_before_metrics_are_enabled_has_its_series_at_zero_too() -> None:
    sm.Service("early")
    registry = CollectorRegistry()
    statemigrate.metrics.use_prometheus(registry)
    assert (
        registry.get_sample_value(
            "statemigrate_restores_total", {"service": "early", "outcome": "failed"}
        )
        == 0
    )


def test_the_last_restore_of_each_outcome_is_held_with_its_time(
    registry, committed, fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore at start-up happens before the process's first scrape: no counter shows
    it, the gauges do."""
    _, commit = committed
    service = fresh(on_restore_failure="serve_cold")

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"service": "observed", **labels})

    monkeypatch.setattr(time, "time", lambda: 1000.5)
    assert service.start_from(b"not a snapshot") is None
    timestamp = "statemigrate_last_restore_timestamp_seconds"
    assert sample(timestamp, outcome="failed") == 1000.5
    assert sample(timestamp, outcome="restored") is None
    assert sample("statemigrate_last_restore_duration_seconds") is None

    monkeypatch.setattr(time, "time", lambda: 2000.25)
    report = service.restore(commit)
    assert sample(timestamp, outcome="restored") == 2000.25
    assert sample(timestamp, outcome="failed") == 1000.5
    assert sample("statemigrate_last_restore_duration_seconds") == pytest.approx(
        sum(report.timings.values()), rel=1e-9
    )


def test_a_take_over_holds_its_time_and_its_pause(
    registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A successor takes over once, before its first scrape: the gauges are what an
    alert reads."""
    monkeypatch.setattr(time, "time", lambda: 4321.0)
    record_takeover(
        service="successor",
        predecessor_died=True,
        pause_seconds=0.625,
        pieces=(),
        final="snapshot",
    )
    labels = {"service": "successor", "outcome": "predecessor_died"}
    assert (
        registry.get_sample_value("statemigrate_last_takeover_timestamp_seconds", labels)
        == 4321.0
    )
    assert registry.get_sample_value("statemigrate_last_takeover_pause_seconds", labels) == 0.625
    assert registry.get_sample_value("statemigrate_handoff_takeovers_total", labels) == 1


def test_a_checkpoint_chain_restored_at_start_is_one_restore(registry) -> None:
    """Its base and each delta are pieces of one restore: the mean restore time is per
    start, each phase's seconds the pieces' added."""
    service, ledger = tracked_ledger_service()
    store = sm.MemoryStore()
    checkpointer = sm.Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    for batch in (2_000, 40, 40):
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3
    restored, _ = tracked_ledger_service(started=False)
    report = restored.start_from(store)
    assert report is not None and report.delta  # the last piece: the chain's second delta
    labels = {"service": restored.name}
    assert registry.get_sample_value(
        "statemigrate_restores_total", {**labels, "outcome": "restored"}
    ) == 1
    for phase in ("read", "verify", "decode", "migrate", "validate", "apply"):
        assert registry.get_sample_value(
            "statemigrate_restore_duration_seconds_count", {**labels, "phase": phase}
        ) == 1
    assert (
        registry.get_sample_value(
            "statemigrate_restore_duration_seconds_sum", {**labels, "phase": "read"}
        )
        or 0
    ) >= report.timings["read"]


AGE = "statemigrate_last_restored_snapshot_age_seconds"


def at(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make it ``seconds`` after the epoch, for snapshots taken and restores done."""
    monkeypatch.setattr(time, "time", lambda: seconds)
    monkeypatch.setattr(time, "time_ns", lambda: int(seconds * 1e9))


def test_the_age_of_the_state_restored_is_held_with_it(
    registry, fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that restored a checkpoint taken 10 minutes earlier lost the writes of
    those 10 minutes, and says so: the age is the snapshot's when the restore finished.
    A skipped or failed restore brought nothing back, and leaves it as it was."""
    service = sm.Service("observed", registry=build_registry())
    service.register(KVCacheV1()).set("key", "value")
    at(monkeypatch, 1000.0)
    commit = service.commit(sm.MemoryStore())
    restoring = fresh(on_restore_failure="serve_cold")
    at(monkeypatch, 1600.0)
    report = restoring.start_from(commit)
    assert report is not None and report.created_ns == 1000 * 10**9
    assert registry.get_sample_value(AGE, {"service": "observed"}) == 600.0
    at(monkeypatch, 1700.0)
    assert restoring.restore(commit).skipped
    with pytest.raises(sm.RestoreError):
        restoring.restore(b"not a snapshot")
    assert registry.get_sample_value(AGE, {"service": "observed"}) == 600.0


def test_the_age_of_a_chain_restored_is_its_newest_pieces(
    registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain holds the state of its newest piece: its base's age would claim writes
    lost that its deltas brought back. Folded through a whole-data step into one full
    snapshot made as it is restored, it is as old as that piece all the same."""
    service, ledger = tracked_ledger_service()
    store = sm.MemoryStore()
    checkpointer = sm.Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    for taken, batch in ((100.0, 2_000), (200.0, 40), (300.0, 40)):
        at(monkeypatch, taken)
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3
    restored, _ = tracked_ledger_service(started=False)
    at(monkeypatch, 330.0)
    assert restored.start_from(store) is not None
    assert registry.get_sample_value(AGE, {"service": restored.name}) == 30.0

    chain = write_chain().chain
    newest = open_snapshot(split_chain(chain)[-1]).header.created_ns / 1e9
    at(monkeypatch, newest + 42.0)  # the fold's own snapshot is taken now
    folding = sm.Service(CACHE_SERVICE, registry=RELEASES["drop_note"]())
    folding.register(cache_of(RELEASES["drop_note"]()))
    report = folding.start_from(chain, allow_lossy=True)
    assert report is not None and report.chain == 3
    assert report.created_ns / 1e9 == newest
    assert registry.get_sample_value(AGE, {"service": CACHE_SERVICE}) == pytest.approx(42.0)
