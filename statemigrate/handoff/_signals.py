"""Starting a handoff from a signal, as ``kill -USR2 <pid>`` does for NGINX."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from statemigrate._errors import HandoffError

__all__ = ["install_signal_trigger"]

logger = logging.getLogger("statemigrate.handoff")


def install_signal_trigger(
    callback: Callable[[], object], *, signum: int = signal.SIGUSR2
) -> Callable[[], None]:
    """Run ``callback`` (typically a call to ``upgrade``) each time ``signum`` arrives.

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
