"""Metrics across a real handoff: both processes' Prometheus scrapes against the reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import statemigrate as sm
import statemigrate.metrics
from statemigrate.handoff import (
    HandoffTimeouts,
    Inheritance,
    Spawn,
    SuccessorFailedError,
    hand_over,
    receive_handoff,
    send_handoff,
)
from statemigrate.handoff._protocol import (
    Channel,
    Commit,
    Held,
    Hello,
    Received,
    SnapshotOffer,
    encode_message,
)
from statemigrate.reference import KVCacheV1, build_registry
from statemigrate.stores import MemfdStore

CHILD = str(Path(__file__).resolve().parents[1] / "handoff_children" / "metrics_successor.py")
PEER = str(Path(__file__).resolve().parents[1] / "handoff_children" / "peer.py")
SERVICE = "metrics-test"
UNNAMED = "unnamed"  # the documented service label of a handoff without a Service

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """Every sample of a text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class Hooks:
    def __init__(self, hold: float = 0.0) -> None:
        self.pauses = 0
        self.resumes = 0
        self.hold = hold

    def pause(self) -> None:
        self.pauses += 1
        time.sleep(self.hold)  # a server whose writers take a while to settle

    def resume(self) -> None:
        self.resumes += 1

    def stop_accepting(self) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    statemigrate.metrics.use_prometheus(registry)
    yield registry
    statemigrate.metrics.disable_metrics()


def old_service() -> sm.Service:
    service = sm.Service(SERVICE, registry=build_registry())
    cache = service.register(KVCacheV1())
    for i in range(200):
        cache.set(f"key:{i}", f"value {i}")
    service.commit(sm.MemoryStore())  # generation 1; the handoff's snapshot is 2
    return service


def successor_event(path: Path, pid: int | None = None) -> dict[str, object]:
    """What the successor wrote, once it exited (``pid``: reap it first)."""
    if pid is not None:
        os.waitpid(pid, 0)
    (line,) = path.read_text().splitlines()
    event: dict[str, object] = json.loads(line)
    return event


