"""ObjectStore: snapshots committed to object storage (S3, GCS, Azure) through obstore.

Layout under the store's prefix::

    current                                      the pointer (JSON): current and previous
    generations/<generation:020d>.<128 random bits>   one object per committed snapshot

Commit protocol:

1. read the pointer and its etag (none yet: this is generation 1);
2. write the snapshot to a fresh generation object: create-only in one request, or, for
   a snapshot larger than ``part_size``, a streamed multipart upload (obstore cannot
   make that create-only; the random part of the name keeps writers apart);
3. compare-and-swap the pointer: replace it only if its etag is unchanged, or create it
   only if there is still none. Exactly one writer wins each generation; a loser gets
   :class:`StoreConflictError` and deletes its own object;
4. delete the generation objects older than the ``keep`` newest generations, but
   those kept as unrestored (with no pointer, all those found: ``_object_unplaced``).

The pointer names an object only after the object is complete, so a reader never sees a
partial snapshot, and a writer that dies or loses its connection at any point leaves
the pointer as it was. Readers check each snapshot's size, etag and xxh3-128 digest
against the pointer. Stores know nothing of the snapshot format: authenticity comes
from the format's MAC mode (``Service(key=...)``), which a remote store needs.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import xxhash

from statemigrate._errors import StoreError
from statemigrate.stores._base import (
    DEFAULT_MAX_SIZE,
    Buffer,
    Claim,
    Holding,
    SnapshotRef,
    check_other_writer,
    claimed,
    committed_here,
    note_commit,
    note_maybe_committed,
    note_seen,
)
from statemigrate.stores._object_backend import Refused
from statemigrate.stores._object_build import backend_for
from statemigrate.stores._object_generation import (
    Target,
    read_generation,
    read_generation_range,
    upload_generation,
)
from statemigrate.stores._object_pointer import (
    FORMAT,
    GENERATIONS,
    DamagedPointerError,
    Entry,
    Pointer,
    Role,
    encode_pointer,
    generation_of,
    new_object_name,
)
from statemigrate.stores._object_pointer_io import (
    POINTER,
    existing_pointer,
    listed_generations,
    previous_entry,
    read_pointer,
    settle,
)
from statemigrate.stores._object_retention import (
    forget_unrestored,
    kept_generations,
    recorded_with_digest,
    say_kept,
    sweep_generations,
    with_pending,
)
from statemigrate.stores._object_unplaced import say_unplaced, unplaced_generations
from statemigrate.stores._object_watch import DEFAULT_WARN_AFTER, check_warn_after
from statemigrate.stores._options import (
    MIN_PART_SIZE,
    check_int,
    check_max_concurrency,
    check_max_size,
    check_prefix,
    check_retries,
    check_seconds,
)
from statemigrate.stores._writer import Writer, latest_writer

__all__ = ["Listing", "ObjectRef", "ObjectStore", "list_generations"]

_log = logging.getLogger("statemigrate.stores")


class ObjectStore:
    """Commit snapshots to object storage: create-only objects plus a compare-and-swap
    pointer, so that several writers may share one prefix and never both win.

    Args:
        location: a URL (``s3://bucket/prefix``, ``gs://bucket/prefix``,
            ``az://container/prefix``, ``file:///absolute/path`` or ``memory://``), or
            an obstore store built by the caller (``obstore.store.S3Store(...)``).
        prefix: a further key prefix under ``location``.
        config: obstore's configuration for a URL (``S3Config``, ``GCSConfig``,
            ``AzureConfig`` keys such as ``endpoint`` or ``region``; none for
            ``file://`` and ``memory://``). Credentials come
            from the environment, as obstore reads them, unless given here.
        client_options: obstore's HTTP client options for a URL; they override the
            timeouts below.
        credential_provider: obstore's credential provider callback, for a URL.
        timeout: seconds one request may take (default 30). Each request moves at most
            ``part_size`` bytes.
        connect_timeout: seconds to connect (default 5).
        retries: how often a failed request is retried (default 3), with backoff.
        retry_timeout: seconds after which a request is no longer retried (default 60).
        keep: how many of the newest generations to keep (at least 2: current and
            previous). Older generation objects are deleted after each commit.
        max_size: the largest snapshot, in bytes, that the store commits or opens
            (at least 1).
        part_size: snapshots larger than this are uploaded in parts of this size, and
            every snapshot is read back in ranges of this size (at least 5 MiB, S3's
            smallest part, which is the default: the fewer bytes a part holds, the
            less of a snapshot its upload keeps in memory).
        max_concurrency: the most parts uploaded at once (1 to 10,000). A commit holds at most
            ``max_concurrency + 1`` parts of a snapshot in memory, waiting for the
            server to acknowledge parts before it takes more of the snapshot. It
            starts with two parts (one in flight, one being filled) and allows more
            as the snapshot streams, a quarter of the bytes streamed so far: a commit
            holds at most two parts or a quarter of the snapshot, whichever is more,
            and reaches ``max_concurrency`` requests in flight once
            ``4 * (max_concurrency + 1)`` parts' worth was streamed.
        warn_after: seconds after which a request still running is logged, once, at
            WARNING (the operation, the object, how long it has waited), and its end at
            INFO; a multipart upload counts from the last part it took. ``None``: never.
            The default, 5, is well under the timeouts: a hung server shows in the log
            long before its requests fail.

    ``config``, ``client_options``, ``credential_provider`` and the timeouts configure a
    store built from a URL; configure a store you build yourself on that store.

    Raises:
        StoreError: obstore is not installed, the URL is not supported, or obstore
            refused the configuration.
        ConfigurationError: an option has an invalid value (one line naming it, what
            is allowed and the value given; a ``ValueError``), a setting was given
            for a ``file://`` or ``memory://`` URL, which take none, or ``config`` or
            ``client_options`` holds a key obstore does not take for the URL's backend.
    """

    def __init__(
        self,
        location: str | object,
        *,
        prefix: str = "",
        config: Mapping[str, Any] | None = None,
        client_options: Mapping[str, Any] | None = None,
        credential_provider: Callable[..., Any] | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        retries: int | None = None,
        retry_timeout: float | None = None,
        keep: int = 2,
        max_size: int = DEFAULT_MAX_SIZE,
        part_size: int = MIN_PART_SIZE,
        max_concurrency: int = 4,
        warn_after: float | None = DEFAULT_WARN_AFTER,
    ) -> None:
        check_prefix(prefix)
        keep = check_int("keep", keep, least=2, allowed="an int of at least 2")
        part_size = check_int(
            "part_size", part_size, least=MIN_PART_SIZE, allowed="an int of at least 5 MiB"
        )
        max_concurrency = check_max_concurrency(max_concurrency)
        warn_after = check_warn_after(warn_after)
        timeout = check_seconds("timeout", timeout, zero_ok=False)
        connect_timeout = check_seconds("connect_timeout", connect_timeout, zero_ok=False)
        retry_timeout = check_seconds("retry_timeout", retry_timeout, zero_ok=True)
        retries = check_retries(retries)
        self._max_size = check_max_size(max_size)
        self._keep = keep
        self._part_size = part_size
        self._max_concurrency = max_concurrency
        backend = backend_for(
            location,
            prefix,
            config=config,
            client_options=client_options,
            credential_provider=credential_provider,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            retry_timeout=retry_timeout,
        )
        backend.warn_after = warn_after
        self._backend = backend
        # What a failed start asked to keep out of retention's reach: a known
        # generation, or (the store unreachable then) the current and previous ones at
        # the next commit. Written to the pointer by that commit.
        self._unrestored: Entry | None = None
        self._keep_latest = False
        self._last_unrestored: tuple[int, ...] | None = None

    # -- public API ----------------------------------------------------------------

    @property
    def last_unrestored(self) -> tuple[int, ...] | None:
        """The generations kept as unrestored when this store last wrote or read its
        pointer's record of them (:meth:`commit`, :meth:`unrestored`,
        :meth:`forget_unrestored`, :meth:`keep_unrestored`), oldest first, with the
        one a failed start asked to keep (:meth:`keep_unrestored`), which the next
        commit records; ``None`` before. No request: for a gauge
        (``statemigrate_unrestored_generations``), right from the start that kept it."""
        if self._last_unrestored is None or self._unrestored is None:
            return self._last_unrestored
        return with_pending(self._last_unrestored, self._unrestored)

    @property
    def location(self) -> str:
        """Where the store keeps its objects, e.g. ``s3://bucket/prefix``."""
        return self._backend.location

    @property
    def remote(self) -> bool:
        """Whether snapshots live on another host (S3, GCS, Azure), where anyone with
        write access to the bucket could replace them: use an authentication key."""
        return self._backend.remote

    def commit(self, data: Buffer | Iterable[Buffer]) -> ObjectRef:
        """Commit ``data`` as the next generation; the current one becomes the previous.

        Raises:
            StoreConflictError: another writer committed first; this commit left
                nothing behind. The other writer's snapshot is current and intact.
            StoreError: the snapshot exceeds ``max_size``, or a request failed; the
                pointer is as it was (the message says so when a lost reply leaves
                the outcome unknown).
            TypeError: ``data`` holds something that is not bytes-like.
        """
        found = read_pointer(self._backend)
        base, version = (None, None) if found is None else found
        if base is not None and self._shared:
            target = Target.of(base.current)
            check_other_writer(
                self.location, base.current.object, lambda: self._writer_of(target)
            )
        # Objects without a pointer (a pointer deleted by hand): number past them, so
        # that no generation number ever names two snapshots.
        listed = listed_generations(self._backend) if base is None else []
        newest = max((ref.generation for ref in listed), default=0)
        if base is None and not listed and self._shared and committed_here(self.location):
            self._say_emptied()
        generation = (newest if base is None else base.current.generation) + 1
        name = new_object_name(generation)
        entry = upload_generation(
            self._backend,
            name,
            generation,
            data,
            max_size=self._max_size,
            part_size=self._part_size,
            max_concurrency=self._max_concurrency,
        )
        unplaced = unplaced_generations(listed)
        kept = kept_generations(
            base,
            listed,
            unrestored=self._unrestored,
            keep_latest=self._keep_latest,
            location=self.location,
            unplaced=unplaced.recorded,
        )
        pointer = Pointer(
            format=FORMAT,
            current=entry,
            previous=None if base is None else base.current,
            unrestored=kept,
        )
        # Known as this process's before anyone can see it: another thread of this
        # process that commits next must not take it for another writer's. And whatever
        # a failed swap's read-back finds, the write may have applied unseen (the
        # pointer unreadable) or may apply later (a delayed request): then too the next
        # commit must find this process's generation, not another writer's.
        note_maybe_committed(entry.object)
        try:
            self._backend.swap(POINTER, encode_pointer(pointer), version)
        except (Refused, StoreError) as exc:
            settle(self._backend, name, generation, version, exc)
        # Recorded before anything else can fail: the pointer names this generation.
        note_commit(self.location, entry.object)
        self._last_unrestored = tuple(entry.generation for entry in kept)
        if listed:
            say_unplaced(unplaced, kept, self.location)
        elif kept and (self._unrestored is not None or self._keep_latest):
            say_kept(kept, self.location)
        self._unrestored, self._keep_latest = None, False
        sweep_generations(
            self._backend,
            generation,
            keep=self._keep,
            spare={entry.object for entry in kept} | {left.object for left in unplaced.left},
            location=self.location,
        )
        return ObjectRef(self, entry, role="current")

    def open(self, ref: SnapshotRef | None = None) -> memoryview:
        """Return the snapshot ``ref`` names, or the current one.

        The bytes are read in ranges into one buffer and checked against the size,
        etag and digest recorded at commit time.

        Raises:
            StoreError: there is no snapshot; the pointer or the snapshot is missing,
                damaged or replaced; ``ref`` belongs to another store; a request failed.
                :meth:`open_previous` may still succeed.
        """
        if ref is None:
            return self._read(Target.of(self._current_seen()))
        if not (isinstance(ref, ObjectRef) and ref.store._same_place(self)):
            raise StoreError("open", ref.describe(), f"is not a snapshot of {self.location}")
        return self._read(ref._target)

    def claim(self) -> Claim:
        """Make this process the writer under the prefix: its next commit goes over the
        current generation as the pointer names it now, whoever committed it, and says
        so at WARNING. One read of the pointer, and of the generation's header.

        The way out of :class:`~statemigrate.StoreSharedError` once the other process
        has stopped committing here (the old pod of a rollout that overlapped):
        without it, that process's generation stays current and every commit of this
        one is refused. A generation committed after the claim is refused as before
        (claim again once that process has stopped).

        Returns:
            What the next commit replaces, and who committed it.

        Raises:
            StoreError: the pointer could not be read, or is damaged.
        """
        found = read_pointer(self._backend)
        if found is None:
            return claimed(self.location, None, None, None, shared=self._shared)
        current = found[0].current
        return claimed(
            self.location,
            current.object,
            f"generation {current.generation}",
            self._writer_of(Target.of(current)),
            shared=self._shared,
        )

    def _say_emptied(self) -> None:
        """Warn that the store lost this process's checkpoints: it committed here, and
        neither the pointer nor any generation object is left. Numbering starts again at
        1, which alone would pass unnoticed (a bucket deleted and created again, an
        endpoint failed over to an empty server, a prefix wiped)."""
        _log.warning(
            "commit %s: the store no longer holds this process's last checkpoint nor any"
            " generation before it (the bucket or prefix was emptied or created again, or"
            " the endpoint now reaches another server); what it held is lost there,"
            " and this commit starts again at generation 1",
            self.location,
        )

    def _writer_of(self, target: Target) -> Writer | None:
        """Who committed the generation ``target`` names, from its header (a ranged
        read or two); ``None`` when it cannot be read."""
        try:
            return latest_writer(
                lambda offset, length: read_generation_range(
                    self._backend, target, offset, length
                ),
                target.size,
            )
        except (StoreError, ValueError):
            return None

    def _current_seen(self) -> Entry:
        """The pointer's current generation, noted as what this process found here
        (or that it found nothing committed): a process's first commit may replace only
        the snapshot its start read (``check_other_writer``).

        Raises:
            StoreError: as :func:`existing_pointer`.
        """
        try:
            current = existing_pointer(self._backend).current
        except StoreError as exc:
            if exc.errno == errno.ENOENT and self._shared:
                note_seen(self.location, None)
            raise
        if self._shared:
            note_seen(self.location, current.object)
        return current

    def open_previous(self) -> memoryview:
        """Return the snapshot committed before the current one: the fallback when the
        current one cannot be read or restored.

        Raises:
            StoreError: there is none, or it cannot be read (see :meth:`open`).
        """
        return self._read(Target.of(previous_entry(self._backend)))

    def holds(self, ref: SnapshotRef) -> bool:
        """Whether the store still holds ``ref``'s generation as current, its object
        there, or a newer generation another writer committed since: see
        :meth:`holding`.

        Raises:
            StoreError: as :meth:`holding`.
        """
        return self.holding(ref) != "lost"

    def holding(self, ref: SnapshotRef) -> Holding:
        """What the store holds of ``ref``'s generation, for a checkpointer that skips
        an unchanged state: that generation as current with its object there
        (``held``), a newer generation another writer committed since (``replaced``),
        or neither (``lost``: a lifecycle rule may have deleted both). A read of the
        pointer, and a HEAD of the object.

        Raises:
            StoreError: the pointer is damaged, or a request failed.
        """
        if not (isinstance(ref, ObjectRef) and ref.store._same_place(self)):
            return "lost"
        found = read_pointer(self._backend)
        if found is None:
            return "lost"
        current = found[0].current
        if current.object != ref._target.object:
            return "replaced" if current.generation > ref.generation else "lost"
        return "held" if self._backend.exists(ref._target.object) else "lost"

    def ref(self, which: Role | int = "current") -> ObjectRef:
        """A reference to the current or the previous generation, the one a start could
        not restore (``"unrestored"``: the newest kept, see :meth:`keep_unrestored`), or
        the generation numbered ``which``, e.g. to restore from.

        A generation that is neither current nor previous is one the pointer no longer
        records (with ``keep`` above 2): its object is found by listing, and it is read
        without the store's digest check (the snapshot format's own digest or MAC
        still applies when it is opened as a snapshot).

        With the pointer damaged (not one of ours), a generation number is still found
        by listing and read that way, with one WARNING that says how to repair the
        pointer; the three roles fail with the pointer's error.

        Raises:
            StoreError: there is no such generation, several objects claim a generation
                the pointer does not record, the pointer is damaged (for a role), or a
                request failed.
            ValueError: ``which`` is neither ``"current"``, ``"previous"``,
                ``"unrestored"`` nor a positive int.
        """
        if which == "current":
            pointer = existing_pointer(self._backend)
            return self._recorded_ref(pointer, pointer.current, "current")
        if which == "previous":
            pointer = existing_pointer(self._backend)
            if pointer.previous is None:
                raise StoreError(
                    "open", self._backend.where(POINTER), "there is no previous snapshot"
                )
            return self._recorded_ref(pointer, pointer.previous, "previous")
        if which == "unrestored":
            pointer = existing_pointer(self._backend)
            if not pointer.unrestored:
                raise StoreError(
                    "open",
                    self._backend.where(POINTER),
                    "records no unrestored generation (no start failed to restore one)",
                )
            return self._recorded_ref(pointer, pointer.unrestored[-1], "unrestored")
        if isinstance(which, int) and not isinstance(which, bool) and which >= 1:
            return self._ref_of(which)
        raise ValueError(
            "which must be 'current', 'previous', 'unrestored' or a generation number,"
            f" not {which!r}"
        )

    def keep_unrestored(self, data: Buffer | None = None) -> str:
        """Keep the latest generation, which a start could not restore, out of
        retention's reach: checkpoints of the state the service goes on with (from
        the previous generation, or cold) must not delete the state it lost.

        The next commit records it in the pointer as ``unrestored``; every later
        commit carries it over, and retention never deletes its object. ``data`` is
        the snapshot the start read, which names the generation; ``None`` when the
        start could not read it at all (the server unreachable, say): the store then
        keeps the generations current and previous once it can be reached again. The next
        such failure keeps its generation too (up to four; past that, the newest is
        replaced, so that the state from before the trouble stays);
        :meth:`forget_unrestored` lets them all go.

        Returns:
            Where the kept generation will be named, for the log.
        """
        self._unrestored, self._keep_latest = None, True
        if data is not None:
            digest = xxhash.xxh3_128(data).hexdigest()
            self._unrestored, recorded = recorded_with_digest(self._backend, digest)
            if recorded is not None:
                self._last_unrestored = recorded
            self._keep_latest = self._unrestored is None
        if self._unrestored is not None:
            which = f"generation {self._unrestored.generation}"
        else:
            which = "the latest generations (those current when this store commits next)"
        return f"{which} of {self.location}, named #unrestored from this store's next commit on"

    def keep_unread(self) -> str:
        """:meth:`keep_unrestored` for a start that could not read the latest snapshot
        (the server unreachable, the pointer missing or damaged): the next commit keeps
        the generations current and previous by then."""
        return self.keep_unrestored(None)

    def forget_unrestored(self) -> list[int]:
        """Let go of the generations kept as ``unrestored``: the pointer no longer
        records them, and the next commit's retention deletes their objects.

        Returns:
            The generations let go, oldest first (empty when none was kept).

        Raises:
            StoreConflictError: another writer committed meanwhile; try again.
            StoreError: there is no pointer, it is damaged, or a request failed.
        """
        self._unrestored, self._keep_latest = None, False
        forgotten = forget_unrestored(self._backend)
        self._last_unrestored = ()
        return forgotten

    def unrestored(self) -> list[ObjectRef]:
        """References to the generations the pointer keeps as ``unrestored`` (see
        :meth:`keep_unrestored`), oldest first; empty when it keeps none, or when there
        is no pointer. One read of the pointer.

        Raises:
            StoreError: the pointer is damaged, or a request failed.
        """
        found = read_pointer(self._backend)
        if found is None:
            self._last_unrestored = ()
            return []
        pointer = found[0]
        self._last_unrestored = tuple(kept.generation for kept in pointer.unrestored)
        return [self._recorded_ref(pointer, kept, "unrestored") for kept in pointer.unrestored]

    def generations(self) -> list[ObjectRef]:
        """References to every generation object under the prefix, oldest first.

        Each has its ``role`` (``"current"``, ``"previous"``, ``"unrestored"`` or
        ``None``) and, when its object was listed, the time it was written
        (``modified``). Besides the kept generations this shows the objects of writers
        that died before their commit decided, until retention deletes them. A
        generation the pointer records whose object is missing is included too, with
        ``modified`` ``None``.

        With the pointer damaged (not one of ours), every object found by listing is
        returned with ``role`` ``None``, as with no pointer, and one WARNING says the
        pointer is damaged and how to repair it.

        Raises:
            StoreError: the pointer cannot be read (a request failed), or the listing
                failed.
        """
        listing = list_generations(self)
        if listing.damaged_pointer is not None:
            _log.warning("%s; its generations are listed without roles", listing.damaged_pointer)
        return listing.refs

    def __repr__(self) -> str:
        return f"<ObjectStore {self.location} keep={self._keep}>"

    def _ref_of(self, generation: int) -> ObjectRef:
        refs, damaged = list_generations(self)
        matches = [ref for ref in refs if ref.generation == generation]
        recorded = [ref for ref in matches if ref.role is not None]
        if recorded:
            return recorded[0]  # the pointer says which object won the generation
        where = self._backend.where(f"{GENERATIONS}/{generation:020d}.*")
        if len(matches) == 1:
            if damaged is not None:
                _log.warning(
                    "%s; generation %d found by listing, read without the store's digest"
                    " check (the snapshot's own digest or MAC still applies)",
                    damaged,
                    generation,
                )
            return matches[0]
        if matches:
            which = "is damaged, so nothing says which won" if damaged else "records none of them"
            raise StoreError(
                "open",
                where,
                f"{len(matches)} objects claim generation {generation} and the pointer"
                f" {which} (left by writers that died?)",
            )
        kept = ", ".join(str(ref.generation) for ref in refs) or "none"
        raise StoreError("open", where, f"there is no generation {generation} (kept: {kept})")

    # -- reading -----------------------------------------------------------------------

    def _recorded_ref(self, pointer: Pointer, entry: Entry, role: Role) -> ObjectRef:
        """A reference to ``entry``, recorded by ``pointer`` as ``role`` and perhaps as
        another role too (see :meth:`Pointer.recorded`)."""
        _, roles = pointer.recorded()[entry.object]
        return ObjectRef(self, entry, role=role, roles=roles)

    def _read(self, target: Target) -> memoryview:
        return read_generation(
            self._backend, target, max_size=self._max_size, part_size=self._part_size
        )

    @property
    def _shared(self) -> bool:
        """Whether another process could commit here too, so that the process's record
        of its commits (``stores/_base.py``) is kept and asked: not for a ``memory://``
        store, which is a store of its own in this process whatever its name (every one
        is at ``memory://``, which the record would take for one place)."""
        return type(self._backend.store).__name__ != "MemoryStore"

    def _same_place(self, other: ObjectStore) -> bool:
        mine, theirs = self._backend, other._backend
        if mine.location != theirs.location or mine.prefix != theirs.prefix:
            return False
        # Each memory:// store is a separate store, whatever its name.
        return mine.store is theirs.store or type(mine.store).__name__ != "MemoryStore"


