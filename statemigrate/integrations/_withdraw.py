"""A successor that receives a stop signal before it has taken the state over withdraws.

Until the successor sends SERVING, the old process still owns the state, its
listeners and its held writers, and takes them back if the successor gives up
(docs/handoff.md, the protocol). So a ``SIGTERM`` or ``SIGINT`` that reaches the
successor before that point means "do not start this release": the successor
reports FAILED (or closes the channel unconfirmed, after COMMIT) and exits, and the
old process resumes serving with the requests it held. From SERVING on, the
successor is the service, and a stop signal is a stop of the service.

The cut-off must be exact, so the signals are caught with ``signal.signal`` rather
than the loop's handlers: a Python-level handler runs in the main thread between two
bytecodes, even in the middle of a restore that holds the loop, so
:meth:`Withdrawal.serves` (asked right before SERVING) knows of every signal received
before it. Leaving the wait in progress at once (the pre-copy rounds may go on for
seconds) is left to the loop: the handler asks it to cancel the take-over, which
it does only while SERVING has not been sent.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["Withdrawal"]


class Withdrawal:
    """The stop signals a successor receives while it takes the state over.

    Install it (:meth:`install`) once the take-over is known to begin, pass
    :meth:`serves` to :func:`~statemigrate.handoff.receive_handoff`, give it the task
    running the take-over (:meth:`watch`), and hand the signals back to the loop
    (:meth:`uninstall`) when the take-over has ended.

    Attributes:
        received: the stop signals received so far, in order.
        confirmed: :meth:`serves` said yes: SERVING went, and a stop signal received
            from then on is a stop of the service.
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self.signals = tuple(signals)
        self.received: list[int] = []
        self.confirmed = False
        self._task: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def withdrew(self) -> bool:
        """A stop signal came before SERVING: this process does not take over."""
        return bool(self.received) and not self.confirmed

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the main thread: catch the stop signals from now on, replacing the loop's
        handlers of them (remove those first: the loop would run them too)."""
        self._loop = loop
        for signum in self.signals:
            signal.signal(signum, self._caught)

    def watch(self, task: asyncio.Future[Any]) -> None:
        """Cancel ``task`` (the take-over) on a stop signal received before SERVING."""
        self._task = task
        if self.received:
            self._withdraw()

    def serves(self) -> bool:
        """Asked once COMMIT has arrived, right before SERVING: whether to serve."""
        if self.received:
            return False
        self.confirmed = True
        return True

    def uninstall(
        self, loop: asyncio.AbstractEventLoop, handler: Callable[[int], object]
    ) -> None:
        """Give the stop signals to the loop's ``handler`` (called with the signal)."""
        for signum in self.signals:
            loop.add_signal_handler(signum, handler, signum)
        self._task = None

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt code that holds logging's locks.
        self.received.append(signum)
        if self._loop is not None and not self._loop.is_closed():
            # Safe from a signal handler: asyncio's own runner does the same on SIGINT.
            self._loop.call_soon_threadsafe(self._withdraw)

    def _withdraw(self) -> None:
        # On the loop, so never between COMMIT and SERVING: the take-over sends SERVING
        # in the same step as it asks serves(), without waiting in between.
        if self.confirmed or self._task is None or self._task.done():
            return
        self._task.cancel(self.reason)

    @property
    def reason(self) -> str:
        """Why this process withdrew, as FAILED tells the old process."""
        name = signal.Signals(self.received[0]).name if self.received else "a stop signal"
        return f"{name} received before taking the state over: the successor withdraws"
