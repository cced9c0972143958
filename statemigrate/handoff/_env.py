"""Naming inherited descriptors in the environment, the way systemd does.

A successor learns which inherited descriptor is which from two variables::

    STATEMIGRATE_FDS=http=5:admin=6:control=7
    STATEMIGRATE_PARENT_PID=4242

The parent pid plays the part of systemd's ``LISTEN_PID``: descriptors named for
another process's child are not ours to take. The successor removes both variables
once it has read them, so its own children never see stale numbers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from statemigrate._errors import HandoffError
from statemigrate._runtime._gate import FDS_VAR, note_descriptors_taken, started_by_handoff
from statemigrate.handoff._predecessor import died_before_state, running

__all__ = [
    "CONTROL_NAME",
    "FDS_VAR",
    "PARENT_PID_VAR",
    "NamedFds",
    "check_name",
    "format_fds",
    "parse_count",
    "parse_fds",
    "parse_pid",
    "show_value",
    "started_by_handoff",
    "successor_environ",
    "take_environ",
]

PARENT_PID_VAR = "STATEMIGRATE_PARENT_PID"
#: The name reserved for the control channel.
CONTROL_NAME = "control"

# Variables that name descriptors of *this* process; a child must never inherit them.
_DESCRIPTOR_VARS = (FDS_VAR, PARENT_PID_VAR, "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")

# Same alphabet as systemd's FDNAME= (minus ':' which separates entries here).
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: Descriptor numbers and pids are C ints: nothing above this can be one.
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class NamedFds:
    """Descriptors named in the environment, and who named them."""

    fds: dict[str, int]
    parent_pid: int


def check_name(name: str, *, stage: str = "start") -> None:
    """Check that ``name`` can be used for a descriptor.

    Raises:
        HandoffError: it is empty, longer than 64 characters, or has characters
            outside ``A-Z a-z 0-9 _ . -``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HandoffError(
            stage, f"descriptor name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
        )


def format_fds(fds: Mapping[str, int]) -> str:
    """Return the ``STATEMIGRATE_FDS`` value naming ``fds``.

    Raises:
        HandoffError: a name is invalid or a descriptor is below 3.
    """
    parts = []
    for name, fd in fds.items():
        check_name(name)
        if fd < 3:
            raise HandoffError("start", f"descriptor {name!r} is fd {fd}; 0-2 cannot be named")
        parts.append(f"{name}={fd}")
    return ":".join(parts)


def show_value(text: str) -> str:
    """Return ``repr(text)``, cut short for error messages: the value may be anything."""
    shown = repr(text)
    return shown if len(shown) <= 40 else f"{shown[:30]}... ({len(text)} characters)"


def _decimal(text: str, maximum: int) -> int | None:
    """``text`` as a number from 0 to ``maximum``, or ``None``.

    Only ASCII digits count: ``int()`` also takes spaces, signs, underscores and
    other scripts' digits, and refuses some characters that ``str.isdigit`` accepts
    (superscripts), so neither is used alone.
    """
    if not text or len(text) > len(str(maximum)) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= maximum else None


def parse_pid(var: str, text: str, *, stage: str) -> int:
    """Parse the pid in environment variable ``var``.

    Raises:
        HandoffError: ``text`` is not a decimal number from 1 to 2**31 - 1.
    """
    pid = _decimal(text, MAX_INT)
    if not pid:
        raise HandoffError(stage, f"{var}={show_value(text)} is not a pid")
    return pid


def parse_count(var: str, text: str, *, maximum: int, stage: str) -> int:
    """Parse the count of descriptors in environment variable ``var``.

    Raises:
        HandoffError: ``text`` is not a decimal number from 0 to ``maximum``.
    """
    count = _decimal(text, maximum)
    if count is None:
        raise HandoffError(
            stage, f"{var}={show_value(text)} is not a count of descriptors from 0 to {maximum}"
        )
    return count


def parse_fds(text: str) -> dict[str, int]:
    """Parse a ``STATEMIGRATE_FDS`` value.

    Raises:
        HandoffError: stage ``inherit``; malformed entries, a bad name, a number
            below 3 or above 2**31 - 1, or a name or number that appears twice.
    """
    named: dict[str, int] = {}
    seen: set[int] = set()
    for entry in text.split(":") if text else []:
        name, sep, number = entry.partition("=")
        fd = _decimal(number, MAX_INT)
        if not sep or fd is None:
            raise HandoffError(
                "inherit",
                f"{FDS_VAR}: malformed entry {show_value(entry)}; expected name=fd,"
                f" fd a number from 3 to {MAX_INT}",
            )
        if not _NAME.fullmatch(name):
            raise HandoffError("inherit", f"{FDS_VAR}: {show_value(name)} is not a valid name")
        if fd < 3:
            raise HandoffError("inherit", f"{FDS_VAR}: {name!r} names fd {fd}, below 3")
        if name in named or fd in seen:
            raise HandoffError("inherit", f"{FDS_VAR}: {name!r} or fd {fd} appears twice")
        named[name] = fd
        seen.add(fd)
    return named


def successor_environ(
    base: Mapping[str, str], fds: Mapping[str, int], *, parent_pid: int
) -> dict[str, str]:
    """Return the environment of a successor: ``base`` plus the names of its descriptors.

    Any descriptor-naming variables in ``base`` (ours or systemd's) are dropped:
    they describe this process's table, not the child's.
    """
    environ = {k: v for k, v in base.items() if k not in _DESCRIPTOR_VARS}
    environ[FDS_VAR] = format_fds(fds)
    environ[PARENT_PID_VAR] = str(parent_pid)
    return environ


def take_environ(environ: MutableMapping[str, str] | None = None) -> NamedFds | None:
    """Read and remove the handoff variables.

    Args:
        environ: the environment to read; ``os.environ`` by default (removing from
            it also unsets the variable for children).

    Returns:
        The named descriptors, or ``None`` when ``STATEMIGRATE_FDS`` is not set
        (the process was not started by a handoff).

    Raises:
        HandoffError: stage ``inherit``; the variables are malformed, or they were
            set for a child of another process (the parent pid is not our parent).
    """
    env = os.environ if environ is None else environ
    text = env.pop(FDS_VAR, None)
    parent_text = env.pop(PARENT_PID_VAR, None)
    if text is None:
        return None
    if env is os.environ:
        note_descriptors_taken()
    if parent_text is None:
        raise HandoffError("inherit", f"{FDS_VAR} is set but {PARENT_PID_VAR} is not")
    parent_pid = parse_pid(PARENT_PID_VAR, parent_text, stage="inherit")
    if parent_pid != os.getppid():
        raise HandoffError("inherit", _orphaned(parent_pid))
    return NamedFds(fds=parse_fds(text), parent_pid=parent_pid)


def _orphaned(parent_pid: int) -> str:
    """Why descriptors named by ``parent_pid`` are not ours to take: most often that
    process died before the handoff (killed, it may linger as a zombie under a parent
    that does not wait for it), and this one was handed to another parent."""
    if not running(parent_pid):
        return (
            f"{died_before_state(parent_pid)}. Descriptors were named by pid {parent_pid},"
            f" the process that started this one, which is no longer running; our parent"
            f" is now pid {os.getppid()}"
        )
    return f"descriptors were named by pid {parent_pid}, but our parent is pid {os.getppid()}"
