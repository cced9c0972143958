"""Checkpoints of gunicorn workers' state, kept by the server hooks.

The hooks (:mod:`statemigrate.integrations.gunicorn`) own each worker's
:class:`~statemigrate.Checkpointer` when given ``checkpoints=``: each slot commits to
its own store, from once the worker owns its state until it exits (a final
checkpoint, unless the state moved to a successor).

They also tell a worker that *replaces* one of its master's apart from a worker of the
first round. gunicorn forks every worker from its master, whose state is the copy
loaded at boot; a worker forked again for a slot (after a crash, ``kill -9``, a
timeout, ``max_requests`` or ``HUP``) would serve that old copy, and its checkpoints
would replace the newer ones its predecessor committed. The master notes, in
``pre_fork``, the slots it has forked a worker for already and, after ``HUP``
(``on_reload``), which old worker still holds the slot's state; in ``child_exit``, the
slot each worker that exits leaves. A replacement takes that slot, waits for the old
worker holding it to exit (its final checkpoint is then committed), restores the
slot's latest checkpoint, and only then accepts a connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemigrate._errors import (
    ConfigurationError,
    RestoreError,
    StateMigrateError,
)
from statemigrate._runtime._checkpoint import Checkpointer
from statemigrate._runtime._checkpointcommit import check_checkpoint_options
from statemigrate._runtime._checkpointtake import DEFAULT_EXPORT, ExportMode
from statemigrate._runtime._claimwatch import DEFAULT_CLAIM_AFTER
from statemigrate._runtime._quiesce import Quiesce
from statemigrate._runtime._service import Service
from statemigrate._runtime._wait import WaitReadable, poll_readable
from statemigrate.integrations._gunicorn_slots import (
    HeldSlot,
    others_holding_state,
    unserved_slots,
)
from statemigrate.stores import Store

__all__ = [
    "Checkpoints",
    "SlotCheckpoints",
    "checkpoints_of",
    "place",
    "replaced",
    "retire_all",
    "vacate",
]

SLOT = "statemigrate_slot"
_REPLACES = "statemigrate_replaces"
_RETIRING = "statemigrate_retiring"
_FORKED = "statemigrate_forked"
_VACANT = "statemigrate_vacant"

StoreSpec = Store | Callable[[int], Store]
"""One store (``workers = 1``), or a function giving the store of a slot."""


@dataclass(frozen=True, slots=True)
class Checkpoints:
    """Checkpoints the gunicorn hooks keep of each worker's state.

    Args:
        store: where the checkpoints go: one store (for ``workers = 1``), or a
            function ``slot -> store`` called in each worker, a different store
            per slot (each worker holds its own state).
        every: seconds between two checkpoints.
        incremental: commit chains of deltas (see ``docs/checkpoints.md``).
        quiesce: how to hold the writers for a snapshot (as for
            :class:`~statemigrate.Checkpointer`); by default the worker's gate holds
            every request, reads too (they may change the state: an LRU's order),
            and waits for those running. With the default forked export that is the
            time of a fork; a lock the application's code takes holds less.
        export: where a full checkpoint (or a chain's base) is exported, as for
            :class:`~statemigrate.Checkpointer`: ``"fork"`` (the default), or
            ``"inline"``, in the worker with its requests held until it is encoded
            (``docs/checkpoints.md`` says when each is right).
        max_delta_ratio, max_deltas: when an incremental chain is compacted into a
            new base, as for :class:`~statemigrate.Checkpointer`.
        max_backoff: the longest wait between retries of a failing checkpoint.
        export_timeout: how long a forked export may take before it is killed.
        claim_after: seconds of checkpoints refused as another writer's while the
            store's latest snapshot stays the same, after which the worker claims the
            store, as for :class:`~statemigrate.Checkpointer` (``None``: never).

    Raises:
        ConfigurationError: an argument is of the wrong kind.
    """

    store: StoreSpec
    every: float = 5.0
    incremental: bool = False
    quiesce: Quiesce | None = None
    export: ExportMode = DEFAULT_EXPORT
    max_delta_ratio: float = 0.5
    max_deltas: int = 100
    max_backoff: float = 60.0
    export_timeout: float = 120.0
    claim_after: float | None = DEFAULT_CLAIM_AFTER

    def __post_init__(self) -> None:
        if not isinstance(self.store, Store) and not callable(self.store):
            raise ConfigurationError(
                "checkpoints",
                f"must be a store or a function slot -> store, not {type(self.store).__name__}",
            )
        # In the master, before any worker: a wrong option stops the start, not each
        # worker as it forks.
        check_checkpoint_options(
            every=self.every,
            max_backoff=self.max_backoff,
            export_timeout=self.export_timeout,
            max_delta_ratio=self.max_delta_ratio,
            max_deltas=self.max_deltas,
            export=self.export,
            claim_after=self.claim_after,
        )

    @property
    def shared(self) -> bool:
        """Whether one store serves every slot (only right for one worker)."""
        return isinstance(self.store, Store)

    def store_for(self, slot: int) -> Store:
        """The store of ``slot``.

        Raises:
            ConfigurationError: the function raised, or did not return a store.
        """
        if isinstance(self.store, Store):
            return self.store
        try:
            store = self.store(slot)
        except Exception as exc:
            # The application's function: whatever it raises is a configuration of
            # ours that cannot be used, said in one line rather than a traceback.
            raise ConfigurationError(
                "checkpoints",
                f"the function raised for slot {slot}: {type(exc).__name__}: {exc}",
            ) from exc
        if not isinstance(store, Store):
            raise ConfigurationError(
                "checkpoints",
                f"the function gave {type(store).__name__} for slot {slot}, not a store",
            )
        return store


def checkpoints_of(value: object) -> Checkpoints | None:
    """``checkpoints=`` of ``server_hooks`` as a :class:`Checkpoints`.

    Raises:
        ConfigurationError: it is none of a store, a function or a ``Checkpoints``.
    """
    if value is None or isinstance(value, Checkpoints):
        return value
    return Checkpoints(value)  # type: ignore[arg-type]


def _written_ago(created_ns: int) -> str:
    """How long before the restore the checkpoint was written: what a stop whose final
    checkpoint failed lost shows as an age well past ``every``."""
    if not created_ns:
        return "written at an unknown time"
    return f"written {max(0.0, (time.time_ns() - created_ns) / 1e9):.1f} s ago"


# -- in the master ----------------------------------------------------------------------


def retire_all(server: Any) -> None:
    """``on_reload``: every worker alive now is about to be stopped (gunicorn forks
    the new ones first). Their slots go to the new workers, which wait for them."""
    for worker in server.WORKERS.values():
        setattr(worker, _RETIRING, True)


def vacate(server: Any, worker: Any) -> None:
    """``child_exit``: ``worker`` exited and was reaped; its slot is free, and the
    next worker forked takes it first."""
    slot = getattr(worker, SLOT, None)
    if not isinstance(slot, int):
        return
    vacant: list[int] = getattr(server, _VACANT, None) or []
    setattr(server, _VACANT, vacant)
    if slot in vacant:
        vacant.remove(slot)
    vacant.append(slot)


def place(server: Any, worker: Any) -> None:
    """``pre_fork``: give ``worker`` a slot no staying worker holds, and note whether
    it replaces a worker of that slot forked by this master, with the pids of the old
    ones that still hold the slot's state (after ``HUP``).

    The slot is, first, the lowest one of a worker that ``HUP`` stops; else the one
    vacated last (the worker that died, not one stopped by ``TTOU`` earlier); else the
    lowest free one. All of it is kept on the arbiter, which lives as long as the
    master: ``HUP`` reads the configuration again, and the hooks with it.
    """
    staying: set[int] = set()
    holding: dict[int, list[int]] = {}
    for pid, other in server.WORKERS.items():
        slot = getattr(other, SLOT, None)
        if not isinstance(slot, int):
            continue
        if getattr(other, _RETIRING, False):
            holding.setdefault(slot, []).append(pid)
        else:
            staying.add(slot)
    vacant: list[int] = getattr(server, _VACANT, None) or []
    setattr(server, _VACANT, vacant)
    retiring = sorted(set(holding) - staying)
    last = [s for s in reversed(vacant) if s not in staying]
    if retiring:
        slot = retiring[0]
    elif last:
        slot = last[0]
    else:
        slot = 0
        while slot in staying:
            slot += 1
    if slot in vacant:
        vacant.remove(slot)
    forked: set[int] = getattr(server, _FORKED, None) or set()
    setattr(server, _FORKED, forked)
    setattr(worker, SLOT, slot)
    if slot in forked:
        setattr(worker, _REPLACES, tuple(holding.get(slot, ())))
    forked.add(slot)


def replaced(worker: Any) -> tuple[int, ...] | None:
    """The pids a replacement waits for (maybe none); ``None`` for a worker of the
    first round."""
    pids: tuple[int, ...] | None = getattr(worker, _REPLACES, None)
    return pids


# -- in a worker ------------------------------------------------------------------------


def _wait_exited(pid: int, worker: Any) -> None:
    """Wait until ``pid`` (an old worker told to stop) has exited, telling the
    master meanwhile that this worker is alive."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        fd = -1
    worker.log.info(
        "worker %s (slot %s): waiting for worker %s to stop and commit its state",
        worker.pid,
        getattr(worker, SLOT, 0),
        pid,
    )
    try:
        while True:
            if fd >= 0:
                # poll(2), not select(2): the pidfd may be above FD_SETSIZE (1024),
                # when the master holds that many descriptors.
                if poll_readable(WaitReadable((fd,), time.monotonic() + 1.0)) is not None:
                    return
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)
            worker.notify()  # the master would take a silent worker for hung
    finally:
        if fd >= 0:
            os.close(fd)


class SlotCheckpoints:
    """One worker's checkpoints: its slot's store, its restore as a replacement, and
    its checkpointer."""

    def __init__(self, settings: Checkpoints, slot: int) -> None:
        self.settings = settings
        self.slot = slot
        self.store = settings.store_for(slot)
        self.checkpointer: Checkpointer | None = None
        self.restored = False
        """Whether the worker restored a checkpoint (at boot, or as a replacement)."""

    def restore_at_boot(self, service: Service, worker: Any) -> bool:
        """A worker of the first round whose master left the state unowned (neither
        restored nor declared a cold start): restore the slot's latest checkpoint, as a
        service's own ``start_from(store)`` does. Returns False when the restore failed
        and the service's failure policy refuses to start."""
        where = f"worker {worker.pid} (slot {self.slot})"
        try:
            report = service.start_from(self.store)
        except RestoreError as exc:
            worker.log.error(
                "%s: cannot restore its checkpoint from %r: %s", where, self.store, exc
            )
            return False
        if report is None:
            # The service's own line ("service ... starts cold: ...") names no slot:
            # which worker started cold is said here, as for a restore below. The
            # reason is the status's: no checkpoint, or one refused (serve_cold).
            others = self._others_holding_state(worker)
            if not others:
                worker.log.info("%s: starts cold: %s", where, service.status.reason)
                return True
            # A worker count raised between releases: this slot never had a worker,
            # and serves an empty state beside workers that serve the stored one.
            noun = "slot's store holds" if len(others) == 1 else "slots' stores hold"
            worker.log.warning(
                "%s: starts cold (%s) while %d other %s state: %s; each worker holds its"
                " own copy of the state, so requests this worker takes see none of"
                " theirs, and their writes are not seen here (docs/gunicorn.md, Several"
                " workers)",
                where,
                service.status.reason,
                len(others),
                noun,
                ", ".join(map(str, others)),
            )
            return True
        self.restored = True
        worker.log.info(
            "%s: restored its latest checkpoint from %r (generation %s, %s)",
            where,
            self.store,
            report.generation,
            _written_ago(report.created_ns),
        )
        return True

    def restore_replaced(self, service: Service, worker: Any, waits: tuple[int, ...]) -> None:
        """A replacement: take the slot's latest checkpoint in place of the master's
        copy, once the old workers in ``waits`` have exited. On failure the master's
        copy stays (the restore is all or nothing), and the store keeps the refused
        checkpoint aside."""
        for pid in waits:
            _wait_exited(pid, worker)
        where = f"worker {worker.pid} (slot {self.slot})"
        try:
            report = service.start_from(self.store)
        except RestoreError as exc:
            # A rollback by HUP, say: the older code cannot read what the newer wrote,
            # and the error says the way out (start_from's, as for every server).
            worker.log.error(
                "%s replaces a worker of its slot; its latest checkpoint in %r cannot be"
                " restored, serving the master's copy: %s",
                where,
                self.store,
                exc,
            )
            if not service.status.ready:
                # The master's copy is what the master started with: serve it and
                # checkpoint it (the refused checkpoint was kept aside).
                service.start_cold(f"the slot's checkpoint was not restored: {exc}")
            return
        if report is None:
            worker.log.warning(
                "%s replaces a worker of its slot; %r holds no checkpoint, serving the"
                " master's copy",
                where,
                self.store,
            )
            return
        self.restored = True
        worker.log.info(
            "%s replaces a worker of its slot: restored its latest checkpoint from %r"
            " (generation %s, %s)",
            where,
            self.store,
            report.generation,
            _written_ago(report.created_ns),
        )

    def _others_holding_state(self, worker: Any) -> list[HeldSlot]:
        if self.settings.shared:
            return []  # one store for every slot: there is no other
        return others_holding_state(
            self.slot, _workers(worker), self.settings.store_for, self.store
        )

    def warn_unserved(self, worker: Any) -> None:
        """In slot 0's worker as it starts: name the slots past the worker count whose
        stores hold checkpoints, state no worker of this count serves (the count was
        lowered). Said by one worker, not by each."""
        if self.slot != 0 or self.settings.shared:
            return
        workers = _workers(worker)
        unserved = unserved_slots(workers, self.settings.store_for, self.store)
        if not unserved:
            return
        many = len(unserved) > 1
        worker.log.warning(
            "worker %s (slot 0): %s past workers = %d %s checkpoints that no worker"
            " serves: %s; %s state (acknowledged writes) is not served, and stays in"
            " %s: a start with workers = %d or more restores it in its slot again, and"
            " no way of folding one worker's state into another's exists",
            worker.pid,
            f"{len(unserved)} slots" if many else "a slot",
            workers,
            "hold" if many else "holds",
            ", ".join(map(str, unserved)),
            "their" if many else "its",
            "those stores" if many else "that store",
            unserved[-1].slot + 1,
        )

    def run(self, service: Service, quiesce: Quiesce, worker: Any, *, now: bool) -> None:
        """Start the worker's checkpointer; with ``now``, take its first checkpoint
        at once, in the background, rather than ``every`` seconds later.

        A worker that took its state over in a handoff, or restored it, takes one at
        once: until then its slot's store holds only checkpoints in the versions of
        the release that wrote them, which this release may not read (a rollback's),
        and a replacement forked meanwhile (``kill -9``) would have nothing to
        restore.

        Raises:
            ConfigurationError: ``quiesce`` cannot hold the writers from a thread.
        """
        settings = self.settings
        checkpointer = Checkpointer(
            service,
            self.store,
            every=settings.every,
            incremental=settings.incremental,
            quiesce=settings.quiesce if settings.quiesce is not None else quiesce,
            export=settings.export,
            max_delta_ratio=settings.max_delta_ratio,
            max_deltas=settings.max_deltas,
            max_backoff=settings.max_backoff,
            export_timeout=settings.export_timeout,
            claim_after=settings.claim_after,
            # The master kills a stopping worker after graceful_timeout: a checkpoint
            # that takes longer is warned of, since the final one would be cut.
            stop_within=_graceful_timeout(worker),
        ).start()
        self.checkpointer = checkpointer
        if now:
            threading.Thread(
                target=self._first,
                args=(checkpointer, worker),
                name="statemigrate-first-checkpoint",
                daemon=True,
            ).start()

    def _first(self, checkpointer: Checkpointer, worker: Any) -> None:
        # checkpoint_now() takes the checkpointer's lock: it never overlaps the
        # periodic ones nor the final one of stop().
        try:
            checkpointer.checkpoint_now()
        except (StateMigrateError, OSError) as exc:
            worker.log.warning(
                "worker %s (slot %s): its first checkpoint failed, the next comes in %g s: %s",
                worker.pid,
                self.slot,
                checkpointer.every,
                exc,
            )

    def stop(self, worker: Any) -> None:
        """Stop the checkpointer with a final checkpoint (none once the state moved)."""
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is None:
            return
        with contextlib.suppress(StateMigrateError, OSError):
            checkpointer.stop()  # a failed final checkpoint is logged by stop()


def _workers(worker: Any) -> int:
    """gunicorn's ``workers`` setting, as the worker's configuration holds it (1 when
    unknown)."""
    count = getattr(getattr(worker, "cfg", None), "workers", None)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return 1
    return count


def _graceful_timeout(worker: Any) -> float | None:
    """The seconds the master gives a stopping worker, or None when not known."""
    seconds = getattr(getattr(worker, "cfg", None), "graceful_timeout", None)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    return float(seconds)
