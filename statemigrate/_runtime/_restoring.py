"""How a service's restores are seen from outside: its restore status, the metrics and
the traces. Each restored piece is reported as it ends; the pieces of one restore made
of several (a checkpoint chain, a take-over's pre-copy pieces) are reported to the
metrics as one, once all of them succeeded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from statemigrate._errors import RestoreError
from statemigrate._observe._instruments import enabled
from statemigrate._observe._status import StatusTracker
from statemigrate._observe._tracing import tracing_enabled
from statemigrate._runtime._fingerprintwarning import warning_once_each
from statemigrate._runtime._history import logged
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._telemetry import (
    count_restore_failed,
    report_restore,
    restore_failed,
    trace_restore,
)

__all__ = ["RestoreObserver"]


class RestoreObserver:
    """Reports the restores of service ``service`` to ``tracker``, the metrics and the
    traces; ``generation`` reads the service's generation, which the metrics show."""

    def __init__(
        self, service: str, tracker: StatusTracker, generation: Callable[[], int]
    ) -> None:
        self._service = service
        self._tracker = tracker
        self._generation = generation
        # The pieces restored so far of one restore made of several, reported to the
        # metrics as one (see :meth:`one`); None outside of one.
        self._pieces: list[RestoreReport] | None = None
        # The piece applied last inside one restore of several, whose success the
        # status says once they all are (see :meth:`one`); None when said already or
        # when a piece failed.
        self._unsaid: RestoreReport | None = None
        self.applied: Callable[[RestoreReport], None] | None = None
        """Told of each piece as soon as it is applied, before the status says the
        service is restored (when writers waiting for it may start): a checkpoint
        chain's continuation starts tracking changes there (see
        :mod:`statemigrate._runtime._chaincontinue`). It must not raise."""

    def piece(self, restore: Callable[[], RestoreReport]) -> RestoreReport:
        """Run ``restore``, of one snapshot or delta, with the status, the metrics and
        the traces told how it went."""
        self._tracker.restoring()
        began = time.perf_counter()
        try:
            report = restore()
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, RestoreError) else f"{type(exc).__name__}: {exc}"
            self._unsaid = None
            self._tracker.failed(reason)
            restore_failed(self._service, reason, time.perf_counter() - began)
            raise
        if self.applied is not None:
            self.applied(report)
        if self._pieces is not None:
            # Not ready between the pieces: a writer that waits for the status would
            # write between a chain's base and its deltas, into a state that is
            # neither, and lost from a continued chain, which tracks from the newest.
            self._unsaid = report
            self._pieces.append(report)
        else:
            self._say_restored(report)
            if enabled():
                report_restore(self._service, self._generation(), report)
        if tracing_enabled():
            trace_restore(self._service, report, time.perf_counter() - began)
        return report

    @contextmanager
    def one(self) -> Iterator[None]:
        """Report the restores made inside as one to the metrics, once all of them
        succeeded: the pieces of a checkpoint chain, or of a take-over (pre-copy
        pieces, then the snapshot of the pause). A restore that fails inside is
        reported at once, as one failed restore; the pieces restored before it are
        then not reported. Nested uses are one restore, the outermost. A schema
        fingerprint that differs is warned of once per component, not once a piece.
        The status says restored once, when all of them succeeded: never between
        two pieces, where the state is neither the one before nor the one after."""
        if self._pieces is not None:
            yield
            return
        pieces: list[RestoreReport] = []
        self._pieces = pieces
        try:
            with warning_once_each():
                yield
        except BaseException as exc:
            if self._unsaid is not None:
                # Pieces were applied, and what failed after them may have put the
                # components back (a chain's rollback): the status cannot say restored.
                self._tracker.failed(f"{type(exc).__name__}: {exc}")
            raise
        else:
            if self._unsaid is not None:
                self._say_restored(self._unsaid)
        finally:
            self._pieces = None
            self._unsaid = None
        if pieces and enabled():
            report_restore(self._service, self._generation(), *pieces)

    def _say_restored(self, report: RestoreReport) -> None:
        self._tracker.restored(generation=report.generation, snapshot_id=report.snapshot_id)

    def refused(
        self, reason: str, *, phase: str = "verify", component: str | None = None
    ) -> RestoreError:
        """A chain refused at verification (or in ``phase``, before any of its pieces
        is restored, for ``component`` when one is the reason), reported as a failed
        restore."""
        error = logged(RestoreError(phase, reason, component=component))
        self._tracker.failed(str(error))
        count_restore_failed(self._service)
        return error
