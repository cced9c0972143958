"""Exports that run lossy steps, said out loud: one log line per component and a gauge.

A snapshot written at an older version (a rollback handoff, ``snapshot(targets=...)``
or ``commit(targets=...)`` to a downgrade) may go through steps declared lossy, which
drop or default fields. ``allow_lossy`` lets them run, but the loss itself would
otherwise show nowhere: the reader restores the older version with no step of its own
and reports ``0 steps``. So the exporting side names each component that lost
something, the versions, the lossy steps and the fields they declare lost, and sets
``statemigrate_last_lossy_export_timestamp_seconds``.

How loud depends on what the loss does. A handoff's is a WARNING (the handoff logs
it): the successor serves without those fields from then on. A snapshot or commit
of the service's own is INFO: it is a deliberate call that leaves the live state whole,
and often routine (an export at every stop for the release before, in case of a
rollback, which may never be read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from statemigrate._model._allowlossy import AllowLossy
from statemigrate._observe._instruments import LAST_LOSSY_EXPORT_TIMESTAMP, emit, enabled

if TYPE_CHECKING:
    from statemigrate._runtime._restore import Registered

__all__ = [
    "LossyExport",
    "announce_lossy_exports",
    "lossy_announced",
    "lossy_exports",
    "record_lossy_exports",
    "record_received_loss",
]

logger = logging.getLogger("statemigrate")

# Set while a caller that announced its lossy exports itself (a handoff, once per
# attempt) takes the snapshot, so the snapshot does not announce them again.
_ANNOUNCED: ContextVar[bool] = ContextVar("statemigrate_lossy_announced", default=False)


@dataclass(frozen=True)
class LossyExport:
    """A component exported at ``target`` from its live ``source`` through lossy steps.

    Attributes:
        component: the component's name.
        source: its live version.
        target: the version written.
        steps: the lossy steps of the plan, printed (``assignments 2 -> 1 (drop_bucket)``).
        lost: the fields those steps declare lost (``users.*.bucket``); empty when
            they declare none.
    """

    component: str
    source: int
    target: int
    steps: tuple[str, ...]
    lost: tuple[str, ...]

    def describe(self, purpose: str) -> str:
        """One line: ``assignments exported at version 1 for the successor, from 2
        through lossy step 2 -> 1 (drop_bucket): it loses data in users.*.bucket``: the
        field dropped, or converted to a type that holds less (a Decimal to a float)."""
        steps = ", ".join(step.removeprefix(f"{self.component} ") for step in self.steps)
        plural = "s" if len(self.steps) > 1 else ""
        lost = (
            f"it loses data in {', '.join(self.lost)}"
            if self.lost
            else "the fields it loses not declared"
        )
        return (
            f"{self.component} exported at version {self.target}{purpose}, from"
            f" {self.source} through lossy step{plural} {steps}: {lost}"
        )


def lossy_exports(
    entries: Sequence[Registered], targets: Mapping[str, int] | None, allow_lossy: AllowLossy
) -> list[LossyExport]:
    """The components that ``targets`` exports through lossy steps, one per component
    (its instances share the plan). A target that cannot be reached is left to the
    export, which raises for it."""
    found: dict[str, LossyExport] = {}
    for entry in entries:
        target = (targets or {}).get(entry.component)
        if target is None or target == entry.spec.version or entry.component in found:
            continue
        try:
            plan = entry.registry.plan(
                entry.component, entry.spec.version, target, allow_lossy=allow_lossy
            )
        except Exception:  # refused or unreachable: the export says so itself
            continue
        lossy = plan.lossy_steps
        if lossy:
            found[entry.component] = LossyExport(
                entry.component,
                entry.spec.version,
                target,
                tuple(str(step) for step in lossy),
                tuple(dict.fromkeys(field for step in lossy for field in step.lost_fields)),
            )
    return list(found.values())


def announce_lossy_exports(
    entries: Sequence[Registered],
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
    *,
    service: str,
    purpose: str = "",
) -> list[LossyExport]:
    """Log at INFO each component that ``targets`` exported through lossy steps and
    set its ``statemigrate_last_lossy_export_timestamp_seconds``; ``purpose`` ends the
    versions' phrase. Inside :func:`lossy_announced` nothing is said: the caller says
    it itself."""
    if not targets or _ANNOUNCED.get():
        return []
    exports = lossy_exports(entries, targets, allow_lossy)
    for export in exports:
        logger.info("%s", export.describe(purpose))
    record_lossy_exports(service, exports)
    return exports


def record_lossy_exports(
    service: str, exports: Sequence[LossyExport], *, at: float | None = None
) -> None:
    """Set the gauge of each lossy export to ``at`` (now by default), Unix time."""
    if not exports or not enabled():
        return
    now = time.time() if at is None else at
    for export in exports:
        emit(
            LAST_LOSSY_EXPORT_TIMESTAMP,
            now,
            service,
            export.component,
            str(export.source),
            str(export.target),
        )


def record_received_loss(
    service: str, parent_pid: int, lossy: Mapping[str, tuple[int, int, str]]
) -> None:
    """A handoff's successor repeats what its old process said it lost (``{component:
    (its version, the version sent, its line)}``) and sets the gauge: the old process
    exits soon after, usually before a scrape, and this process is the one scraped."""
    for said in (line for _, _, line in lossy.values()):
        logging.getLogger("statemigrate.handoff").warning(
            "handoff: pid %d says: %s", parent_pid, said
        )
    record_lossy_exports(
        service,
        [LossyExport(name, source, target, (), ()) for name, (source, target, _) in lossy.items()],
    )


@contextmanager
def lossy_announced() -> Iterator[None]:
    """Within it, snapshots do not announce their lossy exports: the caller did."""
    token = _ANNOUNCED.set(True)
    try:
        yield
    finally:
        _ANNOUNCED.reset(token)
