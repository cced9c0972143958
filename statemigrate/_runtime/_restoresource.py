"""Restoring one source into a service's components: its bytes read and verified, a
snapshot of another service or with a forged generation refused, then the restore of
a full snapshot or of a delta (see :mod:`statemigrate._runtime._history`).

The function here takes what it needs of a service explicitly (its name, key, limits,
components and what it restored); :meth:`Service.restore` is the way in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from statemigrate._errors import RestoreError, SnapshotError, StateMigrateError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._history import RestoreHistory, logged, restore_delta, restore_full
from statemigrate._runtime._restore import Registered
from statemigrate._runtime._sources import Fetched, bytes_of
from statemigrate._snapshot._format import DecodeLimits, open_snapshot

if TYPE_CHECKING:
    from statemigrate._runtime._report import CommitReport, RestoreReport
    from statemigrate._snapshot._encode import EncodedSnapshot
    from statemigrate.stores import SnapshotRef

__all__ = ["GENERATION_LIMIT", "restore_source"]

# The header holds generations below 2**63. Counting one per snapshot never comes near
# 2**62, so a snapshot claiming that much is forged or damaged; refusing it keeps 2**62
# generations of room, and snapshot() can never run out of them.
GENERATION_LIMIT = 1 << 62


def restore_source(
    source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
    *,
    service: str,
    key: bytes | None,
    limits: DecodeLimits,
    entries: Mapping[tuple[str, str], Registered],
    history: RestoreHistory,
    allow_lossy: AllowLossy,
    strict: bool,
    force: bool,
    allow_older: bool,
    allow_other_service: bool,
    progress: Callable[[float], None],
    retired: Collection[str] = (),
) -> RestoreReport:
    """Restore ``source``, one snapshot or delta, into ``entries``, all or nothing (see
    :meth:`Service.restore` for the options); the sections no component claims are
    carried in ``history``, but those of a component in ``retired``.

    Raises:
        RestoreError: in ``read`` when the bytes cannot be had, in ``verify`` when they
            fail verification or are refused, or in the phase of the restore that
            failed.
    """
    started = time.perf_counter()
    try:
        data = bytes_of(source)
    except StateMigrateError as exc:
        raise logged(RestoreError("read", str(exc))) from exc
    read_done = time.perf_counter()
    # Bytes start-up read from the store before this call: their download is the read.
    read_seconds = read_done - started + (source.seconds if isinstance(source, Fetched) else 0.0)
    try:
        snapshot = open_snapshot(data, key=key, limits=limits)
    except SnapshotError as exc:
        raise logged(RestoreError("verify", str(exc))) from exc
    verified = time.perf_counter()
    header = snapshot.header
    writer = header.producer.service
    if writer != service and not allow_other_service:
        raise logged(
            RestoreError(
                "verify",
                f"snapshot was written by service {writer!r}, not {service!r};"
                " pass allow_other_service=True to restore it anyway",
            )
        )
    if header.generation >= GENERATION_LIMIT:
        raise logged(
            RestoreError(
                "verify",
                f"snapshot generation {header.generation} is beyond what counting"
                f" snapshots reaches (limit {GENERATION_LIMIT}); refused as forged or"
                " damaged",
            )
        )
    if header.base is not None:
        return restore_delta(
            snapshot,
            entries,
            history,
            allow_lossy=allow_lossy,
            strict=strict,
            read_seconds=read_seconds,
            verify_seconds=verified - read_done,
            limits=limits,
            retired=retired,
        )
    return restore_full(
        snapshot,
        entries,
        history,
        allow_lossy=allow_lossy,
        strict=strict,
        force=force,
        allow_older=allow_older,
        read_seconds=read_seconds,
        verify_seconds=verified - read_done,
        progress=progress,
        retired=retired,
    )
