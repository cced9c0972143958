"""Trial generations in the server adapters: one option, the same three acts everywhere.

Every adapter takes ``trial=Trial(directory=...)`` and, through :class:`TrialRunner`:

* on a cold start restores with :func:`~statemigrate.handoff.start_generation` (the
  permanent state after a crash during a trial, else the checkpoints or nothing);
* after a handoff started by its signal succeeded, in the old process, puts the
  successor on trial with :func:`~statemigrate.handoff.begin_trial`;
* once serving, watches the trial (:func:`~statemigrate.handoff.watch_trial`); a
  revert is a handoff to the permanent generation's recorded command line through
  the adapter's own switch (reads served throughout, writes held, then passed on),
  with ``allow_lossy=True``: the permanent code reads only older versions.

The asyncio adapters run the revert's handoff on their event loop: the watcher's
thread schedules it there and waits until the state has moved (or the handoff
failed); the adapter drains and stops afterwards, as after any handoff.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from statemigrate._errors import ConfigurationError, HandoffError, StateMigrateError
from statemigrate._runtime._service import Service
from statemigrate.handoff import (
    GenerationStart,
    HandoffReport,
    TrialWatch,
    begin_trial,
    read_trial,
    start_generation,
    watch_trial,
)
from statemigrate.handoff._trialrecord import load_record, locked
from statemigrate.stores import Store

__all__ = ["Moved", "RevertAsync", "Trial", "TrialRunner", "checked", "own_argv", "runner_for"]

logger = logging.getLogger("statemigrate.handoff")

Moved = Callable[[HandoffReport], None]
"""Told the report once the state moved to the permanent generation (the adapter
drains afterwards)."""

RevertAsync = Callable[[tuple[str, ...], Moved], Awaitable[object]]
"""An adapter's revert on its loop: hands over to the argv with ``allow_lossy=True``,
calls ``moved(report)`` once the successor owns the state, raises if it failed."""


def own_argv() -> list[str]:
    """This process's command line, to run its code again: interpreter options,
    ``-m module`` and a script's path kept as they were given."""
    return [sys.executable, *sys.orig_argv[1:]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    """Put each successor on trial; the option ``trial=`` of every server adapter.

    See ``docs/trials.md``. The directory is the service's trial directory (created
    0700; its parent must exist), where ``statemigrate trial status|promote|revert
    --dir DIRECTORY`` finds the record.

    Attributes:
        directory: the trial directory.
        permanent_after: seconds after which the health check decides (``True``
            promotes, ``False`` reverts); ``None``: only an operator promotes.
        health: the health check, called once in the watcher's thread (not on the
            event loop); ``None`` passes.
        argv: this program's command line, how the permanent generation is started
            again on a revert or after a crash; this process's own by default. Make
            it name the release's own files (not a link a deployment moves on to the
            next release): on a revert it must still run this code.
        checkpoints: the store a cold start restores from when no trial crashed (and
            the trial's newer checkpoint when one did and this code reads it).
        poll: seconds between two reads of the record by the watcher.

    Raises:
        ConfigurationError: a field is of the wrong kind or out of range.
    """

    directory: str | os.PathLike[str]
    permanent_after: float | None = None
    health: Callable[[], bool] | None = None
    argv: Sequence[str] | None = None
    checkpoints: Store | None = None
    poll: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.directory, str | os.PathLike) or not os.fspath(self.directory):
            raise ConfigurationError(
                "directory", f"the trial directory is a non-empty path, not {self.directory!r}"
            )
        after = self.permanent_after
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int | float)
            or not math.isfinite(after) or after < 0
        ):
            raise ConfigurationError(
                "permanent_after", f"a number of seconds >= 0 or None, not {after!r}"
            )
        if self.health is not None and not callable(self.health):
            raise ConfigurationError("health", f"a function returning a bool, not {self.health!r}")
        argv = self.argv
        if argv is not None and (
            isinstance(argv, str) or not argv or not all(isinstance(part, str) for part in argv)
        ):
            raise ConfigurationError("argv", f"a non-empty list of strings, not {argv!r}")
        poll = self.poll
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll < math.inf:
            raise ConfigurationError("poll", f"a positive number of seconds, not {poll!r}")


def checked(trial: object) -> Trial | None:
    """An adapter's ``trial`` option, checked.

    Raises:
        ConfigurationError: ``trial`` is neither a :class:`Trial` nor ``None``.
    """
    if trial is not None and not isinstance(trial, Trial):
        raise ConfigurationError(
            "trial", f"must be a statemigrate.integrations.Trial, not {type(trial).__name__}"
        )
    return trial


def runner_for(trial: object, service: Service) -> TrialRunner | None:
    """The runner of an adapter's ``trial`` option (``None``: no trials).

    Raises:
        ConfigurationError: ``trial`` is neither a :class:`Trial` nor ``None``.
    """
    option = checked(trial)
    return None if option is None else TrialRunner(option, service)


