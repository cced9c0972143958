"""Checkpoints: a full snapshot of a service committed every few seconds, so that a
process killed without warning restarts from the last one.

Each checkpoint holds the service's writers only while the snapshot is taken (export
and encode), or, for a full snapshot exported in a forked child (``export="fork"``,
see :mod:`statemigrate._runtime._fork`), only while the child is forked: it encodes
the state as it was at that instant while they go on, and the checkpointer commits
what it wrote once it is done. The store's atomic commit runs after they go on. A
crash therefore loses the changes made since the last checkpoint that committed, at
most one interval plus one checkpoint's time, and never leaves a torn snapshot: the
stores commit atomically and keep the snapshot before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from statemigrate._errors import ConfigurationError, StoreError
from statemigrate._observe._instruments import declare_store
from statemigrate._runtime._chain import MAX_PIECES
from statemigrate._runtime._checkpointtake import (
    DEFAULT_EXPORT,
    FORK_POSSIBLE,
    CheckpointTaker,
    ExportMode,
    Forking,
)
from statemigrate._runtime._gate import started_by_handoff
from statemigrate._runtime._quiesce import (
    AsyncPausable,
    Pausable,
    Quiesce,
    async_hold,
    async_only,
    hold_of,
)
from statemigrate._runtime._report import (
    UNCHANGED,
    CheckpointReport,
    CommitReport,
    SnapshotReport,
)
from statemigrate._runtime._service import SUMMARIES
from statemigrate._runtime._telemetry import store_kind
from statemigrate._runtime._wait import run_waits, run_waits_async
from statemigrate.stores._base import holds

if TYPE_CHECKING:
    import asyncio

    from statemigrate._runtime._service import Service
    from statemigrate._snapshot._encode import EncodedSnapshot
    from statemigrate.stores import SnapshotRef, Store

__all__ = [
    "DEFAULT_EXPORT",
    "AsyncPausable",
    "Checkpointer",
    "ExportMode",
    "Pausable",
    "Quiesce",
    "check_positive_seconds",
    "retry_delay",
]

logger = logging.getLogger("statemigrate")

_WAITING_FOR_STATE = 0.05
"""Seconds between attempts while the service does not own its state yet: a skipped
attempt costs a status check, and the first checkpoint of a state just taken over
should not wait a whole interval."""

_OVERRUNS = 2
"""Checkpoints in a row over ``every`` before the log warns that they run back to back:
one alone is the full base after a start or a take-over, whose deltas are fast."""


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


def check_positive_seconds(option: str, value: object) -> None:
    """Refuse ``value`` for ``option`` unless it is a positive number (not a bool).

    Raises:
        ConfigurationError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(option, f"must be a positive number of seconds, not {value!r}")


def retry_delay(every: float, failures: int, max_backoff: float) -> float:
    """Seconds to wait before the next checkpoint after ``failures`` failed in a row:
    ``every`` when none did, then twice as long after each failure, at most
    ``max_backoff`` (or ``every`` if that is longer)."""
    if failures <= 0:
        return every
    return min(every * 2.0 ** min(failures, 30), max(max_backoff, every))


