"""Trial generations: after a handoff the successor is on trial until made permanent.

Erlang's release handler installs a new release on trial and only
``make_permanent`` makes it the one a restart comes back to. Here the same idea
spans processes through one small record, ``trial.json``, in a private runtime
directory (created 0700, every file 0600, opened without following links):

* the old process, once its :func:`~statemigrate.handoff.hand_over` succeeded, calls
  :func:`begin_trial`: it commits its own state, unchanged since the snapshot it
  handed over and at its own schema versions, to ``permanent/`` beside the record,
  and records itself as the permanent generation (its argv and versions) and the
  successor as the trial generation (pid and start time, ``permanent_after``);
* the successor runs :func:`watch_trial`, a thread that reads the record every
  ``poll`` seconds: it promotes when the trial served ``permanent_after`` seconds and
  the health check passes, and brings the permanent generation back (a hot handoff
  to the recorded argv, through the service's own ``revert`` function) when the
  health check fails or an operator asked for it (:func:`request_revert`);
* :func:`promote_trial` is ``make_permanent``: afterwards a revert is refused;
* a crash during the trial is handled at the next start
  (:mod:`statemigrate.handoff._trialstart`); the record itself lives in
  :mod:`statemigrate.handoff._trialrecord`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from statemigrate._errors import ConfigurationError, StateMigrateError, TrialError
from statemigrate._observe._instruments import TRIAL, emit
from statemigrate._runtime._service import Service
from statemigrate.handoff._report import HandoffReport
from statemigrate.handoff._trialrecord import (
    PERMANENT,
    GenerationInfo,
    TrialRecord,
    argv_of,
    crashed,
    how_it_ended,
    load_record,
    locked,
    read_trial,
    required,
    same_release,
    start_time,
    store_record,
    trial_error,
    trial_pid,
    trial_process_alive,
)
from statemigrate.stores import TmpfsStore

__all__ = [
    "TrialWatch",
    "begin_trial",
    "promote_trial",
    "request_revert",
    "revert_trial",
    "wait_for_trial_end",
    "watch_trial",
]

logger = logging.getLogger("statemigrate.handoff")


# --- the old process: begin a trial --------------------------------------------------


def begin_trial(
    directory: str | os.PathLike[str],
    service: Service,
    report: HandoffReport,
    *,
    argv: Sequence[str],
    permanent_after: float | None = None,
) -> TrialRecord:
    """Put the successor of a successful handoff on trial; call it right after
    :func:`~statemigrate.handoff.hand_over` returned.

    Commits this process's state, which no request changed since the snapshot it
    handed over, at its own schema versions to ``permanent/`` in ``directory``, and
    records this process as the permanent generation (``argv``, ``code_version``,
    versions) and the successor as the trial generation. When this process is itself
    on trial, the permanent generation stays the one before it and the successor
    replaces it on trial.

    Args:
        directory: the trial directory (created 0700 if missing; its parent must exist).
        service: this process's service, handed over.
        report: what ``hand_over`` returned.
        argv: this program's command line, to start the permanent generation again.
        permanent_after: promote once the successor served this many seconds and its
            health check passes; ``None`` waits for :func:`promote_trial`.

    Raises:
        TrialError: the directory is unusable, or the record corrupt.
        ConfigurationError: ``argv`` is empty or ``permanent_after`` is negative.
        StoreError: the permanent state could not be committed.

    Whatever it raises, the handoff stands: the successor serves, but not on trial.
    """
    if isinstance(argv, str) or not argv or not all(isinstance(part, str) for part in argv):
        raise ConfigurationError("argv", "the permanent generation's argv is a non-empty list")
    if permanent_after is not None and not (
        isinstance(permanent_after, int | float) and math.isfinite(permanent_after)
        and permanent_after >= 0
    ):
        raise ConfigurationError(
            "permanent_after", f"a number of seconds >= 0 or None, not {permanent_after!r}"
        )
    if report.outcome != "ready" or report.successor_pid is None:
        raise ConfigurationError("report", "the handoff did not succeed: nothing is on trial")
    pid = report.successor_pid
    trial = GenerationInfo(argv=argv_of(pid) or ("?",), pid=pid, pid_start=start_time(pid))
    with locked(directory, create=True) as (path, fd):
        previous = load_record(path, fd)
        own = previous is not None and previous.on_trial and previous.trial is not None and (
            previous.trial.pid == os.getpid() and trial_process_alive(previous)
        )
        if own and previous is not None:
            record = replace(
                previous, state="trial", trial=trial, started_at=time.time(),
                permanent_after=None if permanent_after is None else float(permanent_after),
                request=None, outcome=None, reason=None, recorded=None,
            )
        else:
            with TmpfsStore(os.path.join(path, PERMANENT)) as store:
                committed = service.commit(store)
            permanent = GenerationInfo(
                argv=tuple(argv),
                code_version=service.code_version,
                versions=service.versions(),
                pid=os.getpid(),
                pid_start=start_time(os.getpid()),
            )
            record = TrialRecord(
                service=service.name,
                state="trial",
                permanent=permanent,
                trial=trial,
                started_at=time.time(),
                permanent_after=None if permanent_after is None else float(permanent_after),
                snapshot_id=committed.snapshot.snapshot_id,
            )
        record = store_record(path, fd, record)
    logger.info("trial begins: %s", record.summary())
    return record


# --- promote and revert --------------------------------------------------------------


def promote_trial(
    directory: str | os.PathLike[str], *, reason: str = "promoted by the operator"
) -> TrialRecord:
    """Make the generation on trial permanent (Erlang's ``make_permanent``).

    From then on a restart runs it and a revert is refused.

    Raises:
        TrialError: no trial runs (never began, promoted, reverted or crashed), a
            revert is under way, or the record is unusable.
    """
    with locked(directory) as (path, fd):
        record = required(path, load_record(path, fd))
        if record.state == "permanent":
            raise trial_error(path, f"no generation is on trial: {how_it_ended(record)}")
        if record.state == "reverting":
            raise trial_error(
                path, "a revert to the permanent generation is under way; promote refused"
            )
        if crashed(record):
            raise trial_error(
                path, f"the trial process (pid {trial_pid(record)}) is gone; restart the service to"
                " run the permanent generation",
            )
        assert record.trial is not None  # a trial record always names its generation
        record = store_record(path, fd, replace(
            record, state="permanent", permanent=record.trial, trial=None, snapshot_id=None,
            request=None, outcome="promoted", reason=reason, recorded=None,
        ))
    logger.info("trial promoted: %s", record.summary())
    return record


def request_revert(directory: str | os.PathLike[str]) -> TrialRecord:
    """Ask the generation on trial to hand back to the permanent generation.

    The trial process's :func:`watch_trial` sees the request within its ``poll``
    interval and runs the revert; :func:`wait_for_trial_end` waits for the outcome.

    Raises:
        TrialError: no trial runs (refused after a promote, with the reason), its
            process is gone, or the record is unusable.
    """
    with locked(directory) as (path, fd):
        record = required(path, load_record(path, fd))
        if record.state == "permanent":
            raise trial_error(
                path, f"revert refused: no generation is on trial; {how_it_ended(record)}"
            )
        if crashed(record):
            raise trial_error(
                path, f"the trial process (pid {trial_pid(record)}) is gone; restart the service to"
                " run the permanent generation",
            )
        if record.state == "trial":
            record = store_record(path, fd, replace(record, request="revert"))
    logger.info("revert requested: %s", record.summary())
    return record


def wait_for_trial_end(
    directory: str | os.PathLike[str], *, timeout: float, poll: float = 0.05
) -> TrialRecord:
    """Wait until the trial ended (``state == "permanent"``) or a revert failed.

    Returns:
        The record: ``outcome`` says how the trial ended. A revert that failed leaves
        the generation on trial, with the request cleared and ``reason`` set.

    Raises:
        TrialError: nothing changed within ``timeout`` seconds, the trial process is
            gone, or the record is unusable.
    """
    deadline = time.monotonic() + timeout
    while True:
        record = required(os.fspath(directory), read_trial(directory))
        if record.state == "permanent" or (record.state == "trial" and record.request is None):
            return record
        if crashed(record):
            raise trial_error(
                os.fspath(directory), f"the trial process (pid {trial_pid(record)}) exited"
                " without handing back; restart the service to run the permanent generation",
            )
        if time.monotonic() >= deadline:
            raise trial_error(
                os.fspath(directory), f"the trial generation did not hand back within"
                f" {timeout:g} s ({record.state})",
            )
        time.sleep(poll)


def revert_trial(directory: str | os.PathLike[str], *, timeout: float = 120.0) -> TrialRecord:
    """Bring the permanent generation back: :func:`request_revert`, then wait for it.

    The generation on trial hands over to the permanent generation's program (a hot
    handoff: no connection refused, the state exported at the versions it reads).

    Returns:
        The record, ``outcome`` ``reverted``. Its ``permanent`` is the generation the
        revert started, as it announced itself; when that is another release than the
        one recorded (its command line chose the release from a file since changed),
        ``recorded`` holds the recorded one and ``mismatch`` says so.

    Raises:
        TrialError: refused (no trial, promoted, the process gone), the revert's
            handoff failed (the generation on trial serves on; ``detail`` has the
            reason), or nothing happened within ``timeout`` seconds (the request is
            then withdrawn).
    """
    path = os.fspath(directory)
    request_revert(path)
    try:
        record = wait_for_trial_end(path, timeout=timeout)
    except TrialError:
        # Nobody picked the request up (no watcher runs?): withdraw it, so that it
        # does not turn into a revert long after the operator gave up on it.
        with locked(path) as (_, fd):
            current = load_record(path, fd)
            if current is not None and current.state == "trial" and current.request:
                store_record(path, fd, replace(current, request=None))
        raise
    if record.state != "permanent" or record.outcome != "reverted":
        raise trial_error(path, record.reason or f"the trial ended {record.outcome}")
    return record


# --- the trial process: the watcher --------------------------------------------------


Revert = Callable[[tuple[str, ...]], object]
"""Hands this process over to the given argv (the permanent generation's program):
``hand_over(service, Spawn(list(argv)), ..., allow_lossy=True)``; returns once the
successor serves, raises if the handoff failed (this process then serves on)."""


class TrialWatch:
    """The trial process's side of a trial: promotes, reverts, and reports.

    Made by :func:`watch_trial`. Its thread reads the record every ``poll`` seconds.

    Attributes:
        directory: the trial directory.
        record: the record as last read (``None`` before the first read).
        outcome: ``promoted`` or ``reverted`` once this process's trial ended.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        service: Service,
        *,
        revert: Revert,
        health: Callable[[], bool] | None,
        poll: float,
    ) -> None:
        self.directory = os.fspath(directory)
        self.service = service
        self.record: TrialRecord | None = None
        self.outcome: str | None = None
        self.last_error: str | None = None
        self._revert = revert
        self._health = health
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statemigrate-trial", daemon=True)
        self._pid = os.getpid()
        self._described = False
        self._reported: bool | None = None
        # The health check decides once: a revert it started that failed is not
        # retried at every poll (each attempt starts a process); the operator decides.
        self._health_decided = False

    @property
    def on_trial(self) -> bool:
        """Whether this process is the generation on trial, as last read."""
        record = self.record
        return (
            record is not None and record.on_trial and record.trial is not None
            and record.trial.pid == self._pid
        )

    def start(self) -> TrialWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (a revert under way finishes first)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _report(self) -> None:
        """Set the ``statemigrate_trial`` gauge when this process's trial changed."""
        now = self.on_trial and self.outcome is None
        if now != self._reported:
            emit(TRIAL, 1.0 if now else 0.0, self.service.name)
            self._reported = now

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.check() is not None:
                    return
            except StateMigrateError as exc:
                if str(exc) != self.last_error:  # once, not every poll
                    logger.warning("trial watch: %s", exc)
                self.last_error = str(exc)
            except Exception:  # a bug must not end the watch silently
                logger.exception("trial watch of %s failed; watching on", self.directory)
            self._stop.wait(self._poll)

    def check(self) -> str | None:
        """Read the record once and act on it; returns the outcome once the trial of
        this process ended (``promoted``, ``reverted``, or ``ended`` when the record
        names another process), else ``None``."""
        # No directory yet: this process was not handed a trial (yet).
        record = read_trial(self.directory) if os.path.lexists(self.directory) else None
        self.record = record
        self._report()
        if record is None:
            return None  # the old process writes the record just after the handoff
        if record.trial is None or record.trial.pid != self._pid:
            if record.permanent.pid == self._pid and record.outcome == "promoted":
                self.outcome = "promoted"
                return self.outcome
            # Not ours: the old process writes the record just after the handoff, and
            # a cold start may be handed a trial later.
            return None
        if record.state == "permanent":
            return self._finish(record.outcome or "ended")
        if not self._described:
            self._describe()
            return None
        if record.request == "revert":
            return self.revert("revert requested by the operator")
        after = record.permanent_after
        if (
            after is not None and not self._health_decided
            and time.time() - (record.started_at or 0.0) >= after
        ):
            self._health_decided = True
            healthy, why = self._healthy()
            if healthy:
                promote_trial(self.directory, reason=f"served {after:g} s{why}")
                return self._finish("promoted")
            return self.revert(f"health check failed after {after:g} s{why}")
        return None

    def _finish(self, outcome: str) -> str:
        self.outcome = outcome
        self._report()
        return outcome

    def _describe(self) -> None:
        """Fill in the trial generation's code version and schema versions."""
        with locked(self.directory) as (path, fd):
            record = required(path, load_record(path, fd))
            if record.trial is not None and record.trial.pid == self._pid:
                trial = replace(
                    record.trial,
                    code_version=self.service.code_version,
                    versions=self.service.versions(),
                )
                self.record = store_record(path, fd, replace(record, trial=trial))
        self._described = True

    def _healthy(self) -> tuple[bool, str]:
        if self._health is None:
            return True, ""
        try:
            answer = self._health()
        except Exception as exc:  # a health check that raises has failed
            return False, f": {type(exc).__name__}: {exc}"
        return bool(answer), "" if answer else ": the health check returned False"

    def revert(self, reason: str) -> str | None:
        """Hand this process back to the permanent generation now.

        Returns:
            ``reverted``, or ``None`` when the handoff failed (this process serves on,
            still on trial, the error in the record's ``reason``).

        Raises:
            TrialError: this process is not (or no longer) on trial.
        """
        with locked(self.directory) as (path, fd):
            record = required(path, load_record(path, fd))
            if record.state != "trial" or record.trial is None or record.trial.pid != self._pid:
                raise trial_error(
                    path, f"this process is not on trial; revert refused ({how_it_ended(record)})"
                )
            record = store_record(path, fd, replace(record, state="reverting", request=None))
        logger.info("trial reverting (%s): %s", reason, record.summary())
        try:
            result = self._revert(record.permanent.argv)
        except Exception as exc:
            detail = f"revert failed: {type(exc).__name__}: {exc}"
            logger.error("trial of %s: %s", record.service, detail)
            with locked(self.directory) as (path, fd):
                current = required(path, load_record(path, fd))
                self.record = store_record(path, fd, replace(current, state="trial", reason=detail))
            return None
        with locked(self.directory) as (path, fd):
            current = required(path, load_record(path, fd))
            permanent = current.permanent
            if isinstance(result, HandoffReport):
                permanent = _announced(permanent, result)
            recorded = None if same_release(permanent, current.permanent) else current.permanent
            self.record = store_record(path, fd, replace(
                current, state="permanent", permanent=permanent, trial=None, request=None,
                outcome="reverted", reason=reason, recorded=recorded,
            ))
        if self.record.mismatch:
            logger.warning("trial of %s: %s", record.service, self.record.mismatch)
        logger.info("trial reverted: %s", self.record.summary())
        return self._finish("reverted")


