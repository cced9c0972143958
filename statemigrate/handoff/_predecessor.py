"""Whether the old process still runs, and what a successor says when it died too early.

A successor whose old process died before the snapshot arrived has nothing to serve:
the pre-copy pieces it may have applied miss the writes made since, and the listeners
alone carry no state. Nothing serves the service then, and only a restart (from a
store's last checkpoint) brings it back; the successor says so in plain words instead
of the channel error that revealed it.
"""

from __future__ import annotations

import os

__all__ = ["died_before_state", "running"]


def running(pid: int) -> bool:
    """Whether ``pid`` names a process that runs: one that exited but was not reaped
    yet (a zombie, as a process killed under a parent that does not wait is) does
    not. A process of another user counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc to tell: it answered the signal check
    return not fields or fields[0] not in (b"Z", b"X")


def died_before_state(pid: int) -> str:
    """The plain account of an old process that died before its state was sent."""
    return (
        f"the old process (pid {pid}) died during the handoff before its state was sent:"
        " nothing serves the service now; restart it (a cold start with start_from(store)"
        " restores the last checkpoint)"
    )