@pytest.mark.slow
def test_a_handoff_shows_in_both_scrapes_as_in_its_reports(registry, tmp_path) -> None:
    service = old_service()
    committed = scrape(generate_latest(registry).decode())  # generation 1, in a store
    output = tmp_path / "successor.json"
    snapshots: list[sm.SnapshotReport] = []
    hooks = Hooks()
    report = hand_over(
        service,
        Spawn([sys.executable, CHILD, "ok", str(output)]),
        listeners={},
        control=hooks,
        on_snapshot=snapshots.append,
        precopy=False,  # the whole snapshot in the pause: one export, one restore
    )
    event = successor_event(output, report.successor_pid)
    (snapshot,) = snapshots
    assert report.ok and (hooks.pauses, hooks.resumes) == (1, 0)

    # The old process: the attempt as its report tells it.
    old = scrape(generate_latest(registry).decode())
    assert value(
        old, "statemigrate_handoffs_total", service=SERVICE, outcome="ready", stage=""
    ) == 1
    assert value(
        old, "statemigrate_handoff_duration_seconds_count", service=SERVICE, outcome="ready"
    ) == 1
    assert value(
        old, "statemigrate_handoff_duration_seconds_sum", service=SERVICE, outcome="ready"
    ) == pytest.approx(report.timings["total"], rel=1e-9)
    assert 0 < report.pause_seconds < report.timings["total"]
    assert value(
        old, "statemigrate_handoff_pause_seconds_count", service=SERVICE, outcome="ready"
    ) == 1
    assert value(
        old, "statemigrate_handoff_pause_seconds_sum", service=SERVICE, outcome="ready"
    ) == pytest.approx(report.pause_seconds, rel=1e-9)
    assert report.snapshot_size == snapshot.size > 0
    assert snapshot.generation == 2
    # The handoff's snapshot was committed to no store: the gauges of the last committed
    # snapshot still describe generation 1, the one the store holds.
    for gauge in (
        "statemigrate_snapshot_bytes",
        "statemigrate_generation",
        "statemigrate_last_snapshot_timestamp_seconds",
    ):
        assert value(old, gauge, service=SERVICE) == value(committed, gauge, service=SERVICE)
    assert value(old, "statemigrate_generation", service=SERVICE) == 1
    assert value(old, "statemigrate_snapshot_duration_seconds_count", service=SERVICE) == 2
    assert value(old, "statemigrate_commits_total", service=SERVICE, store="memory",
                 outcome="committed") == 1
    assert ("statemigrate_handoffs_total",
            frozenset({("service", SERVICE), ("outcome", "failed"), ("stage", "")})) not in old

    # The successor: the restore as its take-over report tells it, and its status.
    assert "error" not in event, event.get("error")
    took = event["report"]
    assert isinstance(took, dict)
    restore = took["restore"]
    assert took["snapshot_size"] == report.snapshot_size
    assert event["entries"] == 200
    assert event["before"]["state"] == "starting" and not event["before"]["ready"]  # type: ignore[index]
    status = event["status"]
    assert isinstance(status, dict)
    assert (status["state"], status["ready"], status["progress"]) == ("restored", True, 1.0)
    assert (status["generation"], status["snapshot_id"]) == (
        snapshot.generation,
        snapshot.snapshot_id,
    )
    new = scrape(str(event["scrape"]))
    assert value(new, "statemigrate_restores_total", service=SERVICE, outcome="restored") == 1
    assert value(new, "statemigrate_generation", service=SERVICE) == snapshot.generation
    assert value(new, "statemigrate_component_restores_total", service=SERVICE,
                 component="kvcache", from_version="1", to_version="2") == 1
    assert value(new, "statemigrate_restoring", service=SERVICE) == 0
    assert value(new, "statemigrate_restore_progress_ratio", service=SERVICE) == 1
    phases = restore["timings"]
    assert set(phases) == {"read", "verify", "decode", "migrate", "validate", "apply"}
    for phase, seconds in phases.items():
        labels = {"service": SERVICE, "phase": phase}
        assert value(new, "statemigrate_restore_duration_seconds_count", **labels) == 1
        assert value(new, "statemigrate_restore_duration_seconds_sum", **labels) == (
            pytest.approx(seconds, rel=1e-9)
        )


@pytest.mark.slow
def test_a_failed_handoff_counts_as_failed_at_its_stage(registry, tmp_path) -> None:
    """The successor's strict restore fails after the writers were paused: the old
    process counts a failure at ``ready`` with the pause its report gives, and the
    successor's status is ``failed`` with the restore's reason."""
    service = old_service()
    output = tmp_path / "successor.json"
    hooks = Hooks()
    with pytest.raises(SuccessorFailedError) as caught:
        hand_over(
            service,
            Spawn([sys.executable, CHILD, "strict", str(output)]),
            listeners={},
            control=hooks,
            precopy=False,  # the restore fails after the pause, not in round 0
        )
    report = caught.value.report
    assert report is not None and report.stage == "ready"
    assert report.successor_exit == 1  # it wrote its event, exited, and was reaped
    event = successor_event(output)
    assert (hooks.pauses, hooks.resumes) == (1, 1)

    old = scrape(generate_latest(registry).decode())
    assert value(
        old, "statemigrate_handoffs_total", service=SERVICE, outcome="failed", stage="ready"
    ) == 1
    assert value(
        old, "statemigrate_handoffs_total", service=SERVICE, outcome="ready", stage=""
    ) == 0
    assert 0 < report.pause_seconds <= report.timings["total"]
    assert value(
        old, "statemigrate_handoff_pause_seconds_sum", service=SERVICE, outcome="failed"
    ) == pytest.approx(report.pause_seconds, rel=1e-9)
    assert value(
        old, "statemigrate_handoff_duration_seconds_sum", service=SERVICE, outcome="failed"
    ) == pytest.approx(report.timings["total"], rel=1e-9)

    status = event["status"]
    assert isinstance(status, dict)
    assert (status["state"], status["ready"]) == ("failed", False)
    assert "strict mode" in status["reason"]
    new = scrape(str(event["scrape"]))
    assert value(new, "statemigrate_restores_total", service=SERVICE, outcome="failed") == 1
    assert value(new, "statemigrate_restoring", service=SERVICE) == 0
    assert value(new, "statemigrate_restores_total", service=SERVICE, outcome="restored") == 0
    # It took nothing over, and exits: the old process's failed attempt is the count.
    assert not any(
        n for (name, _), n in new.items()
        if name.startswith("statemigrate_handoff_takeover") and not name.endswith("_created")
    )



