"""One checkpoint at a time: whether one may be taken now, taking it with the writers
held (see :mod:`statemigrate._runtime._checkpointtake`), committing it to the store
while they go on, and counting the failures, in the calling thread or on an event loop.

:class:`CheckpointCommitter` is the part of a :class:`Checkpointer` that does this;
the checkpointer adds the schedule (a background thread, or a task on a loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Literal

from statemigrate._errors import ConfigurationError, StoreError, StoreSharedError
from statemigrate._observe._instruments import declare_store
from statemigrate._runtime._chain import MAX_PIECES
from statemigrate._runtime._checkpointtake import (
    DEFAULT_EXPORT,
    FORK_POSSIBLE,
    CheckpointTaker,
    ExportMode,
    Forking,
)
from statemigrate._runtime._claimwatch import DEFAULT_CLAIM_AFTER, QuietStore, check_claim_after
from statemigrate._runtime._commit import SUMMARIES
from statemigrate._runtime._gate import started_by_handoff
from statemigrate._runtime._quiesce import Quiesce, async_hold, async_only, hold_of
from statemigrate._runtime._report import (
    UNCHANGED,
    CheckpointReport,
    CommitReport,
    SnapshotReport,
)
from statemigrate._runtime._takeoverdelay import DEFAULT_FIRST_AFTER_TAKEOVER, check_delay
from statemigrate._runtime._telemetry import commit_failed, store_kind
from statemigrate._runtime._wait import run_waits, run_waits_async
from statemigrate.stores._base import Claim, holding, note_claim
from statemigrate.stores._base import claim as claim_store

if TYPE_CHECKING:
    import asyncio

    from statemigrate._runtime._service import Service
    from statemigrate._snapshot._encode import EncodedSnapshot
    from statemigrate.stores import SnapshotRef, Store

__all__ = ["CheckpointCommitter", "check_checkpoint_options", "check_positive"]

logger = logging.getLogger("statemigrate")

_STARTING_GRACE = 10.0
"""Seconds a checkpointer waits for a ``starting`` service to restore or start cold
before it warns: started just before ``start_from``, it finds it starting for a moment."""
# The routine line of each committed checkpoint, one per interval: a logger of its own,
# so that an operator can quieten it without losing the failures and restores.
routine_logger = logging.getLogger("statemigrate.checkpoints")

@contextmanager
def _summaries_quiet() -> Iterator[None]:
    """The snapshot's and the commit's own log lines at DEBUG: the checkpoint's line
    says it all."""
    token = SUMMARIES.set(logging.DEBUG)
    try:
        yield
    finally:
        SUMMARIES.reset(token)


@asynccontextmanager
async def _async_summaries_quiet() -> AsyncIterator[None]:
    with _summaries_quiet():
        yield


def check_positive(option: str, value: object, *, unit: str = "seconds") -> None:
    """Refuse ``value`` for ``option`` unless it is a positive number (not a bool) of
    ``unit``, which the error names.

    Raises:
        ConfigurationError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(option, f"must be a positive number of {unit}, not {value!r}")


def check_checkpoint_options(
    *,
    every: object,
    max_backoff: object,
    export_timeout: object,
    max_delta_ratio: object,
    max_deltas: object,
    export: object,
    claim_after: object = DEFAULT_CLAIM_AFTER,
) -> None:
    """Refuse a checkpointer option out of its range, naming it: what a checkpointer
    checks when made, and what gunicorn's settings check in the master, before any
    worker makes one.

    Raises:
        ConfigurationError: an option is out of range or of the wrong kind.
    """
    for option, value in (
        ("every", every),
        ("max_backoff", max_backoff),
        ("export_timeout", export_timeout),
    ):
        check_positive(option, value)
    check_positive(
        "max_delta_ratio", max_delta_ratio, unit="base sizes (a fraction, such as 0.5)"
    )
    if (
        isinstance(max_deltas, bool)
        or not isinstance(max_deltas, int)
        or not 1 <= max_deltas < MAX_PIECES
    ):
        raise ConfigurationError(
            "max_deltas", f"must be a count from 1 to {MAX_PIECES - 1}, not {max_deltas!r}"
        )
    if export not in ("fork", "inline"):
        raise ConfigurationError("export", f"must be 'fork' or 'inline', not {export!r}")
    check_claim_after(claim_after)
    if export == "fork" and not FORK_POSSIBLE:
        raise ConfigurationError(
            "export", "'fork' needs fork(), pidfds and memfds (Linux): use 'inline'"
        )


