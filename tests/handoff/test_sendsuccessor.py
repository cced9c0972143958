"""The old process's reading of a successor that left while it was sending: the reason
the successor gave in FAILED before it closed the channel is found and kept."""

from __future__ import annotations

import socket

import pytest

from statemigrate._errors import HandoffError
from statemigrate.handoff._protocol import Abort, Channel, Failed, encode_message
from statemigrate.handoff._sendsuccessor import _failure_queued


def test_a_failed_sent_before_the_successor_closed_is_read_after_a_refused_send(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    old, new = pair
    new.send(encode_message(Failed(reason="SIGTERM received: the successor withdraws")))
    new.close()
    channel = Channel(old)
    with pytest.raises(HandoffError) as refused:  # the old process sending its next piece
        channel.send(Abort(reason="x"), stage="precopy")
    assert isinstance(refused.value.__cause__, BrokenPipeError | ConnectionResetError)
    assert _failure_queued(channel) == "SIGTERM received: the successor withdraws"


def test_a_successor_that_left_saying_nothing_gave_no_reason(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    old, new = pair
    new.close()
    assert _failure_queued(Channel(old)) is None
