"""Running a handoff's steps: blocking, or on an asyncio event loop.

Both sides of a handoff are written once, as generators ("steps") that do every
non-waiting thing themselves (build, send and parse messages, start and signal the
successor, take the snapshot) and yield an effect whenever they must wait:

* :class:`WaitReadable`: until one of some descriptors is readable (a message on the
  control channel, the successor's pidfd once it exited) or a deadline passes. The
  steps get back that descriptor, or ``None`` at the deadline.
* :class:`CallHook`: for the server to pause, resume or stop accepting.
* :class:`Settle`: for what must end before the server pauses (a service's checkpoint
  commits under way) to end; a driver has nothing to do for it, and the service's
  wrapper of the steps (``handoff._service``) waits.

A driver performs them. :func:`run_blocking` waits with ``poll(2)`` and calls a
:class:`~statemigrate.handoff.ServerControl`; :func:`run_async` waits with the event
loop's readiness callbacks (``loop.add_reader``) and awaits an
:class:`~statemigrate.handoff.AsyncServerControl`, so the loop goes on serving
meanwhile. Whatever goes wrong while an effect is performed (a hook that raised,
``KeyboardInterrupt``, a cancelled task) is thrown into the steps at their ``yield``,
so their own clean-up runs, through the same driver, in both flavours. The waiting
and the driving loop live in :mod:`statemigrate._runtime._wait`, where checkpoints
use them too.

Sending never waits: a control message is at most 64 KiB, the socket's buffer holds
several, and a conversation has at most two messages in flight.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from statemigrate._runtime._wait import (
    WaitReadable,
    drive,
    drive_async,
    poll_readable,
    readable_on_loop,
    ready_now,
    wait_readable,
)

if TYPE_CHECKING:
    from statemigrate.handoff._control import AsyncServerControl, ServerControl

__all__ = [
    "CallHook",
    "Effect",
    "Hook",
    "Settle",
    "Steps",
    "WaitReadable",
    "call_hook",
    "ready_now",
    "run_async",
    "run_blocking",
    "settle",
    "wait_readable",
]

T = TypeVar("T")

Hook = Literal["pause", "resume", "stop_accepting"]


@dataclass(frozen=True, slots=True)
class CallHook:
    """Call (or await) the server control's method ``name``."""

    name: Hook


@dataclass(frozen=True, slots=True)
class Settle:
    """Let what must end before the server pauses end first: no work of the driver's.

    Its own effect, not part of the pause hook, so that the wait (a checkpoint's
    commit to a slow store can take seconds) is not counted in the pause: the
    writers are not held meanwhile.
    """


Effect = WaitReadable | CallHook | Settle
#: Steps that return a ``T``: a generator of effects, sent back their outcomes.
Steps = Generator[Effect, object, T]


def call_hook(name: Hook) -> Steps[None]:
    """Steps: have the server control's ``name`` method run."""
    yield CallHook(name)


def settle() -> Steps[None]:
    """Steps: let what must end before the server pauses end (see :class:`Settle`)."""
    yield Settle()


def run_blocking(steps: Steps[T], control: ServerControl | None) -> T:
    """Run ``steps`` to the end in this thread, waiting with ``poll``.

    Returns:
        What the steps return; what they raise propagates.
    """

    def perform(effect: Effect) -> object:
        if isinstance(effect, WaitReadable):
            return poll_readable(effect)
        if isinstance(effect, Settle):
            return None
        if control is not None:
            getattr(control, effect.name)()
        return None

    return drive(steps, perform)


async def run_async(steps: Steps[T], control: AsyncServerControl | None) -> T:
    """Run ``steps`` to the end on the running event loop, waiting on its readiness.

    Returns:
        What the steps return; what they raise propagates. Cancelling the task
        throws ``CancelledError`` into the steps: their clean-up (stopping a
        successor, resuming the server) runs before the cancellation propagates.
    """

    async def perform(effect: Effect) -> object:
        if isinstance(effect, WaitReadable):
            return await readable_on_loop(effect)
        if isinstance(effect, Settle):
            return None
        if control is not None:
            await getattr(control, effect.name)()
        return None

    return await drive_async(steps, perform)
