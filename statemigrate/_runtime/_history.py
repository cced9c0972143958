"""What a service restored, and restoring a verified snapshot or delta in its light.

A snapshot restored again restores only the components registered since; one older
than the last restored is refused as a replay; a delta applies only on top of the
piece restored last, and deltas can follow a restore only when its plans allow them.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from statemigrate._errors import RestoreError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._carried import NOTHING_CARRIED, Carried, carry_delta, carry_full
from statemigrate._runtime._chainname import named
from statemigrate._runtime._delta import apply_delta
from statemigrate._runtime._deltawrite import delta_obstacle
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._restore import Registered, run_restore
from statemigrate._runtime._waybackwarning import warn_no_way_back
from statemigrate._snapshot._format import DecodeLimits, Snapshot
from statemigrate._snapshot._header import SnapshotHeader

__all__ = [
    "STATE_CREATED_NS",
    "SUMMARIES",
    "RestoreHistory",
    "logged",
    "no_deltas_after",
    "restore_delta",
    "restore_full",
]

logger = logging.getLogger("statemigrate")

SUMMARIES: contextvars.ContextVar[int] = contextvars.ContextVar(
    "statemigrate_restore_summaries", default=logging.INFO
)
"""The level of the line each restored snapshot or delta writes: a checkpoint chain,
whose restore writes one line of its own for all of its pieces, sets DEBUG while it
restores them. A failure is logged at ERROR whatever the level."""

STATE_CREATED_NS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "statemigrate_restore_state_created_ns", default=None
)
"""When the state of the full snapshot being restored was taken, if not when the
snapshot was: a checkpoint chain folded into one full snapshot holds its newest piece's
state, as old as that piece, though the snapshot composed from it is new. ``None``:
the snapshot's own time (its header's ``created_ns``)."""


@dataclass
class RestoreHistory:
    """What a service restored: the last snapshot, its generation, the snapshot each
    component instance was last restored from, why deltas cannot follow, and the
    sections no component claimed, carried into the service's snapshots."""

    last_restored: str | None = None
    restored_generation: int | None = None
    # Per component instance, the snapshot it was last restored from: restoring the
    # same snapshot again restores only the components registered since.
    restored_from: dict[tuple[str, str], str] = field(default_factory=dict)
    no_deltas: str | None = "no full snapshot restored yet"
    carried: Carried = NOTHING_CARRIED

    def record(self, header: SnapshotHeader, entries: Sequence[Registered]) -> None:
        """Note that ``entries`` now hold the state of the snapshot (or delta) of
        ``header``, the last piece this service restored."""
        for entry in entries:
            self.restored_from[(entry.component, entry.instance)] = header.snapshot_id
        self.last_restored = header.snapshot_id
        self.restored_generation = header.generation

    def copy(self) -> RestoreHistory:
        """A copy to :meth:`put_back` when what was restored since is rolled back."""
        return RestoreHistory(
            self.last_restored,
            self.restored_generation,
            dict(self.restored_from),
            self.no_deltas,
            self.carried,
        )

    def put_back(self, saved: RestoreHistory) -> None:
        """Make this history what ``saved`` (a :meth:`copy`) was."""
        self.last_restored = saved.last_restored
        self.restored_generation = saved.restored_generation
        self.restored_from.clear()  # the same dict: the service holds it
        self.restored_from.update(saved.restored_from)
        self.no_deltas = saved.no_deltas
        self.carried = saved.carried


def logged(error: RestoreError) -> RestoreError:
    """Log a restore that failed before its transaction started (unreadable, refused
    bytes), as the transaction logs its own failures; the error to raise names the
    checkpoint chain being restored, if one is (see ``_chainname``)."""
    error = named(error)
    logger.error("%s", error)
    return error


def _failed(error: RestoreError, what: str) -> RestoreError:
    """Log the failed restore of ``what`` (a snapshot's or a delta's short id, as its
    summary names it), or of the checkpoint chain it is a piece of, which the error
    to raise then names."""
    chained = named(error)
    if chained is error:
        logger.error("%s failed: %s", what, error)
        return error
    logger.error("%s", chained)
    return chained.with_traceback(error.__traceback__)


