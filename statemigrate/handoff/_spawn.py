"""The successor process the old one started: kept on purpose, or stopped without blocking.

A :class:`Successor` is a :class:`subprocess.Popen` that may outlive its object once
it took over. Stopping a failed one is a step (see :mod:`statemigrate.handoff._drive`)
that waits on its pidfd, so the asyncio flavour waits on the loop there too.
"""

from __future__ import annotations

import logging
import subprocess
import time
from contextlib import suppress
from typing import Any

from statemigrate.handoff._drive import Steps, wait_readable

__all__ = ["Successor", "stop_successor"]

logger = logging.getLogger("statemigrate.handoff")

# How long a successor sent SIGKILL may take to go; beyond it, it is stuck in the kernel.
_KILL_WAIT = 30.0


class Successor(subprocess.Popen[bytes]):
    """A successor process that may be left running on purpose once it has taken over."""

    released = False

    def __del__(self, *args: Any, **kwargs: Any) -> None:
        # Popen warns about a child still running when collected; a successor that
        # took over is meant to outlive this object (and usually this process).
        if not self.released:
            super().__del__(*args, **kwargs)


def stop_successor(
    proc: Successor, pidfd: int | None, grace: float, *, leaving: bool = False
) -> Steps[int | None]:
    """Steps: stop ``proc`` (SIGTERM, then SIGKILL after ``grace`` seconds) and reap it.

    With ``leaving`` (it reported FAILED or hung up, or was told ABORT while it
    waits, so it is on its way out) it first gets ``grace`` seconds to exit by
    itself, so its own exit status is reported.
    """
    if pidfd is None:  # no way to wait for it without blocking: end it at once
        with suppress(ProcessLookupError):
            proc.kill()
        return proc.wait()
    if leaving:
        yield from wait_readable((pidfd,), time.monotonic() + grace)
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.terminate()
        if (yield from wait_readable((pidfd,), time.monotonic() + grace)) is None:
            with suppress(ProcessLookupError):
                proc.kill()
            yield from wait_readable((pidfd,), time.monotonic() + _KILL_WAIT)
        if proc.poll() is None:  # stuck in the kernel; leave it be
            logger.error("handoff: successor pid %d survives SIGKILL", proc.pid)
    return proc.returncode
