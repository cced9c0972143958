"""Holding a service's writers while a checkpoint is taken: the shapes a ``quiesce``
may have (a lock, a function returning a context manager, ``pause()`` and
``resume()``, or their event-loop forms) and one hold of the writers for each.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from typing import Protocol

from statemigrate._errors import ConfigurationError

__all__ = ["AsyncPausable", "Pausable", "Quiesce", "async_hold", "async_only", "hold_of"]


class Pausable(Protocol):
    """A server that can hold its writers: what the handoff's ``ServerControl`` has."""

    def pause(self) -> None:
        """Let the change in progress finish, and hold the ones that would start."""

    def resume(self) -> None:
        """Let the held changes go on."""


class AsyncPausable(Protocol):
    """:class:`Pausable` on an event loop: what the handoff's ``AsyncServerControl`` has."""

    async def pause(self) -> None:
        """As :meth:`Pausable.pause`."""

    async def resume(self) -> None:
        """As :meth:`Pausable.resume`."""


Quiesce = (
    AbstractContextManager[object]
    | Callable[[], AbstractContextManager[object]]
    | Pausable
    | AbstractAsyncContextManager[object]
    | AsyncPausable
)
"""A way to hold a service's writers: a reusable context manager (a ``threading.Lock``
every writer takes), a function returning a context manager, an object with
``pause()`` and ``resume()``, or, on an event loop only, an async context manager (an
``asyncio.Lock``) or an object with ``pause()`` and ``resume()`` coroutines."""


def async_only(quiesce: object) -> bool:
    """Whether ``quiesce`` holds the writers on an event loop only: an async context
    manager, or ``pause()`` and ``resume()`` coroutines (an ``AsyncServerControl``)."""
    if hasattr(quiesce, "__aenter__") and not hasattr(quiesce, "__enter__"):
        return True
    return inspect.iscoroutinefunction(getattr(quiesce, "pause", None))


def async_hold(quiesce: object) -> AbstractAsyncContextManager[object]:
    """One hold of the writers on an event loop, for an async-only ``quiesce``."""
    if hasattr(quiesce, "__aenter__"):
        return quiesce  # type: ignore[return-value]
    pause, resume = getattr(quiesce, "pause"), getattr(quiesce, "resume")  # noqa: B009

    @asynccontextmanager
    async def paused() -> AsyncIterator[None]:
        await pause()
        try:
            yield
        finally:
            await resume()

    return paused()


def hold_of(quiesce: object) -> Callable[[], AbstractContextManager[object]]:
    """The function that enters one hold of the writers, for each shape of ``quiesce``.

    Raises:
        ConfigurationError: ``quiesce`` has none of the shapes.
    """
    if quiesce is None:
        return nullcontext
    if async_only(quiesce):

        def refused() -> AbstractContextManager[object]:
            raise ConfigurationError(
                "quiesce",
                "an async context manager, or pause() and resume() coroutines, hold the"
                " writers on the event loop only:"
                " await checkpoint() or run() there",
            )

        return refused
    if hasattr(quiesce, "__enter__") and hasattr(quiesce, "__exit__"):
        manager: AbstractContextManager[object] = quiesce
        return lambda: manager
    pause, resume = getattr(quiesce, "pause", None), getattr(quiesce, "resume", None)
    if callable(pause) and callable(resume):

        @contextmanager
        def paused() -> Iterator[None]:
            pause()
            try:
                yield
            finally:
                resume()

        return paused
    if callable(quiesce):
        return quiesce
    raise ConfigurationError(
        "quiesce",
        "expected a context manager (a lock the writers take), a function returning one,"
        " an object with pause() and resume(), or an async context manager, not"
        f" {type(quiesce).__name__}",
    )
