"""The instruments, defined once, and the sink that records them.

Every metric statemigrate reports is an :class:`Instrument` here: its Prometheus name
(base units, ``_seconds``, ``_bytes``, ``_total``), kind, help text, unit and label
names. Labels are few and bounded: service and component names, schema versions,
phases, outcomes, store kinds; never snapshot ids, keys or pids.

Reporting goes to one process-wide :class:`Sink`, as metrics do in every client
library: the metrics of a process are one set, whatever object produced them. With no
sink installed, :func:`emit` returns after one ``None`` check and callers that compute
labels first ask :func:`enabled`.

Every series of a counter whose labels are known before its first event is
*declared* (:func:`declare`): the sink creates it at zero, at once or as soon as it is
installed. Prometheus' ``increase()`` cannot see a series' first sample as an increase,
so a counter first scraped at 1 (a failure counted before any scrape saw it at 0) would
never fire an alert on it. Events a process sees once (its start-up restore, the
handoff it took over) happen before its first scrape and would not show in a counter at
all: gauges hold the Unix time of the last one (``statemigrate_last_*_timestamp_seconds``)
and what it measured (its duration, its pause, the age of the state it restored), which
an alert compares with ``time()``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "BUILD_INFO",
    "CARRIED_SECTIONS",
    "CHECKPOINT_PAUSE",
    "COMMITS",
    "COMMIT_OUTCOMES",
    "COMMIT_DURATION",
    "COMPONENT_RESTORES",
    "GENERATION",
    "HANDOFFS",
    "HANDOFF_DURATION",
    "HANDOFF_PAUSE",
    "HANDOFF_PIECES",
    "HANDOFF_STAGES",
    "INSTRUMENTS",
    "Instrument",
    "InstrumentKind",
    "LAST_LOSSY_EXPORT_TIMESTAMP",
    "LAST_RESTORED_SNAPSHOT_AGE",
    "LAST_RESTORE_DURATION",
    "LAST_RESTORE_TIMESTAMP",
    "LAST_SNAPSHOT_TIMESTAMP",
    "LAST_TAKEOVER_PAUSE",
    "LAST_TAKEOVER_TIMESTAMP",
    "RESTORES",
    "RESTORE_DURATION",
    "RESTORE_OUTCOMES",
    "RESTORE_PROGRESS",
    "RESTORING",
    "SNAPSHOT_BYTES",
    "SNAPSHOT_DURATION",
    "Sink",
    "TAKEOVERS",
    "TAKEOVER_OUTCOMES",
    "TAKEOVER_PAUSE",
    "TAKEOVER_PIECES",
    "TRIAL",
    "UNNAMED_SERVICE",
    "UNRESTORED_GENERATIONS",
    "active_sink",
    "declare",
    "declare_service",
    "declare_store",
    "declared",
    "emit",
    "enabled",
    "use_sink",
]

logger = logging.getLogger("statemigrate")

InstrumentKind = Literal["counter", "gauge", "histogram"]

#: Seconds, from a small in-memory restore to a multi-gigabyte one.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One metric: what it is called, what it measures, and by which labels.

    Attributes:
        name: the Prometheus name, unit suffix and ``_total`` included.
        kind: ``counter``, ``gauge`` or ``histogram``.
        help: one sentence on what it measures.
        unit: ``seconds``, ``bytes``, ``ratio`` or ``""`` (a plain count or state).
        labels: the label names, in the order :func:`emit` takes their values.
        buckets: a histogram's upper bounds, in seconds.
    """

    name: str
    kind: InstrumentKind
    help: str
    unit: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


def _histogram(name: str, help: str, labels: tuple[str, ...]) -> Instrument:
    return Instrument(name, "histogram", help, "seconds", labels, DURATION_BUCKETS)