@pytest.mark.slow
def test_the_successor_shows_the_handoff_it_took_over(registry, tmp_path) -> None:
    """The old process exits after a handoff, usually before its next scrape: the
    successor records the take-over, the pause the writers saw (the old process's
    figure but for the two messages' delivery) and the pre-copy pieces, in families
    of its own, so that a sum over both processes counts the handoff once in each."""
    service = old_service()
    output = tmp_path / "successor.json"
    hooks = Hooks(hold=0.5)  # the pause outweighs the messages' delivery
    report = hand_over(
        service,
        Spawn([sys.executable, CHILD, "ok", str(output)]),
        listeners={},
        control=hooks,
    )
    event = successor_event(output, report.successor_pid)
    assert report.ok and "error" not in event, event.get("error")
    took = event["report"]
    assert isinstance(took, dict)
    new = scrape(str(event["scrape"]))
    old = scrape(generate_latest(registry).decode())

    # What the user's `grep -c '^statemigrate_handoff'` of the running process finds.
    assert any(name.startswith("statemigrate_handoff") for name, _ in new)
    committed = {"service": SERVICE, "outcome": "committed"}
    assert value(new, "statemigrate_handoff_takeovers_total", **committed) == 1
    assert value(new, "statemigrate_handoff_takeover_pause_seconds_count", **committed) == 1
    pause = value(new, "statemigrate_handoff_takeover_pause_seconds_sum", **committed)
    assert pause == pytest.approx(took["pause_seconds"], rel=1e-9)
    assert took["pause_told"] is True
    # At least the hold inside pause(), which only the old process's count can carry
    # (the successor's own share starts at SNAPSHOT), and within the old process's
    # pause, which goes on until SERVING arrives.
    assert hooks.hold <= pause < report.pause_seconds

    # The same pieces on both sides, each side in its own family.
    assert report.rounds and took["final"] == report.final
    pieces = {labels: n for (name, labels), n in old.items()
              if name == "statemigrate_handoff_pieces_total"}
    applied = {labels: n for (name, labels), n in new.items()
               if name == "statemigrate_handoff_takeover_pieces_total"}
    assert applied == pieces and sum(pieces.values()) == len(report.rounds)
    # The pieces and the snapshot of the pause are one restore, the successor's start.
    assert value(new, "statemigrate_restores_total", service=SERVICE, outcome="restored") == 1
    assert value(
        new, "statemigrate_restore_duration_seconds_count", service=SERVICE, phase="read"
    ) == 1

    # Neither process records the other's view: no sum counts the handoff twice. (Each
    # shows the other's series, at 0 from the start.)
    assert not any(
        n for (name, _), n in old.items()
        if name.startswith("statemigrate_handoff_takeover") and not name.endswith("_created")
    )
    assert not any(
        n for (name, _), n in new.items() if name.startswith("statemigrate_handoffs_total")
    )
    assert value(
        old, "statemigrate_handoffs_total", service=SERVICE, outcome="ready", stage=""
    ) == 1


