"""What the asyncio adapters share at the switch: the gate that holds writes during a
handoff's pause, and stop signals held while a handoff runs.

The adapters differ in how a request reaches them (an aiohttp middleware, an ASGI
call); what a write waits for, and when a stop takes effect, is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

__all__ = ["SAFE_METHODS", "HeldStops", "WriteGate"]

#: Methods that never change the state: they are served during the pause.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WriteGate:
    """Holds state-changing requests while closed, and tells when none is running."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writers = 0

    async def passage(self) -> None:
        """Wait until the gate is open (at once, unless a pause holds it closed)."""
        await self._open.wait()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Count the block as a write running, which :meth:`close` waits for."""
        self._writers += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._writers -= 1
            if self._writers == 0:
                self._idle.set()

    async def close(self) -> None:
        """Hold new writes, and wait for the writes already running to end."""
        self._open.clear()
        await self._idle.wait()

    def open(self) -> None:
        """Let the held writes go: on here (a failed handoff), or to forwarding."""
        self._open.set()


class HeldStops:
    """Stop signals during a handoff take effect once it has ended: stopping in the
    middle would abandon a successor that may be about to take the state over.

    Args:
        starting: says whether a handoff is about to start on the loop, though it has
            not entered :meth:`handing_over` yet (a trial's revert, announced in the
            trial record by the watcher's thread before its handoff runs here).
    """

    def __init__(self, starting: Callable[[], bool] | None = None) -> None:
        self._handing_over = False
        self._starting = starting
        self._deferred: list[Callable[[], None]] = []

    def stop(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a stop signal's effect) now, or when the handoff has ended."""
        if self._handing_over or (self._starting is not None and self._starting()):
            self._deferred.append(action)
        else:
            action()

    @asynccontextmanager
    async def handing_over(self) -> AsyncIterator[None]:
        """The block is a handoff: stops asked for meanwhile run when it leaves."""
        self._handing_over = True
        try:
            yield
        finally:
            self._handing_over = False
            deferred, self._deferred = self._deferred, []
            for action in deferred:
                action()
