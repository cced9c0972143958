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

:func:`take_over_or_withdraw` is the take-over itself, the same in every adapter:
aiohttp's runs it before its site starts, the ASGI wrapper inside the lifespan
start-up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from statemigrate._errors import HandoffError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._service import Service
from statemigrate.handoff import Inheritance, TakeOverReport, take_over_async

__all__ = ["Withdrawal", "take_over_or_withdraw"]

logger = logging.getLogger("statemigrate.handoff")

#: What a signal's handler may be, as ``signal.signal`` returns it.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class Withdrawal:
    """The stop signals a successor receives while it takes the state over.

    Install it (:meth:`install`) once the take-over is known to begin, pass
    :meth:`serves` to :func:`~statemigrate.handoff.receive_handoff`, give it the task
    running the take-over (:meth:`watch`), and when the take-over has ended hand the
    signals back: to the loop (:meth:`uninstall`), or to the handlers they had before
    (:meth:`restore`).

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
        self._previous: dict[int, _Handler] = {}

    @property
    def withdrew(self) -> bool:
        """A stop signal came before SERVING: this process does not take over."""
        return bool(self.received) and not self.confirmed

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the main thread: catch the stop signals from now on, in place of the
        handlers they had: the loop's (removed: the loop would run them too, on the
        same signal) or a server's own, set with ``signal.signal`` (kept for
        :meth:`restore`)."""
        self._loop = loop
        for signum in self.signals:
            loop.remove_signal_handler(signum)
            self._previous[signum] = signal.signal(signum, self._caught)

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

    def restore(self) -> None:
        """Put back the handlers ``signal.signal`` gave the stop signals before
        :meth:`install` (a loop's handler removed there is not: add it again)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
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


async def take_over_or_withdraw(
    service: Service, inheritance: Inheritance, withdrawal: Withdrawal, *, allow_lossy: AllowLossy
) -> TakeOverReport | None:
    """Take the state over, or withdraw on a stop signal received before SERVING.

    ``withdrawal`` is installed, and was given to the ``receive_handoff`` call that
    returned ``inheritance``; the caller hands its signals back afterwards. This
    closes ``inheritance``.

    Returns:
        The take-over's report, or ``None`` when this process withdrew (the old
        process was told so, and a WARNING logged): the old process serves on, and
        this one stops without serving.

    Raises:
        HandoffError, RestoreError: taking over failed for another reason.
    """
    with inheritance:
        taking = asyncio.ensure_future(
            take_over_async(service, inheritance, allow_lossy=allow_lossy)
        )
        withdrawal.watch(taking)
        try:
            return await taking
        except (asyncio.CancelledError, HandoffError):
            current = asyncio.current_task()
            if not withdrawal.withdrew or (current is not None and current.cancelling()):
                raise
            inheritance.failed(withdrawal.reason)  # if it has not said so yet
    logger.warning(
        "handoff: %s received before taking the state over: this process withdraws"
        " and exits; the old process pid %d serves on",
        signal.Signals(withdrawal.received[0]).name,
        inheritance.parent_pid,
    )
    return None
