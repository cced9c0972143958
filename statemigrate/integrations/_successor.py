"""The successor after the move: whether the process that took the state over is gone.

Once the old process has stopped accepting and closed its copies of the listener,
the successor is the only one left to answer what the old process passes on. If it
dies then (a crash just after it confirmed it serves), it took the state with it:
nothing is left to forward to, and the service must be restarted from its store.
The adapters then answer what they still get with ``503`` at once and end their drain,
rather than wait for ``forward_timeout`` and ``keepalive_timeout``
(docs/handoff.md, "What can go wrong").

A successor that ended cleanly (exit status 0: it handed over in its turn, or was
stopped) is not a crash: whoever serves next accepts on the listener, or nobody
does and a request passed on is refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import os

from statemigrate._errors import describe_exit

__all__ = ["SuccessorWatch", "gone"]

logger = logging.getLogger("statemigrate.handoff")

# Seconds a request passed on that failed waits to see the successor's death.
_SETTLE = 1.0

def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name, in parentheses, may hold spaces: count from its end.
            return stat.read().rpartition(")")[2].split()[0] in {"Z", "X"}
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _exit_status(pidfd: int) -> int | None:
    """The exit status of the child behind ``pidfd``, left unreaped: negative for a
    signal; ``None`` when it is no child of ours (or someone reaped it)."""
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    if info is None:
        return None
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status



class SuccessorWatch:
    """Watches the successor once the state has moved to it, on the event loop.

    Made before the handoff; :meth:`watch` is told the successor's pid once the
    handoff has returned its report. :meth:`died` may be asked from any thread (the
    forwarding threads ask it); :meth:`wait` is awaited on the loop.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self._known = asyncio.Event()
        self._died = asyncio.Event()
        self._crashed = False
        self._pidfd: int | None = None

    def watch(self, pid: int | None) -> None:
        """Start watching ``pid``, the successor that took the state over (``None``:
        not known, never reported gone)."""
        self.pid = pid
        self._known.set()
        if pid is None:
            return
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._ended(None)  # gone, and reaped, already
            return
        except OSError:
            return  # no pidfds: the forwarding threads still ask /proc
        asyncio.get_running_loop().add_reader(self._pidfd, self._readable)

    def died(self) -> bool:
        """Whether the successor died after taking over (any thread)."""
        if self._crashed:
            return True
        if self.pid is None or not gone(self.pid):
            return False
        if self._pidfd is not None:
            status = _exit_status(self._pidfd)
            return status is None or status != 0
        return True

    async def died_by_now(self) -> bool:
        """After a request passed on failed: whether the successor died.

        Waits until the successor is known (a request passed on may fail before the
        handoff's report names it), and a moment for its death to show: the kernel
        resets the connections queued on the listener as the successor's descriptors
        close, before its exit is visible.
        """
        await self._known.wait()
        if self.died() or self.pid is None:
            return self.died()
        try:
            await asyncio.wait_for(self._died.wait(), _SETTLE)
        except TimeoutError:
            pass
        return self.died()

    @property
    def crashed(self) -> bool:
        """Whether the loop has seen the successor die after taking over (logged)."""
        return self._died.is_set()

    async def wait(self) -> None:
        """Return once the successor has died after taking over (never if it ends
        cleanly)."""
        await self._died.wait()

    def close(self) -> None:
        """Stop watching."""
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _readable(self) -> None:
        assert self._pidfd is not None
        asyncio.get_running_loop().remove_reader(self._pidfd)
        self._ended(_exit_status(self._pidfd))

    def _ended(self, status: int | None) -> None:
        if status == 0:
            logger.info("handoff: successor pid %s exited (exit status 0)", self.pid)
            return
        self._crashed = True
        logger.error(
            "handoff: successor pid %s died after taking over the state (%s): the service"
            " must be restarted from its store; requests still arriving here are answered"
            " 503 and the connections closed",
            self.pid,
            describe_exit(status),
        )
        self._died.set()
