"""Restoring at start-up: a store's latest snapshot or the one before it, chains of
incremental checkpoints, and the failure policy.

The functions here take what they need of a service explicitly (its ``restore``, its
components, its key); :meth:`Service.start_from` is the way in.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from statemigrate._errors import RestoreError, StateMigrateError, StoreError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._observe._status import StatusTracker
from statemigrate._runtime._chain import is_chain
from statemigrate._runtime._chainrestore import restore_chain
from statemigrate._runtime._history import RestoreHistory
from statemigrate._runtime._newerrelease import folds, snapshot_address, with_way_out
from statemigrate._runtime._report import CommitReport, RestoreReport
from statemigrate._runtime._restore import Registered
from statemigrate._runtime._sources import Failing, Fetched, Reader, check_source, fetch
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate._snapshot._format import DecodeLimits
from statemigrate.stores._base import Store

if TYPE_CHECKING:
    from statemigrate.stores import SnapshotRef

    #: Restores a snapshot, or a chain, with :meth:`Service.restore`'s keyword options.
    RestoreStored = Callable[
        [
            bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
            Mapping[str, AllowLossy | None],
        ],
        RestoreReport,
    ]

#: Told of the bytes of a store's latest object, read at start-up to be restored.
LatestRead = Callable[[bytes | memoryview], None]

__all__ = [
    "keep_unrestored",
    "no_fallback",
    "read_previous",
    "restore_at_start",
    "restore_latest",
    "restore_stored",
    "say_unrestored",
]

logger = logging.getLogger("statemigrate")


def restore_at_start(
    source: (
        bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport | Store | None
    ),
    options: Mapping[str, AllowLossy | None],
    *,
    restore_stored: RestoreStored,
    start_cold: Callable[[str], None],
    start_cold_failed: Callable[[str], None],
    tracker: StatusTracker,
    refuse: bool,
    latest: LatestRead | None = None,
    entries: Sequence[Registered] = (),
) -> RestoreReport | None:
    """:meth:`Service.start_from`: restore at start-up, or start cold.

    Args:
        source: as for :meth:`Service.start_from`.
        options: keyword options of :meth:`Service.restore`.
        restore_stored: the service's restore of a snapshot or a chain.
        start_cold: the service's :meth:`Service.start_cold`.
        start_cold_failed: the same, said at WARNING: for a start whose restore
            failed, whose line then carries the way out (a newer release's snapshot).
        tracker: the service's status.
        refuse: whether a failed restore is raised (a component's policy is
            ``"refuse"``) rather than the service starting cold.
        latest: told of a store's latest object, its bytes, before they are restored
            (the chain a checkpointer may continue: see
            :mod:`statemigrate._runtime._chaincontinue`).
        entries: the service's registered components, whose versions the way out of
            a newer release's snapshot is worked out against.
    """
    read: list[bytes | bytearray | memoryview] = []  # what was restored, for the way out

    def seen(data: bytes | memoryview) -> None:
        read[:] = [data]
        if latest is not None:
            latest(data)

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
                latest=seen,
            )
        if isinstance(source, bytes | bytearray | memoryview | EncodedSnapshot):
            read[:] = [source.to_bytes() if isinstance(source, EncodedSnapshot) else source]
        return restore_stored(source, options)
    except RestoreError as exc:
        # A newer release's snapshot: the error says how to get out, whatever the server.
        data = read[0] if read else None
        hinted = with_way_out(
            exc,
            None if data is None else folds(data, entries, options.get("allow_lossy") or False),
            address=snapshot_address(source, data) if isinstance(source, Store) else None,
        )
        if refuse:
            if hinted is exc:
                raise
            raise hinted from exc.__cause__
        start_cold_failed(str(hinted))  # "restore failed during ..."
        return None


def restore_latest(
    store: Store,
    options: Mapping[str, AllowLossy | None],
    *,
    restore_stored: RestoreStored,
    start_cold: Callable[[str], None],
    tracker: StatusTracker,
    latest: LatestRead | None = None,
) -> RestoreReport | None:
    """Restore ``store``'s latest snapshot, or the one before it when the latest is
    unreadable or refused at verification; ``None`` (a cold start) when there is
    none. ``latest`` is told of the latest's bytes (not of the one before it) when
    they could be read, before they are restored."""
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
        if current.error.previous_too:
            # The read that failed (an object store's pointer) names the previous
            # snapshot too: reading it again would only wait out the same deadline.
            no_fallback(current)
        else:
            previous = read_previous(current, open_previous, f"{store!r} (previous)")
        if previous is None:  # nothing to fall back to: one failure, said once
            open_previous = None
    if isinstance(current, Fetched):
        # Said before it starts: a restore with a long migration shows nothing else
        # until it ends, and the line after it does not name the store.
        logger.info(
            "restoring the latest snapshot in %r (%d bytes, read in %.1f ms)",
            store,
            len(current.data),
            current.seconds * 1000,
        )
        if latest is not None:
            latest(current.data)
    try:
        report = restore_stored(current, options)
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
            report = restore_stored(
                previous
                if previous is not None
                else Reader(open_previous, f"{store!r} (previous)"),
                options,
            )
        except RestoreError as second:
            logger.error("the previous snapshot in %r cannot be restored: %s", store, second)
            tracker.failed(str(exc))  # the latest snapshot's failure is the one
            raise exc from exc.__cause__
        if isinstance(current, Fetched):
            keep_previous(store, current.data)
    say_unrestored(store)
    return report


def say_unrestored(store: Store) -> None:
    """Warn, once, that ``store`` still keeps a generation an earlier start could not
    restore, after this start restored another one.

    A rollback that started cold keeps the newer release's state as ``unrestored``
    and checkpoints its own cold state; rolling forward again then restores that
    cold state. It is not the newer state, which is only there to be recovered by
    hand: the cold state may have taken writes that were acknowledged, so which one
    to go on from is the operator's choice, and the line names the commands for it.
    A store without ``unrestored()`` (a tmpfs store keeps one file, which its
    directory shows) says nothing here.
    """
    unrestored = getattr(store, "unrestored", None)
    if not callable(unrestored):
        return
    try:
        kept = unrestored()
    except StoreError as exc:
        logger.info("could not look for generations kept as unrestored: %s", exc)
        return
    if not kept:
        return
    newest = kept[-1]
    location = newest.store.location
    numbers = ", ".join(str(ref.generation) for ref in kept)
    logger.warning(
        "%s still keeps %s as unrestored: %s a start could not restore, and %s not in"
        " the state restored now (a rollback that started cold keeps the newer"
        " release's state so). Inspect it with `statemigrate inspect %s#%d --verify`;"
        " to go on from it instead, restore it (`service.restore(store.ref(%d))`, or"
        " `statemigrate migrate %s#%d -o FILE` for this release's versions) and commit"
        " it; once it is not needed, `statemigrate forget-unrestored %s`",
        location,
        f"generation {numbers}" if len(kept) == 1 else f"generations {numbers}",
        "it is one" if len(kept) == 1 else "they are ones",
        "its state is" if len(kept) == 1 else "their state is",
        location,
        newest.generation,
        newest.generation,
        location,
        newest.generation,
        location,
    )


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
        # The same read failing again (an unreachable server) says nothing new; its
        # text may differ in a dependency's timings alone.
        same = (second.op, second.target) == (first.op, first.target)
        no_fallback(current, also="" if same else f" ({second})")
    return None


def no_fallback(current: Failing, *, also: str = "") -> None:
    """Say in ``current``'s error that the snapshot before it cannot be read either
    (``also``: why, when that is news), so that the start fails once."""
    first = current.error
    current.error = StoreError(
        first.op,
        first.target,
        f"{first.detail}; the previous snapshot cannot be read either{also}:"
        " nothing to fall back to",
        errno=first.errno,
        previous_too=first.previous_too,
    )
    current.error.__cause__ = first.__cause__


def restore_stored(
    source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
    options: Mapping[str, AllowLossy | None],
    *,
    restore: Callable[..., RestoreReport],
    entries: Sequence[Registered],
    key: bytes | None,
    limits: DecodeLimits,
    refused: Callable[..., RestoreError],
    history: RestoreHistory,
) -> RestoreReport:
    """Restore a snapshot, or a chain that incremental checkpoints committed (see
    :mod:`statemigrate._runtime._chainrestore`).

    A damaged or incomplete chain fails in ``verify`` with every component as it
    was, so the caller can fall back to the store's previous object.

    Args:
        source: as for :meth:`Service.restore`.
        options: keyword options of :meth:`Service.restore`.
        restore: the service's :meth:`Service.restore`, which restores each piece.
        entries: the service's registered components.
        key: the service's authentication key, which verifies each piece.
        limits: the service's decode limits.
        refused: reports a chain refused at verification (or, given
            ``phase="decode"``, one that cannot be folded) as a failed restore.
        history: what the service restored (see
            :mod:`statemigrate._runtime._chainrestore`).
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
    return restore_chain(
        data,
        source,
        options,
        restore=restore,
        entries=entries,
        key=key,
        limits=limits,
        refused=refused,
        history=history,
    )


def keep_previous(store: Store, data: bytes | memoryview) -> None:
    """Tell ``store`` that the start restored its previous snapshot, the latest
    (``data``) refused at verification, when it can be told: its next commit then keeps
    that previous snapshot to fall back to, not the one that cannot be restored (kept
    aside as unrestored)."""
    fell_back = getattr(store, "fell_back_to_previous", None)
    if not callable(fell_back):
        return
    try:
        fell_back(data)
    except StoreError as exc:
        logger.warning(
            "could not keep the previous snapshot as the one to fall back to: %s", exc
        )


def keep_unrestored(store: Store, data: bytes | memoryview | None) -> None:
    """Have ``store`` keep aside its latest snapshot, which the restore refused
    (``data``) or could not read (``None``), when it can: checkpoints of whatever state
    the service goes on with would otherwise replace it, and a release that can read
    it (or ``statemigrate migrate``) may still recover its state. A store that keeps
    an unread snapshot (an object store, whose server may be back by the next commit)
    has ``keep_unread()``.

    Only a snapshot that was read is said to be kept here: when nothing could be read
    (a missing bucket, wrong keys, a server down), there may be nothing to keep, and
    the store says so itself if its next commit does keep a generation."""
    keep = getattr(store, "keep_unrestored" if data is not None else "keep_unread", None)
    if not callable(keep):
        return
    try:
        where = keep() if data is None else keep(data)
    except StoreError as exc:
        logger.warning("could not keep the snapshot that failed to restore: %s", exc)
        return
    if data is not None:
        logger.warning(
            "keeping the snapshot that failed to restore: %s; checkpoints do not replace it",
            where,
        )
