"""The control channel between the old process and its successor.

The channel is a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket, so every message
is one packet and no framing is needed beyond a fixed header::

    b"SMHO" | version (1 byte) | kind (1 byte) | JSON object (UTF-8)

A conversation, with who sends what::

    successor -> old   HELLO     {pid, readable: {component: [versions]}, serving: true,
                                  precopy: true, versions: {component: version},
                                  code_version, lossy: {component: [versions]}}
    old -> successor   PIECE     {round, kind: "full" | "delta", size}  + fd: memfd
    successor -> old   APPLIED   {round, deltas: bool, records, why?}
                       (PIECE and APPLIED repeat: the pre-copy rounds, while the old serves)
    old -> successor   SNAPSHOT  {size, listeners: [names], trace?, fallback?, paused?}
                                 + fds: memfd, listeners...
    successor -> old   READY     {pid}
    old -> successor   COMMIT    {}
    successor -> old   SERVING   {}      (only when HELLO said ``serving: true``)
    either way         FAILED / ABORT {reason}

``COMMIT`` exists so that exactly one process owns the state at any instant: the
successor may not change state (or acknowledge a request that does) before it has
read ``COMMIT``, and the old process sends it only after deciding the handoff
succeeded. A timeout on either side therefore never leaves two owners.

``SERVING`` closes the window after ``COMMIT``: the old process keeps its state,
its listeners and its held writers until the successor confirms, right before it
starts accepting, and takes the state back if the successor dies before. It is an
addition to version 1, announced in ``HELLO``: a successor that does not announce
it (an older release) is handed the state at ``COMMIT`` as before, and an older
old process ignores the field and never reads ``SERVING``, so both directions of
a rolling upgrade work.

``PIECE`` and ``APPLIED`` are the pre-copy rounds, another addition to version 1
announced in ``HELLO`` (``precopy: true``): the old process sends a full snapshot
(round 0) and then deltas while it still serves, each acknowledged once the
successor applied it, and pauses only for the last piece, which travels in
``SNAPSHOT`` as before. An old process that does not know the field sends
``SNAPSHOT`` at once, and one that knows it never sends ``PIECE`` to a successor
that did not announce it.

``versions`` (the successor's live schema versions) and ``code_version`` (its
service's ``code_version``) say which release took over, so that the old process
reports what actually runs (a trial's revert checks it against its record). Both are
optional: an older successor leaves them out, and an older old process ignores them.

``lossy`` names the versions the successor would also read if it were allowed to
run steps declared lossy (an upgrade through a step that drops a field), so that an
old process none of whose versions the successor reads can say why, and how to allow
it. Optional as well: absent, the refusal only names both sides' versions.

``paused`` in ``SNAPSHOT`` is how many seconds the old process had held its
writers when it sent the message, so that the successor, which outlives it, can
report the whole pause: that count plus its own time until it serves. A duration
rather than an instant, so that the two processes need not share a clock. An old
process of an earlier release leaves it out (the successor then measures what it
can itself), and a successor of an earlier release ignores it, as every reader
ignores fields it does not know.

Descriptors travel only with ``SNAPSHOT`` and ``PIECE``; any other message that carries some is
refused and the descriptors are closed.

Every packet is hostile input: :func:`decode_message` returns a message whose
fields have their documented types and ranges, or raises :class:`HandoffError`
(``protocol error``), whatever the bytes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from statemigrate._errors import HandoffError, SuccessorFailedError
from statemigrate.handoff._drive import Steps, wait_readable
from statemigrate.handoff._fdpass import MAX_FDS, close_all, receive_fds, send_fds

logger = logging.getLogger("statemigrate.handoff")

#: Seconds between two lines saying that a long wait for the peer goes on.
PROGRESS_EVERY = 10.0

__all__ = [
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "Abort",
    "Applied",
    "Channel",
    "Commit",
    "Failed",
    "Hello",
    "Message",
    "NoMessage",
    "Piece",
    "PieceKind",
    "Ready",
    "Received",
    "Serving",
    "SnapshotOffer",
    "awaited",
    "decode_message",
    "encode_message",
    "expect_reply",
    "message_name",
]

PROTOCOL_VERSION = 1
MAGIC = b"SMHO"
#: The largest message accepted on the channel; reasons are cut to fit well within.
MAX_MESSAGE = 64 * 1024
_MAX_REASON = 2000
_MAX_CODE_VERSION = 200
_HEADER = len(MAGIC) + 2


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
class Failed:
    """The successor cannot take over (sent by the successor)."""

    reason: str


@dataclass(frozen=True)
class Abort:
    """The old process cancelled the handoff (sent by the old process)."""

    reason: str


Message = Hello | SnapshotOffer | Ready | Commit | Failed | Abort | Serving | Piece | Applied

_KINDS: dict[type[Message], int] = {
    Hello: 1,
    SnapshotOffer: 2,
    Ready: 3,
    Commit: 4,
    Failed: 5,
    Abort: 6,
    Serving: 7,
    Piece: 8,
    Applied: 9,
}
_NAMES = {
    1: "HELLO",
    2: "SNAPSHOT",
    3: "READY",
    4: "COMMIT",
    5: "FAILED",
    6: "ABORT",
    7: "SERVING",
    8: "PIECE",
    9: "APPLIED",
}


def message_name(message: Message) -> str:
    """Return the wire name of ``message`` (``HELLO``, ``READY``, ...)."""
    return _NAMES[_KINDS[type(message)]]


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
            body["code_version"] = message.code_version[:_MAX_CODE_VERSION]
        if message.lossy:
            body["lossy"] = {name: list(versions) for name, versions in message.lossy.items()}
    elif isinstance(message, SnapshotOffer):
        body = {"size": message.size, "listeners": list(message.listeners)}
        if message.trace:
            body["trace"] = message.trace
        if message.fallback:
            body["fallback"] = message.fallback[:_MAX_REASON]
        if message.paused is not None:
            body["paused"] = message.paused
    elif isinstance(message, Piece):
        body = {"round": message.round, "kind": message.kind, "size": message.size}
    elif isinstance(message, Applied):
        body = {"round": message.round, "deltas": message.deltas, "records": message.records}
        if message.why:
            body["why"] = message.why[:_MAX_REASON]
    elif isinstance(message, Ready):
        body = {"pid": message.pid}
    elif isinstance(message, Commit | Serving):
        body = {}
    else:
        body = {"reason": message.reason[:_MAX_REASON]}
    payload = json.dumps(body, separators=(",", ":")).encode()
    packet = MAGIC + bytes([PROTOCOL_VERSION, _KINDS[type(message)]]) + payload
    if len(packet) > MAX_MESSAGE:
        raise HandoffError("protocol", f"{message_name(message)} message is {len(packet)} bytes")
    return packet


# A valid body nests three levels at most (HELLO: object, "readable", a version list).
_MAX_DEPTH = 8
#: Integers on the wire: pids are a C ``pid_t``, sizes and versions fit 64 bits.
_MAX_PID = 2**31 - 1
_MAX_INT = 2**63 - 1
_MAX_DIGITS = 19
#: Pre-copy rounds are numbered from 0; far fewer than this ever run.
_MAX_ROUND = 2**16
# JSON strings (escapes included), removed before brackets are counted.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def _deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON ``body`` nests arrays and objects more than ``limit`` deep.

    Checked before ``json.loads``, which recurses once per level and raises
    ``RecursionError`` for deep input. Strings are cut out first, as the parser
    reads them, so brackets inside them do not count. Invalid JSON may be counted
    deeper than the parser would get (an unterminated string, say): it is refused
    either way.
    """
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def _parse_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(text)