class Checkpointer:
    """Commit a full snapshot of ``service`` to ``store`` every ``every`` seconds.

    Run it in a background thread (:meth:`start`, :meth:`stop`, or a ``with`` block),
    on an event loop (``await checkpointer.run()``), or call :meth:`checkpoint_now`
    yourself. At start-up, ``service.start_from(store)`` restores the last checkpoint.

    A handoff of ``service`` (``hand_over``) holds its checkpoints back by itself: no
    checkpoint commits from the moment it pauses the writers (one committing then
    finishes first), they go on if it fails, and they end for good once the
    successor owns the state, so that none of this process can replace the
    successor's.

    Consistency: a snapshot reads the live state, so no change may be half-applied
    while it is taken. ``quiesce`` holds the writers for that moment: a lock every
    writer takes around each change (``threading.Lock`` will do), a function returning
    a context manager, or an object with ``pause()`` and ``resume()`` (a handoff
    ``ServerControl``). The writers are held from entering it until the snapshot is
    encoded (a delta, or an inline export), or until a child is forked to export it
    (``export="fork"``: the child encodes the state as it was at the fork, while they
    go on); the store's commit runs after they go on. Without ``quiesce`` the
    checkpoint assumes that nothing else changes the state meanwhile: true on an event
    loop whose writers change the state without awaiting mid-change, or in a
    single-threaded server that calls :meth:`checkpoint_now` between requests; a
    background thread therefore requires it.

    Args:
        service: the service whose components are checkpointed.
        store: where checkpoints are committed (a ``TmpfsStore`` survives the process,
            an ``ObjectStore`` the host).
        every: seconds between the starts of two checkpoints.
        quiesce: how to hold the writers (see above).
        changes: a function returning a value that changes whenever the state does,
            e.g. a counter the writers bump; a checkpoint whose value equals the last
            committed one's is skipped, without holding the writers. Without it, every
            full checkpoint is written, an unchanged state included (incremental
            checkpoints skip an unchanged state by themselves).
        max_backoff: after failed checkpoints (a store that cannot commit, a state
            that cannot be exported), the next attempt waits twice as long each time,
            up to this many seconds. Serving goes on meanwhile.
        incremental: commit a chain instead of a full snapshot each time: a full base,
            then at each checkpoint a delta of what changed since the one before, the
            writers held for the delta only. The store gets the base and every delta
            so far as one object, committed atomically (see ``docs/checkpoints.md``).
            Needs components that track their changes (``TrackedDict``); without
            them every checkpoint is full, and the log says why.
        max_delta_ratio: a new full base is taken (the chain compacted) when the
            deltas' total size, the one about to be taken included, passes this
            fraction of the base's size. The delta about to be taken is estimated from
            the records changed since the last piece, at the size per record of the
            last delta (or of the base, for the first delta after it). Whatever
            this allows, a new base is taken instead of a delta of more than a
            quarter of the records: it would hold the writers about as long as a
            base, or longer.
        max_deltas: a new full base is taken after this many deltas, whatever their
            size.
        export: where a full snapshot (a full checkpoint, or a chain's base) is
            exported. ``"fork"`` (the default where the system can: Linux): in a
            child forked with the writers held, which encodes the state as it was at
            the fork while they go on; they are held for the fork only. ``"inline"``:
            in this process, with the writers held until it is encoded. Deltas are
            always exported inline (they are small). See ``docs/checkpoints.md``.
        export_timeout: seconds a forked export may take; a child still running
            then is killed and the checkpoint fails (it is retried, as any failed
            checkpoint).

    Raises:
        ConfigurationError: ``every``, ``max_backoff``, ``max_delta_ratio`` or
            ``export_timeout`` is not a positive number, ``max_deltas`` not a positive
            count, ``export`` not ``"fork"`` or ``"inline"`` (or ``"fork"`` where
            the system cannot fork), or ``quiesce`` or ``changes`` has the wrong
            shape.
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
    ) -> None:
        for option, value in (
            ("every", every),
            ("max_backoff", max_backoff),
            ("max_delta_ratio", max_delta_ratio),
            ("export_timeout", export_timeout),
        ):
            check_positive_seconds(option, value)
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
        if export == "fork" and not FORK_POSSIBLE:
            raise ConfigurationError(
                "export", "'fork' needs fork(), pidfds and memfds (Linux): use 'inline'"
            )
        if changes is not None and not callable(changes):
            raise ConfigurationError("changes", f"must be a function, not {type(changes).__name__}")
        self.service = service
        self.store = store
        # Its commits' series exist from now, at zero: the first that fails, even
        # before any succeeded, is an increase an alert sees.
        declare_store(service.name, store_kind(store))
        self.every = float(every)
        self.max_backoff = float(max_backoff)
        self._quiesce = quiesce
        self._hold = hold_of(quiesce)
        self._taker = CheckpointTaker(
            service,
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mode: Literal["thread", "loop"] | None = None
        self._warned_slow = False
        self._overruns: list[float] = []  # seconds of the checkpoints in a row over every
        self._waiting_logged: str | None = None  # the status last said to hold it back
        self._state_pending = False  # the last attempt found the service without its state
        self._final = False  # the checkpoint under way is the final one
        self.failures = 0
        """Checkpoints that failed in a row since the last one that committed."""
        self.last_error: BaseException | None = None
        """The error of the last failed checkpoint, until one commits."""
        self.last: CheckpointReport | None = None
        """The last checkpoint that committed."""
        self._last_ref: SnapshotRef | None = None  # what the last committed checkpoint wrote

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
            try:
                taken = self._taker.take(force, self._hold)
                if taken is None:
                    if not self._store_lost_last():
                        self._taker.unchanged()
                        return CheckpointReport(None, 0.0, time.perf_counter() - began, UNCHANGED)
                    taken = self._taker.take(True, self._hold)
                assert taken is not None  # forced: never skipped
                snapshot, mark, pause = taken
                if isinstance(snapshot, Forking):
                    snapshot = self._taker.adopt(snapshot, run_waits(self._taker.wait(snapshot)))
                encoded, report = snapshot
                committed = self.service._checkpoints.commit(
                    partial(self.service.commit_snapshot, self.store, encoded, report)
                )
            except Exception as exc:
                self._failed(exc)
                raise
            if committed is None:  # a handoff began meanwhile
                return CheckpointReport(None, pause, time.perf_counter() - began)
            return self._committed(committed, mark, pause, began)

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
            try:
                taken = await self._take_on_loop(force)
                if taken is None:
                    # The store is asked in a worker thread: for an object store it is a
                    # request, which must not hold up the loop.
                    if not await asyncio.to_thread(self._store_lost_last):
                        self._taker.unchanged()
                        return CheckpointReport(None, 0.0, time.perf_counter() - began, UNCHANGED)
                    taken = await self._take_on_loop(True)
                assert taken is not None  # forced: never skipped
                snapshot, mark, pause = taken
                if isinstance(snapshot, Forking):
                    # The loop serves while the child exports; cancelled meanwhile, the
                    # child is killed and nothing is committed.
                    exported = await run_waits_async(self._taker.wait(snapshot))
                    snapshot = self._taker.adopt(snapshot, exported)
                encoded, report = snapshot
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
                            self._committed(done, mark, pause, began)
                    raise
            except Exception as exc:
                self._failed(exc)
                raise
            if committed is None:  # a handoff began meanwhile
                return CheckpointReport(None, pause, time.perf_counter() - began)
            return self._committed(committed, mark, pause, began)

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
        lifecycle rule, someone cleaning up, may delete it): then an unchanged state
        must be committed again, or a crash would find nothing to restore. A store
        that cannot be asked counts as having lost it, so the commit that follows
        fails and says why, rather than skips going on unchecked."""
        ref = self._last_ref
        if ref is None:
            return False
        try:
            if holds(self.store, ref):
                return False
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
        if not status.ready:
            # A process that has not restored, taken over or declared a cold start holds
            # no state worth keeping: committing it would replace the store's latest
            # checkpoint, the state a restart needs, with an empty or partial one.
            reason = (
                f"the service is {status.state}, not yet restored or started cold"
                " (start_from, a handoff's take-over or start_cold)"
            )
            if self._waiting_logged != status.state:
                self._waiting_logged = status.state
                # Expected while a restore or a handoff's take-over is under way (a
                # checkpointer started by the application's start-up hook, or before
                # the server adapter, before the state arrives: in a successor it is
                # `starting` until the handshake is done); a warning only for a service
                # that nothing restores.
                expected = status.state == "restoring" or (
                    status.state == "starting" and started_by_handoff()
                )
                level = logging.INFO if expected else logging.WARNING
                logger.log(level, "checkpoint of %s skipped: %s", self.service.name, reason)
            return reason
        if self.service._checkpoints.open:
            return None
        logger.debug("checkpoint of %s skipped: a handoff holds it back", self.service.name)
        return "a handoff holds checkpoints back"

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
        self, committed: CommitReport, mark: object, pause: float, began: float
    ) -> CheckpointReport:
        result = CheckpointReport(committed, pause, time.perf_counter() - began, reason="")
        logger.info("%s%s", "final " if self._final else "", result.summary())
        self._taker.committed_mark = mark
        self._last_ref = committed.ref
        if self.failures:
            logger.info(
                "checkpoints of %s commit again after %d failed", self.service.name, self.failures
            )
        self.failures = 0
        self.last_error = None
        self.last = result
        return result

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = exc

    # --- in a background thread --------------------------------------------------------

    def start(self) -> Self:
        """Checkpoint every ``every`` seconds from a background thread; returns self.

        The first checkpoint comes ``every`` seconds from now, or as soon as the service
        owns its state when it does not yet or took it over in a handoff (that state is
        in no checkpoint of this release yet). A failed checkpoint is
        logged and retried later (see ``max_backoff``); the thread stops by itself
        only once a handoff gave the service's state to a successor.

        Raises:
            ConfigurationError: there is no ``quiesce``, or the checkpointer runs
                already (or on an event loop).
        """
        if self._quiesce is None or async_only(self._quiesce):
            raise ConfigurationError(
                "quiesce",
                "a checkpoint thread runs beside the writers: give a lock they take, or"
                " pause() and resume(), so that no snapshot sees a change half-applied",
            )
        self._enter_mode("thread")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_thread,
            name=f"statemigrate-checkpoint-{self.service.name}",
            daemon=True,
        )
        self._thread.start()
        self.service._checkpoints.attach(self)
        return self

    def stop(self, *, final: bool = True) -> CheckpointReport | None:
        """Stop the background thread, then take a final checkpoint (unless ``final``
        is False) so that a clean stop loses nothing.

        Call it from a thread that does not hold the ``quiesce`` lock, e.g. the main
        thread after a SIGTERM handler set a flag (not from the handler itself).
        Idempotent: a checkpointer that is not running only takes the final checkpoint.
        There is none while a handoff holds the checkpoints back, or after one gave
        the state to a successor: it would replace the successor's checkpoints.

        Returns:
            The final checkpoint's report, or ``None`` without one.

        Raises:
            As :meth:`checkpoint_now`, for the final checkpoint (also logged).
        """
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join()
        if self._mode == "thread":
            self._mode = None
            self.service._checkpoints.detach(self)
        if final and not self.service._checkpoints.open:
            logger.info("no final checkpoint of %s: a handoff holds it back", self.service.name)
            final = False
        if not final:
            self.close()
            return None
        self._final = True
        try:
            report = self.checkpoint_now()
        except Exception as exc:
            logger.error("final checkpoint of %s failed: %s", self.service.name, exc)
            raise
        finally:
            self._final = False
            self.close()
        return report

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_thread(self) -> None:
        delay = self._first_delay()
        gate = self.service._checkpoints
        while not self._stop.wait(delay) and not gate.ended:
            delay = self._tick()

    def _tick(self) -> float:
        """One scheduled checkpoint; returns the seconds until the next one."""
        started = time.perf_counter()
        try:
            report = self.checkpoint_now()
        except Exception as exc:
            return self._retry_after(exc)
        return self._next_after(report, time.perf_counter() - started)

    def _first_delay(self) -> float:
        """Seconds until the first checkpoint: ``every``, or none for a state in no
        checkpoint of this release yet: one taken over from an old process (which
        stopped checkpointing before its pause; after a rollback, the store holds only
        the newer release's checkpoints), or one still to come (see :meth:`_next_after`)."""
        if not self.service.status.ready or self.service._tracker.taken_over:
            return 0.0
        return self.every

    def _next_after(self, report: CheckpointReport, seconds: float) -> float:
        """Seconds until the next checkpoint, ``every`` after this one began; warn once
        when checkpoints keep taking longer than that (:meth:`_note_overrun`).

        Until the service owns its state, the next attempt comes soon instead, so that
        a state that arrives (a take-over, a restore) is committed at once rather than
        ``every`` seconds later (see :meth:`_first_delay`).
        """
        if report.skipped and self._state_pending:
            return min(self.every, _WAITING_FOR_STATE)
        self._note_overrun(report, seconds)
        return max(0.0, self.every - seconds)

    def _note_overrun(self, report: CheckpointReport, seconds: float) -> None:
        """Warn, once, when :data:`_OVERRUNS` checkpoints in a row took longer than
        ``every``: they then run back to back. One slow checkpoint among fast ones is
        no reason to change anything: the first checkpoint after a start or a
        take-over is a full snapshot (an incremental chain's base) while the deltas
        after it take milliseconds. The advice follows what ran over."""
        if seconds <= self.every:
            self._overruns.clear()
            return
        self._overruns.append(seconds)
        if len(self._overruns) < _OVERRUNS or self._warned_slow:
            return
        self._warned_slow = True
        slowest = max(self._overruns)
        committed = report.committed
        if not self._taker.incremental:
            advice = (
                f"checkpoint incrementally (incremental=True: a checkpoint then takes only"
                f" what changed) or raise every above {slowest:.2g} s"
            )
        elif committed is not None and committed.snapshot.chain == 1:
            advice = (
                "each is a new full base, as the changes outgrow the chain's bounds: raise"
                f" every above {slowest:.2g} s or max_delta_ratio"
            )
        else:
            advice = f"raise every above {slowest:.2g} s"
        logger.warning(
            "%d checkpoints of %s in a row took longer than every=%g s (%s): checkpoints"
            " now run back to back, holding the writers %.2f s each; %s",
            len(self._overruns),
            self.service.name,
            self.every,
            ", ".join(f"{s:.2f} s" for s in self._overruns),
            report.pause_seconds,
            advice,
        )

    def _retry_after(self, exc: Exception) -> float:
        delay = retry_delay(self.every, self.failures, self.max_backoff)
        logger.warning(
            "checkpoint of %s failed (%d in a row), next attempt in %.1f s: %s",
            self.service.name,
            self.failures,
            delay,
            exc,
        )
        return delay

    # --- on an event loop --------------------------------------------------------------

    async def run(self) -> None:
        """Checkpoint every ``every`` seconds on the running event loop (the first as
        :meth:`start` says), until cancelled
        (or until a handoff gave the service's state to a successor: it returns then).

        Cancel the task to stop: a final checkpoint is taken before the cancellation
        goes on (``task.cancel(); await task`` in the server's clean-up). Failed
        checkpoints are logged and retried as in the thread.

        Raises:
            ConfigurationError: the checkpointer runs in a thread already.
            StoreError, CheckpointError, ...: the final checkpoint failed (see
                :meth:`checkpoint_now`); raised instead of the ``CancelledError``, so
                that the code awaiting the task learns what :meth:`stop` would tell it.
        """
        import asyncio

        self._enter_mode("loop")
        gate = self.service._checkpoints
        gate.attach(self)
        delay = self._first_delay()
        try:
            while True:
                await asyncio.sleep(delay)
                if gate.ended:
                    logger.info(
                        "checkpoints of %s end: its state is handed over", self.service.name
                    )
                    return
                started = time.perf_counter()
                try:
                    report = await self.checkpoint()
                except Exception as exc:
                    delay = self._retry_after(exc)
                    continue
                delay = self._next_after(report, time.perf_counter() - started)
        except asyncio.CancelledError:
            if not gate.open:
                logger.info("no final checkpoint of %s: a handoff holds it back", self.service.name)
                raise
            self._final = True
            try:
                await self.checkpoint()
            except Exception as exc:
                logger.error("final checkpoint of %s failed: %s", self.service.name, exc)
                # In place of the cancellation: a clean-up that awaits the task with
                # CancelledError suppressed would otherwise end as if the writes since
                # the last checkpoint were kept.
                raise
            finally:
                self._final = False
            raise
        finally:
            self._mode = None
            gate.detach(self)
            self.close()

    def _enter_mode(self, mode: Literal["thread", "loop"]) -> None:
        where = {"thread": "in a thread", "loop": "on an event loop"}
        if self._mode is not None:
            raise ConfigurationError("mode", f"this checkpointer runs {where[self._mode]} already")
        self._mode = mode
