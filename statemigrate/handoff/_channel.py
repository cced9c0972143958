"""One end of the control channel: whole messages, and their descriptors, in and out.

The channel is a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket: each message is
one packet, sent at once. Receiving is a step (:mod:`statemigrate.handoff._drive`)
that also watches the peer's pidfd, and says now and then how long a long wait has
lasted.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from statemigrate._errors import HandoffError
from statemigrate.handoff._drive import Steps, wait_readable
from statemigrate.handoff._fdpass import MAX_FDS, close_all, receive_fds, send_fds
from statemigrate.handoff._messagedecode import decode_message
from statemigrate.handoff._messages import (
    MAX_MESSAGE,
    Message,
    Piece,
    SnapshotOffer,
    encode_message,
    message_name,
)

__all__ = ["PROGRESS_EVERY", "Channel", "NoMessage", "Received"]

logger = logging.getLogger("statemigrate.handoff")

#: Seconds between two lines saying that a long wait for the peer goes on.
PROGRESS_EVERY = 10.0


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