def _parse_constant(text: str) -> object:
    raise ValueError(f"{text} is not a number")


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    body: dict[str, object] = {}
    for key, value in pairs:
        if key in body:
            raise ValueError(f"key {_show(key)} appears twice")
        body[key] = value
    return body


def _show(value: object) -> str:
    """A short, one-line rendering of a value from the peer, for error messages."""
    if isinstance(value, list | dict):
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _text(value: str, where: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape
        raise ValueError(f"{where} holds an unpaired surrogate at {exc.start}") from exc
    return value


def _int(body: Mapping[str, object], key: str, *, minimum: int = 0, maximum: int = _MAX_INT) -> int:
    value = body.get(key)
    if type(value) is not int or not minimum <= value <= maximum:
        raise ValueError(
            f"{key!r} must be an integer from {minimum} to {maximum}, got {_show(value)}"
        )
    return value


def _str(body: Mapping[str, object], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return _text(value, repr(key))


def _flag(body: Mapping[str, object], key: str) -> bool:
    """An optional true/false field; absent means false (an older release left it out)."""
    value = body.get(key, False)
    if type(value) is not bool:
        raise ValueError(f"{key!r} must be true or false, got {_show(value)}")
    return value


def _version(value: object) -> bool:
    return type(value) is int and -_MAX_INT <= value <= _MAX_INT


def _readable(value: object, *, key: str = "readable") -> dict[str, tuple[int, ...]]:
    """HELLO's ``readable`` (or ``lossy``): ``{component: [versions]}``."""
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be an object, got {type(value).__name__}")
    readable: dict[str, tuple[int, ...]] = {}
    for name, versions in value.items():
        where = f"'{key}'[{_show(name)}]"
        if not isinstance(versions, list) or not all(_version(v) for v in versions):
            raise ValueError(f"{where} must be a list of 64-bit integers")
        readable[_text(name, where)] = tuple(versions)
    return readable


def _live_versions(body: Mapping[str, object]) -> dict[str, int]:
    """HELLO's optional ``versions``: ``{component: version}``; absent means unknown."""
    value = body.get("versions", {})
    if not isinstance(value, dict):
        raise ValueError(f"'versions' must be an object, got {type(value).__name__}")
    versions: dict[str, int] = {}
    for name, version in value.items():
        where = f"'versions'[{_show(name)}]"
        if not _version(version):
            raise ValueError(f"{where} must be a 64-bit integer, got {_show(version)}")
        versions[_text(name, where)] = version
    return versions


def _code_version(body: Mapping[str, object]) -> str:
    """HELLO's optional ``code_version``; absent means unknown."""
    value = body.get("code_version", "")
    if not isinstance(value, str) or len(value) > _MAX_CODE_VERSION:
        raise ValueError(
            f"'code_version' must be a string of at most {_MAX_CODE_VERSION} characters,"
            f" got {_show(value)}"
        )
    return _text(value, "'code_version'")


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("'listeners' must be a list of strings")
    if len(set(value)) != len(value):
        raise ValueError("'listeners' names a listener twice")
    return tuple(_text(name, "'listeners'") for name in value)


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _traceparent(value: object) -> str:
    """A well-formed ``traceparent``, or ``""``: a bad one only costs the trace link."""
    if isinstance(value, str) and _TRACEPARENT.fullmatch(value):
        return value
    return ""


#: The longest pause a SNAPSHOT may state, in seconds (a year: far beyond any timeout).
_MAX_PAUSED = 365 * 24 * 3600.0


def _paused(value: object) -> float | None:
    """A pause in seconds, or ``None``: a missing or bad one only costs that figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if 0.0 <= seconds <= _MAX_PAUSED else None


def _body(payload: bytes) -> dict[str, object]:
    """Parse a message body: a JSON object in strict UTF-8, shallow, without duplicates."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 at byte {exc.start}") from exc
    if _deeper_than(payload, _MAX_DEPTH):
        raise ValueError(f"nested more than {_MAX_DEPTH} levels deep")
    body = json.loads(
        text,
        object_pairs_hook=_object,
        parse_int=_parse_int,
        parse_constant=_parse_constant,
    )
    if not isinstance(body, dict):
        raise ValueError(f"the body is {type(body).__name__}, not an object")
    return body


def decode_message(packet: bytes, *, stage: str) -> Message:
    """Parse one packet.

    The packet comes from another process and is treated as hostile: whatever it
    holds, the result is a message whose fields have the documented types and
    ranges, or a :class:`HandoffError`.

    Raises:
        HandoffError: ``protocol error``: wrong magic, another protocol version, an
            unknown kind, or a body that is not a UTF-8 JSON object with the fields
            of its kind (nested too deep, repeated keys, wrong types, numbers out of
            range).
    """
    if len(packet) < _HEADER or packet[: len(MAGIC)] != MAGIC:
        raise HandoffError(stage, f"protocol error: not a handoff message: {packet[:16]!r}")
    version, kind = packet[len(MAGIC)], packet[len(MAGIC) + 1]
    if version != PROTOCOL_VERSION:
        raise HandoffError(
            stage, f"protocol error: peer speaks version {version}, we speak {PROTOCOL_VERSION}"
        )
    name = _NAMES.get(kind)
    if name is None:
        raise HandoffError(stage, f"protocol error: unknown message kind {kind}")
    try:
        body = _body(packet[_HEADER:])
        if kind == 1:
            pid = _int(body, "pid", minimum=1, maximum=_MAX_PID)
            return Hello(
                pid=pid,
                readable=_readable(body.get("readable")),
                serving=_flag(body, "serving"),
                precopy=_flag(body, "precopy"),
                versions=_live_versions(body),
                code_version=_code_version(body),
                lossy=_readable(body.get("lossy", {}), key="lossy"),
            )
        if kind == 2:
            fallback = body.get("fallback", "")
            if not isinstance(fallback, str):
                raise ValueError(f"'fallback' must be a string, got {type(fallback).__name__}")
            return SnapshotOffer(
                size=_int(body, "size"),
                listeners=_names(body.get("listeners")),
                trace=_traceparent(body.get("trace")),
                fallback=_text(fallback, "'fallback'"),
                paused=_paused(body.get("paused")),
            )
        if kind == 8:
            piece_kind = body.get("kind")
            if piece_kind not in ("full", "delta"):
                raise ValueError(f'\'kind\' must be "full" or "delta", got {_show(piece_kind)}')
            return Piece(
                round=_int(body, "round", maximum=_MAX_ROUND),
                kind="full" if piece_kind == "full" else "delta",
                size=_int(body, "size"),
            )
        if kind == 9:
            deltas = body.get("deltas")
            if type(deltas) is not bool:
                raise ValueError(f"'deltas' must be true or false, got {_show(deltas)}")
            why = body.get("why", "")
            if not isinstance(why, str):
                raise ValueError(f"'why' must be a string, got {type(why).__name__}")
            return Applied(
                round=_int(body, "round", maximum=_MAX_ROUND),
                deltas=deltas,
                records=_int(body, "records"),
                why=_text(why, "'why'"),
            )
        if kind == 3:
            return Ready(pid=_int(body, "pid", minimum=1, maximum=_MAX_PID))
        if kind == 4:
            return Commit()
        if kind == 5:
            return Failed(reason=_str(body, "reason"))
        if kind == 7:
            return Serving()
        return Abort(reason=_str(body, "reason"))
    except ValueError as exc:  # json.JSONDecodeError included
        raise HandoffError(stage, f"protocol error: bad {name} body: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Received:
    """A message from the peer, with the descriptors that came with it (the caller's)."""

    message: Message
    fds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NoMessage:
    """Why no message came: the deadline passed, the watched process exited, or the
    peer closed the channel."""

    why: Literal["timeout", "exited", "closed"]


class Channel:
    """One end of a control channel: whole messages in, whole messages out.

    Sending happens at once; receiving is a step (see
    :mod:`statemigrate.handoff._drive`) that waits until a message can be read, the
    deadline passes, or a watched descriptor (the peer's pidfd) becomes readable, so
    a peer that dies is noticed at once instead of at the timeout.
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

    def receive(
        self,
        *,
        stage: str,
        deadline: float,
        max_fds: int = 0,
        watch: int | None = None,
        waiting: str | None = None,
    ) -> Steps[Received | NoMessage]:
        """Steps: wait for the next message and read it.

        With ``waiting`` (what is awaited, and the timeout that bounds it), a line is
        logged every :data:`PROGRESS_EVERY` seconds of the wait: a successor's restore
        may take minutes, and the old process would otherwise say nothing meanwhile.

        Returns:
            The message (descriptors only with ``SNAPSHOT`` and ``PIECE``, at most
            ``max_fds``), or
            why none came.

        Raises:
            HandoffError: the packet was malformed or carried descriptors where none
                belong; anything received has been closed.
        """
        ours = self.sock.fileno()
        fds = (ours,) if watch is None else (ours, watch)
        began = time.monotonic()
        while True:
            until = deadline
            if waiting is not None:
                until = min(deadline, time.monotonic() + PROGRESS_EVERY)
            ready = yield from wait_readable(fds, until)
            if ready is not None or until >= deadline:
                break
            logger.info(
                "handoff: waiting for %s: %.0f s of at most %.0f s",
                waiting,
                time.monotonic() - began,
                deadline - began,
            )
        if ready is None:
            return NoMessage("timeout")
        if ready != ours:
            return NoMessage("exited")
        return self.read(stage=stage, max_fds=max_fds)

    def read(self, *, stage: str, max_fds: int = 0) -> Received | NoMessage:
        """Read the message waiting on the channel (or its end: ``NoMessage("closed")``).

        Raises:
            HandoffError: as for :meth:`receive`.
        """
        try:
            packet, fds = receive_fds(
                self.sock, max_bytes=MAX_MESSAGE, max_fds=min(max_fds + 1, MAX_FDS), stage=stage
            )
        except HandoffError as exc:
            # A peer that exits with our last message still unread resets the channel:
            # it is gone all the same.
            if isinstance(exc.__cause__, ConnectionResetError):
                return NoMessage("closed")
            raise
        if not packet and not fds:
            return NoMessage("closed")
        try:
            message = decode_message(packet, stage=stage)
            if len(fds) > max_fds or (fds and not isinstance(message, SnapshotOffer | Piece)):
                raise HandoffError(
                    stage,
                    f"protocol error: {message_name(message)} carried {len(fds)} descriptors",
                )
        except HandoffError:
            close_all(fds)
            raise
        return Received(message, tuple(fds))


# What the old process waits for at each stage, to name it when the successor leaves.
_AWAITED = {"handshake": "HELLO", "precopy": "APPLIED", "ready": "READY", "serving": "SERVING"}


def expect_reply(
    got: Received | NoMessage, wanted: type[Message], *, stage: str, timeout: float
) -> Message:
    """Turn what the old process received from the successor into ``wanted``.

    Raises:
        SuccessorFailedError: the successor reported FAILED, or hung up.
        HandoffError: nothing came within ``timeout`` seconds, or another message.
    """
    name = awaited(stage, wanted)
    if isinstance(got, NoMessage):
        if got.why == "timeout":
            raise HandoffError(stage, f"no {name} from the successor within {timeout:g} s")
        raise SuccessorFailedError(stage, f"the successor hung up before sending {name}")
    message = got.message  # the old side accepts no descriptors, so got.fds is empty
    if isinstance(message, Failed):
        raise SuccessorFailedError(
            stage, f"the successor failed: {message.reason}", reason=message.reason
        )
    if not isinstance(message, wanted):
        raise HandoffError(stage, f"protocol error: expected {name}, got {message_name(message)}")
    return message


def awaited(stage: str, wanted: type[Message] | None = None) -> str:
    """The message the old process waits for at ``stage`` (``READY`` when unsure)."""
    if stage in _AWAITED:
        return _AWAITED[stage]
    return _NAMES[_KINDS[wanted]] if wanted is not None else "READY"
