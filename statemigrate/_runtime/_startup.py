"""Restoring at start-up: a store's latest snapshot or the one before it, chains of
incremental checkpoints, and the failure policy.

The functions here take what they need of a service explicitly (its ``restore``, its
components, its key); :meth:`Service.start_from` is the way in.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from statemigrate._errors import RestoreError, SnapshotError, StateMigrateError, StoreError
from statemigrate._model._component import component_state, import_component, importable_state
from statemigrate._observe._status import StatusTracker
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._runtime._chainfold import fold_chain, fold_reasons
from statemigrate._runtime._chainread import chain_break, open_chain
from statemigrate._runtime._history import SUMMARIES
from statemigrate._runtime._report import CommitReport, RestoreReport
from statemigrate._runtime._restore import Registered
from statemigrate._runtime._sources import Failing, Fetched, Reader, check_source, fetch
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate._snapshot._format import DecodeLimits
from statemigrate._snapshot._header import SnapshotHeader
from statemigrate.stores._base import Store

if TYPE_CHECKING:
    from statemigrate.stores import SnapshotRef

    #: Restores a snapshot, or a chain, with :meth:`Service.restore`'s keyword options.
    RestoreStored = Callable[
        [
            bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
            Mapping[str, bool | None],
        ],
        RestoreReport,
    ]

__all__ = [
    "keep_unrestored",
    "read_previous",
    "restore_at_start",
    "restore_latest",
    "restore_stored",
]

logger = logging.getLogger("statemigrate")


def restore_at_start(
    source: (
        bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport | Store | None
    ),
    options: Mapping[str, bool | None],
    *,
    restore_stored: RestoreStored,
    start_cold: Callable[[str], None],
    tracker: StatusTracker,
    refuse: bool,
) -> RestoreReport | None:
    """:meth:`Service.start_from`: restore at start-up, or start cold.

    Args:
        source: as for :meth:`Service.start_from`.
        options: keyword options of :meth:`Service.restore`.
        restore_stored: the service's restore of a snapshot or a chain.
        start_cold: the service's :meth:`Service.start_cold`.
        tracker: the service's status.
        refuse: whether a failed restore is raised (a component's policy is
            ``"refuse"``) rather than the service starting cold.
    """
    if source is None:
        start_cold("no snapshot to restore")
        return None
    try:
        if isinstance(source, Store):
            return restore_latest(
                source,
                options,
                restore_stored=restore_stored,
                start_cold=start_cold,
                tracker=tracker,
            )
        return restore_stored(source, options)
    except RestoreError as exc:
        if refuse:
            raise
        start_cold(str(exc))  # "restore failed during ..."
        return None


def restore_latest(
    store: Store,
    options: Mapping[str, bool | None],
    *,
    restore_stored: RestoreStored,
    start_cold: Callable[[str], None],
    tracker: StatusTracker,
) -> RestoreReport | None:
    """Restore ``store``'s latest snapshot, or the one before it when the latest is
    unreadable or refused at verification; ``None`` (a cold start) when there is
    none."""
    try:
        current: Fetched | Failing = fetch(store.open, repr(store))
    except StoreError as exc:
        if exc.errno == errno.ENOENT:
            start_cold(f"no snapshot to restore in {store!r}")
            return None
        current = Failing(exc)  # restored as a failed read, with status and metrics
    open_previous = getattr(store, "open_previous", None)
    previous: SnapshotRef | None = None
    if isinstance(current, Failing) and callable(open_previous):
        previous = read_previous(current, open_previous, f"{store!r} (previous)")
        if previous is None:  # nothing to fall back to: one failure, said once
            open_previous = None
    try:
        return restore_stored(current, options)
    except RestoreError as exc:
        keep_unrestored(store, current.data if isinstance(current, Fetched) else None)
        if exc.phase not in ("read", "verify") or not callable(open_previous):
            raise
        logger.warning(
            "the latest snapshot in %r cannot be restored (%s); restoring the one before it",
            store,
            exc,
        )
        try:
            return restore_stored(
                previous
                if previous is not None
                else Reader(open_previous, f"{store!r} (previous)"),
                options,
            )
        except RestoreError as second:
            logger.error("the previous snapshot in %r cannot be restored: %s", store, second)
            tracker.failed(str(exc))  # the latest snapshot's failure is the one
            raise exc from exc.__cause__


def read_previous(
    current: Failing, open_previous: Callable[[], bytes | memoryview], where: str
) -> SnapshotRef | None:
    """The previous snapshot of a store whose latest could not be read; ``None``
    when it cannot be read either: then ``current`` says so, and the start fails once
    with both reasons rather than twice (an unreachable server fails both reads, an
    object store's unreadable pointer names both snapshots)."""
    first = current.error
    try:
        return fetch(open_previous, where)
    except StoreError as second:
        # The same read failing again (an unreadable pointer, an unreachable server)
        # says nothing new; its text may differ in a dependency's timings alone.
        same = (second.op, second.target) == (first.op, first.target)
        also = "" if same else f" ({second})"
    current.error = StoreError(
        first.op,
        first.target,
        f"{first.detail}; the previous snapshot cannot be read either{also}:"
        " nothing to fall back to",
        errno=first.errno,
    )
    current.error.__cause__ = first.__cause__
    return None


def restore_stored(
    source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
    options: Mapping[str, bool | None],
    *,
    restore: Callable[..., RestoreReport],
    entries: Sequence[Registered],
    key: bytes | None,
    limits: DecodeLimits,
    refused: Callable[..., RestoreError],
    restored_from: Mapping[tuple[str, str], str] | None = None,
) -> RestoreReport:
    """Restore a snapshot, or a chain that incremental checkpoints committed: its
    base, then each delta in order; a chain whose newest piece is the one this service
    restored last is skipped as restored already, as a snapshot restored again is.

    Every piece of a chain is verified, and each delta checked to name the piece
    before it as its base, before anything is applied: a damaged or incomplete
    chain fails in ``verify`` with every component as it was, so the caller can
    fall back to the store's previous object. A chain whose deltas a component's plan
    cannot migrate (a whole-data step) is folded first, and its full state restored
    (see :mod:`statemigrate._runtime._chainfold`).

    Args:
        source: as for :meth:`Service.restore`.
        options: keyword options of :meth:`Service.restore`.
        restore: the service's :meth:`Service.restore`, which restores each piece.
        entries: the service's registered components.
        key: the service's authentication key, which verifies each piece.
        limits: the service's decode limits.
        refused: reports a chain refused at verification (or, given
            ``phase="decode"``, one that cannot be folded) as a failed restore.
        restored_from: per component instance, the id of the snapshot or delta it was
            last restored from.
    """
    check_source(source)
    if isinstance(source, EncodedSnapshot):
        source = source.to_bytes()
    if isinstance(source, bytes | bytearray | memoryview):
        data: bytes | bytearray | memoryview = source
    else:
        try:
            fetched = source if isinstance(source, Fetched) else fetch(source.open, "")
        except StateMigrateError:
            return restore(source, **options)  # fails in "read", with the status
        data = fetched.data
        # Read here to tell a chain: the restore counts the download as its read.
        describe = getattr(source, "describe", None)
        where = describe() if callable(describe) else repr(source)
        source = Fetched(fetched.data, fetched.seconds, where)
    if not is_chain(data):
        return restore(source if isinstance(source, Fetched) else data, **options)
    try:
        chain = open_chain(data, key=key, limits=limits)
    except SnapshotError as exc:  # it names the chain, and the piece
        raise refused(str(exc)) from exc
    headers = [piece.header for piece in chain.pieces]
    broken = chain_break(headers)
    if broken is not None:
        raise refused(broken)
    began = time.perf_counter()
    pieces: list[bytes | memoryview] = list(split_chain(data))  # as opened above
    reached = _piece_restored(headers, entries, restored_from or {}, options)
    reasons = fold_reasons(headers, entries, allow_lossy=bool(options.get("allow_lossy")))
    if reached == len(pieces) - 1:
        # Restored already, every component: its newest piece says so (its base, older,
        # would be refused as a replay), with nothing folded or applied.
        pieces, reasons = pieces[-1:], []
    elif reached is not None and not reasons:
        # The service holds this chain up to one of its deltas (a restore of the same
        # chain when it was shorter): only the deltas after it are applied.
        pieces = pieces[reached + 1 :]
    if reasons:
        # Deltas some component's plan cannot migrate: the chain is restored as the one
        # full snapshot it holds, composed as `statemigrate migrate` composes it.
        try:
            pieces = [fold_chain(chain, reasons, key=key, entries=entries)]
        except SnapshotError as exc:
            raise refused(str(exc), phase="decode") from exc
    # Each piece is all or nothing, the chain must be too: a delta that fails after
    # the base was applied (in decode, migrate or validate) puts back what was live
    # before the chain, so a cold start that follows is really cold.
    live = [(entry, component_state(entry.obj, registry=entry.registry)) for entry in entries]
    # One line for the chain, not one per piece (a chain may hold hundreds): each
    # piece's own line goes to DEBUG, a failing piece's error stays at ERROR.
    quiet = SUMMARIES.set(logging.DEBUG)
    try:
        *earlier, last = pieces
        base = restore(earlier[0], **options) if earlier else None
        for piece in earlier[1:]:
            restore(piece, **options)
        # The chain's download is counted as the read of its last piece, whose timings
        # the report gives.
        if isinstance(source, Fetched):
            report = restore(Fetched(last, source.seconds, source.describe()), **options)
        else:
            report = restore(last, **options)
    except BaseException:
        for entry, state in live:
            import_component(
                entry.obj,
                importable_state(entry.obj, state, registry=entry.registry),
                registry=entry.registry,
            )
        raise
    finally:
        SUMMARIES.reset(quiet)
    seconds = time.perf_counter() - began
    logger.info("%s", _chain_summary(base or report, report, headers, len(data), seconds))
    return report


def _piece_restored(
    headers: Sequence[SnapshotHeader],
    entries: Sequence[Registered],
    restored_from: Mapping[tuple[str, str], str],
    options: Mapping[str, bool | None],
) -> int | None:
    """The index of the chain's piece every registered component was last restored
    from, or None (some component was restored from none of them, or ``force``)."""
    if not entries or options.get("force"):
        return None
    ids = {restored_from.get((entry.component, entry.instance)) for entry in entries}
    if len(ids) != 1:
        return None
    (restored,) = ids
    return next((i for i, header in enumerate(headers) if header.snapshot_id == restored), None)


def _chain_summary(
    base: RestoreReport,
    last: RestoreReport,
    headers: Sequence[SnapshotHeader],
    size: int,
    seconds: float,
) -> str:
    """One line for a checkpoint chain restored: its pieces and generations, how long
    they took, and what restoring its full snapshot (``base``) did: the components,
    the steps that ran (its deltas run the same plans), the sections left aside."""
    chain = f"checkpoint chain {last.snapshot_id[:12]} gen {last.generation}"
    if last.skipped:
        return f"restore of {chain} skipped: already restored"
    deltas = len(headers) - 1
    steps = sum(len(c.steps) for c in base.components)
    text = (
        f"restored {chain}: a full snapshot (gen {headers[0].generation}) and {deltas}"
        f" delta{'' if deltas == 1 else 's'}, {size} bytes, {len(base.components)}"
        f" components, {steps} steps; {seconds * 1000:.1f} ms"
    )
    if base.unknown:
        text += f"; not claimed: {', '.join(base.unknown)}"
    if base.missing:
        text += f"; not in snapshot: {', '.join(base.missing)}"
    return text


def keep_unrestored(store: Store, data: bytes | memoryview | None) -> None:
    """Have ``store`` keep aside its latest snapshot, which the restore refused
    (``data``) or could not read (``None``), when it can: checkpoints of whatever state
    the service goes on with would otherwise replace it, and a release that can read
    it (or ``statemigrate migrate``) may still recover its state. A store that keeps
    an unread snapshot (an object store, whose server may be back by the next commit)
    has ``keep_unread()``."""
    keep = getattr(store, "keep_unrestored" if data is not None else "keep_unread", None)
    if not callable(keep):
        return
    try:
        where = keep() if data is None else keep(data)
    except StoreError as exc:
        logger.warning("could not keep the snapshot that failed to restore: %s", exc)
    else:
        logger.warning(
            "keeping the snapshot that failed to restore: %s; checkpoints do not replace it",
            where,
        )
