"""The checkpoint gate: whether this process may still commit checkpoints of its state.

Checkpointers commit through it, and a handoff suspends it while it pauses the writers
and ends it once the successor owns the state. Whether a handoff started this process
(:func:`started_by_handoff`) lives here too, one layer below the handoff that reads
the descriptors: a checkpointer in a successor waits for the state on its way, which
is no misconfiguration.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

__all__ = ["FDS_VAR", "CheckpointGate", "note_descriptors_taken", "started_by_handoff"]

#: The variable naming the descriptors a handoff passes to its successor
#: (``statemigrate.handoff`` writes and reads it).
FDS_VAR = "STATEMIGRATE_FDS"

# Whether this process read the handoff's variables from its environment (and unset
# them): it is a successor still, once they are gone.
_descriptors_taken = False


def note_descriptors_taken() -> None:
    """Remember that this process took the descriptors a handoff named for it."""
    global _descriptors_taken
    _descriptors_taken = True


def started_by_handoff() -> bool:
    """Whether a handoff started this process: it is a successor, not a cold start.

    True when ``STATEMIGRATE_FDS`` names descriptors for this process, so the
    successor's side of the handoff (:func:`~statemigrate.handoff.receive_handoff`,
    which a server adapter calls) will take over, and still true once it has read and
    unset the variable. Ask it before restoring at start-up: a cold start restores the
    last checkpoint (``service.start_from(store)``), while a successor takes the state
    from its predecessor and must not restore a checkpoint first (a rollback successor
    could not read the newer code's checkpoint).
    """
    return _descriptors_taken or FDS_VAR in os.environ

T = TypeVar("T")


class CheckpointGate:
    """Whether this process may commit checkpoints of its service's state.

    Every checkpoint's store commit passes through the gate (:meth:`commit`). A
    handoff suspends it as it pauses the writers (:meth:`suspend`), which waits for
    the commits under way, so that no checkpoint of this process lands in a store
    after that. It
    resumes it when the handoff fails (the process keeps its state and goes on
    serving), and ends it for good once the successor owns the state (:meth:`end`):
    a checkpoint of this process could then only replace the successor's newer ones.

    The gate also counts the checkpointers running on the service (started in a
    thread or on an event loop), for the handoff's log. Thread-safe.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._suspended = 0  # handoffs under way that suspended it
        self._ended = False
        self._committing = 0
        # The eventfds of suspend_nowait() callers waiting for the commits under way.
        self._waiting: list[int] = []
        self._running: weakref.WeakSet[object] = weakref.WeakSet()

    @property
    def open(self) -> bool:
        """Whether a checkpoint may be committed now."""
        return not self._suspended and not self._ended

    @property
    def ended(self) -> bool:
        """Whether the state was handed over: this process commits no checkpoint again."""
        return self._ended

    @property
    def running(self) -> int:
        """The checkpointers running on the service."""
        return len(self._running)

    def attach(self, checkpointer: object) -> None:
        """Count ``checkpointer`` as running (it started)."""
        with self._cond:
            self._running.add(checkpointer)

    def detach(self, checkpointer: object) -> None:
        """Count ``checkpointer`` as stopped."""
        with self._cond:
            self._running.discard(checkpointer)

    def commit(self, commit: Callable[[], T]) -> T | None:
        """Run ``commit`` (a checkpoint's store commit) if the gate is open; return its
        result, or ``None`` when the gate is suspended or ended and nothing ran."""
        with self._cond:
            if not self.open:
                return None
            self._committing += 1
        try:
            return commit()
        finally:
            with self._cond:
                self._committing -= 1
                if not self._committing:
                    self._cond.notify_all()
                    for fd in self._waiting:
                        os.eventfd_write(fd, 1)
                    self._waiting.clear()

    def suspend(self) -> None:
        """Let no checkpoint commit from now on, and wait for the commits under way."""
        with self._cond:
            self._suspended += 1
            while self._committing:
                self._cond.wait()

    def suspend_nowait(self) -> int | None:
        """:meth:`suspend` without waiting, for a caller that waits on descriptors (a
        handoff's steps, blocking or on an event loop).

        Returns:
            ``None`` when no commit is under way; else an eventfd, readable once none
            is, to be given back to :meth:`done_waiting`.
        """
        with self._cond:
            self._suspended += 1
            if not self._committing:
                return None
            fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._waiting.append(fd)
            return fd

    def done_waiting(self, fd: int) -> None:
        """Close an eventfd of :meth:`suspend_nowait`, woken or not."""
        with self._cond:  # not signalled once closed: its number may be reused
            if fd in self._waiting:
                self._waiting.remove(fd)
            os.close(fd)

    @property
    def committing(self) -> int:
        """The commits under way."""
        return self._committing

    def resume(self) -> None:
        """Undo one :meth:`suspend`: checkpoints commit again once no handoff holds the
        gate (never after :meth:`end`)."""
        with self._cond:
            self._suspended = max(0, self._suspended - 1)

    def end(self) -> None:
        """Let no checkpoint of this process commit again: its state was handed over."""
        with self._cond:
            self._ended = True