SNAPSHOT_DURATION = _histogram(
    "statemigrate_snapshot_duration_seconds",
    "Seconds to export every component and encode them into one snapshot, whether or not"
    " it is then committed.",
    ("service",),
)
SNAPSHOT_BYTES = Instrument(
    "statemigrate_snapshot_bytes",
    "gauge",
    "Size of the last snapshot the service committed to a store (a checkpoint chain: the"
    " whole chain), in bytes.",
    "bytes",
    ("service",),
)
LAST_SNAPSHOT_TIMESTAMP = Instrument(
    "statemigrate_last_snapshot_timestamp_seconds",
    "gauge",
    "Unix time at which the service last committed a snapshot to a store, or a checkpoint"
    " found its state unchanged since it committed one.",
    "seconds",
    ("service",),
)
GENERATION = Instrument(
    "statemigrate_generation",
    "gauge",
    "Generation of the last snapshot the service committed to a store or restored.",
    "",
    ("service",),
)
UNRESTORED_GENERATIONS = Instrument(
    "statemigrate_unrestored_generations",
    "gauge",
    "Generations the service's store keeps as unrestored: snapshots a start could not"
    " restore (after a rollback that started cold, the newer release's state), kept out"
    " of retention's reach until forgotten; as of the start-up restore or the last commit."
    " Only for stores that list them (an object store).",
    "",
    ("service", "store"),
)
CARRIED_SECTIONS = Instrument(
    "statemigrate_carried_sections",
    "gauge",
    "Snapshot sections the service carries: sections of the last snapshot it restored"
    " that no component of this release claims (a rollback to a release without their"
    " component), written unchanged into every snapshot it writes; as of the last restore.",
    "",
    ("service",),
)
COMMIT_DURATION = _histogram(
    "statemigrate_commit_duration_seconds",
    "Seconds a store took to commit a snapshot atomically.",
    ("service", "store"),
)
COMMITS = Instrument(
    "statemigrate_commits_total",
    "counter",
    "Snapshot commits to a store, by outcome (committed, failed, conflict: refused or"
    " beaten because another process commits to the same place).",
    "",
    ("service", "store", "outcome"),
)
RESTORE_DURATION = _histogram(
    "statemigrate_restore_duration_seconds",
    "Seconds a successful restore spent in each phase (read, verify, decode, migrate,"
    " validate, apply); the phases add up to the whole restore.",
    ("service", "phase"),
)
RESTORES = Instrument(
    "statemigrate_restores_total",
    "counter",
    "Restores, by outcome (restored, skipped, failed); one per restore, however many"
    " pieces it applies (a checkpoint chain, a take-over's pre-copy pieces).",
    "",
    ("service", "outcome"),
)
LAST_RESTORE_TIMESTAMP = Instrument(
    "statemigrate_last_restore_timestamp_seconds",
    "gauge",
    "Unix time at which this process last finished a restore of each outcome (restored,"
    " skipped, failed), its start-up restore included.",
    "seconds",
    ("service", "outcome"),
)
LAST_RESTORE_DURATION = Instrument(
    "statemigrate_last_restore_duration_seconds",
    "gauge",
    "Seconds the last successful restore of this process took, all phases (and all the"
    " pieces of a checkpoint chain or a take-over) together; its start-up restore included.",
    "seconds",
    ("service",),
)
# An age, not the snapshot's own timestamp: what the restore measured, as the duration
# beside it, fixed once the restore is over; an alert pairs it with the time of the
# restore (statemigrate_last_restore_timestamp_seconds{outcome="restored"}). A
# timestamp would need both gauges subtracted, and a clock of its own to read it by.
LAST_RESTORED_SNAPSHOT_AGE = Instrument(
    "statemigrate_last_restored_snapshot_age_seconds",
    "gauge",
    "Age of the state this process last restored when that restore finished: seconds"
    " since the snapshot restored was taken (of a checkpoint chain, its newest piece);"
    " its start-up restore included. The changes made after that were not restored.",
    "seconds",
    ("service",),
)
COMPONENT_RESTORES = Instrument(
    "statemigrate_component_restores_total",
    "counter",
    "Component instances restored, by the schema version read and the version restored.",
    "",
    ("service", "component", "from_version", "to_version"),
)
LAST_LOSSY_EXPORT_TIMESTAMP = Instrument(
    "statemigrate_last_lossy_export_timestamp_seconds",
    "gauge",
    "Unix time of the last export of a component at another version through lossy steps"
    " (a rollback's downgrade), by the live version and the version written.",
    "seconds",
    ("service", "component", "from_version", "to_version"),
)
RESTORING = Instrument(
    "statemigrate_restoring",
    "gauge",
    "1 while the service is restoring (or waiting for a handoff's snapshot), else 0.",
    "",
    ("service",),
)
RESTORE_PROGRESS = Instrument(
    "statemigrate_restore_progress_ratio",
    "gauge",
    "How far the current or last restore got, from 0 to 1.",
    "ratio",
    ("service",),
)
CHECKPOINT_PAUSE = _histogram(
    "statemigrate_checkpoint_pause_seconds",
    "Seconds a checkpoint held the service's writers while it took the snapshot (the"
    " store's commit runs after they go on).",
    ("service",),
)
HANDOFF_DURATION = _histogram(
    "statemigrate_handoff_duration_seconds",
    "Seconds from the start of a handoff attempt until the successor took over or the"
    " attempt failed (the old process's view).",
    ("service", "outcome"),
)
HANDOFF_PAUSE = _histogram(
    "statemigrate_handoff_pause_seconds",
    "Seconds the writers were held during a handoff: from pause() until stop_accepting()"
    " let them go to the successor, or until resume() after a failure.",
    ("service", "outcome"),
)
HANDOFFS = Instrument(
    "statemigrate_handoffs_total",
    "counter",
    "Handoff attempts by the old process, by outcome (ready, failed) and the stage that"
    " failed (empty when ready).",
    "",
    ("service", "outcome", "stage"),
)
HANDOFF_PIECES = Instrument(
    "statemigrate_handoff_pieces_total",
    "counter",
    "Old process: pre-copy pieces the successor applied while this process served, by kind"
    " (full: round 0, delta), and what the pause carried (final: delta, full, snapshot).",
    "",
    ("service", "kind", "final"),
)
# The successor's view of the handoff it took over, in families of their own: the old
# process records the attempt and then exits, usually before its next scrape, so only
# these are seen after a successful handoff; and since each side records one family,
# a sum over all processes counts every handoff once per family.
TAKEOVERS = Instrument(
    "statemigrate_handoff_takeovers_total",
    "counter",
    "Successor: handoffs this process took over, by outcome (committed: after COMMIT;"
    " predecessor_died: the old process died after sending the snapshot).",
    "",
    ("service", "outcome"),
)
TAKEOVER_PAUSE = _histogram(
    "statemigrate_handoff_takeover_pause_seconds",
    "Successor: seconds the writers were held in the handoff it took over, from the old"
    " process's pause() until this process started serving (the old process's count up"
    " to the snapshot plus this process's own time since); from an old process that does"
    " not send that count (an older release), measured from this process's last message"
    " before the snapshot, an upper bound.",
    ("service", "outcome"),
)
LAST_TAKEOVER_TIMESTAMP = Instrument(
    "statemigrate_last_takeover_timestamp_seconds",
    "gauge",
    "Successor: Unix time at which this process took over a handoff and started serving,"
    " by outcome (committed, predecessor_died).",
    "seconds",
    ("service", "outcome"),
)
LAST_TAKEOVER_PAUSE = Instrument(
    "statemigrate_last_takeover_pause_seconds",
    "gauge",
    "Successor: seconds the writers were held in the handoff this process took over (as"
    " statemigrate_handoff_takeover_pause_seconds observes it), by outcome.",
    "seconds",
    ("service", "outcome"),
)
TAKEOVER_PIECES = Instrument(
    "statemigrate_handoff_takeover_pieces_total",
    "counter",
    "Successor: pre-copy pieces it applied before the pause of the handoff it took over,"
    " by kind (full: round 0, delta), and what the pause carried (final: delta, full,"
    " snapshot).",
    "",
    ("service", "kind", "final"),
)
TRIAL = Instrument(
    "statemigrate_trial",
    "gauge",
    "1 while this process is the generation on trial after a handoff (a revert can still"
    " bring the permanent generation back), 0 once it is permanent or not on trial.",
    "",
    ("service",),
)
BUILD_INFO = Instrument(
    "statemigrate_build_info",
    "gauge",
    "Always 1; the version label is the statemigrate release running.",
    "",
    ("version",),
)

