"""Waiting on descriptors, written once for a blocking caller and an event loop.

Work that must wait for another process (a forked child's exit, a message on a
socket) is written as a generator of "steps" that does every non-waiting thing
itself and yields an effect whenever it must wait: here, :class:`WaitReadable`, until
one of some descriptors is readable or a deadline passes. A driver performs the
effects: :func:`run_waits` with ``poll(2)`` in the calling thread, :func:`run_waits_async`
with the event loop's readiness callbacks (``loop.add_reader``), so the loop goes on
serving meanwhile. Whatever goes wrong while an effect is performed (``KeyboardInterrupt``,
a cancelled task) is thrown into the steps at their ``yield``, so their own clean-up
runs, in both flavours.

:func:`drive` and :func:`drive_async` take the function performing each effect, for
callers whose steps yield effects of their own beside :class:`WaitReadable` (the
handoff's calls of its server hooks).
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

__all__ = [
    "WaitReadable",
    "Waits",
    "drive",
    "drive_async",
    "poll_readable",
    "readable_on_loop",
    "ready_now",
    "run_waits",
    "run_waits_async",
    "wait_readable",
]

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class WaitReadable:
    """Wait until one of ``fds`` is readable (or hung up), or ``deadline`` passes.

    ``deadline`` is on the ``time.monotonic()`` clock. The first ready descriptor in
    the order of ``fds`` is sent back, so a message waiting on a channel wins over
    the exit of the process that sent it.
    """

    fds: tuple[int, ...]
    deadline: float


#: Steps that return a ``T`` and only ever wait for descriptors.
Waits = Generator[WaitReadable, object, T]


def wait_readable(fds: Sequence[int], deadline: float) -> Waits[int | None]:
    """Steps: wait for one of ``fds``; return it, or ``None`` at the deadline."""
    got = yield WaitReadable(tuple(fds), deadline)
    assert got is None or isinstance(got, int), got
    return got


def ready_now(fds: Sequence[int]) -> int | None:
    """The first of ``fds`` that is readable (or hung up) right now, else ``None``."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ready = {fd for fd, _mask in poller.poll(0)}
    return next((fd for fd in fds if fd in ready), None)


# poll(2) takes its timeout in milliseconds, as a C int; longer waits take several calls.
_MAX_POLL_MS = 2**31 - 1


def poll_readable(effect: WaitReadable) -> int | None:
    """Perform ``effect`` in this thread, with ``poll(2)``."""
    poller = select.poll()
    for fd in effect.fds:
        poller.register(fd, select.POLLIN)
    while True:
        remaining = effect.deadline - time.monotonic()
        if remaining <= 0:
            return None
        events = poller.poll(min(_MAX_POLL_MS, max(1, math.ceil(remaining * 1000))))
        ready = {fd for fd, _mask in events}
        for fd in effect.fds:
            if fd in ready:
                return fd


async def readable_on_loop(effect: WaitReadable) -> int | None:
    """Perform ``effect`` on the running event loop, which serves meanwhile."""
    import asyncio  # here: a blocking service never pays for importing asyncio

    loop = asyncio.get_running_loop()
    while True:
        remaining = effect.deadline - time.monotonic()
        if remaining <= 0:
            return None
        found = ready_now(effect.fds)
        if found is not None:
            return found
        woken = loop.create_future()

        def wake(woken: asyncio.Future[None] = woken) -> None:
            if not woken.done():
                woken.set_result(None)

        for fd in effect.fds:
            loop.add_reader(fd, wake)
        timer = loop.call_later(remaining, wake)
        try:
            await woken
        finally:
            timer.cancel()
            for fd in effect.fds:
                loop.remove_reader(fd)


def drive(steps: Generator[E, object, T], perform: Callable[[E], object]) -> T:
    """Run ``steps`` to the end in this thread, each effect performed by ``perform``
    and its outcome sent back.

    Returns:
        What the steps return; what they raise propagates.
    """
    reply: object = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            return cast(T, done.value)
        reply, error = None, None
        try:
            reply = perform(effect)
        except BaseException as exc:  # the steps' clean-up decides what happens
            error = exc


async def drive_async(
    steps: Generator[E, object, T], perform: Callable[[E], Awaitable[object]]
) -> T:
    """:func:`drive` on the running event loop, each effect awaited.

    Returns:
        What the steps return; what they raise propagates. Cancelling the task
        throws ``CancelledError`` into the steps: their clean-up runs before the
        cancellation propagates.
    """
    reply: object = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            return cast(T, done.value)
        reply, error = None, None
        try:
            reply = await perform(effect)
        except BaseException as exc:  # the steps' clean-up decides what happens
            error = exc


def run_waits(steps: Waits[T]) -> T:
    """Run ``steps`` to the end in this thread, waiting with ``poll``."""
    return drive(steps, poll_readable)


async def run_waits_async(steps: Waits[T]) -> T:
    """Run ``steps`` to the end on the running event loop, waiting on its readiness."""
    return await drive_async(steps, readable_on_loop)