class TrialRunner:
    """One process's part in its service's trials, as an adapter drives it.

    Args:
        trial: the option.
        service: the state that moves with each handoff.
    """

    def __init__(self, trial: Trial, service: Service) -> None:
        self.trial = trial
        self.service = service
        self.watch: TrialWatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- start-up and each handoff -----------------------------------------------------

    def check(self) -> None:
        """Refuse a trial directory that cannot hold the record.

        Called at start-up, whatever restored the service before, and before each
        handoff: a successor must never serve unless it can be put on trial. Creates
        the directory (0700) when it is missing, as beginning a trial would.

        Raises:
            TrialError: the directory cannot be created or opened, is not private to
                its owner, or its record is corrupt.
        """
        with locked(self.trial.directory, create=True) as (path, fd):
            load_record(path, fd)

    def check_handoff(self) -> None:
        """:meth:`check` before a handoff: its failure refuses the handoff.

        Raises:
            HandoffError: at stage ``trial``; the old process serves on.
        """
        try:
            self.check()
        except StateMigrateError as exc:
            raise HandoffError("trial", f"the successor could not be put on trial: {exc}") from exc

    # -- a cold start ----------------------------------------------------------------

    def start(self) -> GenerationStart:
        """Restore at a start without a handoff (:func:`~statemigrate.handoff.start_generation`).

        Raises:
            TrialError: the generation on trial still runs, or this is not the
                permanent generation's code after a crash during the trial.
            RestoreError: the permanent state cannot be restored.
        """
        began = start_generation(
            self.trial.directory, self.service, checkpoints=self.trial.checkpoints
        )
        if began.after_crash:
            logger.warning("started as the permanent generation after a crash during the trial")
        return began

    # -- the old process, after a handoff ----------------------------------------------

    def begin(self, report: HandoffReport) -> None:
        """Put the successor of the handoff ``report`` describes on trial.

        Called right after the handoff succeeded, before the old process serves
        anything more (it only passes requests on from then). A failure is logged: the
        handoff stands, and the successor serves, not on trial.
        """
        if report.outcome != "ready":
            return
        argv = list(self.trial.argv) if self.trial.argv is not None else own_argv()
        try:
            begin_trial(
                self.trial.directory, self.service, report, argv=argv,
                permanent_after=self.trial.permanent_after,
            )
        except StateMigrateError as exc:
            logger.error("the successor serves but is not on trial: %s", exc)

    # -- the new process, once serving ------------------------------------------------

    def watch_blocking(self, revert: Callable[[tuple[str, ...]], HandoffReport]) -> TrialWatch:
        """Start watching; ``revert`` runs in the watcher's thread."""
        self.watch = watch_trial(
            self.trial.directory, self.service, revert=revert, health=self.trial.health,
            poll=self.trial.poll,
        )
        return self.watch

    def watch_on_loop(self, revert: RevertAsync) -> TrialWatch:
        """Start watching; a revert runs ``revert(argv, moved)`` on the running loop.

        The watcher's thread waits until ``moved`` was called (the trial then ends
        ``reverted``) or the coroutine raised (the revert failed: this process serves
        on, still on trial); the coroutine goes on meanwhile with the drain.
        """
        loop = asyncio.get_running_loop()

        def run(argv: tuple[str, ...]) -> HandoffReport:
            moved: concurrent.futures.Future[HandoffReport] = concurrent.futures.Future()

            def tell(report: HandoffReport) -> None:
                if not moved.done():
                    moved.set_result(report)

            async def reverting() -> None:
                try:
                    await revert(argv, tell)
                except BaseException as exc:
                    if not moved.done():
                        moved.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    if not moved.done():
                        moved.set_exception(
                            HandoffError("revert", "ended without handing the state over")
                        )

            def schedule() -> None:
                task = loop.create_task(reverting(), name="statemigrate-revert")
                self._tasks.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._tasks.discard)

            loop.call_soon_threadsafe(schedule)
            return moved.result()

        return self.watch_blocking(run)

    def reverting(self) -> bool:
        """Whether the record says this process is handing back now.

        The watcher's thread writes ``reverting`` before the revert's handoff starts
        on the loop: a stop signal in between must wait for it all the same.
        """
        if self.watch is None:
            return False
        try:
            record = read_trial(self.trial.directory)
        except StateMigrateError:
            return False
        return (
            record is not None and record.state == "reverting" and record.trial is not None
            and record.trial.pid == os.getpid()
        )

    def stop(self) -> None:
        """Stop watching; a revert whose state moved writes its record first."""
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop()

    async def stop_async(self) -> None:
        """:meth:`stop` from the event loop, which the watcher's revert may need."""
        if self.watch is not None:
            await asyncio.to_thread(self.stop)
