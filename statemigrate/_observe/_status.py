"""The restore status of a service: what a readiness probe asks before traffic comes.

A service is ``starting`` until it has either restored its state (``restored``) or
started without it (``cold_start``, with the reason). In between it may be
``restoring``, with a progress ratio and an estimate of the seconds left once some
progress was made; a restore that failed leaves it ``failed``, with the reason.
Readiness passes in ``restored`` and ``cold_start`` only.

The status also drives two gauges, ``statemigrate_restoring`` and
``statemigrate_restore_progress_ratio``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from statemigrate._observe._instruments import RESTORE_PROGRESS, RESTORING, emit

__all__ = ["RestoreState", "RestoreStatus", "StatusTracker"]

RestoreState = Literal["starting", "restoring", "restored", "cold_start", "failed"]

_READY: frozenset[str] = frozenset({"restored", "cold_start"})


@dataclass(frozen=True, slots=True)
class RestoreStatus:
    """Where a service's state stands, as read at one instant (``service.status``).

    Attributes:
        state: ``starting`` (nothing restored, no cold start declared yet),
            ``restoring``, ``restored``, ``cold_start`` or ``failed``.
        reason: why it started cold or failed; while restoring, what it waits for
            (``"waiting for the snapshot"`` during a handoff), if anything.
        progress: while restoring, the share of the work done (0 to 1), once known;
            1 after a restore.
        eta_seconds: while restoring, the seconds left at the pace so far, once some
            progress was made.
        generation: the generation of the snapshot restored, if any was.
        snapshot_id: the id of the snapshot restored, if any was.
        since: the Unix time at which this state was entered.
    """

    state: RestoreState
    reason: str | None = None
    progress: float | None = None
    eta_seconds: float | None = None
    generation: int | None = None
    snapshot_id: str | None = None
    since: float = 0.0

    @property
    def ready(self) -> bool:
        """Whether the service may take traffic: its state is in place, or it was
        declared to start without one."""
        return self.state in _READY

    def to_plain(self) -> dict[str, Any]:
        """The status as JSON-ready data, with ``ready`` added."""
        plain = asdict(self)
        plain["ready"] = self.ready
        return plain

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """What a readiness endpoint answers: ``(200, status)`` when ready, else
        ``(503, status)``, the status as :meth:`to_plain` gives it."""
        return (200 if self.ready else 503), self.to_plain()


class StatusTracker:
    """Keeps one service's :class:`RestoreStatus` as restores and take-overs go.

    Every change replaces one immutable status, so a reader in another thread (a
    health endpoint, a metrics scrape) sees a consistent one without a lock.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._status = RestoreStatus("starting", since=time.time())
        self._began = 0.0
        self._held = False
        self._before = self._status
        self.taken_over = False
        self.taken_over_at: float | None = None
        """Whether the state came from an old process in a handoff (COMMIT received)."""

    @property
    def status(self) -> RestoreStatus:
        """The status now, its estimate of the time left worked out at this instant."""
        status = self._status
        progress = status.progress
        if status.state != "restoring" or not progress or progress >= 1.0:
            return status
        elapsed = time.monotonic() - self._began
        return replace(status, eta_seconds=elapsed * (1.0 - progress) / progress)

    def _enter(self, state: RestoreState, **facts: Any) -> None:
        self._status = RestoreStatus(state, since=time.time(), **facts)
        emit(RESTORING, 1.0 if state == "restoring" else 0.0, self._service)

    def take_over(self) -> None:
        """A handoff's successor starts: restoring, waiting for the snapshot. Until
        :meth:`took_over`, a restore that succeeds leaves the state ``restoring``: the
        successor owns the state only once COMMIT arrives."""
        self._held = True
        self._before = self._status
        self._enter("restoring", reason="waiting for the snapshot")

    def restoring(self) -> None:
        """A restore starts (its snapshot is at hand)."""
        if self._status.state != "restoring":
            self._before = self._status
        self._began = time.monotonic()
        self._enter("restoring", progress=0.0)
        emit(RESTORE_PROGRESS, 0.0, self._service)

    def progress(self, ratio: float) -> None:
        """The restore under way has done ``ratio`` of its work."""
        status = self._status
        if status.state == "restoring":
            self._status = replace(status, progress=ratio)
            emit(RESTORE_PROGRESS, ratio, self._service)

    def restored(self, *, generation: int, snapshot_id: str) -> None:
        """A restore succeeded (or had nothing left to do)."""
        emit(RESTORE_PROGRESS, 1.0, self._service)
        facts = {"progress": 1.0, "generation": generation, "snapshot_id": snapshot_id}
        if self._held:
            self._enter("restoring", reason="waiting for COMMIT", **facts)
        else:
            self._enter("restored", **facts)

    def took_over(self) -> None:
        """The successor received COMMIT: the restored state is its own."""
        self._held = False
        self.taken_over = True
        self.taken_over_at = time.monotonic()  # when this process began to serve it
        status = self._status
        self._enter(
            "restored",
            progress=1.0,
            generation=status.generation,
            snapshot_id=status.snapshot_id,
        )

    def cold_start(self, reason: str) -> None:
        """The service goes on without a restored state, for ``reason``."""
        self._held = False
        self._enter("cold_start", reason=reason)

    def failed(self, reason: str) -> None:
        """A restore or a take-over failed, for ``reason``.

        A restore that fails changes no component, so a service that was ready
        before it (restored, or started cold) stays as it was; one that was not
        becomes ``failed``. A take-over that fails is ``failed`` whatever came before:
        that process must not serve.
        """
        before = self._before
        if before.ready and not self._held:
            self._status = before
            emit(RESTORING, 0.0, self._service)
            return
        self._enter("failed", reason=reason)

    def take_over_failed(self, reason: str) -> None:
        """The take-over failed, for ``reason``: this process must not serve."""
        self._held = False
        self._enter("failed", reason=reason)
