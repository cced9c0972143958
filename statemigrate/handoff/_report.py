"""What a handoff did, on each side, for logs, metrics and error handling."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from statemigrate._observe._instruments import (
    HANDOFF_DURATION,
    HANDOFF_PAUSE,
    HANDOFF_PIECES,
    HANDOFFS,
    LAST_TAKEOVER_PAUSE,
    LAST_TAKEOVER_TIMESTAMP,
    TAKEOVER_PAUSE,
    TAKEOVER_PIECES,
    TAKEOVERS,
    emit,
    enabled,
)
from statemigrate._observe._tracing import record_span, start_span

if TYPE_CHECKING:
    from statemigrate._runtime._latewrites import LateWrites
    from statemigrate._runtime._lossyexport import LossyExport
    from statemigrate._runtime._report import RestoreReport

__all__ = [
    "Attempt",
    "FinalPiece",
    "HandoffOutcome",
    "HandoffReport",
    "Phase",
    "Round",
    "TakeOverReport",
    "Transport",
    "record_handoff",
    "record_takeover",
    "record_told_pause",
]

HandoffOutcome = Literal["ready", "failed"]
#: What the pause of a handoff carried: the whole snapshot (no pre-copy), the last
#: delta, a full snapshot again after pre-copy rounds (the fallback), or nothing yet.
FinalPiece = Literal["snapshot", "delta", "full", ""]
Transport = Literal["spawn", "socket"]
#: The phases timed by the old process, in order.
Phase = Literal["spawn", "handshake", "precopy", "export", "transfer", "ready", "serving", "total"]


@dataclass(frozen=True)
class Round:
    """One piece of a pre-copy handoff, as the side that reports it saw it.

    Attributes:
        number: 0 for the full snapshot, then 1, 2, ... for the deltas.
        kind: ``"full"`` or ``"delta"``.
        size: its bytes.
        records: the records it changed, as the successor counted them applying it
            (for round 0, the pending count is unknown and it says what the restore
            reported; 0 when unknown).
        seconds: old process: from the start of its export until the successor
            acknowledged it; successor: how long applying it took.
    """

    number: int
    kind: Literal["full", "delta"]
    size: int
    records: int = 0
    seconds: float = 0.0

    def to_plain(self) -> dict[str, Any]:
        """The round as JSON-ready data."""
        return {
            "number": self.number,
            "kind": self.kind,
            "size": self.size,
            "records": self.records,
            "seconds": self.seconds,
        }


def _rounds(rounds: Sequence[Round]) -> str:
    if not rounds:
        return ""
    # The size before this names the piece sent in the pause; these were sent before
    # it, while the old process served, and the line must not read as if they were it.
    deltas = [r for r in rounds if r.kind == "delta"]
    text = f" in the pause, pre-copy {_counted(len(rounds), 'round')} before it"
    if deltas:
        text += f" ({_counted(len(deltas), 'delta')}, the last {deltas[-1].size} bytes)"
    return text


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _phases(timings: Mapping[str, float]) -> str:
    return " ".join(f"{name}={seconds * 1000:.1f}ms" for name, seconds in timings.items())


def _sent(versions: Mapping[str, int], lossy: Sequence[str]) -> str:
    if not versions:
        return ""
    text = ", sent " + ", ".join(f"{name} v{version}" for name, version in versions.items())
    return text + (f" ({len(lossy)} through lossy steps)" if lossy else "")


def _plain_versions(readable: Mapping[str, tuple[int, ...]]) -> dict[str, list[int]]:
    return {name: list(versions) for name, versions in readable.items()}


@dataclass(frozen=True)
class HandoffReport:
    """The old process's account of one handoff attempt, successful or not.

    Attributes:
        outcome: ``"ready"`` when the successor took over, ``"failed"`` otherwise.
        transport: ``"spawn"`` (a :class:`~statemigrate.handoff.Spawn` successor) or
            ``"socket"`` (a successor that connected to us).
        stage: the stage that failed (``None`` on success): ``spawn``, ``handshake``,
            ``pause``, ``writes``, ``export``, ``transfer``, ``ready``, ``commit`` or
            ``serving``.
        reason: why it failed (``None`` on success).
        successor_pid: the successor's pid, once known.
        successor_exit: the successor's exit status when it ended during the attempt
            (negative: killed by that signal), else ``None``.
        listeners: the names of the listeners handed over.
        readable: the schema versions the successor said it can read.
        successor_versions: the successor's live schema version of each component, as
            its HELLO announced them (empty when it did not: an older release).
        successor_code_version: the successor's ``code_version``, as its HELLO
            announced it (empty when it did not, or has none).
        snapshot_size: the number of snapshot bytes sent (0 if none were).
        timings: seconds spent per phase (only phases that started), plus ``total``.
        pause_seconds: how long the writers were held, on this process's clock: from
            just before ``pause()`` is called (a request that comes from then on is
            held) until the held requests are let go: ``stop_accepting()`` has
            returned once the successor took over (it confirmed SERVING, or was sent
            COMMIT, as a successor of an older release), or ``resume()`` has
            returned after a failure; 0 when ``pause()`` was not called. What a held
            request waits on top of it, passed on to the successor, is not in it
            (docs/observability.md, "What a client sees of a handoff").
        problems: non-fatal troubles, such as a ``stop_accepting()`` that raised
            after the successor had taken over.
        rounds: the pre-copy pieces sent while serving (round 0, the full snapshot,
            then the deltas); empty without pre-copy.
        final: what travelled in the pause: ``"snapshot"`` (no pre-copy),
            ``"delta"`` (the last delta), ``"full"`` (a full snapshot again: the
            fallback), or ``""`` when nothing was sent.
        fallback: why the pause carried a full snapshot despite pre-copy (a
            component that cannot tell what changed, a whole-data step), else ``None``.
        precopy_seconds: the time spent in pre-copy rounds, while serving.
        fork_seconds: how long forking round 0's exporter held this process.
        versions: the schema version each component was sent at, once chosen
            (empty for bytes handed over without a service).
        lossy: for each component sent through lossy steps (a rollback's downgrade),
            one line naming the versions, the steps and the fields declared lost, as
            the WARNING logged once the successor took over says it.
    """

    outcome: HandoffOutcome
    transport: Transport
    stage: str | None = None
    reason: str | None = None
    successor_pid: int | None = None
    successor_exit: int | None = None
    listeners: tuple[str, ...] = ()
    readable: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    successor_versions: Mapping[str, int] = field(default_factory=dict)
    successor_code_version: str = ""
    snapshot_size: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    pause_seconds: float = 0.0
    rounds: tuple[Round, ...] = ()
    final: FinalPiece = ""
    fallback: str | None = None
    precopy_seconds: float = 0.0
    fork_seconds: float = 0.0
    versions: Mapping[str, int] = field(default_factory=dict)
    lossy: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the successor took over."""
        return self.outcome == "ready"

    def summary(self) -> str:
        """One line for logs (the line the handoff logs itself)."""
        who = f"successor pid {self.successor_pid}" if self.successor_pid else "no successor"
        if self.ok:
            fallback = f", full snapshot in the pause: {self.fallback}" if self.fallback else ""
            return (
                f"handoff ready: {who}{_sent(self.versions, self.lossy)},"
                f" {self.snapshot_size} bytes{_rounds(self.rounds)}"
                f"{fallback}, pause {self.pause_seconds * 1000:.1f}ms, {_phases(self.timings)}"
            )
        return f"handoff failed at {self.stage}: {self.reason} ({who}, {_phases(self.timings)})"

    def to_plain(self) -> dict[str, Any]:
        """The report as JSON-ready data (lists for tuples, dicts for mappings)."""
        return {
            "outcome": self.outcome,
            "transport": self.transport,
            "stage": self.stage,
            "reason": self.reason,
            "successor_pid": self.successor_pid,
            "successor_exit": self.successor_exit,
            "listeners": list(self.listeners),
            "readable": _plain_versions(self.readable),
            "successor_versions": dict(self.successor_versions),
            "successor_code_version": self.successor_code_version,
            "snapshot_size": self.snapshot_size,
            "timings": dict(self.timings),
            "problems": list(self.problems),
            "pause_seconds": self.pause_seconds,
            "rounds": [r.to_plain() for r in self.rounds],
            "final": self.final,
            "fallback": self.fallback,
            "precopy_seconds": self.precopy_seconds,
            "fork_seconds": self.fork_seconds,
            "versions": dict(self.versions),
            "lossy": list(self.lossy),
        }


@dataclass(frozen=True)
class TakeOverReport:
    """The successor's account of a handoff it took over (what ``take_over`` returns).

    Attributes:
        parent_pid: the pid of the process that handed over.
        transport: ``"spawn"`` or ``"socket"``.
        listeners: the names of the listeners received.
        readable: the schema versions announced in HELLO.
        snapshot_size: the size of the snapshot received, in bytes.
        restore: the report of restoring the snapshot into the service.
        timings: seconds spent in ``snapshot_wait`` (from HELLO until the snapshot
            arrived: the old process paused and exported meanwhile), ``restore``,
            ``commit_wait`` (from READY until COMMIT), and ``total``.
        predecessor_died: the old process died after the snapshot arrived and
            before it sent COMMIT, so this process took over without it (the state
            it restored is the last one the old process acknowledged anything on).
        rounds: the pre-copy pieces applied before the last one (``seconds``: how
            long each took to apply); empty without pre-copy.
        fallback: why the last piece was a full snapshot again, as the old process
            said, else ``None``.
        pause_seconds: how long the writers were held, from the old process's
            ``pause()`` until this process sent SERVING (or took over without
            COMMIT): the seconds the old process said it had held them when it sent
            the snapshot, plus this process's own time since. An old process of an
            earlier release does not say: then it is the time since this process's
            last message before the snapshot (HELLO, or the last APPLIED), a little
            longer than the pause (``pause_told`` is false).
        pause_told: the old process said how long it had held the writers.
        final: what the pause carried: ``"snapshot"`` (no pre-copy), ``"delta"``
            or ``"full"`` (the fallback).
        lossy: the old process's line for each component it exported through lossy
            steps (the versions, the steps, the fields lost), as it sent them and this
            process logged them; empty when none, or when it did not say (an earlier
            release).
    """

    parent_pid: int
    transport: Transport
    listeners: tuple[str, ...]
    readable: Mapping[str, tuple[int, ...]]
    snapshot_size: int
    restore: RestoreReport
    timings: Mapping[str, float] = field(default_factory=dict)
    predecessor_died: bool = False
    rounds: tuple[Round, ...] = ()
    fallback: str | None = None
    pause_seconds: float = 0.0
    pause_told: bool = False
    final: FinalPiece = ""
    lossy: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for logs."""
        steps = sum(len(component.steps) for component in self.restore.components)
        died = ", the old process died before COMMIT" if self.predecessor_died else ""
        fallback = f", full snapshot again: {self.fallback}" if self.fallback else ""
        return (
            f"took over from pid {self.parent_pid} ({self.transport}{died}):"
            f" {self.snapshot_size} bytes{_rounds(self.rounds)}{fallback},"
            f" {len(self.restore.components)} components,"
            f" {steps} steps, pause {self.pause_seconds * 1000:.1f}ms, {_phases(self.timings)}"
        )

    def to_plain(self) -> dict[str, Any]:
        """The report as JSON-ready data; ``restore`` is the restore report's own."""
        return {
            "parent_pid": self.parent_pid,
            "transport": self.transport,
            "listeners": list(self.listeners),
            "readable": _plain_versions(self.readable),
            "snapshot_size": self.snapshot_size,
            "restore": self.restore.to_plain(),
            "timings": dict(self.timings),
            "predecessor_died": self.predecessor_died,
            "rounds": [r.to_plain() for r in self.rounds],
            "fallback": self.fallback,
            "pause_seconds": self.pause_seconds,
            "pause_told": self.pause_told,
            "final": self.final,
            "lossy": list(self.lossy),
        }


class Attempt:
    """The facts of one attempt by the old process, gathered as it goes, for its report."""

    def __init__(self, transport: Transport, listeners: Sequence[str], *, service: str) -> None:
        self.transport: Transport = transport
        self.service = service  # the name its metrics carry: "unnamed" without a Service
        self.listeners = tuple(listeners)
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.successor_pid: int | None = None
        self.successor_exit: int | None = None
        self.readable: dict[str, tuple[int, ...]] = {}
        self.successor_versions: dict[str, int] = {}
        self.successor_code_version = ""
        self.snapshot_size = 0
        self.paused = False  # pause() was called and resume() not yet
        self.pause_began: float | None = None
        self.pause_seconds = 0.0
        self.committed = False
        # The successor confirmed it serves (or, not announcing SERVING, got COMMIT):
        # from here on the state is its own and this process never takes it back.
        self.confirmed = False
        self.problems: list[str] = []
        self.rounds: list[Round] = []
        self.final: FinalPiece = ""
        self.fallback: str | None = None
        self.fork_seconds = 0.0
        self.versions: dict[str, int] = {}
        self.tells_pause = False  # the successor reads HELD after SERVING
        self.lossy: tuple[LossyExport, ...] = ()
        # The records written after the last piece was taken, watched until the end.
        self.late: LateWrites | None = None
        # Live while the attempt runs: the successor's spans go under it.
        self.span = start_span(
            "statemigrate.hand_over", attributes={"statemigrate.transport": transport}
        )
        self._phase_spans: list[tuple[str, int, int]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        began_ns = time.time_ns()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - began
            if self.span.span is not None:
                self._phase_spans.append((name, began_ns, time.time_ns()))

    def pausing(self) -> None:
        """``pause()`` is about to be called: the writers are held from now on."""
        self.pause_began = time.monotonic()

    def held(self) -> float | None:
        """Seconds the writers have been held so far, or ``None`` when they are not."""
        if self.pause_began is None:
            return None
        return time.monotonic() - self.pause_began

    def unpaused(self) -> None:
        """The held writers are let go: ``stop_accepting()`` returned (the successor
        took over), or ``resume()`` did (the attempt failed)."""
        if self.pause_began is not None:
            self.pause_seconds = time.monotonic() - self.pause_began
            self.pause_began = None

    def _end_span(self, stage: str | None, reason: str | None) -> None:
        for name, start, end in self._phase_spans:
            record_span(f"statemigrate.hand_over.{name}", start, end, parent=self.span)
        self._phase_spans.clear()
        facts: dict[str, str | int | float] = {
            "statemigrate.outcome": "ready" if stage is None else "failed",
            "statemigrate.snapshot_bytes": self.snapshot_size,
            "statemigrate.pause_seconds": self.pause_seconds,
            "statemigrate.precopy_rounds": len(self.rounds),
        }
        if self.successor_pid is not None:
            facts["statemigrate.successor_pid"] = self.successor_pid
        if stage is not None:
            facts["statemigrate.stage"] = stage
        self.span.end(attributes=facts, error=None if stage is None else f"{stage}: {reason}")

    def report(self, *, stage: str | None = None, reason: str | None = None) -> HandoffReport:
        self._end_span(stage, reason)
        timings = dict(self.timings)
        timings["total"] = time.monotonic() - self.started
        return HandoffReport(
            outcome="ready" if stage is None else "failed",
            transport=self.transport,
            stage=stage,
            reason=reason,
            successor_pid=self.successor_pid,
            successor_exit=self.successor_exit,
            listeners=self.listeners,
            readable=dict(self.readable),
            successor_versions=dict(self.successor_versions),
            successor_code_version=self.successor_code_version,
            snapshot_size=self.snapshot_size,
            timings=timings,
            problems=tuple(self.problems),
            pause_seconds=self.pause_seconds,
            rounds=tuple(self.rounds),
            final=self.final,
            fallback=self.fallback,
            precopy_seconds=self.timings.get("precopy", 0.0),
            fork_seconds=self.fork_seconds,
            versions=dict(self.versions),
            lossy=tuple(export.describe(" for the successor") for export in self.lossy),
        )


def record_handoff(report: HandoffReport, *, service: str) -> None:
    """Report an attempt's outcome, duration and pause to the metrics, labelled with
    the name of the service handed over (``"unnamed"`` for bytes handed over without
    one)."""
    if not enabled():
        return
    emit(HANDOFFS, 1.0, service, report.outcome, report.stage or "")
    emit(HANDOFF_DURATION, report.timings.get("total", 0.0), service, report.outcome)
    if report.pause_seconds:
        emit(HANDOFF_PAUSE, report.pause_seconds, service, report.outcome)
    for piece in report.rounds:
        emit(HANDOFF_PIECES, 1.0, service, piece.kind, report.final)


def record_takeover(
    *,
    service: str,
    predecessor_died: bool,
    pause_seconds: float,
    pieces: Sequence[str],
    final: FinalPiece,
) -> None:
    """Report, in the successor, the handoff it took over: its outcome, the pause, and
    the pre-copy pieces (``pieces``: their kinds) applied before the pause, labelled
    with the name of the service that took over (``"unnamed"`` without one).

    The old process records its own view (:func:`record_handoff`) and exits soon
    after, usually before the next scrape; this process keeps running. A take-over
    happens once per process, before its first scrape, so a counter of it is first
    scraped at 1 (no increase) and each successor's is the same series at 1 again:
    the gauges of the last take-over's time and pause are what an alert reads.
    """
    if not enabled():
        return
    outcome = "predecessor_died" if predecessor_died else "committed"
    emit(TAKEOVERS, 1.0, service, outcome)
    emit(LAST_TAKEOVER_TIMESTAMP, time.time(), service, outcome)
    emit(LAST_TAKEOVER_PAUSE, pause_seconds, service, outcome)
    if pause_seconds:
        emit(TAKEOVER_PAUSE, pause_seconds, service, outcome)
    for kind in pieces:
        emit(TAKEOVER_PIECES, 1.0, service, kind, final)


def record_told_pause(*, service: str, outcome: str, pause_seconds: float) -> None:
    """Set, in the successor, the gauge of the last take-over's pause to the figure the
    old process told after SERVING (HELD), which replaces the successor's own."""
    if enabled():
        emit(LAST_TAKEOVER_PAUSE, pause_seconds, service, outcome)
