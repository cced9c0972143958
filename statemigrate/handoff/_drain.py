"""Letting the old process's connections finish after a handoff, up to a deadline.

After the successor took over, the old process stops accepting but still holds
connections it accepted earlier. Cutting them at once would reset requests in
flight; waiting for them without a bound keeps old generations alive forever (the
complaint HAProxy users raise again and again). A :class:`Drainer` waits until they
are done or a deadline passes, then shuts the rest down.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["DrainReport", "Drainer"]


@dataclass(frozen=True)
class DrainReport:
    """How draining went.

    Attributes:
        finished: connections that ended on their own before the deadline.
        cut: connections shut down at the deadline.
        seconds: time spent draining.
    """

    finished: int
    cut: int
    seconds: float


class Drainer:
    """Keeps track of open connections so they can be drained.

    Wrap the handling of each accepted connection in :meth:`track`; after a
    successful handoff call :meth:`drain`. It is thread-safe.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._active: dict[int, socket.socket] = {}
        self._draining = False

    @contextmanager
    def track(self, conn: socket.socket) -> Iterator[socket.socket]:
        """Count ``conn`` as in flight for the duration of the ``with`` block."""
        key = id(conn)
        with self._changed:
            self._active[key] = conn
        try:
            yield conn
        finally:
            with self._changed:
                self._active.pop(key, None)
                self._changed.notify_all()

    @property
    def active(self) -> int:
        """The number of connections in flight."""
        with self._changed:
            return len(self._active)

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` has been called."""
        with self._changed:
            return self._draining

    def drain(self, timeout: float) -> DrainReport:
        """Wait up to ``timeout`` seconds for the tracked connections to end.

        Connections still open at the deadline are shut down in both directions
        (``shutdown``, not ``close``: the thread serving one still owns its
        descriptor, and a blocked ``recv`` wakes up with end-of-file). The threads
        serving them are expected to notice and leave their ``track`` block.
        """
        began = time.monotonic()
        with self._changed:
            self._draining = True
            at_start = len(self._active)
            self._changed.wait_for(lambda: not self._active, timeout=max(0.0, timeout))
            remaining = list(self._active.values())
        for conn in remaining:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed or reset by the peer
                pass
        cut = len(remaining)
        return DrainReport(
            finished=max(0, at_start - cut), cut=cut, seconds=time.monotonic() - began
        )
