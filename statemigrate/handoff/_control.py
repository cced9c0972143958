"""How a handoff holds and releases the server: one object with three methods.

The old process must stop changing its state while the snapshot is taken, go on if
the handoff fails, and stop accepting once the successor took over. A server says
how by being (or wrapping itself in) a :class:`ServerControl`; an asyncio server
by being an :class:`AsyncServerControl`, whose methods are coroutines. The two
adapters turn plain functions into either, so a caller with nothing to pause passes
nothing at all and a caller with one function passes just that one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol

from statemigrate._errors import ConfigurationError

__all__ = [
    "HOOKS",
    "AsyncControlCallbacks",
    "AsyncServerControl",
    "ControlCallbacks",
    "ServerControl",
    "check_control",
]

#: The methods of a server control, in the order a handoff may call them.
HOOKS = ("pause", "resume", "stop_accepting")


class ServerControl(Protocol):
    """What the old process's server must do during a handoff (blocking flavour).

    Any object with these three methods will do; the demo server and the test
    servers pass themselves.
    """

    def pause(self) -> None:
        """Stop every change to the state; changes that would start wait.

        Called after the successor's HELLO, right before the snapshot is taken.
        """

    def resume(self) -> None:
        """Undo :meth:`pause`: the waiting changes go on against the state that stayed.

        Called only when the handoff fails after :meth:`pause`.
        """

    def stop_accepting(self) -> None:
        """Stop accepting on this process's copies of the listeners.

        Called once the successor took over. Changes held by :meth:`pause` must not
        be applied any more: answer them with a retryable error or forward them.
        """


class AsyncServerControl(Protocol):
    """:class:`ServerControl` for an asyncio server: the same three methods, as coroutines.

    One that drains after the move may also have ``keep_late_writes(marks)``: it is
    given the marks on the state opened just after the last piece was taken
    (:class:`~statemigrate._runtime._latewrites.LateWrites`), and tells and closes
    them when its drain ends, as the server adapters do, rather than the handoff at
    SERVING.
    """

    async def pause(self) -> None:
        """As :meth:`ServerControl.pause`."""

    async def resume(self) -> None:
        """As :meth:`ServerControl.resume`."""

    async def stop_accepting(self) -> None:
        """As :meth:`ServerControl.stop_accepting`."""


def _callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(name, f"must be a function or None, not {value!r}")


class ControlCallbacks:
    """A :class:`ServerControl` made of plain functions; a missing one does nothing.

    ``ControlCallbacks(pause=server.pause, resume=server.resume)``.

    Raises:
        ConfigurationError: an argument is neither callable nor ``None``.
    """

    def __init__(
        self,
        *,
        pause: Callable[[], object] | None = None,
        resume: Callable[[], object] | None = None,
        stop_accepting: Callable[[], object] | None = None,
    ) -> None:
        for name, value in zip(HOOKS, (pause, resume, stop_accepting), strict=True):
            _callable(name, value)
        self._pause = pause
        self._resume = resume
        self._stop_accepting = stop_accepting

    def pause(self) -> None:
        """Call the ``pause`` function, if any."""
        if self._pause is not None:
            self._pause()

    def resume(self) -> None:
        """Call the ``resume`` function, if any."""
        if self._resume is not None:
            self._resume()

    def stop_accepting(self) -> None:
        """Call the ``stop_accepting`` function, if any."""
        if self._stop_accepting is not None:
            self._stop_accepting()

    def __repr__(self) -> str:
        given = [name for name in HOOKS if getattr(self, f"_{name}") is not None]
        return f"ControlCallbacks({', '.join(given)})"


class AsyncControlCallbacks:
    """An :class:`AsyncServerControl` made of functions returning awaitables (coroutine
    functions, usually); a missing one does nothing.

    Raises:
        ConfigurationError: an argument is neither callable nor ``None``.
    """

    def __init__(
        self,
        *,
        pause: Callable[[], Awaitable[object]] | None = None,
        resume: Callable[[], Awaitable[object]] | None = None,
        stop_accepting: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        for name, value in zip(HOOKS, (pause, resume, stop_accepting), strict=True):
            _callable(name, value)
        self._pause = pause
        self._resume = resume
        self._stop_accepting = stop_accepting

    async def pause(self) -> None:
        """Await the ``pause`` function, if any."""
        if self._pause is not None:
            await self._pause()

    async def resume(self) -> None:
        """Await the ``resume`` function, if any."""
        if self._resume is not None:
            await self._resume()

    async def stop_accepting(self) -> None:
        """Await the ``stop_accepting`` function, if any."""
        if self._stop_accepting is not None:
            await self._stop_accepting()

    def __repr__(self) -> str:
        given = [name for name in HOOKS if getattr(self, f"_{name}") is not None]
        return f"AsyncControlCallbacks({', '.join(given)})"


def check_control(control: object, *, asynchronous: bool) -> None:
    """Check that ``control`` fits the flavour of the handoff it is passed to.

    A coroutine method called by the blocking flavour would only create a coroutine
    and never run it: the server would not be paused at all. So each flavour
    refuses the other's controls before anything starts.

    Raises:
        ConfigurationError: a method is missing, or is (or is not) a coroutine
            function where the flavour needs the opposite.
    """
    if control is None:
        return
    for name in HOOKS:
        method = getattr(control, name, None)
        if not callable(method):
            raise ConfigurationError("control", f"{type(control).__name__} has no {name}() method")
        if inspect.iscoroutinefunction(method) != asynchronous:
            if asynchronous:
                detail = (
                    f"{type(control).__name__}.{name}() is not a coroutine function;"
                    " the asyncio flavour needs an AsyncServerControl"
                    " (AsyncControlCallbacks wraps plain coroutine functions)"
                )
            else:
                detail = (
                    f"{type(control).__name__}.{name}() is a coroutine function;"
                    " pass it to the asyncio flavour (hand_over_async, send_handoff_async)"
                )
            raise ConfigurationError("control", detail)
