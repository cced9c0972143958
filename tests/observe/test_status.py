"""A service's restore status: its states, progress and estimate, readiness, policy."""

from __future__ import annotations

import json

import pytest

import statemigrate as sm
from statemigrate._observe import _status
from statemigrate._observe._status import StatusTracker
from statemigrate.reference import KVCacheV1, build_registry


def test_a_fresh_service_is_starting_and_not_ready() -> None:
    status = sm.Service("observed").status
    assert (status.state, status.ready) == ("starting", False)
    code, body = status.readiness()
    assert code == 503 and body["state"] == "starting" and body["ready"] is False
    assert json.loads(json.dumps(body)) == body


def test_a_restore_goes_from_restoring_to_restored_with_rising_progress(
    sink, committed, fresh
) -> None:
    service, commit = committed
    restored = fresh()
    seen: list[str] = []
    original = restored._tracker.progress

    def watch(ratio: float) -> None:
        original(ratio)
        seen.append(restored.status.state)

    restored._tracker.progress = watch
    report = restored.restore(commit)
    assert seen and set(seen) == {"restoring"}
    ratios = [value for value, _ in sink.values("statemigrate_restore_progress_ratio")]
    assert ratios[0] == 0.0 and ratios[-1] == 1.0 and ratios == sorted(ratios)
    assert len(ratios) >= 4  # start, decoded, migrated, applied
    assert [v for v, _ in sink.values("statemigrate_restoring")] == [1.0, 0.0]
    status = restored.status
    assert (status.state, status.ready, status.progress) == ("restored", True, 1.0)
    assert (status.generation, status.snapshot_id) == (report.generation, report.snapshot_id)
    assert status.readiness()[0] == 200


def test_the_estimate_is_the_pace_so_far(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        now = 100.0

        def monotonic(self) -> float:
            return self.now

        def time(self) -> float:
            return 1e9 + self.now

    clock = Clock()
    monkeypatch.setattr(_status, "time", clock)
    tracker = StatusTracker("observed")
    tracker.restoring()
    assert tracker.status.eta_seconds is None  # no progress yet: no estimate
    clock.now = 104.0
    tracker.progress(0.25)
    assert tracker.status.eta_seconds == pytest.approx(12.0)  # 4 s for a quarter
    clock.now = 106.0
    assert tracker.status.eta_seconds == pytest.approx(18.0)  # read later, slower pace
    tracker.restored(generation=3, snapshot_id="x")
    assert tracker.status.eta_seconds is None


def test_a_failed_restore_is_failed_unless_the_service_was_ready(committed, fresh) -> None:
    service, commit = committed
    stranger = sm.Service("someone-else", registry=build_registry())
    stranger.register(KVCacheV1())
    with pytest.raises(sm.RestoreError):
        stranger.restore(commit)
    status = stranger.status
    assert (status.state, status.ready) == ("failed", False)
    assert status.reason is not None and "someone-else" in status.reason

    # A restore that fails changes nothing: a ready service stays as it was.
    restored = fresh()
    restored.restore(commit)
    before = restored.status
    with pytest.raises(sm.RestoreError):
        restored.restore(b"not a snapshot")
    assert restored.status == before


def test_start_from_nothing_is_a_cold_start() -> None:
    service = sm.Service("observed")
    assert service.start_from(None) is None
    status = service.status
    assert (status.state, status.reason, status.ready) == (
        "cold_start", "no snapshot to restore", True,
    )


def test_start_from_applies_the_policy(committed, fresh) -> None:
    service, commit = committed
    damaged = bytearray(commit.open())
    damaged[-1] ^= 1

    refusing = fresh()
    with pytest.raises(sm.RestoreError):
        refusing.start_from(bytes(damaged))
    assert refusing.status.state == "failed"

    cold = fresh(on_restore_failure="serve_cold")
    assert cold.start_from(bytes(damaged)) is None
    status = cold.status
    assert status.state == "cold_start" and status.ready
    assert status.reason is not None and status.reason.startswith("restore failed during")

    assert fresh().start_from(commit) is not None  # a sound snapshot restores


def test_one_refusing_component_makes_the_service_refuse(committed) -> None:
    service, commit = committed
    damaged = bytes(commit.open())[:-1]
    mixed = sm.Service("observed", registry=build_registry(), on_restore_failure="serve_cold")
    mixed.register(KVCacheV1())
    mixed.register(KVCacheV1(), instance="sessions", on_restore_failure="refuse")
    with pytest.raises(sm.RestoreError):
        mixed.start_from(damaged)
    mixed.unregister("kvcache", instance="sessions")
    assert mixed.start_from(damaged) is None and mixed.status.state == "cold_start"


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(sm.ConfigurationError) as caught:
        sm.Service("observed", on_restore_failure="ignore")  # type: ignore[arg-type]
    assert caught.value.option == "on_restore_failure"
    service = sm.Service("observed", registry=build_registry())
    with pytest.raises(sm.ConfigurationError):
        service.register(KVCacheV1(), on_restore_failure="maybe")  # type: ignore[arg-type]
    assert service.components == ()


def test_a_take_over_stays_restoring_until_commit() -> None:
    tracker = StatusTracker("observed")
    tracker.take_over()
    assert (tracker.status.state, tracker.status.reason) == (
        "restoring", "waiting for the snapshot",
    )
    tracker.restoring()
    tracker.restored(generation=7, snapshot_id="abc")
    status = tracker.status
    assert (status.state, status.reason, status.progress) == (
        "restoring", "waiting for COMMIT", 1.0,
    )
    assert not status.ready
    tracker.took_over()
    status = tracker.status
    assert (status.state, status.generation, status.snapshot_id) == ("restored", 7, "abc")


def test_a_failed_take_over_is_failed_even_after_a_cold_start() -> None:
    tracker = StatusTracker("observed")
    tracker.cold_start("first start")
    tracker.take_over()
    tracker.restoring()
    tracker.failed("bad snapshot")
    tracker.take_over_failed("take-over failed: bad snapshot")
    assert (tracker.status.state, tracker.status.reason) == (
        "failed", "take-over failed: bad snapshot",
    )
