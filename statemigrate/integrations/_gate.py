"""What the adapters share at the switch: which requests may run during a handoff's
pause, the gate that holds the others, and stop signals held while a handoff runs.

The adapters differ in how a request reaches them (an aiohttp middleware, an ASGI
call, gunicorn's ``pre_request``); what a write waits for, and when a stop takes
effect, is the same.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate.handoff import HandoffTimeouts

__all__ = [
    "SAFE_METHODS",
    "TELL_AFTER",
    "HeldStops",
    "WriteGate",
    "safe_methods_of",
    "waiting_for_writes",
    "writes_still_running",
]

logger = logging.getLogger("statemigrate.handoff")

#: Methods that never change the state: they are served during the pause. The
#: default of each adapter's ``safe_methods``.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# A method is an HTTP token (RFC 9110, section 5.6.2).
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: Seconds after which a pause still waiting for the writes running says so: until
#: then, writes held are the ordinary cost of a pause, not a thing to look into.
TELL_AFTER = 1.0


def safe_methods_of(methods: Iterable[str]) -> frozenset[str]:
    """An adapter's ``safe_methods=``, checked: the methods that never change the
    state, served during a handoff's pause while every other request is held.

    A read that changes the state (an LRU cache moving the entry it returns to the
    end, a hit counter) is no safe method when it can run beside the export: in
    another thread, or across an ``await``. Between its two halves the export would
    see the state torn, and the successor would lack what the read had taken out.
    With ``()`` every request is held during the pause. Methods are compared as
    the client sent them (they are case-sensitive): ``"get"`` is not ``GET``.

    Raises:
        ConfigurationError: ``methods`` is a string, or holds something else than
            method names.
    """
    if isinstance(methods, str | bytes) or not isinstance(methods, Iterable):
        raise ConfigurationError(
            "safe_methods", f"must be a collection of method names, not {methods!r}"
        )
    names = tuple(methods)
    for name in names:
        if not isinstance(name, str) or _METHOD.fullmatch(name) is None:
            raise ConfigurationError("safe_methods", f"{name!r} is not an HTTP method")
    return frozenset(names)


def _requests(count: int) -> str:
    return f"{count} write request{'' if count == 1 else 's'}"


def waiting_for_writes(count: int, bound: float) -> str:
    """The line logged once a pause has waited :data:`TELL_AFTER` for the writes running:
    why every other write is held."""
    return (
        f"handoff: the pause waits for {_requests(count)} still running; new writes are"
        f" held meanwhile, for at most {bound:g} s in all (HandoffTimeouts.writes)"
    )


def writes_still_running(count: int, bound: float) -> HandoffError:
    """The failure of a pause whose writes running did not all end within ``bound``."""
    return HandoffError(
        "writes",
        f"{_requests(count)} still running after {bound:g} s of the pause; the handoff is"
        " abandoned and the old process serves on, writes included. Raise"
        " HandoffTimeouts.writes, or bound request bodies and request timeouts in the"
        " server: a client sending its body slowly keeps its write running",
    )


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


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

    async def close(self, bound: float) -> None:
        """Hold new writes, and wait for the writes already running to end, at most
        ``bound`` seconds (``HandoffTimeouts.writes``): a client trickling its body
        would otherwise hold every other write for as long as it likes.

        Raises:
            HandoffError: stage ``writes``, some were still running after ``bound``
                seconds. The gate is open again: the held writes go on here.
        """
        self._open.clear()
        try:
            if await _set_within(self._idle, min(bound, TELL_AFTER)):
                return
            if bound > TELL_AFTER:
                logger.warning("%s", waiting_for_writes(self._writers, bound))
                if await _set_within(self._idle, bound - TELL_AFTER):
                    return
        except BaseException:
            self._open.set()  # not closed after all (a cancelled handoff)
            raise
        count = self._writers
        self._open.set()
        raise writes_still_running(count, bound)

    def open(self) -> None:
        """Let the held writes go: on here (a failed handoff), or to forwarding."""
        self._open.set()


class HeldStops:
    """Stop signals during a handoff take effect once it has ended: stopping in the
    middle would abandon a successor that may be about to take the state over.

    A stop held is logged as a warning, with how long the handoff has run and the
    waits that bound it: a service manager's stop that seems ignored would otherwise
    say nothing until it takes effect.

    Args:
        starting: says whether a handoff is about to start on the loop, though it has
            not entered :meth:`handing_over` yet (a trial's revert, announced in the
            trial record by the watcher's thread before its handoff runs here).
        timeouts: the handoff's timeouts, for the log line.
    """

    def __init__(
        self,
        starting: Callable[[], bool] | None = None,
        *,
        timeouts: HandoffTimeouts | None = None,
    ) -> None:
        self._handing_over = False
        self._began = 0.0
        self._starting = starting
        self._timeouts = timeouts if timeouts is not None else HandoffTimeouts()
        self._deferred: list[Callable[[], None]] = []

    def stop(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a stop signal's effect) now, or when the handoff has ended."""
        if self._handing_over or (self._starting is not None and self._starting()):
            self._deferred.append(action)
            logger.warning("handoff: %s", self._held_line())
        else:
            action()

    def _held_line(self) -> str:
        t = self._timeouts
        waits = t.hello + t.writes + t.ready + t.serving + t.kill_grace
        ran = "about to start"
        if self._handing_over:
            ran = f"running for {time.monotonic() - self._began:.1f} s"
        return (
            f"stop signal held: a handoff is {ran}, and the stop takes effect once it"
            f" ends; its waits last at most {waits:.0f} s (HandoffTimeouts hello + writes"
            f" + ready + serving + kill_grace), plus at most {t.precopy:.0f} s a"
            " round with pre-copy"
        )

    @asynccontextmanager
    async def handing_over(self) -> AsyncIterator[None]:
        """The block is a handoff: stops asked for meanwhile run when it leaves."""
        self._handing_over = True
        self._began = time.monotonic()
        try:
            yield
        finally:
            self._handing_over = False
            deferred, self._deferred = self._deferred, []
            for action in deferred:
                action()
