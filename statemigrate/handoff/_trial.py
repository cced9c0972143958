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
* a process started cold calls :func:`start_generation`: when the record shows a
  trial whose process died without handing over (``kill -9``, a crash), the
  restart is the permanent generation's and restores the permanent state (or a
  newer checkpoint its code can read); :func:`generation_to_run` tells a launcher
  which argv that is.

Changes of the record take an ``flock`` on the directory and replace the file
atomically (a new file renamed over it), so the command line and the watcher never
lose each other's changes and a reader never sees half a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from statemigrate._errors import (
    ConfigurationError,
    RestoreError,
    StateMigrateError,
    StoreError,
    TrialError,
)
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._service import Service
from statemigrate._snapshot._format import open_snapshot
from statemigrate.handoff._report import HandoffReport
from statemigrate.stores import Store, TmpfsStore
from statemigrate.stores._safedir import check_file, open_private_directory

__all__ = [
    "GenerationInfo",
    "GenerationStart",
    "TrialRecord",
    "TrialState",
    "TrialWatch",
    "begin_trial",
    "generation_to_run",
    "promote_trial",
    "read_trial",
    "request_revert",
    "revert_trial",
    "start_generation",
    "trial_process_alive",
    "wait_for_trial_end",
    "watch_trial",
]

logger = logging.getLogger("statemigrate.handoff")

RECORD = "trial.json"
PERMANENT = "permanent"
"""The TmpfsStore directory, inside the trial directory, of the permanent state."""

_FORMAT = 1
_MAX_RECORD = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

TrialState = Literal["trial", "reverting", "permanent"]
"""``trial``: a generation is on trial; ``reverting``: it is handing back to the
permanent generation; ``permanent``: no trial runs (see ``outcome``)."""


