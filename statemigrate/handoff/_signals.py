"""Starting a handoff from a signal, as ``kill -USR2 <pid>`` does for NGINX.

:func:`install_signal_trigger` runs a blocking callback in a thread;
:func:`install_signal_trigger_async` runs a coroutine function as a task on the
running event loop, through ``loop.add_signal_handler``.

A service manager stops a service with ``SIGTERM``; sent in the middle of a
handoff, acting on it at once would abandon a successor that may already hold
the state. So while a run started by :func:`install_signal_trigger` is going,
``SIGTERM`` and ``SIGINT`` are held: their handlers run once it has ended.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

from statemigrate._errors import ConfigurationError, HandoffError

if TYPE_CHECKING:
    import asyncio

__all__ = ["install_signal_trigger", "install_signal_trigger_async"]

logger = logging.getLogger("statemigrate.handoff")

#: The signals held while a handoff started by a signal runs.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Hold:
    """Stop signals that arrive during a run, kept for its end.

    Python runs signal handlers in the main thread only, and only the main thread
    may install one, so the guards are installed by the trigger's own handler
    (which runs there) wrapping whatever handler is in place at that moment; the
    run's thread ends the hold by raising the signals again, whose guards, back in
    the main thread, put the previous handlers back and call them.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.pending: list[int] = []
        self.previous: dict[int, Any] = {}

    def guard(self, received: int, frame: FrameType | None) -> None:
        with self.lock:
            if self.running:
                if received not in self.pending:
                    self.pending.append(received)
                return
            previous = self.previous.pop(received, None)
        if previous is None:  # a handler installed outside Python: treat as the default
            previous = signal.SIG_DFL
        signal.signal(received, previous)
        if callable(previous):
            previous(received, frame)
        elif previous != signal.SIG_IGN:  # the default action (None: not set by Python)
            signal.raise_signal(received)

    def begin(self, signums: Iterable[int]) -> None:
        """In the main thread: hold ``signums`` from now on."""
        with self.lock:
            self.running += 1
        for signum in signums:
            current = signal.getsignal(signum)
            if current != self.guard:
                with self.lock:
                    self.previous[signum] = current
                signal.signal(signum, self.guard)

    def end(self) -> None:
        """In any thread: stop holding; deliver what arrived meanwhile."""
        with self.lock:
            self.running -= 1
            pending = [] if self.running else self.pending[:]
            if not self.running:
                self.pending.clear()
        for signum in pending:
            logger.info("handoff over: acting on signal %d received meanwhile", signum)
            signal.raise_signal(signum)

    def release(self, signums: Iterable[int]) -> None:
        """In the main thread, when idle: put the previous handlers back."""
        with self.lock:
            if self.running:
                return
            for signum in signums:
                if signal.getsignal(signum) == self.guard:
                    previous = self.previous.pop(signum, None)
                    signal.signal(signum, signal.SIG_DFL if previous is None else previous)


_hold = _Hold()


def install_signal_trigger(
    callback: Callable[[], object],
    *,
    signum: int = signal.SIGUSR2,
    hold: Iterable[int] = STOP_SIGNALS,
) -> Callable[[], None]:
    """Run ``callback`` (typically a handoff) each time ``signum`` arrives.

    A signal handler must return quickly and may interrupt anything, so the handler
    only starts a thread that runs ``callback``; a signal that arrives while a
    previous run is still going is ignored (the handoff lock would refuse it
    anyway), and a warning says so when the run ends. The thread is not a daemon:
    an interpreter exiting meanwhile waits for the handoff to end rather than
    abandon a successor halfway. A
    :class:`~statemigrate.HandoffError` from ``callback`` is logged as a warning,
    any other exception with its traceback.

    While ``callback`` runs, the signals in ``hold`` (``SIGTERM`` and ``SIGINT``)
    are held: their handlers, whatever they are when ``signum`` arrives, run once it
    has returned. So a service manager's ``SIGTERM`` in the middle of a handoff
    stops the process after the handoff: with the successor serving if it
    succeeded, through the process's usual stop path if it failed.

    Must be called from the main thread (Python only installs handlers there).

    Args:
        callback: what to run; its result is ignored.
        signum: the signal; ``SIGUSR2`` by default, like NGINX and tableflip.
        hold: the signals held during a run; ``()`` to act on them at once.

    Returns:
        A function that restores the previous handlers.
    """
    busy = threading.Lock()
    held = tuple(hold)
    ignored = [0]  # signals that came during the run, said once it ends

    def run() -> None:
        try:
            callback()
        except HandoffError as exc:
            _log_failed(signum, exc)
        except Exception:
            logger.exception("handoff triggered by signal %d raised", signum)
        finally:
            if ignored[0]:
                logger.warning(
                    "signal %d came %d more time(s) while that handoff ran: ignored; send"
                    " it again to start another", signum, ignored[0],
                )
                ignored[0] = 0
            busy.release()
            if held:
                _hold.end()

    def handler(received: int, frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt code that holds logging's locks.
        if busy.acquire(blocking=False):
            if held:
                _hold.begin(held)  # here, in the main thread, before the run starts
            threading.Thread(target=run, name="statemigrate-handoff").start()
        else:
            ignored[0] += 1

    previous = signal.signal(signum, handler)

    def uninstall() -> None:
        signal.signal(signum, previous)
        _hold.release(held)

    return uninstall


def install_signal_trigger_async(
    callback: Callable[[], Awaitable[object]], *, signum: int = signal.SIGUSR2
) -> Callable[[], None]:
    """Run ``callback()`` (typically ``hand_over_async``) as a task each time ``signum`` arrives.

    The asyncio flavour of :func:`install_signal_trigger`: the signal is handled by
    the running event loop (``loop.add_signal_handler``), which starts a task named
    ``statemigrate-handoff`` that awaits ``callback()``. A signal that arrives while
    that task is still running is ignored, with a warning. A
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
            _log_failed(signum, exc)
        except Exception:
            logger.exception("handoff triggered by signal %d raised", signum)

    def handler() -> None:
        # Called by the loop, not in signal context: creating a task and logging are safe.
        if running:
            logger.warning(
                "signal %d ignored: the handoff it started earlier is still running", signum
            )
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


def _log_failed(signum: int, exc: HandoffError) -> None:
    """Say that the handoff a signal started failed; at INFO when the attempt's own
    WARNING (the one with its report) has said why already."""
    level = logging.INFO if exc.report is not None else logging.WARNING
    logger.log(level, "handoff triggered by signal %d failed: %s", signum, exc)