class Listing(NamedTuple):
    """The generation objects under a store's prefix, as :func:`list_generations`
    finds them."""

    refs: list[ObjectRef]
    """Oldest first, with the roles the pointer gives them."""
    damaged_pointer: DamagedPointerError | None
    """Why no ref has a role although a pointer is there; ``None`` when it was read
    (or is missing)."""


def list_generations(store: ObjectStore) -> Listing:
    """Every generation object under ``store``'s prefix, with the roles its pointer
    gives them (see :meth:`ObjectStore.generations`), and the pointer's damage when it
    is not one of ours: the objects are then listed without roles, since a listing is
    how an operator finds the generation to restore before deleting the pointer.

    Raises:
        StoreError: the pointer cannot be read (no answer, access denied, ...), or
            the listing failed.
    """
    damaged = None
    try:
        found = read_pointer(store._backend)
    except DamagedPointerError as exc:
        found, damaged = None, exc
    recorded = found[0].recorded() if found is not None else {}
    unchecked = str(damaged) if damaged is not None else "the pointer does not record it"
    refs: list[ObjectRef] = []
    for listed in store._backend.list_objects(GENERATIONS):
        number = generation_of(listed.name)
        if number is None:
            continue
        if listed.name in recorded:
            entry, roles = recorded.pop(listed.name)
            refs.append(ObjectRef(store, entry, roles=roles, modified=listed.modified))
        else:
            target = Target(number, listed.name, listed.size, listed.etag, None)
            refs.append(ObjectRef(store, target, modified=listed.modified, unchecked=unchecked))
    refs.extend(ObjectRef(store, entry, roles=roles) for entry, roles in recorded.values())
    refs.sort(key=lambda ref: (ref.generation, ref.role is None, ref.describe()))
    return Listing(refs, damaged)