@dataclass(frozen=True, slots=True)
class GenerationInfo:
    """One generation of a service, as the trial record keeps it.

    Attributes:
        argv: the program's command line (the permanent generation is started again
            with it).
        code_version: the service's ``code_version`` (empty until known).
        versions: the live schema version of each component (empty until known).
        pid: the process, while it runs.
        pid_start: its start time in clock ticks since boot (``/proc/PID/stat``), so
            that a reused pid is never taken for the same process.
    """

    argv: tuple[str, ...]
    code_version: str = ""
    versions: Mapping[str, int] = field(default_factory=dict)
    pid: int | None = None
    pid_start: int | None = None

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "argv": list(self.argv),
            "code_version": self.code_version,
            "versions": dict(self.versions),
            "pid": self.pid,
            "pid_start": self.pid_start,
        }


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """The trial record of one service.

    Attributes:
        service: the service's name.
        state: see :data:`TrialState`.
        permanent: the generation a restart or a revert comes back to.
        trial: the generation on trial (``None`` once the trial ended).
        started_at: when the trial began (Unix time).
        permanent_after: seconds of service after which the trial is made permanent
            if the health check passes; ``None``: only an operator promotes.
        snapshot_id: the snapshot in ``permanent/`` holding the permanent state
            (``None`` after a promote: the permanent generation then owns its state).
        request: ``"revert"`` while a revert is asked for and not yet begun.
        outcome: how the last trial ended: ``promoted``, ``reverted`` or ``crashed``.
        reason: why (who promoted, the health check's answer, the revert's error).
        updated_at: when the record was last written (Unix time).
    """

    service: str
    state: TrialState
    permanent: GenerationInfo
    trial: GenerationInfo | None = None
    started_at: float | None = None
    permanent_after: float | None = None
    snapshot_id: str | None = None
    request: Literal["revert"] | None = None
    outcome: Literal["promoted", "reverted", "crashed"] | None = None
    reason: str | None = None
    updated_at: float = 0.0

    @property
    def on_trial(self) -> bool:
        """Whether a generation is on trial (or handing back from it)."""
        return self.state != "permanent"

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready data, as the record file holds it."""
        return {
            "format": _FORMAT,
            "service": self.service,
            "state": self.state,
            "permanent": self.permanent.to_plain(),
            "trial": None if self.trial is None else self.trial.to_plain(),
            "started_at": self.started_at,
            "permanent_after": self.permanent_after,
            "snapshot_id": self.snapshot_id,
            "request": self.request,
            "outcome": self.outcome,
            "reason": self.reason,
            "updated_at": self.updated_at,
        }

    def summary(self) -> str:
        """One line, as the command line and the log print it."""
        permanent = _describe(self.permanent)
        if self.trial is None or not self.on_trial:
            ended = f"; last trial {self.outcome}" if self.outcome else ""
            why = f" ({self.reason})" if self.reason else ""
            return f"{self.service}: permanent {permanent}{ended}{why}"
        age = max(0.0, time.time() - (self.started_at or time.time()))
        after = (
            f", permanent after {self.permanent_after:g} s"
            if self.permanent_after is not None
            else ", until promoted"
        )
        request = ", revert requested" if self.request else ""
        return (
            f"{self.service}: {self.state} {_describe(self.trial)} for {age:.1f} s{after}"
            f"{request}; permanent {permanent}"
        )


def _describe(generation: GenerationInfo) -> str:
    parts = []
    if generation.code_version:
        parts.append(generation.code_version)
    if generation.pid is not None:
        parts.append(f"pid {generation.pid}")
    if generation.versions:
        parts.append(", ".join(f"{k} v{v}" for k, v in sorted(generation.versions.items())))
    return f"({'; '.join(parts)})" if parts else f"({' '.join(generation.argv)[:80]})"


# --- processes -----------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            raw = stat_file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        if fields[0] == b"Z":  # a zombie has exited: it serves nobody
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _argv_of(pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return None
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return tuple(os.fsdecode(part) for part in parts) or None


def trial_process_alive(record: TrialRecord) -> bool:
    """Whether the trial generation's process still runs (the same process, not a
    later one that reuses its pid)."""
    trial = record.trial
    if trial is None or trial.pid is None:
        return False
    started = _start_time(trial.pid)
    return started is not None and (trial.pid_start is None or started == trial.pid_start)


def _crashed(record: TrialRecord) -> bool:
    return record.on_trial and not trial_process_alive(record)


# --- the record on disk --------------------------------------------------------------


def _fail(directory: str, detail: str) -> TrialError:
    return TrialError(directory, detail)


@contextlib.contextmanager
def _directory(directory: str | os.PathLike[str], *, create: bool) -> Iterator[tuple[str, int]]:
    """The trial directory's descriptor, checked private (created when ``create``)."""
    path = os.fspath(directory)
    if not path:
        raise _fail(path, "no directory given")
    if not create:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise _fail(path, f"cannot open it: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise _fail(path, "is not a directory")
    try:
        fd = open_private_directory(path)
    except StoreError as exc:
        raise _fail(path, exc.detail) from exc
    try:
        yield path, fd
    finally:
        os.close(fd)


def _load(path: str, fd: int) -> TrialRecord | None:
    try:
        record_fd = os.open(RECORD, _READ_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(path, f"cannot open {RECORD}: {exc.strerror}") from exc
    try:
        try:
            check_file(os.fstat(record_fd), op="open", where=RECORD, max_size=_MAX_RECORD)
        except StoreError as exc:
            raise _fail(path, f"{RECORD} {exc.detail}") from exc
        with os.fdopen(os.dup(record_fd), "rb") as stream:
            raw = stream.read(_MAX_RECORD + 1)
    except OSError as exc:
        raise _fail(path, f"cannot read {RECORD}: {exc.strerror}") from exc
    finally:
        os.close(record_fd)
    return _parse(path, raw)


def _parse(path: str, raw: bytes) -> TrialRecord:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(path, f"{RECORD} is corrupt: not JSON ({exc})") from exc
    try:
        return _record_of(data)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"{RECORD} is corrupt: {exc}") from exc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _get(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, null: bool = False
) -> Any:
    if key not in data:
        raise ValueError(f"field {key!r} is missing")
    value = data[key]
    if value is None and null:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TypeError(f"field {key!r} is {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"field {key!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"field {key!r} is not finite")
    return value


def _generation_of(data: object, key: str) -> GenerationInfo:
    if not isinstance(data, dict):
        raise TypeError(f"field {key!r} is not an object")
    argv = _get(data, "argv", list)
    if not argv or not all(isinstance(part, str) for part in argv):
        raise ValueError(f"field {key}.argv is not a non-empty list of strings")
    versions = _get(data, "versions", dict)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in versions.values()):
        raise ValueError(f"field {key}.versions holds a version that is not an integer")
    pid = _get(data, "pid", int, null=True)
    if pid is not None and not 0 < pid < 1 << 31:
        raise ValueError(f"field {key}.pid is {pid}")
    return GenerationInfo(
        argv=tuple(argv),
        code_version=_get(data, "code_version", str),
        versions=dict(versions),
        pid=pid,
        pid_start=_get(data, "pid_start", int, null=True),
    )


def _record_of(data: object) -> TrialRecord:
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    if _get(data, "format", int) != _FORMAT:
        raise ValueError(f"format {data['format']} is not {_FORMAT}")
    state = _get(data, "state", str)
    if state not in ("trial", "reverting", "permanent"):
        raise ValueError(f"state {state[:40]!r} is unknown")
    trial = None if data.get("trial") is None else _generation_of(data["trial"], "trial")
    if state != "permanent" and (trial is None or trial.pid is None):
        raise ValueError(f"state {state!r} without a trial process")
    request = _get(data, "request", str, null=True)
    if request not in (None, "revert"):
        raise ValueError(f"request {request[:40]!r} is unknown")
    outcome = _get(data, "outcome", str, null=True)
    if outcome not in (None, "promoted", "reverted", "crashed"):
        raise ValueError(f"outcome {outcome[:40]!r} is unknown")
    after = _get(data, "permanent_after", (int, float), null=True)
    if after is not None and after < 0:
        raise ValueError(f"permanent_after is {after}")
    return TrialRecord(
        service=_get(data, "service", str),
        state=state,
        permanent=_generation_of(data.get("permanent"), "permanent"),
        trial=trial,
        started_at=_get(data, "started_at", (int, float), null=True),
        permanent_after=None if after is None else float(after),
        snapshot_id=_get(data, "snapshot_id", str, null=True),
        request=request,
        outcome=outcome,
        reason=_get(data, "reason", str, null=True),
        updated_at=float(_get(data, "updated_at", (int, float))),
    )


def _store(path: str, fd: int, record: TrialRecord) -> TrialRecord:
    """Replace the record atomically: write a new file, fsync it, rename it over."""
    record = replace(record, updated_at=time.time())
    body = json.dumps(record.to_plain(), indent=1).encode() + b"\n"
    temp = f".{RECORD}.{os.getpid()}.{secrets.token_hex(8)}"
    try:
        temp_fd = os.open(temp, _WRITE_FLAGS, 0o600, dir_fd=fd)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(temp_fd, view) :]
            os.fsync(temp_fd)
        finally:
            os.close(temp_fd)
        os.rename(temp, RECORD, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=fd)
        raise _fail(path, f"cannot write {RECORD}: {exc.strerror}") from exc
    return record