def take_over_from(
    pair: tuple[socket.socket, socket.socket], offer: SnapshotOffer
) -> tuple[Inheritance, float]:
    """Take over from a scripted old process that sends ``offer`` and COMMIT at once;
    return the inheritance and the seconds from HELLO until it served."""
    old, new = pair
    with MemfdStore() as store:
        Channel(old).send(offer, [store.commit(b"state").fd], stage="test")
    Channel(old).send(Commit(), stage="test")
    inheritance = receive_handoff(new)
    began = time.monotonic()
    inheritance.hello({"c": [1]}).release()
    inheritance.ready()
    return inheritance, time.monotonic() - began


def test_bytes_handed_over_without_a_service_are_labelled_unnamed(registry, pair) -> None:
    """``send_handoff`` has no Service to name: its attempt is counted under the
    documented ``service="unnamed"``, never under an empty label (which Prometheus
    drops, leaving the alerts' summaries without a service)."""
    old, new = pair
    new.close()  # a successor that hung up before its HELLO
    with pytest.raises(SuccessorFailedError):
        send_handoff(old, listeners={}, export_state=lambda readable: b"state")
    scraped = scrape(generate_latest(registry).decode())
    failed = [
        dict(labels) for (name, labels), n in scraped.items()
        if name == "statemigrate_handoffs_total" and n
    ]
    assert [(row["service"], row["outcome"]) for row in failed] == [(UNNAMED, "failed")]


def test_an_old_process_that_does_not_say_its_pause(registry, pair) -> None:
    """An old process of an earlier release sends no ``paused`` in SNAPSHOT: the
    successor takes over as before and records the pause it measures itself, from its
    HELLO until it serves, an upper bound."""
    earlier = SnapshotOffer(size=5)
    assert b"paused" not in encode_message(earlier)  # byte for byte an earlier SNAPSHOT
    inheritance, took = take_over_from(pair, earlier)

    assert not inheritance.pause_told
    assert 0 < inheritance.pause_seconds <= took
    scraped = scrape(generate_latest(registry).decode())
    assert value(
        scraped, "statemigrate_handoff_takeovers_total", service=UNNAMED, outcome="committed"
    ) == 1
    assert value(
        scraped, "statemigrate_handoff_takeover_pause_seconds_sum", service=UNNAMED,
        outcome="committed",
    ) == pytest.approx(inheritance.pause_seconds, rel=1e-9)
    # Never an empty label, which Prometheus drops (the alerts would name no service).
    assert not any(("service", "") in labels for _, labels in scraped)


def test_the_pause_the_old_process_says_counts_with_the_successors_own_time(
    registry, pair
) -> None:
    """The successor's pause is the old process's count at SNAPSHOT plus its own
    time from the snapshot until it serves."""
    inheritance, took = take_over_from(pair, SnapshotOffer(size=5, paused=7.5))

    assert inheritance.pause_told
    assert 7.5 < inheritance.pause_seconds <= 7.5 + took
    scraped = scrape(generate_latest(registry).decode())
    assert value(
        scraped, "statemigrate_handoff_takeover_pause_seconds_sum", service=UNNAMED,
        outcome="committed",
    ) == pytest.approx(inheritance.pause_seconds, rel=1e-9)
    assert not any(name == "statemigrate_handoff_takeover_pieces_total" for name, _ in scraped)


