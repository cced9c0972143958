"""Sending and receiving file descriptors over Unix sockets with ``SCM_RIGHTS``.

Python's own helpers are not good enough for a handoff: in 3.11
:func:`socket.recv_fds` leaves every received descriptor inheritable and silently
ignores its ``flags`` argument, so ``MSG_CMSG_CLOEXEC`` cannot be asked for
(CPython gh-107898, gh-128881). A process that re-executes itself would carry such
descriptors into every later generation. This module calls ``recvmsg`` directly,
asks the kernel to mark descriptors close-on-exec as they arrive, and treats any
surprise in the ancillary data (truncation, a foreign message type, more
descriptors than expected) as an attack or a bug: everything received is closed
and :class:`~statemigrate.HandoffError` is raised, so the descriptor table is
exactly as it was before the call.

It also reads the peer's credentials (``SO_PEERCRED``), which every receiver
checks before trusting descriptors from a socket.
"""

from __future__ import annotations

import array
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from statemigrate._errors import HandoffError

__all__ = [
    "MAX_FDS",
    "PeerCredentials",
    "close_all",
    "peer_credentials",
    "receive_fds",
    "require_same_user",
    "send_fds",
]

#: The most descriptors one message may carry (``SCM_MAX_FD`` in the kernel).
MAX_FDS = 253

_INT_SIZE = array.array("i").itemsize
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid


@dataclass(frozen=True)
class PeerCredentials:
    """Who is at the other end of a connected Unix socket, as the kernel recorded it.

    For a socket pair the kernel records the process that created the pair; for a
    connected socket it records the process that called ``connect`` or ``listen``.
    """

    pid: int
    uid: int
    gid: int


def send_fds(sock: socket.socket, data: bytes, fds: Sequence[int] = (), *, stage: str) -> None:
    """Send one message carrying ``data`` and, in the same call, the descriptors ``fds``.

    At least one data byte is required: on stream sockets the kernel drops
    descriptors sent with an empty payload, so an empty message would lose them
    without an error.

    Args:
        sock: a connected Unix socket (``SOCK_SEQPACKET`` keeps message boundaries).
        data: the payload, at least one byte.
        fds: descriptors to duplicate into the receiver; the sender keeps its own.
        stage: the handoff stage named in errors.

    Raises:
        ValueError: ``data`` is empty.
        HandoffError: the kernel refused the message (for example ``EINVAL`` for more
            than :data:`MAX_FDS` descriptors, or ``EPIPE`` when the peer is gone). The
            ``OSError`` is chained as ``__cause__``.
    """
    if not data:
        raise ValueError("a message that carries descriptors needs at least one data byte")
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    try:
        sent = sock.sendmsg([data], ancillary)
    except OSError as exc:
        raise HandoffError(
            stage, f"sending {len(data)} bytes with {len(fds)} descriptors failed: {exc}"
        ) from exc
    if sent != len(data):  # only a stream socket can do this; we never accept one
        raise HandoffError(stage, f"short send: {sent} of {len(data)} bytes")


def receive_fds(
    sock: socket.socket, *, max_bytes: int, max_fds: int, stage: str
) -> tuple[bytes, list[int]]:
    """Receive one message and the descriptors attached to it, all close-on-exec.

    The receive buffer holds one byte more than ``max_bytes`` and the control buffer
    exactly ``max_fds`` descriptors, so an oversized payload or too many descriptors
    shows up as ``MSG_TRUNC``/``MSG_CTRUNC`` instead of being silently cut.

    Args:
        sock: a connected Unix socket.
        max_bytes: the largest payload accepted.
        max_fds: the most descriptors accepted (0 to accept none).
        stage: the handoff stage named in errors.

    Returns:
        ``(data, fds)``; ``data`` is empty when the peer closed the connection. The
        caller owns ``fds`` and must close them.

    Raises:
        HandoffError: the message was truncated, carried more descriptors than
            ``max_fds``, carried descriptors but no data, carried ancillary data
            other than ``SCM_RIGHTS``, or the receive failed. Every descriptor that
            arrived has been closed.
    """
    if not 0 <= max_fds <= MAX_FDS:
        raise ValueError(f"max_fds must be between 0 and {MAX_FDS}, not {max_fds}")
    control_size = socket.CMSG_SPACE(max_fds * _INT_SIZE) if max_fds else 0
    try:
        data, ancdata, flags, _address = sock.recvmsg(
            max_bytes + 1, control_size, socket.MSG_CMSG_CLOEXEC
        )
    except OSError as exc:
        raise HandoffError(stage, f"receiving a message failed: {exc}") from exc

    fds: list[int] = []
    foreign: list[str] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT_SIZE
            fds.extend(array.array("i", payload[:usable]))
        else:
            foreign.append(f"level {level} type {kind}")

    problem = None
    if flags & socket.MSG_CTRUNC:
        problem = f"control data truncated (more than {max_fds} descriptors or foreign data)"
    elif flags & socket.MSG_TRUNC or len(data) > max_bytes:
        problem = f"message larger than {max_bytes} bytes"
    elif fds and not data:
        problem = "descriptors arrived without a single data byte"
    elif foreign:
        problem = "unexpected ancillary data: " + ", ".join(foreign)
    elif len(fds) > max_fds:
        problem = f"{len(fds)} descriptors where at most {max_fds} were expected"
    if problem is not None:
        close_all(fds)
        raise HandoffError(stage, f"refused a message: {problem}; closed {len(fds)} descriptors")
    return data, fds


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Return the credentials the kernel recorded for the peer of ``sock``.

    Raises:
        HandoffError: ``sock`` is not a connected Unix socket.
    """
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as exc:
        raise HandoffError("peer", f"cannot read the peer's credentials: {exc}") from exc
    pid, uid, gid = _UCRED.unpack(raw)
    if pid <= 0:  # an unconnected socket reports pid 0 and the overflow uid
        raise HandoffError("peer", "the socket has no peer (not connected)")
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def require_same_user(sock: socket.socket, *, pid: int | None = None) -> PeerCredentials:
    """Check that the peer of ``sock`` runs as our effective uid (and is ``pid``, if given).

    Descriptors and snapshots are only ever accepted from the same user: another
    user could otherwise plant a listening socket or state in our service.

    Raises:
        HandoffError: stage ``peer``; the peer is another user or another process.
    """
    creds = peer_credentials(sock)
    if creds.uid != os.geteuid():
        raise HandoffError(
            "peer", f"peer pid {creds.pid} runs as uid {creds.uid}, expected uid {os.geteuid()}"
        )
    if pid is not None and creds.pid != pid:
        raise HandoffError("peer", f"peer is pid {creds.pid}, expected pid {pid}")
    return creds


def close_all(fds: Iterable[int]) -> None:
    """Close every descriptor in ``fds``, ignoring ones that are already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
