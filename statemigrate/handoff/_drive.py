"""Running a handoff's steps: blocking, or on an asyncio event loop.

Both sides of a handoff are written once, as generators ("steps") that do every
non-waiting thing themselves (build, send and parse messages, start and signal the
successor, take the snapshot) and yield an effect whenever they must wait:

* :class:`WaitReadable`: until one of some descriptors is readable (a message on the
  control channel, the successor's pidfd once it exited) or a deadline passes. The
  steps get back that descriptor, or ``None`` at the deadline.
* :class:`CallHook`: for the server to pause, resume or stop accepting.

A driver performs them. :func:`run_blocking` waits with ``poll(2)`` and calls a
:class:`~statemigrate.handoff.ServerControl`; :func:`run_async` waits with the event
loop's readiness callbacks (``loop.add_reader``) and awaits an
:class:`~statemigrate.handoff.AsyncServerControl`, so the loop goes on serving
meanwhile. Whatever goes wrong while an effect is performed (a hook that raised,
``KeyboardInterrupt``, a cancelled task) is thrown into the steps at their ``yield``,
so their own clean-up runs, through the same driver, in both flavours.

Sending never waits: a control message is at most 64 KiB, the socket's buffer holds
several, and a conversation has at most two messages in flight.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar, cast

if TYPE_CHECKING:
    import asyncio

    from statemigrate.handoff._control import AsyncServerControl, ServerControl

__all__ = [
    "CallHook",
    "Effect",
    "Hook",
    "Steps",
    "WaitReadable",
    "call_hook",
    "ready_now",
    "run_async",
    "run_blocking",
    "wait_readable",
]

T = TypeVar("T")

Hook = Literal["pause", "resume", "stop_accepting"]


@dataclass(frozen=True, slots=True)
class WaitReadable:
    """Wait until one of ``fds`` is readable (or hung up), or ``deadline`` passes.

    ``deadline`` is on the ``time.monotonic()`` clock. The first ready descriptor in
    the order of ``fds`` is sent back, so a message waiting on the channel wins over
    the exit of the process that sent it.
    """

    fds: tuple[int, ...]
    deadline: float


@dataclass(frozen=True, slots=True)
class CallHook:
    """Call (or await) the server control's method ``name``."""

    name: Hook


Effect = WaitReadable | CallHook
#: Steps that return a ``T``: a generator of effects, sent back their outcomes.
Steps = Generator[Effect, object, T]


def wait_readable(fds: Sequence[int], deadline: float) -> Steps[int | None]:
    """Steps: wait for one of ``fds``; return it, or ``None`` at the deadline."""
    got = yield WaitReadable(tuple(fds), deadline)
    assert got is None or isinstance(got, int), got
    return got


def call_hook(name: Hook) -> Steps[None]:
    """Steps: have the server control's ``name`` method run."""
    yield CallHook(name)


def ready_now(fds: Sequence[int]) -> int | None:
    """The first of ``fds`` that is readable (or hung up) right now, else ``None``."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ready = {fd for fd, _mask in poller.poll(0)}
    return next((fd for fd in fds if fd in ready), None)


# poll(2) takes its timeout in milliseconds, as a C int; longer waits take several calls.
_MAX_POLL_MS = 2**31 - 1


def _poll(effect: WaitReadable) -> int | None:
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


def run_blocking(steps: Steps[T], control: ServerControl | None) -> T:
    """Run ``steps`` to the end in this thread, waiting with ``poll``.

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
            if isinstance(effect, WaitReadable):
                reply = _poll(effect)
            elif control is not None:
                getattr(control, effect.name)()
        except BaseException as exc:  # the steps' clean-up decides what happens
            error = exc


async def _wait_on_loop(loop: asyncio.AbstractEventLoop, effect: WaitReadable) -> int | None:
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


async def run_async(steps: Steps[T], control: AsyncServerControl | None) -> T:
    """Run ``steps`` to the end on the running event loop, waiting on its readiness.

    Returns:
        What the steps return; what they raise propagates. Cancelling the task
        throws ``CancelledError`` into the steps: their clean-up (stopping a
        successor, resuming the server) runs before the cancellation propagates.
    """
    import asyncio  # here: a blocking service never pays for importing asyncio

    loop = asyncio.get_running_loop()
    reply: object = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            return cast(T, done.value)
        reply, error = None, None
        try:
            if isinstance(effect, WaitReadable):
                reply = await _wait_on_loop(loop, effect)
            elif control is not None:
                await getattr(control, effect.name)()
        except BaseException as exc:  # the steps' clean-up decides what happens
            error = exc
