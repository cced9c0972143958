"""Starting a handoff from a signal, as ``kill -USR2 <pid>`` does for NGINX.

:func:`install_signal_trigger` runs a blocking callback in a thread;
:func:`install_signal_trigger_async` runs a coroutine function as a task on the
running event loop, through ``loop.add_signal_handler``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING

from statemigrate._errors import ConfigurationError, HandoffError

if TYPE_CHECKING:
    import asyncio

__all__ = ["install_signal_trigger", "install_signal_trigger_async"]

logger = logging.getLogger("statemigrate.handoff")


def install_signal_trigger(
    callback: Callable[[], object], *, signum: int = signal.SIGUSR2
) -> Callable[[], None]:
    """Run ``callback`` (typically a handoff) each time ``signum`` arrives.

    A signal handler must return quickly and may interrupt anything, so the handler
    only starts a thread that runs ``callback``; a signal that arrives while a
    previous run is still going is ignored (the handoff lock would refuse it
    anyway). The thread is not a daemon: an interpreter exiting meanwhile waits
    for the handoff to end rather than abandon a successor halfway. A
    :class:`~statemigrate.HandoffError` from ``callback`` is logged as a warning,
    any other exception with its traceback.

    Must be called from the main thread (Python only installs handlers there).

    Args:
        callback: what to run; its result is ignored.
        signum: the signal; ``SIGUSR2`` by default, like NGINX and tableflip.

    Returns:
        A function that restores the previous handler.
    """
    busy = threading.Lock()

    def run() -> None:
        try:
            callback()
        except HandoffError as exc:
            logger.warning("handoff triggered by signal %d failed: %s", signum, exc)
        except Exception:
            logger.exception("handoff triggered by signal %d raised", signum)
        finally:
            busy.release()

    def handler(received: int, frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt code that holds logging's locks.
        if busy.acquire(blocking=False):
            threading.Thread(target=run, name="statemigrate-handoff").start()

    previous = signal.signal(signum, handler)

    def uninstall() -> None:
        signal.signal(signum, previous)

    return uninstall


def install_signal_trigger_async(
    callback: Callable[[], Awaitable[object]], *, signum: int = signal.SIGUSR2
) -> Callable[[], None]:
    """Run ``callback()`` (typically ``hand_over_async``) as a task each time ``signum`` arrives.

    The asyncio flavour of :func:`install_signal_trigger`: the signal is handled by
    the running event loop (``loop.add_signal_handler``), which starts a task named
    ``statemigrate-handoff`` that awaits ``callback()``. A signal that arrives while
    that task is still running is ignored. A
    :class:`~statemigrate.HandoffError` from ``callback`` is logged as a warning, any
    other exception with its traceback.

    Call it from a coroutine on the loop, in the main thread.

    Args:
        callback: a coroutine function (or any function returning an awaitable);
            its result is ignored.
        signum: the signal; ``SIGUSR2`` by default, like NGINX and tableflip.

    Returns:
        A function that removes the handler from the loop and restores the handler
        that was there before. A run in progress is left to finish.

    Raises:
        ConfigurationError: no event loop is running in this thread.
    """
    import asyncio  # here: a blocking service never pays for importing asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError as exc:
        raise ConfigurationError(
            "install_signal_trigger_async", "call it from a coroutine on the running loop"
        ) from exc
    running: set[asyncio.Task[None]] = set()

    async def run() -> None:
        try:
            await callback()
        except HandoffError as exc:
            logger.warning("handoff triggered by signal %d failed: %s", signum, exc)
        except Exception:
            logger.exception("handoff triggered by signal %d raised", signum)

    def handler() -> None:
        # Called by the loop, not in signal context: creating a task is safe here.
        if running:
            return
        task = loop.create_task(run(), name="statemigrate-handoff")
        running.add(task)
        task.add_done_callback(running.discard)

    previous = signal.getsignal(signum)
    loop.add_signal_handler(signum, handler)

    def uninstall() -> None:
        loop.remove_signal_handler(signum)
        if previous is not None:
            signal.signal(signum, previous)

    return uninstall
