"""The control channel between the old process and its successor.

The channel is a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket, so every message
is one packet and no framing is needed beyond a fixed header::

    b"SMHO" | version (1 byte) | kind (1 byte) | JSON object (UTF-8)

A conversation, with who sends what::

    successor -> old   HELLO     {pid, readable: {component: [versions]}}
    old -> successor   SNAPSHOT  {size, listeners: [names]}  + fds: memfd, listeners...
    successor -> old   READY     {pid}
    old -> successor   COMMIT    {}
    either way         FAILED / ABORT {reason}

``COMMIT`` exists so that exactly one process owns the state at any instant: the
successor may not change state (or acknowledge a request that does) before it has
read ``COMMIT``, and the old process sends it only after deciding the handoff
succeeded. A timeout on either side therefore never leaves two owners.

Descriptors travel only with ``SNAPSHOT``; any other message that carries some is
refused and the descriptors are closed.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from statemigrate._errors import HandoffError
from statemigrate.handoff._fdpass import MAX_FDS, close_all, receive_fds, send_fds

__all__ = [
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "Abort",
    "Channel",
    "Commit",
    "Failed",
    "Hello",
    "Message",
    "Ready",
    "SnapshotOffer",
    "decode_message",
    "encode_message",
]

PROTOCOL_VERSION = 1
MAGIC = b"SMHO"
#: The largest message accepted on the channel; reasons are cut to fit well within.
MAX_MESSAGE = 64 * 1024
_MAX_REASON = 2000
_HEADER = len(MAGIC) + 2


@dataclass(frozen=True)
class Hello:
    """The successor's greeting: who it is and which schema versions it can read."""

    pid: int
    readable: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotOffer:
    """The snapshot memfd (first descriptor) and, over a socket, the listeners (the rest)."""

    size: int
    listeners: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ready:
    """The successor restored the state and can serve; it waits for :class:`Commit`."""

    pid: int


@dataclass(frozen=True)
class Commit:
    """The old process gave up the state; the successor owns it from now on."""


@dataclass(frozen=True)
class Failed:
    """The successor cannot take over (sent by the successor)."""

    reason: str


@dataclass(frozen=True)
class Abort:
    """The old process cancelled the handoff (sent by the old process)."""

    reason: str


Message = Hello | SnapshotOffer | Ready | Commit | Failed | Abort

_KINDS: dict[type[Message], int] = {
    Hello: 1,
    SnapshotOffer: 2,
    Ready: 3,
    Commit: 4,
    Failed: 5,
    Abort: 6,
}
_NAMES = {1: "HELLO", 2: "SNAPSHOT", 3: "READY", 4: "COMMIT", 5: "FAILED", 6: "ABORT"}


def message_name(message: Message) -> str:
    """Return the wire name of ``message`` (``HELLO``, ``READY``, ...)."""
    return _NAMES[_KINDS[type(message)]]


def encode_message(message: Message) -> bytes:
    """Return the packet for ``message``."""
    body: dict[str, object]
    if isinstance(message, Hello):
        readable = {name: list(versions) for name, versions in message.readable.items()}
        body = {"pid": message.pid, "readable": readable}
    elif isinstance(message, SnapshotOffer):
        body = {"size": message.size, "listeners": list(message.listeners)}
    elif isinstance(message, Ready):
        body = {"pid": message.pid}
    elif isinstance(message, Commit):
        body = {}
    else:
        body = {"reason": message.reason[:_MAX_REASON]}
    payload = json.dumps(body, separators=(",", ":")).encode()
    packet = MAGIC + bytes([PROTOCOL_VERSION, _KINDS[type(message)]]) + payload
    if len(packet) > MAX_MESSAGE:
        raise HandoffError("protocol", f"{message_name(message)} message is {len(packet)} bytes")
    return packet