class CheckpointCommitter:
    """Take one checkpoint of ``service`` and commit it to ``store``: the part of a
    :class:`Checkpointer` that works in the calling thread or task; see the
    checkpointer for the options, which are its constructor's.

    Raises:
        ConfigurationError: as :class:`Checkpointer`.
    """

    def __init__(
        self,
        service: Service,
        store: Store,
        *,
        every: float = 5.0,
        quiesce: Quiesce | None = None,
        changes: Callable[[], object] | None = None,
        max_backoff: float = 60.0,
        incremental: bool = False,
        max_delta_ratio: float = 0.5,
        max_deltas: int = 100,
        export: ExportMode = DEFAULT_EXPORT,
        export_timeout: float = 120.0,
        stop_within: float | None = None,
        first_after_takeover: float = DEFAULT_FIRST_AFTER_TAKEOVER,
        claim_after: float | None = DEFAULT_CLAIM_AFTER,
    ) -> None:
        check_delay("first_after_takeover", first_after_takeover)
        check_checkpoint_options(
            every=every,
            max_backoff=max_backoff,
            export_timeout=export_timeout,
            max_delta_ratio=max_delta_ratio,
            max_deltas=max_deltas,
            export=export,
            claim_after=claim_after,
        )
        if stop_within is not None:
            check_positive("stop_within", stop_within)
        if changes is not None and not callable(changes):
            raise ConfigurationError("changes", f"must be a function, not {type(changes).__name__}")
        self.service = service
        self.store = store
        # Its commits' series exist from now, at zero: the first that fails, even
        # before any succeeded, is an increase an alert sees.
        declare_store(service.name, store_kind(store))
        self.every = float(every)
        self.first_after_takeover = float(first_after_takeover)
        self.max_backoff = float(max_backoff)
        self._quiesce = quiesce
        self._hold = hold_of(quiesce)
        self._taker = CheckpointTaker(
            service,
            store,
            changes=changes,
            incremental=bool(incremental),
            max_delta_ratio=float(max_delta_ratio),
            max_deltas=max_deltas,
            export=export,
            export_timeout=float(export_timeout),
        )
        self._lock = threading.Lock()
        # Made on first use: a program that never runs a loop never imports asyncio.
        self._loop_lock: asyncio.Lock | None = None
        self._mode: Literal["thread", "loop"] | None = None  # where the schedule runs
        # The schedule's own (see Checkpointer), kept here with the rest of the state.
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_slow = False
        self._waited_takeover = False  # the first checkpoint after a take-over waited
        self.stop_within = None if stop_within is None else float(stop_within)
        self._warned_stop = False  # a checkpoint took longer than a stop may
        # Seconds of the checkpoints in a row over every, and of each, its store's commit.
        self._overruns: list[tuple[float, float]] = []
        self._waiting_logged: str | None = None  # the status last said to hold it back
        self._starting_since: float | None = None  # when a skip first found it starting
        self._warned_starting = False  # the warning of a service left starting is said once
        self._state_pending = False  # the last attempt found the service without its state
        self._final = False  # the checkpoint under way is the final one
        self._committing = False  # the checkpoint under way reached its commit
        self.failures = 0
        """Checkpoints that failed in a row since the last one that committed."""
        self.last_error: BaseException | None = None
        """The error of the last failed checkpoint, until one commits."""
        self.last: CheckpointReport | None = None
        """The last checkpoint that committed."""
        self._last_ref: SnapshotRef | None = None  # what the last committed checkpoint wrote
        # Refusals as another writer's, and whether they keep finding one snapshot.
        self._quiet = QuietStore(None if claim_after is None else float(claim_after))

    def __repr__(self) -> str:
        return f"<Checkpointer {self.service.name!r} every {self.every:g} s -> {self.store!r}>"

    # --- one checkpoint ----------------------------------------------------------------

    def checkpoint_now(self, *, force: bool = False) -> CheckpointReport:
        """Take a checkpoint now, in the calling thread.

        Skipped when ``changes`` says nothing changed since the last committed one,
        unless ``force`` is given, and whatever ``force`` says while a handoff of the
        service is under way or after one gave its state to a successor. Do not call
        it while holding the ``quiesce`` lock.

        With ``export="fork"``, a full snapshot is exported by a forked child: the
        writers are held for the fork only, and this call waits for the child.

        Raises:
            StoreError: the store could not commit; its earlier checkpoints are intact.
            ExportError, ValidationError, ...: the state could not be snapshotted (see
                :meth:`Service.snapshot`); nothing was written.
            CheckpointError: the forked child failed (its error), was killed, or ran
                past ``export_timeout``; it was reaped and nothing was written.
            ChangeTrackingError: incremental checkpoints: a watched record was changed
                in place, without a write of its key (a delta would lose it); nothing
                was written, and the next checkpoint is a full base, which holds it.
        """
        if self._mode == "loop":
            raise ConfigurationError(
                "mode", "this checkpointer runs on an event loop: await checkpoint() there"
            )
        with self._lock, _summaries_quiet():
            began = time.perf_counter()
            held_back = self._held_back()
            if held_back is not None:
                return CheckpointReport(None, 0.0, 0.0, held_back)
            self._committing = False
            try:
                taken = self._taker.take(force, self._hold)
                if taken is None:
                    if not self._store_lost_last():
                        self._taker.unchanged(final=self._final)
                        return CheckpointReport(None, 0.0, time.perf_counter() - began, UNCHANGED)
                    taken = self._taker.take(True, self._hold)
                assert taken is not None  # forced: never skipped
                snapshot, mark, pause = taken
                forked = None
                if isinstance(snapshot, Forking):
                    forked = snapshot.began
                    snapshot = self._taker.adopt(snapshot, run_waits(self._taker.wait(snapshot)))
                encoded, report = snapshot
                self._committing = True  # the commit counts its own failures
                committed = self.service._checkpoints.commit(
                    partial(self.service.commit_snapshot, self.store, encoded, report)
                )
            except Exception as exc:
                self._failed(exc)
                raise
            if committed is None:  # a handoff began meanwhile
                return CheckpointReport(None, pause, time.perf_counter() - began)
            return self._committed(committed, mark, pause, began, forked)

    async def checkpoint(self, *, force: bool = False) -> CheckpointReport:
        """:meth:`checkpoint_now` for an event loop: the snapshot is taken on the loop
        (no other task runs meanwhile: that is the pause), and the store's commit runs
        in a worker thread while the loop serves. With ``export="fork"`` only the fork
        of a full snapshot's child runs so, and the loop serves while the child
        exports. ``quiesce`` may be an ``asyncio.Lock`` (or any async context manager)
        here.

        Raises:
            As :meth:`checkpoint_now`.
        """
        import asyncio

        if self._mode == "thread":
            raise ConfigurationError(
                "mode", "this checkpointer runs in a thread: call checkpoint_now() instead"
            )
        if self._loop_lock is None:
            self._loop_lock = asyncio.Lock()
        # Commits in the order of their snapshots; the worker thread of the commit
        # inherits the quiet summaries with the task's context.
        async with self._loop_lock, _async_summaries_quiet():
            began = time.perf_counter()
            held_back = self._held_back()
            if held_back is not None:
                return CheckpointReport(None, 0.0, 0.0, held_back)
            self._committing = False
            try:
                taken = await self._take_on_loop(force)
                if taken is None:
                    # The store is asked in a worker thread: for an object store it is a
                    # request, which must not hold up the loop.
                    if not await asyncio.to_thread(self._store_lost_last):
                        self._taker.unchanged(final=self._final)
                        return CheckpointReport(None, 0.0, time.perf_counter() - began, UNCHANGED)
                    taken = await self._take_on_loop(True)
                assert taken is not None  # forced: never skipped
                snapshot, mark, pause = taken
                forked = None
                if isinstance(snapshot, Forking):
                    forked = snapshot.began
                    # The loop serves while the child exports; cancelled meanwhile, the
                    # child is killed and nothing is committed.
                    exported = await run_waits_async(self._taker.wait(snapshot))
                    snapshot = self._taker.adopt(snapshot, exported)
                encoded, report = snapshot
                self._committing = True  # the commit counts its own failures
                commit = asyncio.ensure_future(
                    asyncio.to_thread(
                        self.service._checkpoints.commit,
                        partial(self.service.commit_snapshot, self.store, encoded, report),
                    )
                )
                try:
                    committed = await asyncio.shield(commit)
                except asyncio.CancelledError:
                    # The commit goes on in its thread: wait for it, so that no later
                    # checkpoint (the final one, say) commits before it and is replaced.
                    await asyncio.wait([commit])
                    if not commit.cancelled() and commit.exception() is None:
                        done = commit.result()
                        if done is not None:
                            self._committed(done, mark, pause, began, forked)
                    raise
            except Exception as exc:
                self._failed(exc)
                raise
            if committed is None:  # a handoff began meanwhile
                return CheckpointReport(None, pause, time.perf_counter() - began)
            return self._committed(committed, mark, pause, began, forked)

    async def _take_on_loop(
        self, force: bool
    ) -> tuple[tuple[EncodedSnapshot, SnapshotReport] | Forking, object, float] | None:
        """:meth:`CheckpointTaker.take` on the loop, under an async ``quiesce`` too."""
        quiesce = self._quiesce
        if not async_only(quiesce):
            return self._taker.take(force, self._hold)
        taken = None
        try:
            async with async_hold(quiesce):
                taken = self._taker.take(force, nullcontext)
        except BaseException:
            if taken is not None and isinstance(taken[0], Forking):
                taken[0].export.close()  # letting the writers go failed
            raise
        return taken

    def _store_lost_last(self) -> bool:
        """Whether the store no longer holds the checkpoint last committed (a bucket's
        lifecycle rule, someone cleaning up, may delete it; another service sharing
        the store by mistake may have committed over it): then an unchanged state
        must be committed again, or a crash would find nothing, or another service's
        state, to restore. A store that cannot be asked counts as having lost it, so
        the commit that follows fails and says why, rather than skips going on
        unchecked."""
        ref = self._last_ref
        if ref is None:
            return False
        try:
            held = holding(self.store, ref)
            if held == "held":
                return False
            if held == "replaced":
                # Another writer committed to the same store since: a store has one
                # writer at a time by design (a handoff holds this one's checkpoints
                # back), so two services share it, and a restart would restore the
                # other's state, not this one's. The commit says so (an ERROR from the
                # store); this state is kept too.
                return True
            why = "no longer holds the last checkpoint"
        except StoreError as exc:
            why = f"cannot say whether it still holds the last checkpoint ({exc})"
        logger.warning(
            "checkpoint of %s: %r %s; committing the unchanged state again",
            self.service.name,
            self.store,
            why,
        )
        return True

    def _held_back(self) -> str | None:
        """Why no checkpoint may be taken now, if none may: the service's state is not
        yet its own (see ``docs/checkpoints.md``), or a handoff holds checkpoints back
        (one under way, or one that gave the state to a successor: ``docs/handoff.md``)."""
        status = self.service.status
        self._state_pending = not status.ready
        if status.state != "starting":
            self._starting_since = None
        if not status.ready:
            # A process that has not restored, taken over or declared a cold start holds
            # no state worth keeping: committing it would replace the store's latest
            # checkpoint, the state a restart needs, with an empty or partial one.
            reason = (
                f"the service is {status.state}, not yet restored or started cold"
                " (start_from, a handoff's take-over or start_cold)"
            )
            self._log_waiting(status.state, reason)
            return reason
        if self.service._checkpoints.open:
            return None
        logger.debug("checkpoint of %s skipped: a handoff holds it back", self.service.name)
        return "a handoff holds checkpoints back"

    def _log_waiting(self, state: str, reason: str) -> None:
        """Say once per status in a row that checkpoints wait for the state, and warn
        once of a service still ``starting`` after :data:`_STARTING_GRACE` seconds.

        Waiting is expected while a restore or a handoff's take-over is under way (a
        checkpointer started by the application's start-up hook, or before the server
        adapter, before the state arrives: in a successor it is ``starting`` until the
        handshake is done), and for a moment before ``start_from`` begins, when the
        checkpointer was started first, as docs/checkpoints.md allows. A service that
        stays ``starting`` is one nothing restores nor starts cold: that is the warning.
        A failed restore logged its own error: the skip that follows adds nothing."""
        if state == "starting" and not started_by_handoff():
            now = time.monotonic()
            if self._starting_since is None:
                self._starting_since = now
            elif now - self._starting_since >= _STARTING_GRACE and not self._warned_starting:
                self._warned_starting = True
                self._waiting_logged = state
                logger.warning(
                    "checkpoint of %s skipped for %.0f s: %s",
                    self.service.name,
                    now - self._starting_since,
                    reason,
                )
                return
        if self._waiting_logged == state:
            return
        self._waiting_logged = state
        level = logging.DEBUG if state == "failed" else logging.INFO
        logger.log(level, "checkpoint of %s skipped: %s", self.service.name, reason)

    # --- incremental ---------------------------------------------------------------------

    @property
    def chain_length(self) -> int:
        """Pieces in the chain the next incremental checkpoint extends: the base and
        its deltas (0 before the first one, and when checkpoints are full)."""
        return self._taker.chain_length

    def close(self) -> None:
        """Stop tracking changes for incremental checkpoints (the components drop their
        logs); the next incremental checkpoint starts a new chain with a full base."""
        self._taker.close()

    # --- one writer per store --------------------------------------------------------------

    def claim(self) -> Claim | None:
        """Make this process the store's writer: the next checkpoint goes over the
        snapshot the store holds now, whoever committed it (the store's ``claim()``,
        logged at WARNING with what it replaces).

        The way out once checkpoints are refused with
        :class:`~statemigrate.StoreSharedError` and the process that committed the
        store's latest snapshot has stopped committing there (the old pod of a rollout
        that overlapped): without it they are refused for this process's whole life,
        and a restart restores that process's state, not this one's. Do not claim
        from a process that still commits there: its next commit would be refused
        instead, and its writes since lost at a restart. A snapshot committed after
        the claim is refused as before. For an event loop's admin endpoint: it is a
        request to an ``ObjectStore``, run it in a thread (``asyncio.to_thread``).
        Call :meth:`checkpoint_now` after it to commit at once.

        Returns:
            What the next checkpoint replaces, and who committed it; ``None`` for a
            store that keeps no one writer (``MemoryStore``, ``MemfdStore``, your own).

        Raises:
            StoreError: the store could not be read; nothing was claimed.
        """
        found = claim_store(self.store)
        self._quiet.reset()
        if found is None:
            logger.info("nothing to claim: %r keeps no one writer", self.store)
        return found

    @property
    def claim_after(self) -> float | None:
        return self._quiet.after

    @claim_after.setter
    def claim_after(self, value: float | None) -> None:
        check_claim_after(value)
        self._quiet.after = None if value is None else float(value)

    def _claim_if_quiet(self, exc: StoreSharedError) -> None:
        """Claim the store once refusals have kept finding the same snapshot for
        ``claim_after`` seconds: its writer stopped committing (see
        :mod:`statemigrate._runtime._claimwatch`). The claim is of that very snapshot:
        one committed meanwhile is refused still."""
        quiet = self._quiet.refused(exc)
        if quiet is None:
            return
        self._quiet.reset()
        note_claim(exc.place, exc.latest)
        who = (
            "another process's"
            if exc.writer_pid is None
            else f"process {exc.writer_pid}'s on {exc.writer_host}"
        )
        logger.warning(
            "checkpoints of %s to %r were refused for %.1f s while the latest snapshot"
            " there, %s, stayed the same: that process has stopped committing there;"
            " claiming the store (claim_after=%g s): the next checkpoint goes over it",
            self.service.name,
            self.store,
            quiet,
            who,
            self._quiet.after,
        )

    # --- the options the taker holds -----------------------------------------------------

    @property
    def incremental(self) -> bool:
        return self._taker.incremental

    @incremental.setter
    def incremental(self, value: bool) -> None:
        self._taker.incremental = value

    @property
    def max_delta_ratio(self) -> float:
        return self._taker.max_delta_ratio

    @max_delta_ratio.setter
    def max_delta_ratio(self, value: float) -> None:
        self._taker.max_delta_ratio = value

    @property
    def max_deltas(self) -> int:
        return self._taker.max_deltas

    @max_deltas.setter
    def max_deltas(self, value: int) -> None:
        self._taker.max_deltas = value

    @property
    def export(self) -> ExportMode:
        return self._taker.export

    @export.setter
    def export(self, value: ExportMode) -> None:
        self._taker.export = value

    @property
    def export_timeout(self) -> float:
        return self._taker.export_timeout

    @export_timeout.setter
    def export_timeout(self, value: float) -> None:
        self._taker.export_timeout = value

    def _committed(
        self,
        committed: CommitReport,
        mark: object,
        pause: float,
        began: float,
        forked: float | None,
    ) -> CheckpointReport:
        """Note a committed checkpoint and log its line; ``forked`` is when the child
        that exported its full snapshot was forked (``time.perf_counter()``), if one
        was."""
        done = time.perf_counter()
        child = 0.0 if forked is None else done - forked
        result = CheckpointReport(committed, pause, done - began, reason="", child_seconds=child)
        routine_logger.info("%s%s", "final " if self._final else "", result.summary())
        self._warn_if_past_stop(result.seconds)
        self._taker.committed_mark = mark
        self._last_ref = committed.ref
        self._quiet.reset()
        if self.failures:
            logger.info(
                "checkpoints of %s to %r commit again after %d failed",
                self.service.name,
                self.store,
                self.failures,
            )
        self.failures = 0
        self.last_error = None
        self.last = result
        return result

    def _warn_if_past_stop(self, seconds: float) -> None:
        """Warn, once, when a checkpoint took longer than a stop may: the final one of
        a stop would be killed before it commits, losing every write since the last
        checkpoint, and nothing would be logged then."""
        if self.stop_within is None or self._warned_stop or seconds <= self.stop_within:
            return
        self._warned_stop = True
        logger.warning(
            "a checkpoint of %s to %r took %.1f s, more than the %g s a stop may take"
            " (stop_within): the final checkpoint of a stop would be killed before it"
            " commits; allow the stop more time%s",
            self.service.name,
            self.store,
            seconds,
            self.stop_within,
            "" if self._taker.incremental else ", or use incremental=True (a delta at the stop)",
        )

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = exc
        if isinstance(exc, StoreSharedError):
            self._claim_if_quiet(exc)
        if not self._committing:
            # Failed before its commit (the export, change tracking, a forked child):
            # no snapshot reached the store all the same, and an operator's alert on
            # failed commits must see it, not only the staleness an interval later.
            commit_failed(self.service.name, self.store, 0.0, exc)

