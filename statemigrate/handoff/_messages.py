"""The control channel's messages, their wire names and their encoding.

Each message is a frozen dataclass. A packet is ``MAGIC``, the protocol version, the
message's kind and its body as a JSON object (the conversation is described in
:mod:`statemigrate.handoff._protocol`). Decoding, which treats a packet as hostile,
is :mod:`statemigrate.handoff._messagedecode`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from statemigrate._errors import HandoffError

__all__ = [
    "HEADER",
    "KINDS",
    "MAGIC",
    "MAX_CODE_VERSION",
    "MAX_MESSAGE",
    "NAMES",
    "PROTOCOL_VERSION",
    "Abort",
    "Applied",
    "Commit",
    "Failed",
    "Held",
    "Hello",
    "Message",
    "Piece",
    "PieceKind",
    "Ready",
    "Serving",
    "SnapshotOffer",
    "encode_message",
    "message_name",
]

PROTOCOL_VERSION = 1
MAGIC = b"SMHO"
#: The largest message accepted on the channel; reasons are cut to fit well within.
MAX_MESSAGE = 64 * 1024
_MAX_REASON = 2000
MAX_CODE_VERSION = 200
HEADER = len(MAGIC) + 2


@dataclass(frozen=True)
class Hello:
    """The successor's greeting: who it is and which schema versions it can read."""

    pid: int
    readable: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: The successor will confirm with :class:`Serving` once it serves.
    serving: bool = False
    #: The successor takes pieces (:class:`Piece`) before the snapshot: pre-copy.
    precopy: bool = False
    #: The successor's live schema version of each component (empty: not announced).
    versions: dict[str, int] = field(default_factory=dict)
    #: The successor's ``code_version`` (empty: none, or not announced).
    code_version: str = ""
    #: Versions the successor would read only through steps declared lossy, which it
    #: was not allowed to run (empty: none, or not announced).
    lossy: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: The successor reads :class:`Held` after SERVING.
    held: bool = False


@dataclass(frozen=True)
class SnapshotOffer:
    """The snapshot memfd (first descriptor) and, over a socket, the listeners (the rest).

    After pre-copy rounds it is the last piece: a delta on top of them, or a full
    snapshot again when deltas could not be used (``fallback`` says why).
    """

    size: int
    listeners: tuple[str, ...] = ()
    trace: str = ""
    """The old process's handoff span as a W3C ``traceparent``, when it traces."""
    fallback: str = ""
    """After pre-copy rounds: why this is a full snapshot rather than a delta."""
    paused: float | None = None
    """Seconds the old process had held its writers when it sent this (``None``: not
    said, as by an earlier release)."""
    lossy: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    """Per component exported through lossy steps: its live version in the old
    process, the version sent, and the old process's line naming the steps and the
    fields lost (empty: none, or not said, as by an earlier release)."""


PieceKind = Literal["full", "delta"]


@dataclass(frozen=True)
class Piece:
    """A pre-copy round: a full snapshot (round 0) or a delta, in a memfd (the descriptor).

    Sent while the old process still serves; the successor applies it and answers
    :class:`Applied`.
    """

    round: int
    kind: PieceKind
    size: int


@dataclass(frozen=True)
class Applied:
    """The successor applied the piece of ``round``.

    ``deltas`` says whether it can apply deltas on top (no whole-data step in its
    plan), and ``why`` why not; ``records`` is how many records the piece changed
    (0 when unknown).
    """

    round: int
    deltas: bool
    records: int = 0
    why: str = ""


@dataclass(frozen=True)
class Ready:
    """The successor restored the state and can serve; it waits for :class:`Commit`."""

    pid: int


@dataclass(frozen=True)
class Commit:
    """The old process gave up the state; the successor owns it from now on."""


@dataclass(frozen=True)
class Serving:
    """The successor read :class:`Commit`, applied the state and starts accepting now."""


@dataclass(frozen=True)
class Held:
    """After SERVING: the seconds the old process held its writers, from just before
    ``pause()`` until ``stop_accepting()`` returned (its ``pause_seconds``), sent to a
    successor that announced it reads it, since the successor outlives it."""

    paused: float


@dataclass(frozen=True)
class Failed:
    """The successor cannot take over (sent by the successor)."""

    reason: str


@dataclass(frozen=True)
class Abort:
    """The old process cancelled the handoff (sent by the old process)."""

    reason: str


Message = (
    Hello | SnapshotOffer | Ready | Commit | Failed | Abort | Serving | Piece | Applied | Held
)

KINDS: dict[type[Message], int] = {
    Hello: 1,
    SnapshotOffer: 2,
    Ready: 3,
    Commit: 4,
    Failed: 5,
    Abort: 6,
    Serving: 7,
    Piece: 8,
    Applied: 9,
    Held: 10,
}
NAMES = {
    1: "HELLO",
    2: "SNAPSHOT",
    3: "READY",
    4: "COMMIT",
    5: "FAILED",
    6: "ABORT",
    7: "SERVING",
    8: "PIECE",
    9: "APPLIED",
    10: "HELD",
}


def message_name(message: Message) -> str:
    """Return the wire name of ``message`` (``HELLO``, ``READY``, ...)."""
    return NAMES[KINDS[type(message)]]


def encode_message(message: Message) -> bytes:
    """Return the packet for ``message``."""
    body: dict[str, object]
    if isinstance(message, Hello):
        readable = {name: list(versions) for name, versions in message.readable.items()}
        body = {"pid": message.pid, "readable": readable}
        if message.serving:  # left out otherwise: the HELLO of an older release, byte for byte
            body["serving"] = True
        if message.precopy:
            body["precopy"] = True
        if message.versions:
            body["versions"] = dict(message.versions)
        if message.code_version:
            body["code_version"] = message.code_version[:MAX_CODE_VERSION]
        if message.lossy:
            body["lossy"] = {name: list(versions) for name, versions in message.lossy.items()}
        if message.held:
            body["held"] = True
    elif isinstance(message, SnapshotOffer):
        body = {"size": message.size, "listeners": list(message.listeners)}
        if message.trace:
            body["trace"] = message.trace
        if message.fallback:
            body["fallback"] = message.fallback[:_MAX_REASON]
        if message.paused is not None:
            body["paused"] = message.paused
        if message.lossy:
            body["lossy"] = {
                name: [source, target, said[:_MAX_REASON]]
                for name, (source, target, said) in message.lossy.items()
            }
    elif isinstance(message, Piece):
        body = {"round": message.round, "kind": message.kind, "size": message.size}
    elif isinstance(message, Applied):
        body = {"round": message.round, "deltas": message.deltas, "records": message.records}
        if message.why:
            body["why"] = message.why[:_MAX_REASON]
    elif isinstance(message, Held):
        body = {"paused": message.paused}
    elif isinstance(message, Ready):
        body = {"pid": message.pid}
    elif isinstance(message, Commit | Serving):
        body = {}
    else:
        body = {"reason": message.reason[:_MAX_REASON]}
    payload = json.dumps(body, separators=(",", ":")).encode()
    packet = MAGIC + bytes([PROTOCOL_VERSION, KINDS[type(message)]]) + payload
    if len(packet) > MAX_MESSAGE:
        raise HandoffError("protocol", f"{message_name(message)} message is {len(packet)} bytes")
    return packet