def _int(body: Mapping[str, object], key: str, *, minimum: int = 0) -> int:
    value = body.get(key)
    if type(value) is not int or value < minimum:
        raise ValueError(f"{key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _str(body: Mapping[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _readable(value: object) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, dict):
        raise ValueError("'readable' must be an object")
    readable: dict[str, tuple[int, ...]] = {}
    for name, versions in value.items():
        if not isinstance(versions, list) or not all(type(v) is int for v in versions):
            raise ValueError(f"'readable'[{name!r}] must be a list of integers")
        readable[name] = tuple(versions)
    return readable


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("'listeners' must be a list of strings")
    if len(set(value)) != len(value):
        raise ValueError("'listeners' names a listener twice")
    return tuple(value)


def decode_message(packet: bytes, *, stage: str) -> Message:
    """Parse one packet.

    Raises:
        HandoffError: ``protocol error``: wrong magic, another protocol version, an
            unknown kind, or a body that does not have the fields of its kind.
    """
    if len(packet) < _HEADER or packet[: len(MAGIC)] != MAGIC:
        raise HandoffError(stage, f"protocol error: not a handoff message: {packet[:16]!r}")
    version, kind = packet[len(MAGIC)], packet[len(MAGIC) + 1]
    if version != PROTOCOL_VERSION:
        raise HandoffError(
            stage, f"protocol error: peer speaks version {version}, we speak {PROTOCOL_VERSION}"
        )
    try:
        body = json.loads(packet[_HEADER:])
        if not isinstance(body, dict):
            raise ValueError("the body is not an object")
        if kind == 1:
            return Hello(pid=_int(body, "pid", minimum=1), readable=_readable(body.get("readable")))
        if kind == 2:
            return SnapshotOffer(size=_int(body, "size"), listeners=_names(body.get("listeners")))
        if kind == 3:
            return Ready(pid=_int(body, "pid", minimum=1))
        if kind == 4:
            return Commit()
        if kind == 5:
            return Failed(reason=_str(body, "reason"))
        if kind == 6:
            return Abort(reason=_str(body, "reason"))
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError included
        raise HandoffError(stage, f"protocol error: bad {_NAMES.get(kind)} body: {exc}") from exc
    raise HandoffError(stage, f"protocol error: unknown message kind {kind}")


class Channel:
    """One end of a control channel: whole messages in, whole messages out.

    The socket stays blocking; waits are bounded with ``poll`` against a deadline,
    and can also watch a second descriptor (a pidfd of the peer), so a peer that
    dies is noticed at once instead of at the timeout.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, message: Message, fds: Sequence[int] = (), *, stage: str) -> None:
        """Send ``message`` with ``fds`` attached.

        Raises:
            HandoffError: the peer is gone or the kernel refused the message.
        """
        send_fds(self.sock, encode_message(message), fds, stage=stage)

    def try_send(self, message: Message, *, stage: str) -> bool:
        """Send ``message`` if the peer still listens; return whether it was sent."""
        try:
            self.send(message, stage=stage)
        except (HandoffError, OSError):
            return False
        return True

    def wait(self, deadline: float, *, watch: int | None = None) -> str:
        """Wait until a message can be read or ``deadline`` passes.

        Returns:
            ``"message"`` (a packet or end-of-file can be read), ``"timeout"``, or
            ``"watch"`` (the watched descriptor became readable and no packet is
            waiting).
        """
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        if watch is not None:
            poller.register(watch, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            events = poller.poll(max(1, int(remaining * 1000)))
            ready = {fd for fd, _mask in events}
            if self.sock.fileno() in ready:
                return "message"
            if watch is not None and watch in ready:
                return "watch"

    def receive(
        self, *, stage: str, max_fds: int = 0, deadline: float, watch: int | None = None
    ) -> tuple[Message, list[int]] | str:
        """Receive the next message.

        Returns:
            ``(message, fds)``; or ``"timeout"``, ``"watch"`` (see :meth:`wait`),
            or ``"closed"`` when the peer closed the channel.

        Raises:
            HandoffError: the packet was malformed or carried descriptors where none
                belong; anything received has been closed.
        """
        state = self.wait(deadline, watch=watch)
        if state != "message":
            return state
        packet, fds = receive_fds(
            self.sock, max_bytes=MAX_MESSAGE, max_fds=min(max_fds + 1, MAX_FDS), stage=stage
        )
        if not packet and not fds:
            return "closed"
        try:
            message = decode_message(packet, stage=stage)
            if len(fds) > max_fds or (fds and not isinstance(message, SnapshotOffer)):
                raise HandoffError(
                    stage,
                    f"protocol error: {message_name(message)} carried {len(fds)} descriptors",
                )
        except HandoffError:
            close_all(fds)
            raise
        return message, fds
