"""The suggested alerting rules (docs/alerts.yml) fire on what Prometheus really sees:
scrapes before and after each event, across a cold start, three hot restarts and a
move whose final checkpoint fails.

Five processes of one service run one after the other on one scrape target, each
with a prometheus_client registry of its own; the events are the library's own
(a start-up restore that fails, checkpoints whose commits fail, a handoff's reports,
a start that restores an old checkpoint).
A small model of Prometheus stores each scrape, marks series stale when they vanish,
and evaluates the rules' expressions with the semantics they rely on: ``increase()``
sees a change only between two samples of one series (its extrapolation scales a
positive increase and leaves zero at zero, so ``> 0`` is decided by the raw one), a
counter that drops is a reset, and an instant value is the last sample within five
minutes unless a staleness marker followed it. The same samples, written as a series
file, are checked by the real ``promtool test rules`` when it is installed.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import statemigrate as sm
import statemigrate.metrics
from statemigrate._observe import _backends
from statemigrate._observe._instruments import use_sink
from statemigrate.handoff._report import HandoffReport, record_handoff, record_takeover
from statemigrate.reference import KVCacheV1, build_registry
from statemigrate.stores import Buffer
from statemigrate.stores._memory import MemoryRef

from .conftest import Unreachable

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
SERVICE = "alerted"
TARGET = {"instance": "svc:9100", "job": "svc"}
SCRAPE = 15  # seconds between scrapes
LOOKBACK = 300  # Prometheus' lookback for an instant value
END = 7200

# The samples the rules and the tests below read: a scrape keeps only these, as
# collecting every histogram's buckets 480 times would make the run slow.
SCRAPED = frozenset(
    {
        "statemigrate_commits_total",
        "statemigrate_handoff_takeover_pause_seconds_count",
        "statemigrate_handoff_takeovers_total",
        "statemigrate_handoffs_total",
        "statemigrate_last_restore_timestamp_seconds",
        "statemigrate_last_restored_snapshot_age_seconds",
        "statemigrate_last_snapshot_timestamp_seconds",
        "statemigrate_last_takeover_pause_seconds",
        "statemigrate_last_takeover_timestamp_seconds",
        "statemigrate_restores_total",
        "statemigrate_restoring",
    }
)

Labels = frozenset[tuple[str, str]]
Series = tuple[str, Labels]
Points = list[tuple[float, float | None]]


@dataclass
class Prometheus:
    """The samples a Prometheus server holds of one target, and PromQL's few
    functions the rules use."""

    samples: dict[Series, Points] = field(default_factory=dict)
    scrapes: list[float] = field(default_factory=list)
    names: dict[str, list[Series]] = field(default_factory=dict)

    def scrape(self, registry: CollectorRegistry | None, at: float) -> None:
        """One scrape at ``at``: every sample of ``registry`` (``None``: the target is
        down); a series that was there and is not any more gets a staleness marker."""
        self.scrapes.append(at)
        seen: set[Series] = set()
        if registry is not None:
            for family in registry.restricted_registry(SCRAPED).collect():
                for sample in family.samples:
                    key = (sample.name, frozenset({**sample.labels, **TARGET}.items()))
                    seen.add(key)
                    if key not in self.samples:
                        self.samples[key] = []
                        self.names.setdefault(sample.name, []).append(key)
                    self.samples[key].append((at, sample.value))
        for key, points in self.samples.items():
            if key not in seen and points[-1][1] is not None:
                points.append((at, None))

    def select(self, name: str, **match: str) -> Iterator[tuple[Labels, Points]]:
        for key in self.names.get(name, ()):
            if set(match.items()) <= key[1]:
                yield key[1], self.samples[key]

    def instant(self, at: float, name: str, **match: str) -> dict[Labels, float]:
        """The instant vector ``name{match}`` at ``at``."""
        found = {}
        for labels, points in self.select(name, **match):
            # Points are in time order: the last one at or before ``at``.
            index = bisect.bisect_right(points, at, key=lambda point: point[0])
            if index:
                t, v = points[index - 1]
                if at - t <= LOOKBACK and v is not None:
                    found[labels] = v
        return found

    def window(
        self, at: float, seconds: float, name: str, **match: str
    ) -> dict[Labels, list[float]]:
        found = {}
        for labels, points in self.select(name, **match):
            first = bisect.bisect_left(points, at - seconds, key=lambda point: point[0])
            last = bisect.bisect_right(points, at, key=lambda point: point[0])
            values = [v for _, v in points[first:last] if v is not None]
            if values:
                found[labels] = values
        return found

    def increase(self, at: float, seconds: float, name: str, **match: str) -> dict[Labels, float]:
        """``increase(name{match}[seconds])`` at ``at``, without the extrapolation."""
        found = {}
        for labels, values in self.window(at, seconds, name, **match).items():
            if len(values) >= 2:
                found[labels] = sum(
                    b - a if b >= a else b for a, b in zip(values, values[1:], strict=False)
                )
        return found


def without(labels: Labels, *names: str) -> Labels:
    return frozenset((k, v) for k, v in labels if k not in names)


def only(labels: Labels, *names: str) -> Labels:
    return frozenset((k, v) for k, v in labels if k in names)


Rule = Callable[[Prometheus, float], set[Labels]]

# Each rule of docs/alerts.yml as this model evaluates it: its expression, normalised
# to one line, and the label sets it yields at a time.
RULE_MODELS: dict[str, tuple[str, Rule]] = {
    "StateHandoffFailed": (
        'increase(statemigrate_handoffs_total{outcome="failed"}[15m]) > 0',
        lambda p, at: {
            labels
            for labels, v in p.increase(
                at, 900, "statemigrate_handoffs_total", outcome="failed"
            ).items()
            if v > 0
        },
    ),
    "StateHandoffPauseLong": (
        "statemigrate_last_takeover_pause_seconds > 0.5 and time() -"
        " statemigrate_last_takeover_timestamp_seconds < 3600",
        lambda p, at: {
            labels
            for labels, v in p.instant(at, "statemigrate_last_takeover_pause_seconds").items()
            if v > 0.5 and at - taken(p, at).get(labels, -1e18) < 3600
        },
    ),
    "StateRestoreFailed": (
        'time() - statemigrate_last_restore_timestamp_seconds{outcome="failed"} < 900'
        " unless on (instance, service)"
        ' statemigrate_last_restore_timestamp_seconds{outcome="restored"} > ignoring (outcome)'
        ' statemigrate_last_restore_timestamp_seconds{outcome="failed"}',
        lambda p, at: {
            labels
            for labels, v in p.instant(
                at, "statemigrate_last_restore_timestamp_seconds", outcome="failed"
            ).items()
            if at - v < 900 and not restored_since(p, at, labels, v)
        },
    ),
    "StateRestoreStuck": (
        "statemigrate_restoring == 1",
        lambda p, at: held_for(p, at, 600, "statemigrate_restoring", 1.0),
    ),
    "StateRestoredStale": (
        "statemigrate_last_restored_snapshot_age_seconds > 300 and on (instance, service)"
        ' time() - statemigrate_last_restore_timestamp_seconds{outcome="restored"} < 3600',
        lambda p, at: {
            labels
            for labels, v in p.instant(
                at, "statemigrate_last_restored_snapshot_age_seconds"
            ).items()
            if v > 300 and only(labels, "instance", "service") in restored_within(p, at, 3600)
        },
    ),
    "StateSnapshotStale": (
        "time() - statemigrate_last_snapshot_timestamp_seconds > 900",
        lambda p, at: {
            labels
            for labels, v in p.instant(at, "statemigrate_last_snapshot_timestamp_seconds").items()
            if at - v > 900
        },
    ),
    "StateCommitsFailing": (
        "( sum by (instance, service, store) ("
        ' increase(statemigrate_commits_total{outcome="failed"}[10m])) > 0'
        " and on (instance, service)"
        " time() - statemigrate_last_snapshot_timestamp_seconds > 300 )"
        " or ( sum by (instance, service, store) ("
        ' increase(statemigrate_commits_total{outcome="failed"}[10m]))'
        " > 0 unless sum by (instance, service, store) ("
        ' increase(statemigrate_commits_total{outcome="committed"}[10m])) > 0 )'
        " or ( sum by (instance, service, store) ("
        ' statemigrate_commits_total{outcome="failed"}) > 0'
        " unless sum by (instance, service, store) ("
        ' statemigrate_commits_total{outcome="committed"}) > 0 )',
        lambda p, at: {
            labels
            for labels in summed(
                p.increase(at, 600, "statemigrate_commits_total", outcome="failed")
            )
            if only(labels, "instance", "service") in committed_before(p, at, 300)
        }
        | (
            summed(p.increase(at, 600, "statemigrate_commits_total", outcome="failed"))
            - summed(p.increase(at, 600, "statemigrate_commits_total", outcome="committed"))
        )
        | (
            summed(p.instant(at, "statemigrate_commits_total", outcome="failed"))
            - summed(p.instant(at, "statemigrate_commits_total", outcome="committed"))
        ),
    ),
    "StateStoreShared": (
        "sum by (instance, service, store) ("
        ' increase(statemigrate_commits_total{outcome="conflict"}[10m])) > 0',
        lambda p, at: summed(
            p.increase(at, 600, "statemigrate_commits_total", outcome="conflict")
        ),
    ),
}


class Shared(sm.MemoryStore):
    """A memory store another process has committed to since this one did."""

    def __init__(self) -> None:
        super().__init__(name="shared")
        self.other_writer = False

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
        if self.other_writer:
            raise sm.StoreSharedError("memory:shared")
        return super().commit(data)


def taken(p: Prometheus, at: float) -> dict[Labels, float]:
    return p.instant(at, "statemigrate_last_takeover_timestamp_seconds")


def restored_since(p: Prometheus, at: float, failed: Labels, when: float) -> bool:
    """Whether the same instance and service restored after its failed restore at
    ``when`` (``unless on (instance, service) restored > ignoring (outcome) failed``)."""
    key = only(failed, "instance", "service")
    restored = p.instant(at, "statemigrate_last_restore_timestamp_seconds", outcome="restored")
    return any(
        only(labels, "instance", "service") == key and v > when for labels, v in restored.items()
    )


def restored_within(p: Prometheus, at: float, seconds: float) -> set[Labels]:
    """The instances and services that restored less than ``seconds`` ago (``and on
    (instance, service) time() - ...{outcome="restored"} < seconds``)."""
    restored = p.instant(at, "statemigrate_last_restore_timestamp_seconds", outcome="restored")
    return {
        only(labels, "instance", "service") for labels, v in restored.items() if at - v < seconds
    }


def committed_before(p: Prometheus, at: float, seconds: float) -> set[Labels]:
    """The instances and services whose store's latest snapshot is more than ``seconds``
    behind (``and on (instance, service) time() - ..._last_snapshot_... > seconds``)."""
    last = p.instant(at, "statemigrate_last_snapshot_timestamp_seconds")
    return {only(labels, "instance", "service") for labels, v in last.items() if at - v > seconds}


def held_for(p: Prometheus, at: float, seconds: float, name: str, value: float) -> set[Labels]:
    """``name == value`` with ``for: seconds``: the series whose instant value was
    ``value`` at every evaluation (one per scrape) from ``seconds`` ago until ``at``."""
    evaluations = [s for s in p.scrapes if at - seconds <= s <= at]
    if not evaluations or evaluations[0] > at - seconds:
        return set()  # not evaluated that long yet
    held = set(p.instant(evaluations[0], name))
    for when in evaluations:
        held &= {labels for labels, v in p.instant(when, name).items() if v == value}
    return held


def summed(increases: dict[Labels, float]) -> set[Labels]:
    """``sum by (instance, service, store) (...) > 0``."""
    sums: dict[Labels, float] = {}
    for labels, v in increases.items():
        key = only(labels, "instance", "service", "store")
        sums[key] = sums.get(key, 0.0) + v
    return {labels for labels, v in sums.items() if v > 0}


# What the rules used to say, for the processes below: each of these never fires.
OLD_RULES: dict[str, Rule] = {
    "takeovers increase": lambda p, at: {
        labels
        for labels, v in p.increase(at, 300, "statemigrate_handoff_takeovers_total").items()
        if v > 0
    },
    # histogram_quantile() of a rate() is NaN unless some bucket's rate is above 0.
    "takeover pause rate": lambda p, at: {
        labels
        for labels, v in p.increase(
            at, 3600, "statemigrate_handoff_takeover_pause_seconds_count"
        ).items()
        if v > 0
    },
    "restores failed increase": lambda p, at: {
        labels
        for labels, v in p.increase(
            at, 900, "statemigrate_restores_total", outcome="failed"
        ).items()
        if v > 0
    },
}


def rules_file() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# The rules with a "for" clause, and its duration in seconds (the models include it).
HELD = {"StateRestoreStuck": "10m"}


def test_each_rule_of_the_file_is_the_one_modelled() -> None:
    assert {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules_file()} == {
        name: " ".join(expr.split()) for name, (expr, _) in RULE_MODELS.items()
    }
    for rule in rules_file():
        assert set(re.findall(r"statemigrate_[a-z_]+", rule["expr"])) <= SCRAPED, rule["alert"]
    assert {rule["alert"]: rule["for"] for rule in rules_file() if "for" in rule} == HELD


@dataclass
class Clock:
    now: float = 0.0


@dataclass
class Run:
    """Five processes of one service, scraped every 15 s, and what Prometheus kept."""

    prometheus: Prometheus
    firing: dict[float, dict[str, set[Labels]]]
    old: dict[float, dict[str, set[Labels]]]

    def fires(self, at: float) -> set[str]:
        return {name for name, found in self.firing[at].items() if found}


def process(clock: Clock) -> tuple[CollectorRegistry, sm.Service]:
    """A new process: its own registry, metrics enabled, the service created."""
    registry = CollectorRegistry()
    statemigrate.metrics.use_prometheus(registry)
    service = sm.Service(SERVICE, registry=build_registry(), on_restore_failure="serve_cold")
    service.register(KVCacheV1())
    return registry, service


def take_over(service: sm.Service, snapshot: bytes, pause: float) -> None:
    """What a successor reports of its take-over: the restore of the snapshot it was
    handed, then the take-over, before it serves (and is first scraped)."""
    with service._one_restore():
        service.restore(snapshot)
    record_takeover(
        service=service.name,
        predecessor_died=False,
        pause_seconds=pause,
        pieces=(),
        final="snapshot",
    )


def handed_over(outcome: str, stage: str | None = None) -> None:
    """What the old process reports of a handoff attempt."""
    record_handoff(
        HandoffReport(
            outcome=outcome,  # type: ignore[arg-type]
            transport="spawn",
            stage=stage,
            pause_seconds=0.7,
            timings={"total": 1.0},
        ),
        service=SERVICE,
    )


def simulate(monkeypatch: pytest.MonkeyPatch) -> Run:
    clock = Clock()
    monkeypatch.setattr(time, "time", lambda: clock.now)
    # Snapshots are stamped with it too: a restore's age is the clock's.
    monkeypatch.setattr(time, "time_ns", lambda: int(clock.now * 1e9))
    prometheus = Prometheus()
    firing: dict[float, dict[str, set[Labels]]] = {}
    old: dict[float, dict[str, set[Labels]]] = {}
    current: list[CollectorRegistry | None] = [None]

    def until(end: float, *events: tuple[float, Callable[[], None]]) -> None:
        """Scrape and evaluate every 15 s up to ``end``; run each event at its time."""
        pending = sorted(events, key=lambda event: event[0])
        while clock.now + SCRAPE <= end:
            while pending and clock.now < pending[0][0] < clock.now + SCRAPE:
                clock.now, event = pending.pop(0)
                event()
            clock.now = (clock.now // SCRAPE + 1) * SCRAPE
            prometheus.scrape(current[0], clock.now)
            now = clock.now
            firing[now] = {n: rule(prometheus, now) for n, (_, rule) in RULE_MODELS.items()}
            old[now] = {n: rule(prometheus, now) for n, rule in OLD_RULES.items()}
        assert not pending, pending

    # Process 1 starts cold: its restore at start fails before its first scrape.
    clock.now = 1.0
    registry, service = process(clock)
    assert service.start_from(b"not a snapshot") is None
    store = Unreachable()
    checkpointer = sm.Checkpointer(service, store, quiesce=threading.Lock(), export="inline")
    current[0] = registry
    cache = service.components[0].obj
    assert isinstance(cache, KVCacheV1)

    def commit_fails() -> None:
        store.down = True
        cache.set("key", "changed")
        with pytest.raises(sm.StoreError):
            checkpointer.checkpoint_now()

    until(1200, (40, commit_fails))
    snapshot = service.snapshot()[0].to_bytes()
    handed_over("ready")  # its last act: a handoff that succeeds; it exits unscraped

    # Process 2 takes over at 1200 after a long pause, then fails to hand over at 1300.
    clock.now = 1200.5
    registry, service = process(clock)
    take_over(service, snapshot, pause=0.7)
    current[0] = registry
    until(2000, (1300, lambda: handed_over("failed", "handshake")))
    snapshot = service.snapshot()[0].to_bytes()
    handed_over("ready")

    # Process 3 takes over at 2000, with a long pause again; at 2101 s another
    # process has committed to its store, and its checkpoint is refused.
    clock.now = 2000.5
    registry, service = process(clock)
    take_over(service, snapshot, pause=0.9)
    shared = Shared()
    sharing = sm.Checkpointer(service, shared, quiesce=threading.Lock(), export="inline")
    current[0] = registry

    def commit_refused() -> None:
        shared.other_writer = True
        cache3 = service.components[0].obj
        assert isinstance(cache3, KVCacheV1)
        cache3.set("key", "changed again")
        with pytest.raises(sm.StoreSharedError):
            sharing.checkpoint_now()

    until(2400, (2101, commit_refused))
    snapshot = service.snapshot()[0].to_bytes()
    handed_over("ready")

    # Process 4 takes over at 2400 with a short pause, and checkpoints every 30 s to
    # a store that fails one commit at 2540 s (no alert), then goes down after its
    # commit at 2690 s: its checkpoints fail from 2720 s on, and so does its final one
    # at 3301 s, as it is moved; it exits unscraped.
    clock.now = 2400.5
    registry, service = process(clock)
    take_over(service, snapshot, pause=0.01)
    moved = Unreachable()
    checkpoints = sm.Checkpointer(service, moved, quiesce=threading.Lock(), export="inline")
    current[0] = registry
    cache4 = service.components[0].obj
    assert isinstance(cache4, KVCacheV1)

    def checkpoint() -> None:
        cache4.set("key", f"written at {clock.now}")
        moved.down = clock.now > 2700 or clock.now == 2540
        if moved.down:
            with pytest.raises(sm.StoreError):
                checkpoints.checkpoint_now()
        else:
            assert checkpoints.checkpoint_now().committed is not None

    until(3300, *((float(at), checkpoint) for at in range(2420, 3302, 30)))

    # Process 5 starts at 3302 s where the store can be reached again, restores the
    # checkpoint of 2690 s (the writes since are lost) and checkpoints every 30 s.
    clock.now = 3302.0
    moved.down = False
    registry, service = process(clock)
    report = service.start_from(moved)
    assert report is not None and report.created_ns == 2690 * 10**9
    restarted = sm.Checkpointer(service, moved, quiesce=threading.Lock(), export="inline")
    current[0] = registry
    cache5 = service.components[0].obj
    assert isinstance(cache5, KVCacheV1)

    def checkpoint_again() -> None:
        cache5.set("key", f"written at {clock.now}")
        assert restarted.checkpoint_now().committed is not None

    until(END, *((float(at), checkpoint_again) for at in range(3320, int(END), 30)))
    return Run(prometheus, firing, old)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        previous = use_sink(None)
        try:
            yield simulate(monkeypatch)
        finally:
            use_sink(previous)


def test_each_rule_fires_while_its_situation_lasts_and_only_then(run: Run) -> None:
    expected = {
        # The start-up restore failed at 1 s: 15 minutes from then.
        "StateRestoreFailed": [(15, 900)],
        # Process 1 never committed, and its first commit failed at 40 s: until it
        # ends, its counters say so. Process 4's store went down after its
        # commit at 2690 s: from 5 minutes after it (its first failure was at 2720 s)
        # until process 5 is scraped without its failures, restored and committing.
        "StateCommitsFailing": [(45, 1200), (3000, 3315)],
        # Processes 2 and 3 took over with long pauses; process 4's is short.
        "StateHandoffPauseLong": [(1215, 2400)],
        # Process 2's attempt failed at 1300 s: while its last scrape at 0 (1290 s)
        # is within the 15 minutes of the window.
        "StateHandoffFailed": [(1305, 2190)],
        # Process 3's checkpoint was refused at 2101 s: a conflict, not a failure.
        "StateStoreShared": [(2115, 2700)],
        # Process 5 restored at 3302 s a checkpoint of 2690 s: for an hour. The
        # take-overs restored the snapshot of their pause, a second old at most.
        "StateRestoredStale": [(3315, 6900)],
    }
    for at in sorted(run.firing):
        want = {
            name
            for name, windows in expected.items()
            if any(start <= at <= end for start, end in windows)
        }
        assert run.fires(at) == want, at


def test_failing_commits_fire_five_minutes_after_the_last_good_one(run: Run) -> None:
    """Process 4's store went down after its commit at 2690 s: the alert fires within
    5 minutes of its first failure, and not for the one at 2540 s. The rule it replaces
    (failures, and no commit in 10 minutes) waited for the last good commit to leave
    its window: 10 minutes, and a crash meanwhile lost every write since."""
    commits = "statemigrate_commits_total"
    blip = run.prometheus.increase(
        2700, 600, commits, outcome="failed", store="unreachable", service=SERVICE
    )
    assert list(blip.values()) == [1.0]  # at 2540 s, among good commits: it did not fire
    first = min(at for at in run.firing if at > 1200 and "StateCommitsFailing" in run.fires(at))
    assert first - 2720 <= 300

    def replaced(at: float) -> set[Labels]:
        failed = summed(run.prometheus.increase(at, 600, commits, outcome="failed"))
        return failed - summed(run.prometheus.increase(at, 600, commits, outcome="committed"))

    assert [at for at in run.firing if 2700 < at <= 3300 and replaced(at)] == [3300.0]


def test_a_restore_of_an_old_checkpoint_says_how_old(run: Run) -> None:
    """Process 4's final checkpoint failed as it was moved and it exited unscraped;
    process 5 restored the checkpoint of 2690 s at 3302 s: a successful restore, which
    no other rule fires on."""
    (stale,) = run.firing[3315.0]["StateRestoredStale"]
    assert dict(stale) == {"service": SERVICE, **TARGET}
    ages = run.prometheus.instant(3315, "statemigrate_last_restored_snapshot_age_seconds")
    assert list(ages.values()) == [612.0]
    assert run.fires(3330) == {"StateRestoredStale"}


def test_the_alerts_name_what_failed(run: Run) -> None:
    (handoff,) = run.firing[1305.0]["StateHandoffFailed"]
    assert dict(handoff) | TARGET == {
        "service": SERVICE,
        "outcome": "failed",
        "stage": "handshake",
        **TARGET,
    }
    (pause,) = run.firing[1215.0]["StateHandoffPauseLong"]
    assert dict(pause) == {"service": SERVICE, "outcome": "committed", **TARGET}
    (restore,) = run.firing[15.0]["StateRestoreFailed"]
    assert dict(restore)["service"] == SERVICE
    (commits,) = run.firing[45.0]["StateCommitsFailing"]
    assert dict(commits) == {
        "instance": TARGET["instance"],
        "service": SERVICE,
        "store": "unreachable",
    }


def test_the_counters_the_rules_used_miss_a_start_up_restore_and_a_successors_take_over(
    run: Run,
) -> None:
    """The rules they replace: a failed start-up restore is counted before the first
    scrape, and process 3's take-over is the same series as process 2's, at 1 again;
    neither is an increase. (Process 2's is, now that process 1 showed its series at 0:
    a counter tells the first take-over on a target apart, not the ones after it.)"""
    for at, found in run.old.items():
        assert not found["restores failed increase"], at
    for at in (2010.0, 2100.0, 2400.0):
        assert not run.old[at]["takeovers increase"], at
        assert "StateHandoffPauseLong" in run.fires(at)
    pauses = run.prometheus.increase(2400, 395, "statemigrate_handoff_takeover_pause_seconds_count")
    assert pauses and not any(pauses.values())
    takeovers = run.prometheus.instant(
        2400, "statemigrate_handoff_takeovers_total", service=SERVICE, outcome="committed"
    )
    assert list(takeovers.values()) == [1.0]


def test_without_series_created_at_zero_first_failures_are_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broken variant: counters' series created by their first event only."""
    monkeypatch.setattr(_backends._PrometheusSink, "prepare", lambda *args: None)
    run = simulate(monkeypatch)
    fired = set().union(*(run.fires(at) for at in run.firing))
    assert "StateHandoffFailed" not in fired
    # (StateCommitsFailing does not depend on it: its branch for a process that never
    # committed reads the counters as they stand, which a first failure creates.)