def restore_full(
    snapshot: Snapshot,
    entries: Mapping[tuple[str, str], Registered],
    history: RestoreHistory,
    *,
    allow_lossy: AllowLossy,
    strict: bool,
    force: bool,
    allow_older: bool,
    read_seconds: float,
    verify_seconds: float,
    progress: Callable[[float], None],
    retired: Collection[str] = (),
) -> RestoreReport:
    """Restore a verified full snapshot into ``entries``, all or nothing, and record it
    in ``history``, with the sections no component claims carried (those of a
    component in ``retired`` dropped)."""
    header = snapshot.header
    settled: list[Registered] = []
    pending: list[Registered] = []
    for key, entry in entries.items():
        done = not force and history.restored_from.get(key) == header.snapshot_id
        (settled if done else pending).append(entry)
    created_ns = STATE_CREATED_NS.get()
    if created_ns is None:
        created_ns = header.created_ns
    if header.snapshot_id == history.last_restored and not pending:
        report = RestoreReport(
            snapshot_id=header.snapshot_id,
            generation=header.generation,
            skipped=True,
            already_restored=tuple(entry.key for entry in settled),
            size=snapshot.size,
            timings={"read": read_seconds, "verify": verify_seconds},
            carried=history.carried.keys,
            created_ns=created_ns,
        )
        logger.log(SUMMARIES.get(), "%s", report.summary())
        return report
    newest = history.restored_generation
    if newest is not None and header.generation < newest and not allow_older:
        raise logged(
            RestoreError(
                "verify",
                f"snapshot generation {header.generation} is older than generation"
                f" {newest} restored before (a replay?); pass allow_older=True to go back",
            )
        )
    # Strict refuses any section unclaimed (in the transaction below): none is left.
    carried = Carried(since=header.snapshot_id)
    if not strict:
        # Checked before anything is applied: a section that cannot be carried fails
        # the restore as one of its own sections would.
        try:
            carried = carry_full(snapshot, entries.keys(), retired)
        except RestoreError as exc:
            raise logged(exc) from exc.__cause__
    try:
        report = run_restore(
            snapshot,
            pending,
            settled=settled,
            allow_lossy=allow_lossy,
            strict=strict,
            read_seconds=read_seconds,
            verify_seconds=verify_seconds,
            progress=progress,
        )
    except RestoreError as exc:
        error = _failed(exc, f"restore of {header.snapshot_id[:12]}")
        if error is exc:
            raise
        raise error from exc.__cause__
    # The transaction reports what it applied; how old that state is, the header says.
    report = replace(report, created_ns=created_ns)
    history.record(header, pending)
    history.no_deltas = no_deltas_after(report, entries, allow_lossy=allow_lossy)
    history.carried = carried
    report = replace(report, carried=carried.keys)
    logger.log(SUMMARIES.get(), "%s", report.summary())
    warn_no_way_back(report, pending)
    return report


def restore_delta(
    snapshot: Snapshot,
    entries: Mapping[tuple[str, str], Registered],
    history: RestoreHistory,
    *,
    allow_lossy: AllowLossy,
    strict: bool,
    read_seconds: float,
    verify_seconds: float,
    limits: DecodeLimits | None = None,
    retired: Collection[str] = (),
) -> RestoreReport:
    """Apply a verified delta on top of the piece restored last, all or nothing; a
    section it changes that no component claims is applied to the section carried (a
    retired component's dropped; ``limits``: the service's)."""
    header = snapshot.header
    base = header.base
    assert base is not None
    if header.snapshot_id == history.last_restored:
        report = RestoreReport(
            snapshot_id=header.snapshot_id,
            generation=header.generation,
            skipped=True,
            already_restored=tuple(e.key for e in entries.values()),
            size=snapshot.size,
            timings={"read": read_seconds, "verify": verify_seconds},
            delta=True,
            carried=history.carried.keys,
            created_ns=header.created_ns,
        )
        logger.log(SUMMARIES.get(), "%s", report.summary())
        return report
    last = (history.last_restored, history.restored_generation)
    if (base.snapshot_id, base.generation) != last:
        have = "nothing" if last[0] is None else f"{last[0][:12]} gen {last[1]}"
        raise logged(
            RestoreError(
                "verify",
                f"delta {header.snapshot_id[:12]} applies to {base.snapshot_id[:12]}"
                f" gen {base.generation}, but this service restored {have} last",
            )
        )
    on_base = [
        entry
        for key, entry in entries.items()
        if history.restored_from.get(key) == base.snapshot_id
    ]
    fresh = {(e.component, e.instance) for e in entries.values()} - {
        (e.component, e.instance) for e in on_base
    }
    for section in header.sections:
        if (section.component, section.instance) in fresh:
            raise logged(
                RestoreError(
                    "verify",
                    f"the delta changes {section.key}, which was not restored from its base",
                    component=section.key,
                )
            )
    carried = history.carried
    if not strict:  # strict refuses any section unclaimed, in the transaction below
        try:
            carried = carry_delta(
                snapshot, history.carried, entries.keys(), retired, limits or DecodeLimits()
            )
        except RestoreError as exc:
            raise logged(exc) from exc.__cause__
    try:
        report = apply_delta(
            snapshot,
            on_base,
            allow_lossy=allow_lossy,
            strict=strict,
            read_seconds=read_seconds,
            verify_seconds=verify_seconds,
        )
    except RestoreError as exc:
        error = _failed(exc, f"delta {header.snapshot_id[:12]}")
        if error is exc:
            raise
        raise error from exc.__cause__
    report = replace(report, created_ns=header.created_ns)
    history.record(header, on_base)
    history.carried = carried
    report = replace(report, carried=carried.keys)
    logger.log(SUMMARIES.get(), "%s", report.summary())
    return report


def no_deltas_after(
    report: RestoreReport,
    entries: Mapping[tuple[str, str], Registered],
    *,
    allow_lossy: AllowLossy,
) -> str | None:
    """Why deltas cannot follow this restore, or ``None`` when they can.

    Components the snapshot lacks (new in this code) and sections no component
    claims (a component this code dropped) are no obstacle: deltas leave the
    former alone and skip the latter, as the full restore did.
    """
    if not report.components:
        return "no component was restored"
    for restored in report.components:
        entry = entries[(restored.component, restored.instance)]
        reason = delta_obstacle(entry, restored.source_version, allow_lossy=allow_lossy)
        if reason is not None:
            return reason
    return None