class ObjectRef:
    """Names one generation of an :class:`ObjectStore`.

    Unlike the latest-snapshot references of the tmpfs store, it keeps naming the same
    generation after newer commits, until retention deletes its object.

    Attributes:
        generation: the generation number (1 for the first commit to a prefix).
        size: the snapshot's size in bytes.
        role: what the pointer called this generation when the reference was made:
            ``"current"``, ``"previous"``, ``"unrestored"`` (kept after a start could
            not restore it), or ``None`` for one it does not record (an
            older generation kept by ``keep``, or the object of a writer that died
            before its commit decided). Of a generation with two roles, the one it
            was asked for by (:meth:`ObjectStore.ref`), else the first of ``roles``.
        roles: every role the pointer gave this generation, in the order current,
            previous, unrestored: ``("previous", "unrestored")`` for the generation a
            start could not restore once the next commit made it previous; empty when
            ``role`` is ``None``.
        modified: when the object was written, for references listed by
            :meth:`ObjectStore.generations`; ``None`` for the others.
        unchecked: why :meth:`open` cannot check this generation against the digest
            its commit recorded (the pointer does not record it, or is damaged: its
            error); ``None`` when it checks it. The snapshot's own checks still apply.
    """

    __slots__ = (
        "_entry", "_store", "_target", "generation", "modified", "role", "roles", "size",
        "unchecked",
    )

    def __init__(
        self,
        store: ObjectStore,
        entry: Entry | Target,
        *,
        role: Role | None = None,
        roles: tuple[Role, ...] = (),
        modified: datetime | None = None,
        unchecked: str | None = None,
    ) -> None:
        self._store = store
        self.unchecked = unchecked
        self._entry = entry if isinstance(entry, Entry) else None
        self._target = Target.of(entry) if isinstance(entry, Entry) else entry
        self.generation = self._target.generation
        self.size = self._target.size
        if role is not None and role not in roles:
            roles = (role, *roles)
        self.role: Role | None = role if role is not None else (roles[0] if roles else None)
        self.roles = roles
        self.modified = modified

    @property
    def store(self) -> ObjectStore:
        """The store this reference belongs to."""
        return self._store

    @property
    def entry(self) -> Entry | None:
        """What the pointer recorded about this generation (``None`` if it does not
        record it: see ``role``)."""
        return self._entry

    def open(self) -> memoryview:
        """Return this generation's bytes, checked (see :meth:`ObjectStore.open`)."""
        return self._store.open(self)

    def read_range(self, offset: int, length: int) -> memoryview:
        """``length`` bytes at ``offset`` of this generation's object, in one request:
        to look at a snapshot's ends without reading it whole (``statemigrate list
        --kinds`` does).

        The object's size is checked against ``size``, and its etag against the one
        recorded at its commit (or listed); its digest is not (that takes every byte:
        :meth:`open` checks it).

        Raises:
            ValueError: the range does not lie within the object's ``size`` bytes.
            StoreError: the object is missing, of another size, has another etag
                (replaced, or copied with the prefix: :meth:`open` tells which), or the
                request failed.
        """
        return read_generation_range(self._store._backend, self._target, offset, length)

    def describe(self) -> str:
        """The generation object's location, e.g. ``s3://bucket/app/generations/...``."""
        return self._store._backend.where(self._target.object)

    def __repr__(self) -> str:
        return f"<ObjectRef {self.describe()} generation={self.generation} size={self.size}>"
