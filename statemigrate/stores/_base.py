"""What every store promises, and the small helpers the stores share.

A store keeps committed snapshots as opaque bytes: it knows nothing of the snapshot
format, of schemas or of migrations. Its one job is the commit protocol: a reader sees
the previous snapshot or the new one, complete, never a torn one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, Self, runtime_checkable

from statemigrate._errors import StoreError, StoreSharedError
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.stores import _syscalls

if TYPE_CHECKING:
    from statemigrate.stores._writer import Writer

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Buffer",
    "Claim",
    "Closing",
    "Holding",
    "SnapshotRef",
    "Store",
    "check_other_writer",
    "chunks",
    "claim",
    "claimed",
    "committed_here",
    "forget_commits",
    "holding",
    "holds",
    "note_claim",
    "note_commit",
    "note_maybe_committed",
    "note_read",
    "note_seen",
    "too_large",
    "write_bounded",
]

_log = logging.getLogger("statemigrate.stores")

Buffer = bytes | bytearray | memoryview
"""Anything a store accepts as (part of) a snapshot."""

DEFAULT_MAX_SIZE = DEFAULT_MAX_SNAPSHOT_SIZE
"""Default upper bound, in bytes, on a snapshot a store commits or opens: the limit
readers and the handoff share (4 GiB)."""


class Closing:
    """Context-manager support for objects that own a descriptor and have ``close()``.

    ``close()`` must be idempotent. Objects dropped without ``close()`` are closed when
    garbage-collected, so a store or reference created inline does not leak its fd,
    unless the class sets ``close_on_collect = False`` because what it closes may still
    be in use elsewhere.
    """

    close_on_collect: ClassVar[bool] = True

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self.close_on_collect:
            return
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


@runtime_checkable
class SnapshotRef(Protocol):
    """What :meth:`Store.commit` returns: a handle on a committed snapshot."""

    def open(self) -> bytes | memoryview:
        """Return the committed bytes, checked as safe to read.

        Raises:
            StoreError: the snapshot is gone, or what is there is not safe to read.
        """
        ...

    def describe(self) -> str:
        """A short printable location, e.g. ``tmpfs:/dev/shm/app/current`` or ``memfd:7``."""
        ...


@runtime_checkable
class Store(Protocol):
    """Somewhere snapshots are committed atomically and opened again."""

    def commit(self, data: Buffer | Iterable[Buffer]) -> SnapshotRef:
        """Commit ``data`` (one buffer, or an iterable of buffers written in order).

        An exception raised by the iterable while it is read propagates, and nothing
        is committed (``Service.commit`` streams the snapshot as it is encoded).

        Raises:
            StoreError: nothing was committed, and the previous snapshot is intact.
        """
        ...

    def open(self, ref: SnapshotRef | None = None) -> bytes | memoryview:
        """Return the snapshot ``ref`` names, or the latest one when ``ref`` is ``None``.

        Raises:
            StoreError: there is no snapshot, or it is not safe to read.
        """
        ...


Holding = Literal["held", "replaced", "lost"]
"""What a store holds of a snapshot it committed: that snapshot as its latest
(``held``), a snapshot committed after it by another writer sharing the store
(``replaced``), or neither (``lost``: something outside the store deleted it)."""


def holding(store: Store, ref: SnapshotRef) -> Holding:
    """:func:`holds`, telling a snapshot another writer committed since from none: the
    store's ``holding(ref)`` when it has one (the built-in stores do), else ``held`` or
    ``lost`` as its ``holds(ref)`` says.

    Raises:
        StoreError: the store could not be asked.
    """
    check = getattr(store, "holding", None)
    if callable(check):
        answer: Holding = check(ref)
        return answer
    return "held" if holds(store, ref) else "lost"


# What this process committed: the places it committed to, and the identities of its
# commits (an inode and its mtime, an object's unique name), the newest few thousand.
# Process-wide, not per store object, and a commit is known by what it left rather than
# by how its place was spelled: a service may commit through several store objects on
# one place (a Checkpointer's, a preStop export's), spelled differently (a path through
# a symbolic link, "file://" and a LocalStore), and that is one writer. A forked child
# inherits the record, not the commits: the pid tells.
_KEEP_IDENTITIES = 4096
_committed_by = -1
_committed_places: set[str] = set()
_committed_identities: dict[object, None] = {}
# What the process found latest at each place the first time it read it (a start's
# restore), ``None`` for nothing committed there: the state it restored, or started
# cold without. Until it commits there, that is the one snapshot it may replace.
_first_seen: dict[str, object] = {}
# The places this process read before committing there (its start's restore), with or
# without the identity of what it found: its first commit there must not take the
# place from the process that committed what it read, if that one still runs here.
_read_places: set[str] = set()
# The places this process claimed (note_claim) before committing there: what it may
# replace there is the snapshot it claimed, as _first_seen records.
_claimed_places: set[str] = set()


def _own_record() -> None:
    global _committed_by
    if _committed_by != os.getpid():
        _committed_by = os.getpid()
        _committed_places.clear()
        _committed_identities.clear()
        _first_seen.clear()
        _read_places.clear()
        _claimed_places.clear()


def note_read(place: str) -> None:
    """Record that this process read the latest snapshot at ``place`` (a start's
    restore): until it commits there, its commits check that the process that
    committed what is there has stopped (see :func:`check_other_writer`)."""
    _own_record()
    _read_places.add(place)


def note_seen(place: str, identity: object) -> None:
    """Record that this process read ``place`` and found its latest snapshot
    ``identity`` there (``None``: none committed), if it is the first time: what a
    start restored, or started cold without (see :func:`check_other_writer`)."""
    _own_record()
    _first_seen.setdefault(place, identity)
    _read_places.add(place)


def committed_here(place: str) -> bool:
    """Whether this process has committed at ``place``."""
    _own_record()
    return place in _committed_places


def note_commit(place: str, identity: object) -> None:
    """Record that this process just committed ``identity`` at ``place``."""
    note_maybe_committed(identity)
    _committed_places.add(place)


def note_maybe_committed(identity: object) -> None:
    """Record ``identity`` as this process's, where its commit failed in a way that
    may yet have published it (a lost reply, a delayed request): found latest later, it
    is not another process's. The place is not recorded as committed to, since the
    snapshot there may still be one this process did not write."""
    _own_record()
    _committed_identities[identity] = None
    if len(_committed_identities) > _KEEP_IDENTITIES:
        del _committed_identities[next(iter(_committed_identities))]


def forget_commits() -> None:
    """Forget every place this process has committed to, so that its next commit goes
    over whatever is there, as a new process's would.

    For a process that took its state back from a successor that died after COMMIT:
    the successor may have committed a checkpoint of that same state meanwhile, and
    this process is again the store's one writer. Without this, its every checkpoint
    would be refused as another writer's (``StoreSharedError``) until it restarted.
    """
    _own_record()
    _committed_places.clear()
    _first_seen.clear()
    _read_places.clear()
    _claimed_places.clear()


def note_claim(place: str, latest: object) -> None:
    """Make this process the writer at ``place``, where the latest snapshot is
    ``latest`` (its identity; ``None``: nothing committed there): its next commit there
    goes over that snapshot, as a new process's goes over the one its start restored,
    whoever committed it and whether or not that process still runs. A snapshot
    committed there after this claim is still refused as another writer's: the claim
    is of what this process saw, not of whatever comes next."""
    _own_record()
    _committed_places.discard(place)
    _read_places.discard(place)
    _claimed_places.add(place)
    _first_seen[place] = latest


def check_other_writer(
    place: str, current: object, writer: Callable[[], Writer | None] | None = None
) -> None:
    """Refuse a commit when the latest snapshot at ``place`` (its identity ``current``)
    is none this process committed, though it has committed there before: another
    process committed since.

    A store has one writer at a time by design (a handoff moves the state and the
    checkpoints to the successor together), so this is a second service committing to
    the same place. Replacing its snapshot would lose its acknowledged writes at the
    next restart, without a word; refusing loses nothing it did not already have, and
    says so at every commit, so that a misconfiguration is seen before a crash makes it
    a loss. A process that has committed nothing there yet (a restart, a successor, a
    new pod) commits over what it restored: the latest snapshot its start read there
    (:func:`note_seen`), or nothing. Another snapshot in its place was committed by
    another process since that start (two replicas started cold on one empty place,
    say), and is refused alike: going over it would lose the other's writes, which this
    process never had. A process that never read the place (a handoff's successor)
    commits over whatever is there.

    A process that read the place (:func:`note_read`, :func:`note_seen`) and has not
    committed there yet is refused too while the process that committed the latest
    snapshot still runs on this host: a second copy of a service, started with the
    same configuration, would otherwise take the place from the running one, whose
    every commit would be refused from then on. It commits once that process has
    exited (a restart after a crash, a worker that replaces one that exited).

    Args:
        place: where the store keeps its snapshots.
        current: the identity of the latest snapshot there.
        writer: reads who committed the latest snapshot from its header
            (:func:`~statemigrate.stores._writer.latest_writer`); asked only at the
            first commit of a process that read the place, and when a commit is refused.

    A claim (:func:`note_claim`) makes this process the writer again: once the other
    process has stopped committing, its next commit goes over what it claimed.

    Raises:
        StoreSharedError: another process committed there since this one did, or since
            this one's start read it or since it claimed it, before this one's first
            commit there; or the process that committed what this one's start read still
            runs here.
    """
    _own_record()
    if current in _committed_identities:
        return
    if place in _committed_places:
        raise _shared(place, "commit", current, None if writer is None else writer())
    if place in _first_seen and _first_seen[place] != current:
        since: Literal["start", "claim"] = "claim" if place in _claimed_places else "start"
        raise _shared(place, since, current, None if writer is None else writer())
    if place in _read_places and writer is not None:
        found = writer()
        if found is not None and found.running is True:
            raise _shared(place, "running", current, found)


def _shared(
    place: str,
    since: Literal["commit", "start", "claim", "running"],
    current: object,
    writer: Writer | None,
) -> StoreSharedError:
    """The refusal, naming the process that committed the latest snapshot when its
    header says which: whether it still runs is what an operator needs to know. It
    carries the latest snapshot's identity too: refusals that keep finding the same one
    tell a writer that stopped committing (see ``Checkpointer``'s ``claim_after``)."""
    if writer is None:
        return StoreSharedError(place, since=since, latest=current)
    return StoreSharedError(
        place,
        since=since,
        writer_pid=writer.pid,
        writer_host=writer.host,
        writer_running=writer.running,
        latest=current,
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """What a store's ``claim()`` made this process the writer over.

    Attributes:
        place: where the store keeps its snapshots.
        replaces: the snapshot this process's next commit there goes over, in words
            (``generation 12``, ``/dev/shm/app/current``); ``None`` when nothing is
            committed there.
        writer_pid: the process that committed it, as its header says, when known
            (``None`` too when it is this process).
        writer_host: the host that process ran on, when known.
        writer_running: whether that process still runs (``None``: not known, as for
            a process of another host).
        latest: the identity of that snapshot, as ``StoreSharedError.latest`` gives it.
    """

    place: str
    replaces: str | None
    writer_pid: int | None = None
    writer_host: str | None = None
    writer_running: bool | None = None
    latest: object = None

    def describe(self) -> str:
        """What the claim's next commit replaces, and whose it is, in words."""
        if self.replaces is None:
            return "nothing is committed there yet"
        if self.writer_pid is None:
            return f"its next commit replaces {self.replaces}"
        if self.writer_running is None:
            state = "whether it still runs is not known here"
        else:
            state = "which still runs" if self.writer_running else "which has exited"
        return (
            f"its next commit replaces {self.replaces}, committed by process"
            f" {self.writer_pid} on {self.writer_host} ({state})"
        )


def claimed(
    place: str,
    latest: object,
    replaces: str | None,
    writer: Writer | None,
    *,
    shared: bool = True,
) -> Claim:
    """Make this process the writer at ``place`` over ``latest`` (see
    :func:`note_claim`; not for a place no other process can reach, ``shared`` false),
    and say so at WARNING: a claim goes over another process's snapshot, which an
    operator must be able to find afterwards. What a store's ``claim()`` returns."""
    if shared:
        note_claim(place, latest)
    found = Claim(
        place,
        replaces,
        writer_pid=None if writer is None else writer.pid,
        writer_host=None if writer is None else writer.host,
        writer_running=None if writer is None else writer.running,
        latest=latest,
    )
    _log.warning("claim of %s: this process is now its writer; %s", place, found.describe())
    return found


def claim(store: Store) -> Claim | None:
    """``store.claim()``, where the store keeps one writer at a time (the built-in
    ``TmpfsStore`` and ``ObjectStore`` do); ``None`` for a store without it
    (``MemoryStore``, ``MemfdStore``, your own), which has no writer to claim.

    Raises:
        StoreError: the store could not be asked.
    """
    make = getattr(store, "claim", None)
    if not callable(make):
        return None
    result: Claim = make()
    return result


def holds(store: Store, ref: SnapshotRef) -> bool:
    """Whether ``store``'s latest snapshot is still the one ``ref`` names, as far as the
    store can tell cheaply (its ``holds(ref)``: a stat for tmpfs, a read of the pointer
    for an object store); ``True`` for a store that cannot tell.

    Something outside the store may delete what it committed (a bucket's lifecycle
    rule, someone cleaning a directory): whoever skips a commit because the state is
    the one committed last must check this first.

    Raises:
        StoreError: the store could not be asked.
    """
    check = getattr(store, "holds", None)
    return True if not callable(check) else bool(check(ref))


def chunks(data: Buffer | Iterable[Buffer]) -> Iterator[memoryview]:
    """Yield ``data`` as flat byte views, whether it is one buffer or many.

    Raises:
        TypeError: an item is not a bytes-like object.
    """
    items: Iterable[object] = (data,) if isinstance(data, bytes | bytearray | memoryview) else data
    for item in items:
        try:
            view = memoryview(item)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"a snapshot is written from bytes-like objects, not {type(item).__name__}"
            ) from None
        if not view.c_contiguous:
            # A strided view cannot be handed to write(2); copy it into one piece.
            view = memoryview(view.tobytes())
        elif view.ndim != 1 or view.itemsize != 1 or view.format not in ("B", "b", "c"):
            # Multi-byte or multi-dimensional buffers: write their raw bytes in order.
            view = view.cast("B")
        yield view


def too_large(op: str, where: str, size: int, max_size: int) -> StoreError:
    """The error for a snapshot bigger than the store accepts."""
    return StoreError(op, where, f"snapshot of {size} bytes is larger than max_size {max_size}")


def write_bounded(fd: int, data: Buffer | Iterable[Buffer], *, max_size: int, where: str) -> int:
    """Write every buffer of ``data`` to ``fd`` in order; returns the bytes written.

    Raises:
        StoreError: the data passes ``max_size`` bytes (checked before each write, so
            at most ``max_size`` bytes reach the file), or a write fails.
    """
    total = 0
    for view in chunks(data):
        total += view.nbytes
        if total > max_size:
            raise StoreError(
                "write", where, f"snapshot exceeds max_size {max_size} (at least {total} bytes)"
            )
        _syscalls.write_all(fd, view, where=where)
    return total
