"""What a service reports of its snapshots, commits and restores to the metrics and the
traces (the observe layer's instruments and spans), labelled with the service's name."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from statemigrate._errors import StoreConflictError, StoreSharedError
from statemigrate._observe._instruments import (
    CARRIED_SECTIONS,
    COMMIT_DURATION,
    COMMITS,
    COMPONENT_RESTORES,
    GENERATION,
    LAST_RESTORE_DURATION,
    LAST_RESTORE_TIMESTAMP,
    LAST_RESTORED_SNAPSHOT_AGE,
    LAST_SNAPSHOT_TIMESTAMP,
    RESTORE_DURATION,
    RESTORES,
    SNAPSHOT_BYTES,
    SNAPSHOT_DURATION,
    UNRESTORED_GENERATIONS,
    declare_store,
    emit,
    enabled,
)
from statemigrate._observe._tracing import ended_now, record_span, tracing_enabled

if TYPE_CHECKING:
    from statemigrate._runtime._report import CommitReport, RestoreReport, SnapshotReport

__all__ = [
    "RESTORE_PHASES",
    "commit_failed",
    "count_commit",
    "count_restore_failed",
    "record_carried",
    "record_forked_snapshot",
    "record_snapshot",
    "report_restore",
    "restore_failed",
    "store_current",
    "store_kind",
    "store_unrestored",
    "trace_commit",
    "trace_restore",
]

RESTORE_PHASES = ("read", "verify", "decode", "migrate", "validate", "apply")
"""The phases of a restore, in order, as its report times them."""


def store_kind(store: object) -> str:
    """A store's kind for a metric label: ``tmpfs`` for a TmpfsStore, the class name
    for others (never a path or a bucket: labels stay few)."""
    name = type(store).__name__
    return name.removesuffix("Store").lower() or name


def record_snapshot(service: str, generation: int, report: SnapshotReport, seconds: float) -> None:
    """Report a snapshot taken to the metrics and traces."""
    _record_snapshot(
        service,
        generation,
        report.size,
        seconds,
        components=[s.component for s in report.sections],
        phases=list(report.timings.items()),
    )


def record_forked_snapshot(service: str, generation: int, size: int, seconds: float) -> None:
    """Report a full snapshot a forked child took and this process never saw taken (a
    pre-copy handoff's round 0): ``seconds`` from the fork to the child's exit. Its
    components' names stayed in the child, so the span does not name them."""
    _record_snapshot(service, generation, size, seconds, components=None, phases=[])


def _record_snapshot(
    service: str,
    generation: int,
    size: int,
    seconds: float,
    *,
    components: list[str] | None,
    phases: list[tuple[str, float]],
) -> None:
    if tracing_enabled():
        attributes: dict[str, str | int | list[str]] = {
            "statemigrate.service": service,
            "statemigrate.generation": generation,
            "statemigrate.snapshot_bytes": size,
        }
        if components is not None:
            attributes["statemigrate.components"] = components
        record_span(
            "statemigrate.snapshot", *ended_now(seconds), attributes=attributes, children=phases
        )
    # The gauges of the last snapshot wait for its commit (count_commit): one taken for
    # a handoff commits nowhere, one whose commit fails leaves the store as it was, and
    # an operator's staleness alert must see neither as a snapshot kept.
    emit(SNAPSHOT_DURATION, seconds, service)


def count_commit(service: str, store: object, committed: CommitReport) -> None:
    """Report a commit to the metrics: its time and outcome, and the snapshot the store
    now holds (size, generation, the time it became the latest)."""
    if enabled():
        kind = store_kind(store)
        declare_store(service, kind)
        emit(COMMIT_DURATION, committed.commit_seconds, service, kind)
        emit(COMMITS, 1.0, service, kind, "committed")
        emit(SNAPSHOT_BYTES, committed.snapshot.size, service)
        emit(GENERATION, committed.snapshot.generation, service)
        store_current(service)
        store_unrestored(service, store)


def record_carried(service: str, count: int) -> None:
    """Report how many sections ``service`` carries after a restore (see
    :mod:`statemigrate._runtime._carried`)."""
    if enabled():
        emit(CARRIED_SECTIONS, float(count), service)


def store_unrestored(service: str, store: object) -> None:
    """Report how many generations ``store`` keeps as unrestored, as it last read or
    wrote them (``last_unrestored``: an object store; no request is made). Stores that
    do not list them (a tmpfs store keeps a copy in one file) report nothing."""
    kept = getattr(store, "last_unrestored", None)
    if isinstance(kept, tuple) and enabled():
        emit(UNRESTORED_GENERATIONS, float(len(kept)), service, store_kind(store))


def store_current(service: str) -> None:
    """Report that the store's latest snapshot holds the service's state as of now: it
    was just committed, or a checkpoint found nothing changed since it was."""
    emit(LAST_SNAPSHOT_TIMESTAMP, time.time(), service)


def commit_failed(service: str, store: object, seconds: float, error: BaseException) -> None:
    """Report a commit that failed to the metrics and traces."""
    if enabled():
        kind = store_kind(store)
        declare_store(service, kind)
        emit(COMMITS, 1.0, service, kind, commit_outcome(error))
    trace_commit(service, store, seconds, error=str(error))


def commit_outcome(error: BaseException) -> str:
    """How ``statemigrate_commits_total`` labels a commit that raised ``error``:
    ``conflict`` when another process commits to the same place (a misconfiguration
    that no retry mends, alerted on its own), else ``failed``."""
    return "conflict" if isinstance(error, StoreConflictError | StoreSharedError) else "failed"


def trace_commit(service: str, store: object, seconds: float, error: str | None = None) -> None:
    """Report a commit, done or failed, to the traces."""
    if tracing_enabled():
        record_span(
            "statemigrate.commit",
            *ended_now(seconds),
            attributes={
                "statemigrate.service": service,
                "statemigrate.store": store_kind(store),
            },
            error=error,
        )


def count_restore_failed(service: str) -> None:
    """Report a restore that failed to the metrics."""
    if enabled():
        emit(RESTORES, 1.0, service, "failed")
        emit(LAST_RESTORE_TIMESTAMP, time.time(), service, "failed")


def restore_failed(service: str, reason: str, seconds: float) -> None:
    """Report a restore that failed to the metrics and traces."""
    count_restore_failed(service)
    if tracing_enabled():
        record_span(
            "statemigrate.restore",
            *ended_now(seconds),
            attributes={"statemigrate.service": service},
            error=reason,
        )


def trace_restore(service: str, report: RestoreReport, seconds: float) -> None:
    """Report a restore, done or skipped, to the traces."""
    start, end = ended_now(seconds)
    record_span(
        "statemigrate.restore",
        start,
        end,
        attributes={
            "statemigrate.service": service,
            "statemigrate.generation": report.generation,
            "statemigrate.snapshot_bytes": report.size,
            "statemigrate.skipped": report.skipped,
            "statemigrate.components": [
                f"{c.component} {c.source_version}->{c.target_version}" for c in report.components
            ],
        },
        children=[(phase, report.timings.get(phase, 0.0)) for phase in RESTORE_PHASES],
    )


def report_restore(service: str, generation: int, *pieces: RestoreReport) -> None:
    """Report a restore, done or skipped, to the metrics: one restore, whether it
    restored one snapshot or several pieces (a checkpoint chain, a take-over's pre-copy
    pieces and the snapshot of its pause). Each phase's seconds are the pieces' added;
    the components restored are those of the first piece that was not skipped (a
    delta only changes components its base restored); the age of the state restored
    is the last piece's."""
    done = [piece for piece in pieces if not piece.skipped]
    outcome = "restored" if done else "skipped"
    emit(RESTORES, 1.0, service, outcome)
    emit(LAST_RESTORE_TIMESTAMP, time.time(), service, outcome)
    emit(GENERATION, generation, service)
    if not done:
        return
    timings: dict[str, float] = {}
    for piece in done:
        for phase, seconds in piece.timings.items():
            timings[phase] = timings.get(phase, 0.0) + seconds
    for phase, seconds in timings.items():
        emit(RESTORE_DURATION, seconds, service, phase)
    emit(LAST_RESTORE_DURATION, sum(timings.values()), service)
    # The state is the newest piece's (a chain's last delta, a take-over's snapshot of
    # the pause): what the restore lost is everything changed since it was taken. Two
    # hosts' clocks may differ a little: an age below 0 is as fresh as can be told.
    age = time.time() - pieces[-1].created_ns / 1e9
    emit(LAST_RESTORED_SNAPSHOT_AGE, max(0.0, age), service)
    for restored in done[0].components:
        emit(
            COMPONENT_RESTORES,
            1.0,
            service,
            restored.component,
            str(restored.source_version),
            str(restored.target_version),
        )
