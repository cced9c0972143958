"""Taking a checkpoint's snapshot with the writers held: a full snapshot, exported in
this process or in a forked child (see :mod:`statemigrate._runtime._fork`), or, for
incremental checkpoints, the chain's next piece (a delta, or a new full base once the
chain has grown past its bounds) and the whole chain as one snapshot to commit.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from statemigrate._errors import CheckpointError, SnapshotError
from statemigrate._observe._instruments import CHECKPOINT_PAUSE, emit
from statemigrate._runtime._chain import chain_frame
from statemigrate._runtime._fork import Exported, ForkedExport, fork_export
from statemigrate._runtime._report import UNCHANGED, SnapshotReport
from statemigrate._runtime._telemetry import store_current
from statemigrate._snapshot._encode import EncodedSnapshot, new_snapshot_id
from statemigrate._snapshot._format import open_snapshot
from statemigrate._snapshot._header import DeltaBase

if TYPE_CHECKING:
    from statemigrate._runtime._precopy import PreCopySource
    from statemigrate._runtime._service import Service
    from statemigrate._runtime._wait import Waits
    from statemigrate.stores._base import Buffer, Store

__all__ = [
    "CHECKPOINT_NICE",
    "DEFAULT_EXPORT",
    "FORK_POSSIBLE",
    "CheckpointTaker",
    "ExportMode",
    "Forking",
]

logger = logging.getLogger("statemigrate")
routine_logger = logging.getLogger("statemigrate.checkpoints")

_NOTHING = object()
_SAMPLE_RECORDS = 64
"""Records a delta needs for its size per record to estimate the next delta's."""
_MAX_DELTA_SHARE = 0.25
"""The largest share of the records held that a delta is taken of, whatever
``max_delta_ratio`` allows: a delta costs about 2 to 4 times as much CPU per record
changed as a full snapshot per record held (it reads the records changed in the order
they were written, scattered over memory, where a full snapshot walks the dict in
order), so past this share a full base holds the writers no longer than the delta
would."""

ExportMode = Literal["fork", "inline"]
"""Where a checkpoint's full snapshot (or a chain's base) is exported: in a forked
child, the writers held for the fork only, or in this process, held throughout."""
FORK_POSSIBLE = all(hasattr(os, name) for name in ("fork", "pidfd_open", "memfd_create"))
DEFAULT_EXPORT: ExportMode = "fork" if FORK_POSSIBLE else "inline"
"""``"fork"`` where the system has ``fork``, pidfds and memfds (Linux), else ``"inline"``."""
_MEMFD_NAME = "statemigrate-checkpoint"
CHECKPOINT_NICE = 0
"""How much lower than the serving process's a checkpoint's child CPU priority is:
not at all. Until the child's snapshot commits, no checkpoint does (the next ones wait
behind it), so a crash meanwhile loses every write since the last checkpoint that
committed: the child's delay is exposure to loss. At a lower priority (``nice`` 10,
as a handoff's round 0 runs) a child on cores the requests saturate got only what
they left, and lived up to 26 s for under 3 s of CPU; a process cannot raise its
priority back later without ``CAP_SYS_NICE``. At the same priority it takes its fair
share of the CPU, which the requests lose while it runs (see ``docs/checkpoints.md``,
"Full snapshots in a forked child"), and it still waits when they saturate the cores:
the log line's child figure shows how long."""


_Snapshot = tuple[EncodedSnapshot, SnapshotReport]


@dataclass(slots=True)
class Forking:
    """A full snapshot a forked child is exporting for a checkpoint: what to make of
    its bytes once it is done."""

    export: ForkedExport
    deadline: float
    base: bool
    """A chain's new base (else a full checkpoint)."""
    records: int
    """Records held at the fork (for a base: the size per record it gives)."""
    began: float
    """``time.perf_counter()`` just before the fork: from then until the commit, the
    state of the fork is in no store (the checkpoint's ``child_seconds``)."""


