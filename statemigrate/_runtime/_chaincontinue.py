"""Continuing, after a restart, the checkpoint chain a service restored at start-up.

After ``kill -9`` a service restores its store's latest chain with ``start_from(store)``.
Its checkpointer's first checkpoint would be a new full base, which on a large state
under load takes seconds from the fork to the commit; until it commits, every write
since the restart is in no store. When the state is exactly the chain's, that first
checkpoint can be a delta appended to the restored pieces instead, the whole chain
committed again as one object: it restores base, old deltas and new delta in order.

Exactly safe, or not at all. A chain is continued only when all of these hold, and
otherwise the first checkpoint is a new base and the log says why:

* Change tracking starts when the chain's newest piece is applied
  (:attr:`RestoreObserver.applied <statemigrate._runtime._restoring.RestoreObserver>`),
  inside ``start_from``, before the status says the service is restored: a writer
  that waits for that status writes after the marks are open, and a restore requires
  the writers held meanwhile (it replaces the components' state). Its first delta
  names that piece as its base, and every write since is in it.
* The restore was of the store's latest object (a chain, or a full snapshot: a chain
  of one), and the checkpointer commits to the same place.
* Every registered component was restored from it, and every section of every piece
  is at the version this code runs with this code's schema fingerprint, written by
  this service: no migration step ran, and no section was left unclaimed or missing.
  Its bytes then read back as they are.
* Every component tracks its changes (the condition of any chain).

Any other restore of the service drops a chain held, and so does a checkpoint that
does not continue it (a full one, or to another store): its tracking of the writes
then costs nothing more. So does time: a chain no incremental checkpointer of the
service has asked for within :data:`UNCLAIMED_SECONDS` of the restore is dropped,
since a service that restores from a store and never checkpoints incrementally would
otherwise record every key it writes for as long as it runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from statemigrate._errors import SnapshotError
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate._snapshot._format import DecodeLimits, open_snapshot
from statemigrate._snapshot._header import DeltaBase, SnapshotHeader
from statemigrate.stores._base import Store

if TYPE_CHECKING:
    from statemigrate._runtime._history import RestoreHistory
    from statemigrate._runtime._precopy import PreCopySource
    from statemigrate._runtime._report import RestoreReport
    from statemigrate._runtime._restore import Registered
    from statemigrate.stores._base import Buffer

__all__ = ["ChainContinuation", "RestoredChain", "same_place", "why_not_continued"]

logger = logging.getLogger("statemigrate")

NOTHING_RESTORED = "no checkpoint chain was restored from a store at start-up"

UNCLAIMED_SECONDS = 300.0
"""How long a chain restored is held, its writes tracked, when no incremental
checkpointer of the service exists yet. One made before the restore, or within this
time of it, keeps it for its first checkpoint however long its interval."""


@dataclass(slots=True)
class RestoredChain:
    """A chain restored at start-up that a checkpointer may extend: where it was read
    from, its pieces (base first, the bytes read), and the source tracking the changes
    since its newest piece was applied (started on that piece's identity)."""

    store: Store
    pieces: list[EncodedSnapshot]
    source: PreCopySource
    pid: int
    """The process that restored it: a child forked since holds a copy it must not
    continue (the source's marks and locks are the parent's)."""
    members: tuple[tuple[str, str, int], ...]
    """The component instances it was restored into (see :func:`_members`)."""


def same_place(one: Store, other: Store) -> bool:
    """Whether two store objects commit to the same place: the same object, or two of
    one class that say they share it (``_same_place``: a tmpfs store's directory, an
    object store's bucket and prefix)."""
    if one is other:
        return True
    if type(one) is not type(other):
        return False
    check = getattr(one, "_same_place", None)
    return bool(check(other)) if callable(check) else False


def why_not_continued(
    headers: list[SnapshotHeader],
    report: RestoreReport,
    *,
    service: str,
    entries: Mapping[tuple[str, str], Registered],
    history: RestoreHistory,
) -> str | None:
    """Why the restored chain of ``headers`` (base first) is not exactly the state of
    ``entries``, or ``None`` when it is: each piece this service's, at the versions
    and schema fingerprints this code runs, every component restored from its newest
    piece, none left out, no section left over. ``report`` is the restore's (of the
    newest piece)."""
    if report.skipped:
        return "the restore was skipped: the chain was restored already"
    if not entries:
        return "no component is registered"
    newest = headers[-1]
    if headers[0].base is not None:
        return "the object restored starts with a delta, not a full snapshot"
    if (newest.snapshot_id, newest.generation) != (report.snapshot_id, report.generation):
        return "the restore's last piece is not the chain's newest"
    for header in headers:
        if header.producer.service != service:
            return f"a piece was written by service {header.producer.service!r}"
        for section in header.sections:
            key = (section.component, section.instance)
            entry = entries.get(key)
            if entry is None:
                return f"section {section.component}/{section.instance} is claimed by no component"
            if section.version != entry.spec.version:
                return (
                    f"{entry.key} was restored from version {section.version}, and runs"
                    f" version {entry.spec.version} (a migration ran)"
                )
            schema = entry.registry.schema_for(entry.component, entry.spec.version)
            if section.fingerprint != schema.fingerprint:
                return f"{entry.key}'s schema fingerprint differs from the snapshot's"
    in_base = {(s.component, s.instance) for s in headers[0].sections}
    for key, entry in entries.items():
        if key not in in_base:
            return f"{entry.key} is not in the snapshot"
        if history.restored_from.get(key) != newest.snapshot_id:
            return f"{entry.key} was not restored from the chain"
    return None


class ChainContinuation:
    """A service's chain restored at start-up, held until its checkpointer continues
    it (:meth:`claim`) or something makes it stale (:meth:`drop`).

    ``new_source`` makes the change-tracking source of a checkpoint chain (deep
    checks on, as for the pieces a checkpointer commits), not started; ``entries``
    (the live mapping of registered components), ``history``, ``key`` and ``limits``
    are the service's own.
    """

    def __init__(
        self,
        service: str,
        new_source: Callable[[], PreCopySource],
        *,
        entries: Mapping[tuple[str, str], Registered],
        history: RestoreHistory,
        key: bytes | None,
        limits: DecodeLimits,
    ) -> None:
        self._service = service
        self._new_source = new_source
        self._entries = entries
        self._history = history
        self._key = key
        self._limits = limits
        self._store: Store | None = None  # restored from at start-up, while it runs
        self._latest: tuple[list[memoryview], SnapshotHeader] | None = None  # its pieces
        self._tracking: PreCopySource | None = None  # started on the last piece applied
        self._held: RestoredChain | None = None
        # Taken around every change of _held: the checkpointer claims from its thread,
        # the unclaimed timer drops from its own, and a source closed under a claim
        # would leave the chain missing the writes after it.
        self._lock = threading.Lock()
        self._claimant = False  # whether an incremental checkpointer will claim it
        self._expiry: threading.Timer | None = None
        self.why_not: str = NOTHING_RESTORED
        """Why no chain is held (said by the checkpoint that starts a new one)."""
        self.worth_saying = False
        """Whether :attr:`why_not` is news (a chain restored but not continued), to
        log at INFO rather than DEBUG."""

    @property
    def held(self) -> RestoredChain | None:
        """The chain held for the next checkpointer, if any."""
        return self._held

    @contextmanager
    def restoring(self, source: object) -> Iterator[None]:
        """Around ``start_from(source)``: the chain held before (if any) goes, and
        while a store's snapshot is restored, each piece applied starts tracking."""
        self.drop(NOTHING_RESTORED)
        if not isinstance(source, Store):
            yield
            return
        self._store = source
        try:
            yield
        finally:
            self._store = None
            self._latest = None
            self._stop_tracking()  # unless :meth:`_judge` held it

    def expect(self, data: Buffer) -> None:
        """The bytes of the store's latest object, about to be restored: its newest
        piece is the one whose restore may be continued."""
        try:
            views = split_chain(data) if is_chain(data) else [memoryview(data).cast("B")]
            newest = open_snapshot(views[-1], key=self._key, limits=self._limits).header
        except SnapshotError:
            return  # the restore fails on them too, and says why
        self._latest = (views, newest)

    def applied(self, report: RestoreReport) -> None:
        """A piece was just applied (before the status says restored): when restoring
        from a store at start-up and the piece is the newest of the store's latest
        object, start tracking the changes from it and hold the chain; any other
        restore makes the chain held stale. Never raises: the restore succeeded, only
        the continuation is lost."""
        if self._store is None:
            if self._held is not None:
                self.drop("the service restored another snapshot since", worth_saying=True)
            return
        self._stop_tracking()
        latest = self._latest
        if report.skipped or latest is None or _identity(latest[1]) != _identity_of(report):
            # Tracking opened on an older piece would be closed by the next one: opening
            # it seeds every component's in-place watch, a walk of the whole state, so
            # a chain of N deltas would pay it N times for the one its newest piece keeps.
            return
        source = None
        try:
            source = self._new_source()
            source.start(on=DeltaBase(report.snapshot_id, report.generation))
        except Exception as exc:
            if source is not None:
                source.close()
            self._not_held(f"change tracking could not start ({exc})")
            return
        self._tracking = source
        self._judge(*latest, report)

    def expect_claimant(self) -> None:
        """An incremental checkpointer of the service exists: a chain held (now or
        later) waits for its first checkpoint, however long its interval."""
        with self._lock:
            self._claimant = True
            self._cancel_expiry()

    def claim(self, store: Store) -> RestoredChain | None:
        """The chain held, for a checkpointer committing to ``store`` to continue; None
        (the chain dropped, :attr:`why_not` saying why) when there is none, it was read
        from another place or by another process (this one was forked since), or the
        components registered changed since."""
        with self._lock:
            held = self._held
            if held is None:
                return None
            if held.pid != os.getpid():
                why = "it was restored by the process this one was forked from"
            elif not same_place(held.store, store):
                why = f"it was read from {held.store!r}, and checkpoints commit to {store!r}"
            elif held.members != _members(self._entries):
                why = "components were registered or unregistered since"
            else:
                self._held = None
                self._cancel_expiry()
                self.why_not, self.worth_saying = "the chain restored is continued already", False
                return held
        self.drop(f"the chain restored is not continued: {why}", worth_saying=True)
        return None

    def drop(self, why: str, *, worth_saying: bool = False) -> None:
        """Let go of the chain held, if any: its source stops tracking."""
        with self._lock:
            # The reason first: whoever sees no chain held (a checkpoint on another
            # thread than the timer's) must also see why.
            self.why_not, self.worth_saying = why, worth_saying
            held, self._held = self._held, None
            self._cancel_expiry()
        if held is not None:
            held.source.close()
            logger.debug("%s: the chain restored is dropped: %s", self._service, why)

    def _judge(
        self, views: list[memoryview], newest: SnapshotHeader, report: RestoreReport
    ) -> None:
        """The newest piece of the store's latest object was applied: hold the chain,
        when its state is exactly the service's (see the module docstring)."""
        source, store = self._tracking, self._store
        assert source is not None and store is not None  # applied() started it
        why: str | None
        if not source.deltas_possible:
            why = str(source.why_no_deltas)
        elif self._history.no_deltas is not None:
            why = self._history.no_deltas
        else:
            try:
                pieces = _pieces(views, newest, key=self._key, limits=self._limits)
            except SnapshotError as exc:  # verified by the restore: never expected
                why = f"its pieces cannot be opened again ({exc})"
            else:
                why = why_not_continued(
                    [p.header for p in pieces],
                    report,
                    service=self._service,
                    entries=self._entries,
                    history=self._history,
                )
        if why is not None:
            self._not_held(why)
            return
        self._tracking = None
        with self._lock:
            self._held = RestoredChain(store, pieces, source, os.getpid(), _members(self._entries))
            if not self._claimant:
                self._expiry = threading.Timer(
                    UNCLAIMED_SECONDS, self._unclaimed, args=(self._held,)
                )
                self._expiry.daemon = True  # never keeps a process from exiting
                self._expiry.start()
        self.why_not, self.worth_saying = "the chain restored is held", False
        logger.debug(
            "%s: the chain restored from %r (%d pieces, gen %d) is held for its checkpoints",
            self._service,
            store,
            len(pieces),
            report.generation,
        )

    def _unclaimed(self, held: RestoredChain) -> None:
        """The timer's end: drop ``held`` if it is still the chain held."""
        if self._held is held:  # not one held by a restore since (drop cancels the timer)
            self.drop(
                f"no incremental checkpointer asked for it within {UNCLAIMED_SECONDS:g} s"
                " of the restore",
                worth_saying=True,
            )

    def _cancel_expiry(self) -> None:
        """Stop the unclaimed timer, if one runs (with the lock held)."""
        expiry, self._expiry = self._expiry, None
        if expiry is not None:
            expiry.cancel()

    def _not_held(self, why: str) -> None:
        self._stop_tracking()
        self.why_not, self.worth_saying = f"the chain restored is not continued: {why}", True
        logger.debug("%s: %s", self._service, self.why_not)

    def _stop_tracking(self) -> None:
        source, self._tracking = self._tracking, None
        if source is not None:
            source.close()


def _identity(header: SnapshotHeader) -> tuple[str, int]:
    return header.snapshot_id, header.generation


def _identity_of(report: RestoreReport) -> tuple[str, int]:
    return report.snapshot_id, report.generation


def _members(entries: Mapping[tuple[str, str], Registered]) -> tuple[tuple[str, str, int], ...]:
    """The registered component instances, by key and object: a chain is continued only
    for the ones it was restored into."""
    return tuple((c, i, id(entry.obj)) for (c, i), entry in entries.items())


def _pieces(
    views: list[memoryview], newest: SnapshotHeader, *, key: bytes | None, limits: DecodeLimits
) -> list[EncodedSnapshot]:
    """The pieces of a chain (or the one snapshot), as snapshots to commit again; the
    newest's header, verified by :meth:`ChainContinuation.expect` already, is not read
    again (for a chain of one, that is the whole snapshot's digest).

    Raises:
        SnapshotError: a piece does not verify.
    """
    headers = [open_snapshot(view, key=key, limits=limits).header for view in views[:-1]]
    return [
        EncodedSnapshot(parts=[view], header=header, size=len(view))
        for view, header in zip(views, [*headers, newest], strict=True)
    ]