def scraped(series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]) -> Prometheus:
    """A Prometheus that scraped the given values of each series every 15 s from 0 on."""
    p = Prometheus()
    for (name, labels), values in series.items():
        key = (name, frozenset(labels))
        p.samples[key] = [(index * SCRAPE, value) for index, value in enumerate(values)]
        p.names.setdefault(name, []).append(key)
    p.scrapes = [index * SCRAPE for index in range(max(map(len, series.values())))]
    return p


def at_every_scrape(p: Prometheus, name: str) -> set[Labels]:
    return set().union(*(RULE_MODELS[name][1](p, at) for at in p.scrapes))


def replica(instance: str) -> tuple[tuple[str, str], ...]:
    return (("instance", instance), ("job", "svc"), ("service", SERVICE))


def test_a_short_restore_caught_by_a_scrape_is_not_stuck() -> None:
    """A restore of a few seconds, seen by one or two scrapes of a young process, does
    not fire; one held for 10 minutes does. The rule it replaces,
    ``min_over_time(statemigrate_restoring[10m]) == 1``, fired on the short one."""
    short = scraped({("statemigrate_restoring", replica("a")): [1, 1, 0, 0]})
    assert not at_every_scrape(short, "StateRestoreStuck")
    assert min(short.window(15, 600, "statemigrate_restoring").popitem()[1]) == 1  # old: fired
    stuck = scraped({("statemigrate_restoring", replica("a")): [1] * 42})
    fired = [at for at in stuck.scrapes if RULE_MODELS["StateRestoreStuck"][1](stuck, at)]
    assert fired == [600.0, 615.0]