INSTRUMENTS: tuple[Instrument, ...] = (
    SNAPSHOT_DURATION,
    SNAPSHOT_BYTES,
    LAST_SNAPSHOT_TIMESTAMP,
    GENERATION,
    UNRESTORED_GENERATIONS,
    CARRIED_SECTIONS,
    COMMIT_DURATION,
    COMMITS,
    RESTORE_DURATION,
    RESTORES,
    LAST_RESTORE_TIMESTAMP,
    LAST_RESTORE_DURATION,
    LAST_RESTORED_SNAPSHOT_AGE,
    COMPONENT_RESTORES,
    LAST_LOSSY_EXPORT_TIMESTAMP,
    RESTORING,
    RESTORE_PROGRESS,
    CHECKPOINT_PAUSE,
    HANDOFF_DURATION,
    HANDOFF_PAUSE,
    HANDOFFS,
    HANDOFF_PIECES,
    TAKEOVERS,
    TAKEOVER_PAUSE,
    LAST_TAKEOVER_TIMESTAMP,
    LAST_TAKEOVER_PAUSE,
    TAKEOVER_PIECES,
    TRIAL,
    BUILD_INFO,
)
"""Every instrument, in the order the documentation lists them."""


class Sink(Protocol):
    """Where recorded values go: a metrics library, or a test's list."""

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        """Add ``value`` to a counter, set a gauge to it, or observe it in a histogram.

        ``labels`` are the values of ``instrument.labels``, in that order. A sink must
        not raise: reporting never fails a snapshot, a restore or a handoff.

        A sink may also have a ``prepare(instrument, labels)`` method: create that
        series of a counter or histogram at zero, with nothing recorded (see
        :func:`declare`). Both backends have it; a sink without it is not asked.
        """


