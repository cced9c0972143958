"""The control channel's protocol between the old process and its successor.

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
    old -> successor   HELD      {paused} (only when HELLO said ``held: true``)
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

``HELD`` follows SERVING, once the old process's ``stop_accepting()`` returned: the
seconds it held its writers, its own figure of the pause, which the successor makes
the pause its metrics report (``paused`` in SNAPSHOT leaves out the deliveries of
SNAPSHOT and SERVING, and a busy successor's wake-up to read SNAPSHOT can be tens of
milliseconds). Announced in HELLO (``held: true``); an old process of an earlier
release never sends it and closes the channel as it ends, and the successor keeps its
own figure. Nothing depends on it: the successor serves before it comes.

Descriptors travel only with ``SNAPSHOT`` and ``PIECE``; any other message that carries some is
refused and the descriptors are closed.

Every packet is hostile input: :func:`decode_message` returns a message whose
fields have their documented types and ranges, or raises :class:`HandoffError`
(``protocol error``), whatever the bytes.

The pieces: the messages and their encoding are :mod:`statemigrate.handoff._messages`,
decoding :mod:`statemigrate.handoff._messagedecode`, the channel
:mod:`statemigrate.handoff._channel`. This module holds what follows from the
conversation itself (what the old process awaits at each stage, and how it reads
the successor's reply), and is where the rest of the package imports the
protocol's names from.
"""

from __future__ import annotations

from statemigrate._errors import HandoffError, SuccessorFailedError
from statemigrate.handoff._channel import Channel, NoMessage, Received
from statemigrate.handoff._messagedecode import decode_message
from statemigrate.handoff._messages import (
    KINDS,
    MAGIC,
    MAX_MESSAGE,
    NAMES,
    PROTOCOL_VERSION,
    Abort,
    Applied,
    Commit,
    Failed,
    Held,
    Hello,
    Message,
    Piece,
    PieceKind,
    Ready,
    Serving,
    SnapshotOffer,
    encode_message,
    message_name,
)

__all__ = [
    "MAGIC",
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "Abort",
    "Applied",
    "Channel",
    "Commit",
    "Failed",
    "Held",
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
    return NAMES[KINDS[wanted]] if wanted is not None else "READY"