@contextlib.contextmanager
def _locked(
    directory: str | os.PathLike[str], *, create: bool = False
) -> Iterator[tuple[str, int]]:
    """The directory, with the record's lock held (an ``flock`` of the directory)."""
    with _directory(directory, create=create) as (path, fd):
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path, fd  # the lock goes with the descriptor


def read_trial(directory: str | os.PathLike[str]) -> TrialRecord | None:
    """The trial record in ``directory``; ``None`` when none was written yet.

    Raises:
        TrialError: the directory is missing, not private, or the record is corrupt.
    """
    with _directory(directory, create=False) as (path, fd):
        return _load(path, fd)


def _required(path: str, record: TrialRecord | None) -> TrialRecord:
    if record is None:
        raise _fail(path, f"no {RECORD}: no handoff began a trial here")
    return record


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
            health check passes; ``None`` waits for :func:`promote`.

    Raises:
        TrialError: the directory is unusable, or the record corrupt.
        ConfigurationError: ``argv`` is empty or ``permanent_after`` is negative.
        StoreError: the permanent state could not be committed.
    """
    if not argv or not all(isinstance(part, str) for part in argv):
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
    trial = GenerationInfo(argv=_argv_of(pid) or ("?",), pid=pid, pid_start=_start_time(pid))
    with _locked(directory, create=True) as (path, fd):
        previous = _load(path, fd)
        own = previous is not None and previous.on_trial and previous.trial is not None and (
            previous.trial.pid == os.getpid() and trial_process_alive(previous)
        )
        if own and previous is not None:
            record = replace(
                previous, state="trial", trial=trial, started_at=time.time(),
                permanent_after=permanent_after, request=None, outcome=None, reason=None,
            )
        else:
            with TmpfsStore(os.path.join(path, PERMANENT)) as store:
                committed = service.commit(store)
            permanent = GenerationInfo(
                argv=tuple(argv),
                code_version=service.code_version,
                versions=service.versions(),
                pid=os.getpid(),
                pid_start=_start_time(os.getpid()),
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
        record = _store(path, fd, record)
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
    with _locked(directory) as (path, fd):
        record = _required(path, _load(path, fd))
        if record.state == "permanent":
            raise _fail(path, f"no generation is on trial: {_ended(record)}")
        if record.state == "reverting":
            raise _fail(path, "a revert to the permanent generation is under way; promote refused")
        if _crashed(record):
            raise _fail(
                path, f"the trial process (pid {_pid(record)}) is gone; restart the service to"
                " run the permanent generation",
            )
        assert record.trial is not None  # a trial record always names its generation
        record = _store(path, fd, replace(
            record, state="permanent", permanent=record.trial, trial=None, snapshot_id=None,
            request=None, outcome="promoted", reason=reason,
        ))
    logger.info("trial promoted: %s", record.summary())
    return record


def _pid(record: TrialRecord) -> int | None:
    return None if record.trial is None else record.trial.pid


def _ended(record: TrialRecord) -> str:
    if record.outcome is None:
        return "no trial ever began here"
    why = f" ({record.reason})" if record.reason else ""
    return f"the last trial ended {record.outcome}{why}"


def request_revert(directory: str | os.PathLike[str]) -> TrialRecord:
    """Ask the generation on trial to hand back to the permanent generation.

    The trial process's :func:`watch_trial` sees the request within its ``poll``
    interval and runs the revert; :func:`wait_for_trial_end` waits for the outcome.

    Raises:
        TrialError: no trial runs (refused after a promote, with the reason), its
            process is gone, or the record is unusable.
    """
    with _locked(directory) as (path, fd):
        record = _required(path, _load(path, fd))
        if record.state == "permanent":
            raise _fail(path, f"revert refused: no generation is on trial; {_ended(record)}")
        if _crashed(record):
            raise _fail(
                path, f"the trial process (pid {_pid(record)}) is gone; restart the service to"
                " run the permanent generation",
            )
        if record.state == "trial":
            record = _store(path, fd, replace(record, request="revert"))
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
        record = _required(os.fspath(directory), read_trial(directory))
        if record.state == "permanent" or (record.state == "trial" and record.request is None):
            return record
        if _crashed(record):
            raise _fail(
                os.fspath(directory), f"the trial process (pid {_pid(record)}) exited"
                " without handing back; restart the service to run the permanent generation",
            )
        if time.monotonic() >= deadline:
            raise _fail(
                os.fspath(directory), f"the trial generation did not hand back within"
                f" {timeout:g} s ({record.state})",
            )
        time.sleep(poll)


def revert_trial(directory: str | os.PathLike[str], *, timeout: float = 120.0) -> TrialRecord:
    """Bring the permanent generation back: :func:`request_revert`, then wait for it.

    The generation on trial hands over to the permanent generation's program (a hot
    handoff: no connection refused, the state exported at the versions it reads).

    Returns:
        The record, ``outcome`` ``reverted``.

    Raises:
        TrialError: refused (no trial, promoted, the process gone), the revert's
            handoff failed (the generation on trial serves on; ``detail`` has the
            reason), or nothing happened within ``timeout`` seconds.
    """
    path = os.fspath(directory)
    request_revert(path)
    record = wait_for_trial_end(path, timeout=timeout)
    if record.state != "permanent" or record.outcome != "reverted":
        raise _fail(path, record.reason or f"the trial ended {record.outcome}")
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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.check() is not None:
                    return
            except StateMigrateError as exc:
                if exc.__class__ is not TrialError or str(exc) != self.last_error:
                    logger.warning("trial watch: %s", exc)
                self.last_error = str(exc)
            self._stop.wait(self._poll)

    def check(self) -> str | None:
        """Read the record once and act on it; returns the outcome once the trial of
        this process ended (``promoted``, ``reverted``, or ``ended`` when the record
        names another process), else ``None``."""
        # No directory yet: this process was not handed a trial (yet).
        record = read_trial(self.directory) if os.path.lexists(self.directory) else None
        self.record = record
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
            return self._ended(record.outcome or "ended")
        if not self._described:
            self._describe()
            return None
        if record.request == "revert":
            return self.revert("revert requested by the operator")
        after = record.permanent_after
        if after is not None and time.time() - (record.started_at or 0.0) >= after:
            healthy, why = self._healthy()
            if healthy:
                promote_trial(self.directory, reason=f"served {after:g} s{why}")
                return self._ended("promoted")
            return self.revert(f"health check failed after {after:g} s{why}")
        return None

    def _ended(self, outcome: str) -> str:
        self.outcome = outcome
        return outcome

    def _describe(self) -> None:
        """Fill in the trial generation's code version and schema versions."""
        with _locked(self.directory) as (path, fd):
            record = _required(path, _load(path, fd))
            if record.trial is not None and record.trial.pid == self._pid:
                trial = replace(
                    record.trial,
                    code_version=self.service.code_version,
                    versions=self.service.versions(),
                )
                self.record = _store(path, fd, replace(record, trial=trial))
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
        """
        with _locked(self.directory) as (path, fd):
            record = _required(path, _load(path, fd))
            if record.state != "trial" or record.trial is None or record.trial.pid != self._pid:
                raise _fail(
                    path, f"this process is not on trial; revert refused ({_ended(record)})"
                )
            record = _store(path, fd, replace(record, state="reverting", request=None))
        logger.info("trial reverting (%s): %s", reason, record.summary())
        try:
            result = self._revert(record.permanent.argv)
        except Exception as exc:
            detail = f"revert failed: {type(exc).__name__}: {exc}"
            logger.error("trial of %s: %s", record.service, detail)
            with _locked(self.directory) as (path, fd):
                current = _required(path, _load(path, fd))
                self.record = _store(path, fd, replace(current, state="trial", reason=detail))
            return None
        with _locked(self.directory) as (path, fd):
            current = _required(path, _load(path, fd))
            permanent = current.permanent
            if isinstance(result, HandoffReport) and result.successor_pid is not None:
                pid = result.successor_pid
                permanent = replace(permanent, pid=pid, pid_start=_start_time(pid))
            self.record = _store(path, fd, replace(
                current, state="permanent", permanent=permanent, trial=None, request=None,
                outcome="reverted", reason=reason,
            ))
        logger.info("trial reverted: %s", self.record.summary())
        return self._ended("reverted")


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


# --- starting a process --------------------------------------------------------------


def generation_to_run(
    directory: str | os.PathLike[str], argv: Sequence[str]
) -> tuple[tuple[str, ...], str]:
    """The command line a service manager's (re)start should run, and why.

    ``argv`` unless the record shows a trial whose process is gone (a crash during
    the trial): then the permanent generation's recorded argv. A missing directory or
    record means no trial: ``argv``.

    Raises:
        TrialError: the generation on trial still runs (a second start is refused), or
            the record is unusable.
    """
    path = os.fspath(directory)
    if not os.path.lexists(path):
        return tuple(argv), "no trial directory"
    record = read_trial(path)
    if record is None or not record.on_trial:
        return tuple(argv), "no generation on trial"
    if trial_process_alive(record):
        raise _fail(
            path, f"generation pid {_pid(record)} is on trial and running; refusing to start"
            " another",
        )
    return record.permanent.argv, (
        f"the trial generation (pid {_pid(record)}) died during its trial: running the"
        " permanent generation"
    )


@dataclass(frozen=True, slots=True)
class GenerationStart:
    """What :func:`start_generation` did.

    Attributes:
        after_crash: the generation on trial had died; this start is the permanent
            generation's, restored from the permanent state.
        source: what was restored: ``permanent``, ``checkpoint`` or ``store`` (the
            ``checkpoints`` store on an ordinary start), or ``cold``.
        restore: the restore's report (``None`` on a cold start).
        record: the trial record after the start (``None`` without one).
    """

    after_crash: bool
    source: Literal["permanent", "checkpoint", "store", "cold"]
    restore: RestoreReport | None
    record: TrialRecord | None


def start_generation(
    directory: str | os.PathLike[str],
    service: Service,
    *,
    checkpoints: Store | None = None,
) -> GenerationStart:
    """Restore ``service`` at a start without a handoff; the entry point's cold path.

    When the record shows a trial whose process died without handing back (``kill
    -9``, a crash, the OOM killer), this start must be the permanent generation: the
    state is the permanent one, or the latest checkpoint in ``checkpoints`` when the
    trial process committed one and this code reads it (downgraded through the
    registered steps, lossy ones allowed: the permanent code cannot hold more); the
    record then says the trial ``crashed``. Otherwise this is
    ``service.start_from(checkpoints)``.

    Raises:
        TrialError: this code is not the permanent generation's (start it with
            ``statemigrate trial exec``), the trial process still runs, or the record
            is unusable.
        RestoreError: the permanent state cannot be restored.
    """
    path = os.fspath(directory)
    record = read_trial(path) if os.path.lexists(path) else None
    if record is None or not record.on_trial:
        report = service.start_from(checkpoints)
        return GenerationStart(False, "cold" if report is None else "store", report, record)
    if trial_process_alive(record):
        raise _fail(
            path, f"generation pid {_pid(record)} is on trial and running; refusing to start"
            " another",
        )
    permanent = record.permanent
    if permanent.code_version and service.code_version != permanent.code_version:
        raise _fail(
            path, f"the trial generation died; this is code version {service.code_version!r},"
            f" the permanent generation is {permanent.code_version!r}: start it with"
            " statemigrate trial exec",
        )
    source: Literal["permanent", "checkpoint"] = "permanent"
    report = _restore_checkpoint(path, service, record, checkpoints)
    if report is not None:
        source = "checkpoint"
    else:
        report = _restore_permanent(path, service, record)
    with _locked(path) as (_, fd):
        current = _required(path, _load(path, fd))
        pid = _pid(record)
        current = _store(path, fd, replace(
            current, state="permanent", trial=None, request=None, outcome="crashed",
            reason=f"the trial process (pid {pid}) died; restarted as the permanent"
            f" generation from its {source} state",
            permanent=replace(
                current.permanent, pid=os.getpid(), pid_start=_start_time(os.getpid())
            ),
        ))
    logger.warning("%s", current.reason)
    return GenerationStart(True, source, report, current)


def _restore_checkpoint(
    path: str, service: Service, record: TrialRecord, checkpoints: Store | None
) -> RestoreReport | None:
    """The trial's latest checkpoint, when it committed one that this code reads."""
    if checkpoints is None or record.trial is None:
        return None
    try:
        data = checkpoints.open()
        header = open_snapshot(data, key=service._key, limits=service._limits).header
    except StateMigrateError as exc:
        logger.info("no checkpoint of the trial to restore (%s)", exc)
        return None
    began = record.started_at or 0.0
    if header.producer.pid != record.trial.pid or header.created_ns / 1e9 < began:
        return None  # not written by the trial generation: the permanent state is newer
    try:
        return service.restore(data, allow_lossy=True)
    except RestoreError as exc:
        logger.warning(
            "the trial's checkpoint cannot be restored by this code (%s); restoring the"
            " permanent state", exc,
        )
        return None


def _restore_permanent(path: str, service: Service, record: TrialRecord) -> RestoreReport:
    """The permanent state committed when the trial began, checked to be that one."""
    try:
        with TmpfsStore(os.path.join(path, PERMANENT)) as store:
            data = store.open()
        found = open_snapshot(data, key=service._key, limits=service._limits).header.snapshot_id
    except StateMigrateError as exc:
        raise _fail(path, f"the permanent state cannot be read: {exc}") from exc
    if record.snapshot_id is not None and found != record.snapshot_id:
        raise _fail(
            path, f"the permanent state is snapshot {found[:12]}, the record names"
            f" {record.snapshot_id[:12]}; refusing to restore another generation's state",
        )
    return service.restore(data)