def _announced(recorded: GenerationInfo, report: HandoffReport) -> GenerationInfo:
    """The generation a revert's handoff started, as its successor announced itself.

    The recorded argv stays (it is what started it); pid, ``code_version`` and versions
    come from the successor's HELLO, where it announced them (an older release does
    not: the recorded ones stay, unchecked).
    """
    generation = recorded
    if report.successor_pid is not None:
        pid = report.successor_pid
        generation = replace(generation, pid=pid, pid_start=start_time(pid))
    if report.successor_versions:
        generation = replace(
            generation,
            versions=dict(report.successor_versions),
            code_version=report.successor_code_version,
        )
    return generation


def watch_trial(
    directory: str | os.PathLike[str],
    service: Service,
    *,
    revert: Revert,
    health: Callable[[], bool] | None = None,
    poll: float = 0.2,
) -> TrialWatch:
    """Start watching this process's trial; call it once it serves after a take-over.

    A thread reads the record every ``poll`` seconds. While the record names this
    process as the generation on trial it:

    * promotes once the trial served ``permanent_after`` seconds and ``health()``
      returns True (no ``health``: the time alone);
    * reverts (calls ``revert(permanent_argv)``) when ``health()`` returns False or
      raises then, or as soon as an operator asked for it (:func:`request_revert`,
      ``statemigrate trial revert``).

    ``revert`` runs in the watcher's thread; an asyncio service schedules its
    ``hand_over_async`` on its loop (``asyncio.run_coroutine_threadsafe(...).result()``).
    A process that was not handed a trial (a cold start, or a record naming another
    process) just watches until it is.

    Raises:
        ConfigurationError: ``poll`` is not a positive number.
    """
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not poll > 0:
        raise ConfigurationError("poll", f"a positive number of seconds, not {poll!r}")
    return TrialWatch(directory, service, revert=revert, health=health, poll=poll).start()
