"""Pre-copy: what a serving process exports, piece by piece, for its successor.

A hand-over that pauses writers for a full snapshot pauses them for a time that grows
with the state. Pre-copy sends the state in pieces instead: round 0 is a full snapshot
taken while the process serves (possibly in a forked child, from a copy-on-write image
of the memory), then deltas of what changed since the previous piece, each chained to
it; only the last delta is taken with writers held. :class:`PreCopySource` is the
serving side of that exchange; the successor applies the pieces with
:meth:`Service.restore <statemigrate.Service.restore>`, which refuses a delta whose
base is not the piece it restored last.

Change tracking comes from the components (see :mod:`statemigrate._model._changes`):
a component that cannot tell what changed makes :attr:`PreCopySource.deltas_possible`
false, and the caller then sends a full snapshot inside the pause, as without
pre-copy. So does a component the service caught changing a value in place, in this
source or in any other of the service's (see :mod:`statemigrate._runtime._inplacecaught`).
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

import xxhash

from statemigrate._errors import ChangeTrackingError, ConfigurationError, StateMigrateError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._changes import ComponentChanges, PartialState, records_protocol_gap
from statemigrate._runtime._deltawrite import (
    changes_of,
    delta_section,
    takes_whole_states_only,
    writes_own_state,
)
from statemigrate._runtime._export import section_to_walk
from statemigrate._runtime._inplacecaught import InPlaceCatches
from statemigrate._runtime._restore import Registered
from statemigrate._snapshot._encode import EncodedSnapshot, SectionInput, new_snapshot_id
from statemigrate._snapshot._header import DeltaBase
from statemigrate._snapshot._msgpack import NotPlainError, pack_data

__all__ = ["PreCopySource"]

T = TypeVar("T")

FullWriter = Callable[[str, int], EncodedSnapshot]
"""Writes the full snapshot of every component with the given id and generation."""
DeltaWriter = Callable[[Sequence[SectionInput], str, int, DeltaBase], EncodedSnapshot]
"""Encodes delta sections with the given id, generation and base."""
DeltaTaken = Callable[[EncodedSnapshot, float], None]
"""Told of each delta written and the seconds it took (taking the changes included),
to report it as a snapshot taken; a full snapshot is reported by its writer."""
ForkedTaken = Callable[[int, int, float], None]
"""Told of a full snapshot written by a forked child: its generation, size and the
seconds from the fork to the child's exit (the child's own report never reaches this
process)."""


class PreCopySource:
    """What a serving process exports, piece by piece, for a successor that restores
    as it goes. Made by :meth:`Service.precopy_source
    <statemigrate.Service.precopy_source>`.

    The pieces form a chain: :meth:`full` (round 0), then :meth:`delta` after delta,
    each naming the previous piece as its base. Use it as a context manager, or call
    :meth:`close` when done, so that the components stop recording changes.
    """

    def __init__(
        self,
        entries: Sequence[Registered],
        *,
        targets: Mapping[str, int] | None,
        allow_lossy: AllowLossy,
        reserve: Callable[[], int],
        write_full: FullWriter,
        write_delta: DeltaWriter,
        check: bool = False,
        delta_taken: DeltaTaken | None = None,
        forked_taken: ForkedTaken | None = None,
        caught: InPlaceCatches | None = None,
        by: str = "a pre-copy hand-over",
    ) -> None:
        self._entries = list(entries)
        # The service's memory of the components caught changing values in place:
        # told of this source's catches, asked before any delta is trusted.
        self._caught = caught
        self._by = by
        self._check = check  # plain states validated deep: the pieces are committed
        self._targets = dict(targets or {})
        self._allow_lossy = allow_lossy
        self._reserve = reserve
        self._write_full = write_full
        self._write_delta = write_delta
        self._delta_taken = delta_taken
        self._forked_taken = forked_taken
        self._changes: list[ComponentChanges | None] = []
        self._round0: DeltaBase | None = None
        self._last: DeltaBase | None = None
        self._written: mmap.mmap | None = None
        self._broken: str | None = None
        self._why_not: str | None = None
        self._pid = 0

    # --- the contract ------------------------------------------------------------------

    def start(self, *, on: DeltaBase | None = None) -> None:
        """Start recording changes in every component (a mark) and reserve the
        identity (snapshot id, generation) of the full snapshot :meth:`full` writes.

        Cheap: O(number of components). Call it in the serving process.

        Args:
            on: the identity of a piece the components hold exactly now (the newest
                piece of a checkpoint chain just restored): the first :meth:`delta`
                then names it as its base, and no identity is reserved for round 0
                (:meth:`full` writes under a new one, as after round 0).

        Raises:
            ConfigurationError: it was started already.
        """
        if self._round0 is not None:
            raise ConfigurationError("precopy", "this pre-copy source was started already")
        self._changes = [changes_of(entry) for entry in self._entries]
        for changes in self._changes:
            if changes is not None:
                changes.open()
        self._why_not = self._check_deltas()
        self._round0 = on if on is not None else DeltaBase(new_snapshot_id(), self._reserve())
        self._last = self._round0
        # One byte of memory shared with forked children: whether the reserved identity
        # was used, by this process or by a child writing round 0 from its image.
        self._written = mmap.mmap(-1, 1)
        if on is not None:
            self._written[0] = 1  # that piece's identity is written already
        self._pid = os.getpid()

    def full(self) -> EncodedSnapshot:
        """The full snapshot of everything, with the identity :meth:`start` reserved.

        Safe to call in a forked child: it reads live state and returns bytes (and
        notes in memory shared with the parent that the identity is used). Called
        again, in the parent, after round 0 (a fallback inside the pause, say), it
        writes a new full snapshot under a new identity, and later deltas chain to it.
        One child writes round 0: a second child would write under an identity the
        parent never learns, and the parent's deltas would be refused for their base
        (start a new source to begin again).

        Raises:
            ConfigurationError: :meth:`start` was not called.
            StateMigrateError: as :meth:`Service.snapshot <statemigrate.Service.snapshot>`.
        """
        round0, written = self._started()
        if written[0]:
            identity = DeltaBase(new_snapshot_id(), self._reserve())
        else:
            identity = round0
            written[0] = 1
        # Changes made from now on go into the next delta; those made before are in
        # this snapshot (changes made while it is taken may be in both: applying a
        # record again is harmless). A forked child leaves the marks alone: they are
        # the parent's business, and a lock another thread held at the fork would
        # never be released in the child.
        if os.getpid() == self._pid:
            for changes in self._changes:
                if changes is not None:
                    changes.skip()
        encoded = self._write_full(identity.snapshot_id, identity.generation)
        self._last = identity
        self._broken = None
        return encoded

    def forked(self, size: int, seconds: float) -> None:
        """In the serving process: a forked child wrote :meth:`full` (round 0), of
        ``size`` bytes, in ``seconds`` from the fork to its exit. Reports it as a
        snapshot taken, which the child's own report cannot do."""
        round0, _ = self._started()
        if self._forked_taken is not None:
            self._forked_taken(round0.generation, size, seconds)

    def pending(self) -> int:
        """Records changed since the last piece (full or delta); O(1).

        Components that cannot tell what changed count for nothing here: see
        :attr:`deltas_possible`.
        """
        return sum(changes.pending() for changes in self._changes if changes is not None)

    def others(self) -> bytes:
        """A digest of what a delta holds besides records: the tracked components'
        other fields, exported as a delta would export them.

        With no record :meth:`pending`, the same digest as at a piece says the state
        is still that piece's. Costs an export of those fields (no records); call it
        with the writers held. The fields are exported as a delta's section is: a plain
        state as it is, walked only when the packer finds it is not plain. A walk of
        every state would refuse what a delta and a commit take (a ``'5'`` in an ``int``
        field of a ``TypedDict``, which validation makes 5).

        Raises:
            ExportError, ValidationError: a field has no plain form.
        """
        digest = xxhash.xxh3_128()
        for entry, changes in zip(self._entries, self._changes, strict=True):
            if changes is None:
                continue
            schema = entry.registry.schema_for(entry.component, entry.spec.version)
            state: dict[str, object] = {}
            for name in schema.fields:
                if name in changes.record_fields:
                    state[name] = {}
                    continue
                value = getattr(entry.obj, name, _MISSING)
                if value is not _MISSING:
                    state[name] = value
            try:
                packed = pack_data(schema.export(state))
            except NotPlainError:
                packed = pack_data(schema.export(state, walk=True))
            digest.update(packed)
        return digest.digest()

    def check_in_place(self) -> None:
        """Check the records the changes watch (see :mod:`statemigrate._model._inplacewatch`)
        without taking a delta: for a caller that skips a piece because nothing is
        :meth:`pending`, where a value changed in place would otherwise go unseen.
        Costs the digests of at most 144 records per record field; call it with the
        writers held.

        Raises:
            ChangeTrackingError: a watched record changed in place. No delta can be
                chained after it (:attr:`deltas_possible` becomes false), as after a
                delta that caught one: the next piece must be a full snapshot, which
                holds the change.
        """
        self._started()
        try:
            for entry, changes in zip(self._entries, self._changes, strict=True):
                if changes is not None:
                    self._watched(entry, changes.check_in_place)
        except ChangeTrackingError as exc:
            self._broken = f"a value changed in place ({exc})"
            raise

    def records(self) -> int:
        """Records held now in the tracked components' record fields; O(components)."""
        return sum(changes.records() for changes in self._changes if changes is not None)

    @property
    def deltas_possible(self) -> bool:
        """False when some component cannot tell what changed (no tracking), the
        targets need a whole-data step to write deltas, a delta failed, or the service
        caught a component changing a value in place (for the rest of the process's
        life): then the caller sends :meth:`full` inside the pause instead."""
        return self.why_no_deltas is None

    @property
    def why_no_deltas(self) -> str | None:
        """Why :attr:`deltas_possible` is false, or ``None`` when it is true."""
        if self._round0 is None:
            return "not started"
        return self._why_not or self.distrusted or self._broken

    @property
    def distrusted(self) -> str | None:
        """Why no delta of these components is trusted for the rest of the process's
        life: the service caught one changing a value in place (here, or in another
        source of the service's), named with its first catch; ``None`` otherwise.
        Unlike a failed delta, a :meth:`full` snapshot does not end it."""
        if self._caught is None:
            return None
        return self._caught.why(entry.key for entry in self._entries)

    @property
    def base(self) -> DeltaBase | None:
        """The identity of the last piece written (the next delta's base)."""
        return self._last

    def delta(self, *, limit: int | None = None) -> EncodedSnapshot:
        """A delta of what changed since the previous piece, chained to it (its header
        names the previous piece's snapshot id and generation), and a new mark.

        With ``limit``, the delta holds at most that many records, those written
        longest ago; the others stay :meth:`pending` for the next delta. A serving
        process bounds its stalls that way: the time a delta holds the GIL (and the
        tracked dicts' locks) grows with its records.

        Call it in the serving process. After a failure no further delta can be
        chained (:attr:`deltas_possible` becomes false) until :meth:`full` is written
        again.

        Raises:
            ConfigurationError: :meth:`start` was not called, or deltas are not
                possible (see :attr:`deltas_possible`).
            ExportError, ValidationError: a change has no plain form.
            MigrationStepError, NoMigrationPathError, LossyMigrationError: the changes
                cannot be brought to their target version.
        """
        self._started()
        reason = self.why_no_deltas
        if reason is not None:
            raise ConfigurationError("precopy", f"no delta can be written: {reason}")
        base = self._last
        assert base is not None
        started = time.perf_counter()
        try:
            taken = []
            for entry, changes in zip(self._entries, self._changes, strict=True):
                if changes is not None:
                    taken.append(self._watched(entry, partial(changes.take, limit=limit)))
                    if limit is not None:
                        limit = max(limit - taken[-1].records, 0)
            sections = self._sections(taken)
            identity = DeltaBase(new_snapshot_id(), self._reserve())
            encoded = self._encode(taken, sections, identity, base)
        except BaseException as exc:
            # The changes taken are gone from the marks: the chain cannot go on.
            self._broken = f"a delta failed ({type(exc).__name__}: {exc})"
            raise
        self._last = identity
        if self._delta_taken is not None:
            self._delta_taken(encoded, time.perf_counter() - started)
        return encoded

    def close(self) -> None:
        """Stop recording changes (the tracked components drop their logs)."""
        for changes in self._changes:
            if changes is not None:
                changes.close()
        self._changes = [None for _ in self._changes]
        if self._written is not None:
            self._written.close()
            self._written = None
        if self._why_not is None:
            self._why_not = "closed"

    def __enter__(self) -> PreCopySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------

    def _started(self) -> tuple[DeltaBase, mmap.mmap]:
        if self._round0 is None or self._written is None:
            raise ConfigurationError("precopy", "start() the pre-copy source first")
        return self._round0, self._written

    def _watched(self, entry: Registered, check: Callable[[], T]) -> T:
        """``check()``, an in-place check of ``entry`` (a take runs one); a catch is
        told to the service, which remembers it."""
        try:
            return check()
        except ChangeTrackingError as exc:
            if self._caught is not None:
                self._caught.record(entry.key, exc, by=self._by)
            raise

    def _check_deltas(self) -> str | None:
        for entry, changes in zip(self._entries, self._changes, strict=True):
            if changes is None:
                if takes_whole_states_only(entry.obj):
                    return (
                        f"{entry.key} cannot tell what changed: it has its own"
                        " export_state/import_state, so it needs the records protocol"
                        " (export_records/import_records and TrackedDict collections,"
                        " docs/precopy.md)"
                    )
                if writes_own_state(entry.obj):
                    gap = records_protocol_gap(entry.obj, entry.spec.schema(entry.registry))
                    return f"{entry.key} cannot tell what changed: {gap} (docs/precopy.md)"
                return (
                    f"{entry.key} cannot tell what changed (keep its keyed collections in"
                    " TrackedDict attributes, and write a key again after changing its"
                    " value in place)"
                )
            target = self._targets.get(entry.component)
            if target is None or target == entry.spec.version:
                continue
            try:
                plan = entry.registry.plan(
                    entry.component, entry.spec.version, target, allow_lossy=self._allow_lossy
                )
            except StateMigrateError as exc:
                return f"{entry.key}: {exc}"
            if not plan.record_wise:
                return f"{entry.key}: step {plan.whole_steps[0]} needs the whole data"
        return None

    def _tracked(self) -> list[Registered]:
        return [e for e, c in zip(self._entries, self._changes, strict=True) if c is not None]

    def _sections(self, taken: Sequence[PartialState]) -> list[SectionInput]:
        sections = []
        for entry, changes in zip(self._tracked(), taken, strict=True):
            section, _ = delta_section(
                entry,
                changes,
                target=self._targets.get(entry.component),
                allow_lossy=self._allow_lossy,
                check=self._check,
            )
            sections.append(section)
        return sections

    def _encode(
        self,
        taken: Sequence[PartialState],
        sections: list[SectionInput],
        identity: DeltaBase,
        base: DeltaBase,
    ) -> EncodedSnapshot:
        walked: set[int] = set()
        while True:
            try:
                return self._write_delta(sections, identity.snapshot_id, identity.generation, base)
            except NotPlainError as exc:
                index = section_to_walk(exc, sections, walked)
                entry = self._tracked()[index]
                sections[index], _ = delta_section(
                    entry,
                    taken[index],
                    target=self._targets.get(entry.component),
                    allow_lossy=self._allow_lossy,
                    walk=True,
                )


_MISSING: object = object()
