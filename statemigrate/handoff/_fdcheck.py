"""Type checks for descriptors that arrive from another process.

A descriptor number named in an environment variable or received with
``SCM_RIGHTS`` says nothing about what it refers to. Before a handoff uses one, it
is checked here: a listener must be a listening stream socket of an allowed family;
the control channel a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket. (A snapshot
memfd is checked by :func:`statemigrate.stores.open_memfd`: it must be sealed
against every change, or it could be truncated under the reader, which dies of
``SIGBUS``, or rewritten after it was verified.)

The checks never take ownership: on failure the caller closes what it holds.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Collection

from statemigrate._errors import HandoffError

__all__ = [
    "DEFAULT_FAMILIES",
    "check_control",
    "check_listener",
    "check_passed",
    "describe_fd",
    "inheritable_fds",
    "open_fds",
]

#: Address families a listener may have unless the caller narrows them.
DEFAULT_FAMILIES: frozenset[int] = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})

_FAMILY_NAMES: dict[int, str] = {
    socket.AF_INET: "AF_INET",
    socket.AF_INET6: "AF_INET6",
    socket.AF_UNIX: "AF_UNIX",
}
_TYPE_NAMES: dict[int, str] = {
    socket.SOCK_STREAM: "SOCK_STREAM",
    socket.SOCK_DGRAM: "SOCK_DGRAM",
    socket.SOCK_SEQPACKET: "SOCK_SEQPACKET",
}


def open_fds() -> set[int]:
    """Return the descriptors open in this process, from ``/proc/self/fd``.

    The directory descriptor used to list ``/proc/self/fd`` shows up in its own
    listing; it is closed again by the time the listing returns, so any entry that
    no longer refers to an open descriptor is dropped.
    """
    listed = {int(name) for name in os.listdir("/proc/self/fd")}
    alive = set()
    for fd in listed:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        alive.add(fd)
    return alive


def inheritable_fds() -> set[int]:
    """Return the open descriptors above 2 that would survive an ``exec``."""
    found = set()
    for fd in open_fds():
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                found.add(fd)
        except OSError:  # closed by another thread meanwhile
            continue
    return found


def check_passed(fd: int, *, what: str, stage: str) -> None:
    """Check that ``fd`` is open and inheritable, as a descriptor passed across ``exec`` is.

    A number in an environment variable may name a descriptor that was never
    passed, possibly one this process opened itself (close-on-exec, as every
    descriptor Python opens is). Such a descriptor must not be used or closed.

    Raises:
        HandoffError: ``fd`` is not open, or it is close-on-exec.
    """
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as exc:
        raise HandoffError(
            stage, f"{what}: fd {fd} is not open ({exc.strerror}), so it was not passed to us"
        ) from exc
    if flags & fcntl.FD_CLOEXEC:
        raise HandoffError(stage, f"{what}: fd {fd} is close-on-exec, so it was not passed to us")


def describe_fd(fd: int) -> str:
    """Return a short description of what ``fd`` refers to, for error messages."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        return f"fd {fd} ({exc.strerror})"
    return f"fd {fd} ({target})"


def _socket_facts(fd: int, what: str, stage: str) -> tuple[int, int, bool]:
    """Return ``(family, type, listening)`` of socket ``fd`` without owning it."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise HandoffError(stage, f"{what}: fd {fd} is not open: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise HandoffError(stage, f"{what}: {describe_fd(fd)} is not a socket")
    probe = socket.socket(fileno=fd)
    try:
        family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        listening = bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError as exc:
        raise HandoffError(stage, f"{what}: cannot inspect {describe_fd(fd)}: {exc}") from exc
    finally:
        probe.detach()  # the caller keeps ownership of the descriptor
    return family, kind, listening


def check_listener(
    fd: int, *, name: str, families: Collection[int] = DEFAULT_FAMILIES, stage: str
) -> None:
    """Check that ``fd`` is a listening stream socket of one of ``families``.

    Raises:
        HandoffError: ``fd`` is closed, not a socket, not listening, not
            ``SOCK_STREAM`` (a UDP or seqpacket socket), or of another family.
    """
    what = f"listener {name!r}"
    family, kind, listening = _socket_facts(fd, what, stage)
    if kind != socket.SOCK_STREAM:
        shown = _TYPE_NAMES.get(kind, str(kind))
        raise HandoffError(stage, f"{what}: fd {fd} is a {shown} socket, not SOCK_STREAM")
    if family not in families:
        allowed = ", ".join(sorted(_FAMILY_NAMES.get(f, str(f)) for f in families))
        shown = _FAMILY_NAMES.get(family, str(family))
        raise HandoffError(stage, f"{what}: fd {fd} has family {shown}, expected {allowed}")
    if not listening:
        raise HandoffError(stage, f"{what}: fd {fd} is a socket that is not listening")


def check_control(fd: int, *, stage: str) -> None:
    """Check that ``fd`` is a ``AF_UNIX`` ``SOCK_SEQPACKET`` socket that is connected.

    The peer's identity is checked separately, with
    :func:`~statemigrate.handoff._fdpass.require_same_user`.

    Raises:
        HandoffError: it is anything else.
    """
    what = "control channel"
    family, kind, listening = _socket_facts(fd, what, stage)
    if family != socket.AF_UNIX or kind != socket.SOCK_SEQPACKET or listening:
        raise HandoffError(
            stage,
            f"{what}: {describe_fd(fd)} is not a connected AF_UNIX SOCK_SEQPACKET socket",
        )