_sink: Sink | None = None

UNNAMED_SERVICE = "unnamed"
"""The ``service`` label of a handoff's metrics when no :class:`~statemigrate.Service`
takes part (``send_handoff``, ``receive_handoff`` with ``ready()``): never empty, since
Prometheus drops an empty label and the alerts' summaries would name no service."""

# Every series declared so far, in declaration order: a sink installed later creates
# them too. Bounded: label values of declared series are outcomes, stages and kinds,
# and the names of the services and stores of this process.
_declared: dict[tuple[Instrument, tuple[str, ...]], None] = {}


def use_sink(sink: Sink | None) -> Sink | None:
    """Install ``sink`` for the whole process (``None``: record nothing); return the
    sink it replaces. The new sink creates every series declared so far at zero."""
    global _sink
    previous, _sink = _sink, sink
    if sink is not None:
        for instrument, labels in list(_declared):
            _prepare(sink, instrument, labels)
    return previous


def declare(instrument: Instrument, *labels: str) -> None:
    """Declare a series of a counter (or histogram) before its first event: the sink
    creates it at zero now, or when one is installed.

    Prometheus' ``increase()`` and ``rate()`` see a change only between two samples of
    a series: one first scraped at 1 shows no increase, and an alert on it never fires.
    A series created at zero when metrics are enabled is scraped at 0 before its first
    event. Declaring a series again does nothing.
    """
    key = (instrument, labels)
    if key in _declared:
        return
    _declared[key] = None
    sink = _sink
    if sink is not None:
        _prepare(sink, instrument, labels)


def declared() -> list[tuple[Instrument, tuple[str, ...]]]:
    """Every series declared so far, in declaration order."""
    return list(_declared)


def _prepare(sink: Sink, instrument: Instrument, labels: tuple[str, ...]) -> None:
    prepare = getattr(sink, "prepare", None)
    if prepare is None:
        return
    try:
        prepare(instrument, labels)
    except Exception:
        logger.exception("creating %s%s failed", instrument.name, labels)


def active_sink() -> Sink | None:
    """The installed sink, or ``None``."""
    return _sink


def enabled() -> bool:
    """Whether anything records: callers skip building labels when not."""
    return _sink is not None


def emit(instrument: Instrument, value: float, *labels: str) -> None:
    """Record ``value`` for ``instrument`` with the given label values, if a sink is
    installed."""
    sink = _sink
    if sink is not None:
        try:
            sink.record(instrument, value, labels)
        except Exception:
            # A metrics backend's trouble is logged; the snapshot, restore or
            # handoff being reported goes on.
            logger.exception("recording %s failed", instrument.name)


#: The stages a handoff attempt fails at, as ``statemigrate_handoffs_total`` labels them.
HANDOFF_STAGES = (
    "spawn",
    "handshake",
    "precopy",
    "pause",
    "writes",
    "export",
    "transfer",
    "ready",
    "commit",
    "serving",
)
#: The outcomes of a restore, as ``statemigrate_restores_total`` labels them.
RESTORE_OUTCOMES = ("restored", "skipped", "failed")
#: The outcomes of a commit, as ``statemigrate_commits_total`` labels them.
COMMIT_OUTCOMES = ("committed", "failed", "conflict")
#: The outcomes of a take-over, as the successor's metrics label them.
TAKEOVER_OUTCOMES = ("committed", "predecessor_died")


def declare_service(service: str) -> None:
    """Declare the series of a service's restores and handoffs, known from its name.

    A service may hand over (or take over) at any time after its creation, and a
    failed attempt must be a rise from a sample at 0, so its handoff series are
    declared with its restores', not when a handoff starts.
    """
    for outcome in RESTORE_OUTCOMES:
        declare(RESTORES, service, outcome)
    declare(HANDOFFS, service, "ready", "")
    for stage in HANDOFF_STAGES:
        declare(HANDOFFS, service, "failed", stage)
    for outcome in ("ready", "failed"):
        declare(HANDOFF_DURATION, service, outcome)
        declare(HANDOFF_PAUSE, service, outcome)
    for outcome in TAKEOVER_OUTCOMES:
        declare(TAKEOVERS, service, outcome)
        declare(TAKEOVER_PAUSE, service, outcome)


def declare_store(service: str, store_kind: str) -> None:
    """Declare the series of a service's commits to a store of ``store_kind``."""
    for outcome in COMMIT_OUTCOMES:
        declare(COMMITS, service, store_kind, outcome)
