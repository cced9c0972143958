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

Here is the schedule: a background thread or a task on an event loop, the first
checkpoint's delay, the back-off after failures and the warning when checkpoints run
back to back. One checkpoint is taken and committed by
:mod:`statemigrate._runtime._checkpointcommit`.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Literal, Self

from statemigrate._errors import (
    ChangeTrackingError,
    CheckpointError,
    ConfigurationError,
    StoreSharedError,
)
from statemigrate._runtime._checkpointcommit import CheckpointCommitter, check_positive
from statemigrate._runtime._checkpointtake import DEFAULT_EXPORT, ExportMode
from statemigrate._runtime._quiesce import AsyncPausable, Pausable, Quiesce, async_only
from statemigrate._runtime._report import CheckpointReport
from statemigrate._runtime._takeoverdelay import takeover_wait
from statemigrate._runtime._telemetry import store_kind

__all__ = [
    "DEFAULT_EXPORT",
    "AsyncPausable",
    "Checkpointer",
    "ExportMode",
    "Pausable",
    "Quiesce",
    "check_positive",
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


def failure_detail(exc: Exception) -> str:
    """What a failed checkpoint's log line says after its own opening: a
    :class:`CheckpointError` without its text "checkpoint of ... failed", which the
    line says already."""
    text = exc.detail if isinstance(exc, CheckpointError) else str(exc)
    # One line: a foreign error's text may run on for dozens (a request dump, a debug
    # tree); its first says what failed, and the exception itself is raised as it is.
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def retry_delay(every: float, failures: int, max_backoff: float) -> float:
    """Seconds to wait before the next checkpoint after ``failures`` failed in a row:
    ``every`` when none did, then twice as long after each failure, at most
    ``max_backoff`` (or ``every`` if that is longer)."""
    if failures <= 0:
        return every
    return min(every * 2.0 ** min(failures, 30), max(max_backoff, every))


class Checkpointer(CheckpointCommitter):
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
            them every checkpoint is full, and the log says why; so is every one
            after the service caught a component changing a value in place, for the
            rest of the process's life. After a restart,
            the chain ``start_from(store)`` restored from the same store is continued
            (the first checkpoint is a delta on it) when the state is exactly the
            chain's; otherwise the first checkpoint is a new base, and the log says
            why.
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
        stop_within: seconds a stop may take before the process is killed (a
            service manager's grace period, gunicorn's ``graceful_timeout``): a
            checkpoint that takes longer logs one WARNING, since the final checkpoint
            of a stop would then be killed before it commits. ``None``: no such check.
        first_after_takeover: seconds from a handoff's take-over (this process
            began to serve the state) to its first checkpoint, 0 or more: forking
            that first base stalls the process for tens of milliseconds with a large
            state, which should not land on the requests the old process forwards
            right after the switch. A kill in between loses what changed since the
            old process's last checkpoint (``docs/checkpoints.md``).
        claim_after: seconds after which checkpoints refused as another writer's
            (``StoreSharedError``) claim the store (:meth:`claim`), when every
            refusal over that time found the same snapshot there: the process that
            committed it has stopped committing (the old pod of a rollout that
            overlapped), and without the claim this one's checkpoints would be refused
            for good. Measured on this process's monotonic clock between its refusals;
            never from a process this host sees running. A live writer on another
            host that commits nothing for that long (idle, or its commits failing) is
            then the one refused. ``None``: never; claim by hand.

    Raises:
        ConfigurationError: ``every``, ``max_backoff``, ``max_delta_ratio``,
            ``export_timeout`` or ``stop_within`` is not a positive number,
            ``claim_after`` neither that nor ``None``,
            ``first_after_takeover`` not a number of seconds, 0 or more,
            ``max_deltas`` not a positive count, ``export`` not ``"fork"`` or
            ``"inline"`` (or ``"fork"`` where
            the system cannot fork), or ``quiesce`` or ``changes`` has the wrong
            shape.
    """

    # --- in a background thread --------------------------------------------------------

    def start(self) -> Self:
        """Checkpoint every ``every`` seconds from a background thread; returns self.

        The first checkpoint comes ``every`` seconds from now, or as soon as the service
        owns its state when it does not yet, or ``first_after_takeover`` seconds after
        it took its state over in a handoff (that state is in no checkpoint of this
        release yet). A failed checkpoint is
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
        A final incremental checkpoint that catches a value changed in place (a
        :class:`ChangeTrackingError`) logs it as an error and commits a full snapshot
        instead: no later checkpoint would.

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
            try:
                report = self.checkpoint_now()
            except ChangeTrackingError as exc:
                self._log_final_in_place(exc)
                report = self.checkpoint_now(force=True)
        except Exception as exc:
            logger.error(
                "final checkpoint of %s to %r failed: %s",
                self.service.name,
                self.store,
                failure_detail(exc),
            )
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
            delay = self._takeover_wait() or self._tick()

    def _takeover_wait(self) -> float:
        """Seconds to wait still before the first checkpoint of a state taken over in a
        handoff: ``first_after_takeover`` after it (see
        :mod:`statemigrate._runtime._takeoverdelay`); 0 once it passed, and for good
        after the first checkpoint that ran."""
        if self._waited_takeover:
            return 0.0
        left = takeover_wait(self.service._tracker.taken_over_at, self.first_after_takeover)
        self._waited_takeover = not left and self.service._tracker.taken_over
        return left

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
        if not self.service.status.ready:
            return 0.0
        if self.service._tracker.taken_over:
            return self._takeover_wait()
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
        after it take milliseconds. The advice follows what ran over: the store, when
        its commits took most of the time, else the snapshots."""
        if seconds <= self.every:
            self._overruns.clear()
            return
        committed = report.committed
        self._overruns.append((seconds, 0.0 if committed is None else committed.commit_seconds))
        if len(self._overruns) < _OVERRUNS or self._warned_slow:
            return
        self._warned_slow = True
        slowest = max(taken for taken, _ in self._overruns)
        commits = [commit for _, commit in self._overruns]
        if sum(commits) > sum(taken for taken, _ in self._overruns) / 2:
            # A slow store: a longer every or smaller snapshots would only let the
            # writes since the last commit pile up while the store is what is slow.
            advice = (
                f"the {store_kind(self.store)} store's commits took"
                f" {' and '.join(f'{c:.2f} s' for c in commits)} of that: the store is"
                " slow, not the snapshot; check that it can be reached and answers in"
                " time, and its timeouts and retries, rather than every"
            )
        elif not self._taker.incremental:
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
            ", ".join(f"{taken:.2f} s" for taken, _ in self._overruns),
            report.pause_seconds,
            advice,
        )

    def _log_final_in_place(self, exc: ChangeTrackingError) -> None:
        """The final checkpoint caught a value changed in place: there is no next
        checkpoint to take the full base that holds it, so the final one is taken so
        (forced: the failed check ended the chain). Logged as an error all the same: a
        crash before a stop would have lost that change."""
        logger.error(
            "final checkpoint of %s: %s; committing a full snapshot instead",
            self.service.name,
            exc,
        )

    def _retry_after(self, exc: Exception) -> float:
        delay = retry_delay(self.every, self.failures, self.max_backoff)
        if isinstance(exc, StoreSharedError) and exc.since == "running" and self.failures == 1:
            # The process whose checkpoint this one restored still runs: an old worker
            # finishing its final checkpoint as it exits (a reload, a replaced
            # worker), which the next attempt no longer finds, or a second copy of the
            # service, which the next attempt finds again and warns of.
            logger.info(
                "first checkpoint of %s to %r waits: the latest checkpoint there, which"
                " this process restored, is process %s's on %s, which still runs; next"
                " attempt in %.1f s (refused again if it still runs then: two services"
                " commit to the same place)",
                self.service.name,
                self.store,
                exc.writer_pid,
                exc.writer_host,
                delay,
            )
            return delay
        logger.warning(
            "checkpoint of %s to %r failed (%d in a row), next attempt in %.1f s: %s",
            self.service.name,
            self.store,
            self.failures,
            delay,
            failure_detail(exc),
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
                delay = self._takeover_wait()
                if delay:
                    continue
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
                try:
                    await self.checkpoint()
                except ChangeTrackingError as exc:
                    self._log_final_in_place(exc)
                    await self.checkpoint(force=True)
            except Exception as exc:
                logger.error(
                    "final checkpoint of %s to %r failed: %s",
                    self.service.name,
                    self.store,
                    failure_detail(exc),
                )
                # In place of the cancellation: a clean-up that awaits the task with
                # CancelledError suppressed would otherwise end as if the writes since
                # the last checkpoint were kept. The cancellation was how the stop was
                # asked, not part of the failure: a traceback need not show it.
                exc.__suppress_context__ = True
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
