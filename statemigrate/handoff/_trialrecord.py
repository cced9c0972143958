"""The trial record: one JSON file per service in a private runtime directory.

``trial.json`` names the permanent generation and the generation on trial (see
:mod:`statemigrate.handoff._trial`). The directory is created 0700 and opened without
following links, and the record is judged by ``fstat`` of the opened file (0600, ours,
one link), as the stores judge a snapshot. Changes take an ``flock`` on the directory
and replace the file atomically (a new file, fsynced, renamed over it), so the command
line and the trial process never lose each other's changes and a reader never sees
half a record. Everything read back is checked field by field: a corrupt record is a
:class:`~statemigrate.TrialError`, never a foreign exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from statemigrate._errors import StoreError, TrialError
from statemigrate._proc import start_ticks
from statemigrate.stores._safedir import check_file, open_private_directory

__all__ = [
    "PERMANENT",
    "RECORD",
    "GenerationInfo",
    "TrialRecord",
    "TrialState",
    "argv_of",
    "crashed",
    "how_it_ended",
    "load_record",
    "locked",
    "read_trial",
    "required",
    "same_release",
    "start_time",
    "store_record",
    "trial_error",
    "trial_pid",
    "trial_process_alive",
]

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
        recorded: after a revert that brought back another release than the one
            recorded (the successor's HELLO announced another ``code_version`` or
            other schema versions, as when the permanent command line reads the
            release from a file since changed): the permanent generation as it was
            recorded; ``permanent`` then says what the successor announced.
            ``None`` otherwise.
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
    recorded: GenerationInfo | None = None

    @property
    def on_trial(self) -> bool:
        """Whether a generation is on trial (or handing back from it)."""
        return self.state != "permanent"

    @property
    def mismatch(self) -> str | None:
        """After a revert that brought back another release than recorded, a sentence
        naming both; ``None`` otherwise."""
        if self.recorded is None:
            return None
        return (
            f"the revert brought back {_release(self.permanent)}, not the recorded"
            f" permanent generation {_release(self.recorded)}"
        )

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
            "recorded": None if self.recorded is None else self.recorded.to_plain(),
        }

    def summary(self) -> str:
        """One line, as the command line and the log print it."""
        permanent = _describe(self.permanent)
        if self.trial is None or not self.on_trial:
            ended = f"; last trial {self.outcome}" if self.outcome else ""
            why = f" ({self.reason})" if self.reason else ""
            mismatch = f"; {self.mismatch}" if self.mismatch else ""
            return f"{self.service}: permanent {permanent}{ended}{why}{mismatch}"
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


def _release(generation: GenerationInfo) -> str:
    """A generation's release without its pid: ``release-3 (kvcache v3)``."""
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(generation.versions.items()))
    name = generation.code_version or "code version unknown"
    return f"{name} ({versions})" if versions else name


def same_release(announced: GenerationInfo, recorded: GenerationInfo) -> bool:
    """Whether a successor's announced release is the recorded one: the same
    ``code_version`` and schema versions, where both sides know them."""
    if announced.code_version and recorded.code_version:
        if announced.code_version != recorded.code_version:
            return False
    if announced.versions and recorded.versions:
        if dict(announced.versions) != dict(recorded.versions):
            return False
    return True


# --- processes -----------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    return start_ticks(pid)


def argv_of(pid: int) -> tuple[str, ...] | None:
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
    started = start_time(trial.pid)
    return started is not None and (trial.pid_start is None or started == trial.pid_start)


def crashed(record: TrialRecord) -> bool:
    return record.on_trial and not trial_process_alive(record)


# --- the record on disk --------------------------------------------------------------


def trial_error(directory: str, detail: str) -> TrialError:
    return TrialError(directory, detail)


@contextlib.contextmanager
def _directory(directory: str | os.PathLike[str], *, create: bool) -> Iterator[tuple[str, int]]:
    """The trial directory's descriptor, checked private (created when ``create``)."""
    path = os.fspath(directory)
    if not path:
        raise trial_error(path, "no directory given")
    if not create:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise trial_error(path, f"cannot open it: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise trial_error(path, "is not a directory")
    try:
        fd = open_private_directory(path, kind="trial directory")
    except StoreError as exc:
        raise trial_error(path, exc.detail) from exc
    try:
        yield path, fd
    finally:
        os.close(fd)


def load_record(path: str, fd: int) -> TrialRecord | None:
    try:
        record_fd = os.open(RECORD, _READ_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise trial_error(path, f"cannot open {RECORD}: {exc.strerror}") from exc
    try:
        try:
            check_file(
                os.fstat(record_fd),
                op="open",
                where=RECORD,
                max_size=_MAX_RECORD,
                kind="trial record",
            )
        except StoreError as exc:
            raise trial_error(path, f"{RECORD} {exc.detail}") from exc
        with os.fdopen(os.dup(record_fd), "rb") as stream:
            raw = stream.read(_MAX_RECORD + 1)
    except OSError as exc:
        raise trial_error(path, f"cannot read {RECORD}: {exc.strerror}") from exc
    finally:
        os.close(record_fd)
    return _parse(path, raw)


def _parse(path: str, raw: bytes) -> TrialRecord:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise trial_error(path, f"{RECORD} is corrupt: not JSON ({exc})") from exc
    try:
        return _record_of(data)
    except (TypeError, ValueError) as exc:
        raise trial_error(path, f"{RECORD} is corrupt: {exc}") from exc


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
        # Absent from the records of older releases.
        recorded=None
        if data.get("recorded") is None
        else _generation_of(data["recorded"], "recorded"),
    )


def store_record(path: str, fd: int, record: TrialRecord) -> TrialRecord:
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
        raise trial_error(path, f"cannot write {RECORD}: {exc.strerror}") from exc
    return record


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str], *, create: bool = False) -> Iterator[tuple[str, int]]:
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
        return load_record(path, fd)


def required(path: str, record: TrialRecord | None) -> TrialRecord:
    if record is None:
        raise trial_error(path, f"no {RECORD}: no handoff began a trial here")
    return record


def trial_pid(record: TrialRecord) -> int | None:
    return None if record.trial is None else record.trial.pid


def how_it_ended(record: TrialRecord) -> str:
    if record.outcome is None:
        return "no trial ever began here"
    why = f" ({record.reason})" if record.reason else ""
    return f"the last trial ended {record.outcome}{why}"
