"""A handoff between two services of this process, over a socket pair: the successor
takes over in a thread while the old service hands over, as two processes would,
without the cost of starting one."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import statemigrate as sm
from statemigrate.handoff import (
    HandoffReport,
    hand_over,
    hand_over_async,
    receive_handoff,
    take_over,
)


def hand_over_in_process(
    service: sm.Service, successor: sm.Service, *, asynchronous: bool = False, **options: Any
) -> HandoffReport:
    """``service`` hands over to ``successor`` (``options`` go to ``hand_over``, or to
    ``hand_over_async`` when ``asynchronous``); the report of the old side."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def take() -> None:
        with receive_handoff(theirs) as inheritance:
            take_over(successor, inheritance)

    thread = threading.Thread(target=take)
    with ours, theirs:
        thread.start()
        if asynchronous:
            report = asyncio.run(hand_over_async(service, ours, listeners={}, **options))
        else:
            report = hand_over(service, ours, listeners={}, **options)
        thread.join(60)  # only stops a hang
    return report