class CheckpointTaker:
    """Takes a checkpoint's snapshot for a :class:`Checkpointer`: decides whether the
    state changed since the checkpoint last committed, holds the writers, and takes a
    full snapshot (or forks the child that exports it) or the chain's next piece. It
    keeps the incremental chain between checkpoints: its pieces, the source tracking
    the changes after the last one, and the size per record that bounds the next
    delta.
    """

    def __init__(
        self,
        service: Service,
        store: Store,
        *,
        changes: Callable[[], object] | None,
        incremental: bool,
        max_delta_ratio: float,
        max_deltas: int,
        export: ExportMode,
        export_timeout: float,
    ) -> None:
        self.service = service
        self._store = store  # where the chain is committed: a restored one continues there
        if incremental:
            service._chains.expect_claimant()  # a chain restored waits for this one
        self._changes = changes
        self.committed_mark: object = _NOTHING
        """The mark of the checkpoint last committed (see ``changes``)."""
        self.incremental = incremental
        self.max_delta_ratio = max_delta_ratio
        self.max_deltas = max_deltas
        self.export: ExportMode = export
        self.export_timeout = export_timeout
        self._source: PreCopySource | None = None
        self._chain: list[EncodedSnapshot] = []
        # The service's count of restores applied, as of this chain (see
        # _new_chain_if_restored).
        self._restores_seen = service._restores_applied
        self._chain_off: str | None = None
        # Bytes per changed record: of the last delta large enough to tell, else of
        # the base.
        self._record_size = 0.0

    def take(
        self, force: bool, hold: Callable[[], AbstractContextManager[object]]
    ) -> tuple[_Snapshot | Forking, object, float] | None:
        """Snapshot (or fork the child that exports it) under the writers' hold; None
        when nothing changed (never with ``force``): the caller then confirms that the
        store still holds the last checkpoint before it calls :meth:`unchanged`.

        Raises:
            ChangeTrackingError: an incremental chain found no key written, but a
                watched record changed in place (see :meth:`_check_in_place`).
        """
        changes = self._changes
        if not force and changes is not None and changes() == self.committed_mark:
            return None
        taken: _Snapshot | Forking | None = None
        try:
            with hold():
                # Held from here: the time spent taking a lock is not counted, as the
                # writers still run meanwhile.
                held = time.perf_counter()
                self._new_chain_if_restored()
                mark = changes() if changes is not None else _NOTHING
                if self.incremental and self._chain_off is None:
                    # The digest of the fields beside the records exports them: taken
                    # once, before the piece (which does not change them) if a chain
                    # may have this state already, else after it.
                    digest = None
                    if changes is None and not force and self._chain:
                        digest = self._others_digest()
                        if self._piece_mark(digest) == self.committed_mark:
                            self._check_in_place()
                            return None
                    taken = self._take_piece()
                    if changes is None:
                        if digest is None:
                            digest = self._others_digest()
                        mark = self._piece_mark(digest)
                else:
                    self.service._chains.drop("checkpoints are full snapshots")
                    taken = self._take_full()
            pause = time.perf_counter() - held
        except BaseException:
            if isinstance(taken, Forking):  # forked, then letting the writers go failed
                taken.export.close()
            raise
        emit(CHECKPOINT_PAUSE, pause, self.service.name)
        return taken, mark, pause

    def _new_chain_if_restored(self) -> None:
        """Drop the chain when the service restored a snapshot since it began: the
        restore replaced the components' state, their ``TrackedDict`` fields included,
        so the chain's source tracks objects no longer in use, and its pieces a state
        no longer the service's. The next piece is a new base."""
        restored = self.service._restores_applied
        if restored == self._restores_seen:
            return
        self._restores_seen = restored
        if self._source is not None or self._chain:
            logger.info(
                "checkpoints of %s start a new chain: the service restored a snapshot"
                " since the chain began",
                self.service.name,
            )
            self.close()

    def unchanged(self, *, final: bool = False) -> None:
        """A checkpoint skipped because the state is the one last committed: the store's
        latest checkpoint is current, which the staleness gauge says. A final one is
        said at INFO: the stop's last line, without which a clean stop of an idle
        service would read like a kill."""
        level = logging.INFO if final else logging.DEBUG
        kind = "final checkpoint" if final else "checkpoint"
        # On the logger of the committed checkpoints' lines: one setting governs both.
        routine_logger.log(
            level,
            "%s of %s skipped: %s (the store holds this state already)",
            kind,
            self.service.name,
            UNCHANGED,
        )
        store_current(self.service.name)

    def _others_digest(self) -> bytes | None:
        """The digest of the chain's fields beside the records, with the writers held;
        ``None`` while records are pending (or with no chain source), when the state is
        known to differ from every piece's."""
        source = self._source
        if source is None or not source.deltas_possible or source.pending():
            return None
        return source.others()

    def _check_in_place(self) -> None:
        """Before a checkpoint is skipped because no key was written: the in-place watch
        a delta would have run, with the writers held. A service that only changes
        values in place writes no key, so without this its checkpoints would all be
        skipped and the watch never run.

        Raises:
            ChangeTrackingError: a watched record changed in place; the next checkpoint
                is a new full base, which holds the change.
        """
        assert self._source is not None  # a digest was had: the chain has its source
        self._source.check_in_place()

    def _piece_mark(self, digest: bytes | None) -> object:
        """What an incremental chain knows of the state: the last piece and ``digest``
        (:meth:`_others_digest`); equal to the mark of the piece last committed when
        nothing changed since (a chain due to be compacted included: nothing is
        written, so it does not grow). Nothing is known (a new object each time)
        without a digest."""
        if digest is None or self._source is None:
            return object()
        return (self._source.base, digest)

    def _snapshot_inline(self) -> _Snapshot:
        """A full snapshot encoded here, its plain states validated deep: it is to be
        committed, so it must restore."""
        return self.service._snapshot(targets=None, allow_lossy=False, meta=None, check=True)

    def _take_full(self) -> _Snapshot | Forking:
        """A full snapshot, with the writers held: encoded here, or forked."""
        if self.export == "inline":
            return self._snapshot_inline()
        service = self.service
        # Reserved here: the child's count of generations dies with it.
        identity = DeltaBase(new_snapshot_id(), service._reserve_generation())
        timings: dict[str, float] = {}

        def produce() -> list[Buffer]:  # in the child
            encoded, report = service._snapshot(
                targets=None, allow_lossy=False, meta=None, identity=identity, check=True
            )
            timings.update(report.timings)
            return encoded.parts

        return self._fork(produce, timings, base=False, records=0)

    def _fork(
        self,
        produce: Callable[[], list[Buffer]],
        timings: dict[str, float],
        *,
        base: bool,
        records: int,
    ) -> Forking:
        """Fork the child that runs ``produce``; it notes ``timings`` for the parent."""
        began = time.perf_counter()
        export = fork_export(
            produce,
            label="checkpoint",
            fail=partial(CheckpointError, self.service.name),
            name=_MEMFD_NAME,
            nice=CHECKPOINT_NICE,
            note=lambda: json.dumps(timings).encode(),
        )
        return Forking(export, time.monotonic() + self.export_timeout, base, records, began)

    def wait(self, forking: Forking) -> Waits[Exported]:
        """Waiting for the child forked for ``forking``, until its deadline."""
        return forking.export.wait(forking.deadline)

    def adopt(self, forking: Forking, exported: Exported) -> _Snapshot:
        """What a forked child wrote, as the snapshot an inline export would have
        given: verified, mapped from its sealed memfd, reported (to the log and the
        metrics) as a snapshot taken here; for a base, the chain it starts.

        Raises:
            CheckpointError: the memfd cannot be mapped, or does not hold a sound
                snapshot.
        """
        service = self.service
        try:
            view = memoryview(mmap.mmap(exported.fd, exported.size, prot=mmap.PROT_READ))
        except (OSError, ValueError) as exc:
            raise CheckpointError(service.name, f"cannot map the checkpoint memfd: {exc}") from exc
        finally:
            os.close(exported.fd)
        try:
            header = open_snapshot(view, key=service._key, limits=service._limits).header
            timings = {str(k): float(v) for k, v in json.loads(exported.note).items()}
        except (SnapshotError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                service.name, f"the checkpoint export's child wrote no sound snapshot: {exc}"
            ) from exc
        encoded = EncodedSnapshot(parts=[view], header=header, size=exported.size, timings=timings)
        report = SnapshotReport.of(header, exported.size, timings)
        logger.debug("%s", report.summary())
        # The fork counts too: the snapshot's time runs from it to the child's exit,
        # the CPU the child waited for included.
        service._record_snapshot(report, exported.fork_seconds + exported.child_seconds)
        if not forking.base:
            return encoded, report
        self._chain = [encoded]
        self._record_size = encoded.size / max(forking.records, 1)
        return self._chain_snapshot()

    # --- incremental ---------------------------------------------------------------------

    @property
    def chain_length(self) -> int:
        """Pieces in the chain the next incremental checkpoint extends: the base and
        its deltas (0 before the first one, and when checkpoints are full)."""
        return len(self._chain)

    def _compact_now(self, source: PreCopySource) -> bool:
        """Whether the next piece must be a new full base."""
        if not self._chain or not source.deltas_possible:
            return True
        deltas = self._chain[1:]
        if len(deltas) >= self.max_deltas:
            return True
        pending = source.pending()
        if pending > _MAX_DELTA_SHARE * source.records():
            return True
        # The delta about to be taken counts too, estimated from the records changed
        # since the last piece.
        size = sum(d.size for d in deltas) + pending * self._record_size
        return size > self.max_delta_ratio * self._chain[0].size

    def _take_piece(self) -> _Snapshot | Forking:
        """The next piece of the chain, with the writers held: a delta, or a full base
        when the chain is empty or has grown past its bounds; returns the whole chain
        as one snapshot to commit (or the child forked to export the base)."""
        if self._source is None and not self._chain:
            self._continue_restored()
        elif self.service._chains.held is not None:
            # Restored after this chain began: never continued, so no longer tracked.
            self.service._chains.drop("a checkpointer of the service has its own chain")
        source = self._source
        if source is not None and source.distrusted is not None:
            # The service caught a component changing values in place (this chain, or
            # a hand-over): no delta is trusted again in this process, and checkpoints
            # are full snapshots from here on (_new_source says so, once).
            self.close()
            source = None
        if self.export == "fork" and (source is None or self._compact_now(source)):
            return self._fork_base()
        if source is None:
            source = self._new_source()
            if source is None:
                return self._snapshot_inline()
            self._source = source
        if self._compact_now(source):
            # Emptied first: a base that fails to be written leaves no chain to extend.
            self._chain = []
            self._chain = [source.full()]
            # Until a delta tells, a changed record is reckoned at the base's size per
            # record: the first delta after a base is bounded too.
            self._record_size = self._chain[0].size / max(source.records(), 1)
        else:
            records = source.pending()
            self._chain.append(source.delta())
            if records >= _SAMPLE_RECORDS:
                self._record_size = self._chain[-1].size / records
        return self._chain_snapshot()

    def _continue_restored(self) -> None:
        """Extend the chain the service restored from this store at start-up, when it
        holds one (see :mod:`statemigrate._runtime._chaincontinue`): the next piece is
        a delta on its newest piece, not a new base. Says at INFO why a chain restored
        is not continued."""
        chains = self.service._chains
        held = chains.claim(self._store)
        if held is None:
            level = logging.INFO if chains.worth_saying else logging.DEBUG
            name = self.service.name
            logger.log(level, "checkpoints of %s start a new chain: %s", name, chains.why_not)
            return
        self._source = held.source
        self._chain = list(held.pieces)
        # As after a base: a changed record is reckoned at the base's size per record.
        self._record_size = self._chain[0].size / max(held.source.records(), 1)
        newest = self._chain[-1].header
        logger.info(
            "checkpoints of %s continue the chain restored (%d pieces, gen %d)",
            self.service.name,
            len(self._chain),
            newest.generation,
        )

    def _new_source(self) -> PreCopySource | None:
        """A started change-tracking source for a new chain; None when the components
        cannot tell what changed, or the service caught one changing values in place
        (checkpoints are then full snapshots, and stay so)."""
        source = self.service._precopy_source(check=True, by="a checkpoint")
        source.start()
        if source.why_no_deltas is None:
            return source
        self._chain_off = source.why_no_deltas
        source.close()
        logger.warning(
            "checkpoints of %s are full snapshots: %s", self.service.name, self._chain_off
        )
        return None

    def _fork_base(self) -> _Snapshot | Forking:
        """A new base, exported by a forked child. Its changes are tracked by a new
        source, whose marks open here, with the writers held: the deltas after it
        start exactly at the fork."""
        old, self._source = self._source, None
        # Emptied first: a base that fails to be written leaves no chain to extend.
        self._chain = []
        if old is not None:
            old.close()
        source = self._new_source()
        if source is None:
            return self._take_full()
        self._source = source
        timings: dict[str, float] = {}

        def produce() -> list[Buffer]:  # in the child
            encoded = source.full()
            timings.update(encoded.timings)
            return encoded.parts

        return self._fork(produce, timings, base=True, records=source.records())

    def _chain_snapshot(self) -> _Snapshot:
        """The chain as one snapshot to commit, with its report."""
        piece = self._chain[-1]
        frame = chain_frame([p.size for p in self._chain])
        chain = EncodedSnapshot(
            parts=[frame, *(part for p in self._chain for part in p.parts)],
            header=piece.header,
            size=len(frame) + sum(p.size for p in self._chain),
            timings=dict(piece.timings),
        )
        report = SnapshotReport(
            snapshot_id=piece.header.snapshot_id,
            generation=piece.header.generation,
            size=chain.size,
            sections=(),
            timings=dict(piece.timings),
            chain=len(self._chain),
        )
        return chain, report

    def close(self) -> None:
        """Stop tracking changes for incremental checkpoints (the components drop their
        logs); the next incremental checkpoint starts a new chain with a full base."""
        source, self._source = self._source, None
        self._chain = []
        if source is not None:
            source.close()
