"""Writing a service's exported sections: encoded whole (``Service.snapshot``) or
streamed into a store's commit (``Service.commit``), an encoded snapshot committed
(``Service.commit_snapshot``), and each reported to the log, the metrics and the
traces.

The functions here take what they need of a service explicitly (its name, how it
encodes); :class:`Service` is the way in.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from statemigrate._errors import StoreError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._export import walk_section
from statemigrate._runtime._report import CommitReport, SnapshotReport
from statemigrate._runtime._telemetry import (
    commit_failed,
    count_commit,
    record_snapshot,
    trace_commit,
)
from statemigrate._snapshot._encode import EncodedSnapshot, SnapshotStream, encode_snapshot
from statemigrate._snapshot._msgpack import NotPlainError

if TYPE_CHECKING:
    from statemigrate._runtime._export import Exported
    from statemigrate.stores._base import Store

__all__ = ["SUMMARIES", "commit_encoded", "commit_streamed", "encode_whole", "record_delta"]

logger = logging.getLogger("statemigrate")

SUMMARIES: contextvars.ContextVar[int] = contextvars.ContextVar(
    "statemigrate_summaries", default=logging.INFO
)
"""The level of the log lines a snapshot and a commit write: a checkpoint, which
writes one line of its own that says it all, sets DEBUG while it takes them."""


def encode_whole(
    exported: Exported,
    encoding: Mapping[str, Any],
    *,
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
) -> EncodedSnapshot:
    """Encode ``exported`` in memory, as ``encoding`` (:meth:`Service._encoding`) says.

    Raises:
        ExportError: a section holds a value with no plain form; the error names the
            component, version and path (found by :func:`walk_section`).
    """
    while True:
        try:
            return encode_snapshot(exported.sections, **encoding)
        except NotPlainError as exc:
            walk_section(exported, exc, targets=targets, allow_lossy=allow_lossy)


def commit_streamed(
    service: str,
    store: Store,
    exported: Exported,
    encoding: Callable[[], dict[str, Any]],
    *,
    generation: int,
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
) -> CommitReport:
    """Commit ``exported`` to ``store`` as snapshot ``generation``, encoded while the
    store writes it, so the whole snapshot is never in memory; ``encoding`` says how
    (asked again on a retry).

    Raises:
        StoreError: the store could not commit; its previous snapshot is intact.
        ExportError: as :func:`encode_whole`; nothing was committed.
    """
    encode_seconds = 0.0
    started = time.perf_counter()
    try:
        while True:
            # The snapshot is encoded while the store writes it, so the whole of it
            # is never in memory. An error of the data surfaces inside the store's
            # commit, which then commits nothing.
            stream = SnapshotStream(exported.sections, **encoding())
            try:
                ref = store.commit(stream)
                break
            except NotPlainError as exc:
                walk_section(exported, exc, targets=targets, allow_lossy=allow_lossy)
            finally:
                stream.close()
                encode_seconds += stream.timings.get("encode", 0.0)
        if stream.header is None:
            raise StoreError(
                "commit",
                ref.describe(),
                "the store returned before it had read the whole snapshot",
            )
    except BaseException as exc:
        commit_failed(service, store, time.perf_counter() - started, exc)
        raise
    report = exported.report(stream.header, stream.size, {"encode": encode_seconds})
    # The commit's line below repeats this one and adds the commit: one INFO line.
    logger.debug("%s", report.summary())
    record_snapshot(service, generation, report, sum(exported.timings.values()) + encode_seconds)
    committed = CommitReport(
        ref=ref,
        snapshot=report,
        commit_seconds=time.perf_counter() - started - encode_seconds,
    )
    _report_commit(service, store, committed)
    return committed


def commit_encoded(
    service: str, store: Store, encoded: EncodedSnapshot, report: SnapshotReport
) -> CommitReport:
    """Commit a snapshot encoded already to ``store`` (see :meth:`Service.commit_snapshot`).

    Raises:
        StoreError: the store could not commit; its previous snapshot is intact.
    """
    started = time.perf_counter()
    try:
        ref = store.commit(encoded.parts)
    except BaseException as exc:
        commit_failed(service, store, time.perf_counter() - started, exc)
        raise
    committed = CommitReport(ref=ref, snapshot=report, commit_seconds=time.perf_counter() - started)
    _report_commit(service, store, committed)
    return committed


def _report_commit(service: str, store: object, committed: CommitReport) -> None:
    """Report a commit to the log, the metrics and the traces."""
    trace_commit(service, store, committed.commit_seconds)
    logger.log(SUMMARIES.get(), "%s", committed.summary())
    count_commit(service, store, committed)


def record_delta(service: str, encoded: EncodedSnapshot, seconds: float) -> None:
    """Report a delta taken (an incremental checkpoint's, a pre-copy round's) as a
    snapshot taken; a full snapshot is reported by ``Service._snapshot``."""
    report = SnapshotReport.of(encoded.header, encoded.size, encoded.timings)
    logger.debug("%s", report.summary())
    record_snapshot(service, encoded.header.generation, report, seconds)