def test_the_pause_gauge_takes_the_figure_the_old_process_tells_after_serving(
    registry, pair
) -> None:
    """HELD, after SERVING, carries the old process's own figure (from pause() until
    stop_accepting() returned): the gauge the pause alert reads takes it, since the
    successor's count leaves out SNAPSHOT's delivery and its own wake-up."""
    old, _ = pair
    inheritance, _ = take_over_from(pair, SnapshotOffer(size=5, paused=0.001))
    hello = Channel(old).read(stage="test")
    assert isinstance(hello, Received) and isinstance(hello.message, Hello)
    assert hello.message.held  # announced: the successor reads HELD
    Channel(old).send(Held(paused=0.0754), stage="test")
    assert inheritance.held_watch is not None
    inheritance.held_watch.join(30)  # only stops a hang
    scraped = scrape(generate_latest(registry).decode())
    assert value(
        scraped, "statemigrate_last_takeover_pause_seconds", service=UNNAMED, outcome="committed"
    ) == 0.0754
    # The histogram and the report keep the successor's own count.
    assert value(
        scraped, "statemigrate_handoff_takeover_pause_seconds_sum", service=UNNAMED,
        outcome="committed",
    ) == pytest.approx(inheritance.pause_seconds, rel=1e-9)


def test_an_old_process_that_never_tells_leaves_the_successors_figure(registry, pair) -> None:
    """An old process of an earlier release sends no HELD and closes the channel as its
    handoff ends: the gauge keeps the successor's own count."""
    old, _ = pair
    inheritance, _ = take_over_from(pair, SnapshotOffer(size=5, paused=7.5))
    old.close()
    assert inheritance.held_watch is not None
    inheritance.held_watch.join(30)  # only stops a hang
    scraped = scrape(generate_latest(registry).decode())
    assert value(
        scraped, "statemigrate_last_takeover_pause_seconds", service=UNNAMED, outcome="committed"
    ) == pytest.approx(inheritance.pause_seconds, rel=1e-9)


def test_a_successor_whose_predecessor_died_records_that_outcome(registry, tmp_path) -> None:
    """An old process that dies after READY, before COMMIT: the successor serves all
    the same, and says so in the take-over's outcome."""
    path = tmp_path / "handoff.sock"
    proc = subprocess.Popen([sys.executable, PEER, "old-dies-after-ready", str(path)],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"listening\n"
    proc.stdout.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(path))
    inheritance = receive_handoff(sock, timeouts=HandoffTimeouts(kill_grace=2.0))
    inheritance.hello({"counters": [1]}).release()
    inheritance.ready()
    proc.wait(timeout=60)

    assert inheritance.predecessor_died and inheritance.pause_seconds > 0
    scraped = scrape(generate_latest(registry).decode())
    died = {"service": UNNAMED, "outcome": "predecessor_died"}  # no Service took over
    assert value(scraped, "statemigrate_handoff_takeovers_total", **died) == 1
    assert value(
        scraped, "statemigrate_handoff_takeover_pause_seconds_sum", **died
    ) == pytest.approx(inheritance.pause_seconds, rel=1e-9)
    # Bytes taken over without a Service: its series appear with their first event
    # (a Service declares its own at 0 when it is created).
    committed = frozenset({("service", UNNAMED), ("outcome", "committed")})
    assert ("statemigrate_handoff_takeovers_total", committed) not in scraped


@pytest.mark.slow
def test_round_zero_exported_in_a_forked_child_counts_as_a_snapshot_taken(
    registry, tmp_path
) -> None:
    """Each piece of a pre-copy handoff is a snapshot taken, round 0 too: the forked
    child that exports it cannot report it, so the old process counts it, from the
    fork to the child's exit. It was left out before."""
    service = old_service()
    before = scrape(generate_latest(registry).decode())
    output = tmp_path / "successor.json"
    report = hand_over(
        service,
        Spawn([sys.executable, CHILD, "ok", str(output)]),
        listeners={},
        control=Hooks(),
        precopy="fork",
    )
    successor_event(output, report.successor_pid)
    assert report.ok
    assert [r.kind for r in report.rounds][:1] == ["full"]
    after = scrape(generate_latest(registry).decode())
    taken = value(after, "statemigrate_snapshot_duration_seconds_count", service=SERVICE) - value(
        before, "statemigrate_snapshot_duration_seconds_count", service=SERVICE
    )
    # Every pre-copy round (round 0 and its deltas), and the last piece in the pause.
    assert taken == len(report.rounds) + 1, report.rounds