def test_a_replica_whose_commits_fail_is_not_hidden_by_the_others() -> None:
    """Replica b fails every commit to its store for 15 minutes while replica a, of the
    same service, commits to the same kind of store: the alert names b. Summed per
    service and store alone, as the rule was, a's commits hid b."""
    rising, flat = [float(n) for n in range(61)], [0.0] * 61

    def commits(instance: str, outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        labels = (*replica(instance), ("outcome", outcome), ("store", "tmpfs"))
        return ("statemigrate_commits_total", labels)

    p = scraped(
        {
            commits("a", "committed"): rising,
            commits("a", "failed"): flat,
            commits("b", "committed"): flat,
            commits("b", "failed"): rising,
        }
    )
    fired = at_every_scrape(p, "StateCommitsFailing")
    assert {dict(labels)["instance"] for labels in fired} == {"b"}
    by_service = {only(labels, "service", "store") for labels in fired}
    increases = p.increase(900, 600, "statemigrate_commits_total", outcome="committed")
    assert any(only(labels, "service", "store") in by_service for labels in increases)  # old: hid


def test_a_successor_whose_store_still_fails_after_a_hot_restart_fires() -> None:
    """The old process commits every 15 s until 285 s, then its store fails; the alert
    fires once the last good commit is 5 minutes old. A hot restart at 600 s hands over to a
    successor whose commits fail too: its counters start again, it has no gauge of a
    last commit, and the old process's good commits are still in the 10-minute window.
    The alert goes on firing, by the branch for a process that never committed."""
    labels = (*replica("a"), ("store", "tmpfs"))
    old_committed = [float(n) for n in range(20)] + [19.0] * 21
    old_failed = [0.0] * 20 + [float(n) for n in range(1, 22)]
    gauge = [15.0 * n for n in range(20)] + [285.0] * 21
    new = 20  # the successor's scrapes, from 615 s on
    p = scraped(
        {
            ("statemigrate_commits_total", (*labels, ("outcome", "committed"))): old_committed
            + [0.0] * new,
            ("statemigrate_commits_total", (*labels, ("outcome", "failed"))): old_failed
            + [float(n) for n in range(1, new + 1)],
            ("statemigrate_last_snapshot_timestamp_seconds", replica("a")): gauge,
        }
    )
    # The successor has no gauge: its series ends with the old process.
    p.samples[("statemigrate_last_snapshot_timestamp_seconds", frozenset(replica("a")))].append(
        (615.0, None)
    )
    rule = RULE_MODELS["StateCommitsFailing"][1]
    fired = [at for at in p.scrapes if rule(p, at)]
    assert fired == [at for at in p.scrapes if at >= 600], fired


def test_a_start_that_fell_back_to_the_previous_snapshot_is_no_failed_restore() -> None:
    """The damaged newest snapshot failed to restore at 100 s and the one before it
    restored at 101 s: the service has its state, and the critical alert stays quiet.
    A failed restore with no good one after it fires."""
    def timestamps(failed: float, restored: float) -> Prometheus:
        name = "statemigrate_last_restore_timestamp_seconds"
        return scraped(
            {
                (name, (*replica("a"), ("outcome", "failed"))): [failed] * 20,
                (name, (*replica("a"), ("outcome", "restored"))): [restored] * 20,
            }
        )

    assert not at_every_scrape(timestamps(failed=100, restored=101), "StateRestoreFailed")
    assert at_every_scrape(timestamps(failed=100, restored=0), "StateRestoreFailed")
    assert at_every_scrape(timestamps(failed=100, restored=99), "StateRestoreFailed")


def series_file(run: Run, at_times: list[float]) -> dict[str, Any]:
    """The run as a ``promtool test rules`` file: its samples of the series the rules
    read, and the alerts the model expects at ``at_times``."""
    used = {"statemigrate_handoffs_total", "statemigrate_commits_total", "statemigrate_restoring"}
    used |= {n for (n, _) in run.prometheus.samples if n.startswith("statemigrate_last_")}
    steps = [0.0, *run.prometheus.scrapes]
    series = []
    for (name, labels), points in run.prometheus.samples.items():
        if name not in used:
            continue
        by_time = dict(points)
        values = [
            "_" if t not in by_time else "stale" if by_time[t] is None else repr(by_time[t])
            for t in steps
        ]
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
        series.append({"series": f"{name}{{{inner}}}", "values": " ".join(values)})
    annotations = {rule["alert"]: rule for rule in rules_file()}
    tests = []
    for at in at_times:
        for name, found in run.firing[at].items():
            rule = annotations[name]
            expected = []
            for labels in found:
                summary = rule["annotations"]["summary"]
                for key, value in labels:
                    summary = summary.replace("{{ $labels." + key + " }}", value)
                expected.append(
                    {
                        "exp_labels": {**dict(labels), **rule["labels"]},
                        "exp_annotations": {"summary": summary},
                    }
                )
            tests.append({"eval_time": f"{int(at)}s", "alertname": name, "exp_alerts": expected})
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": f"{SCRAPE}s",
        "tests": [{"interval": f"{SCRAPE}s", "input_series": series, "alert_rule_test": tests}],
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_agrees_with_the_model(run: Run, tmp_path: Path) -> None:
    """The opt-in check of the model itself: the real rule evaluator, on the same
    samples, fires exactly the alerts the model does, at times around each edge."""
    at_times = [15.0, 45.0, 630.0, 645.0, 900.0, 915.0, 1215.0, 1305.0, 2010.0]
    at_times += [2100.0, 2115.0, 2190.0, 2205.0, 2400.0, 2415.0, 2700.0, 2715.0]
    at_times += [2985.0, 3000.0, 3300.0, 3315.0, 3330.0, 6900.0, 6915.0]
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(series_file(run, at_times)))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
