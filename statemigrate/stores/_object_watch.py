"""Object-store requests still running after a few seconds, said in the log.

A request waits for the server until its timeout (30 s, retried for up to 60 s, by
default). A server that hangs rather than refuses is silent all that while: the
request neither answers nor fails, and only the staleness gauge moves. So every
request of an :class:`~statemigrate.stores.ObjectStore` is watched: one still running
``warn_after`` seconds after it started is logged once at WARNING, naming the
operation, where, and how long it has waited; its end, whenever it comes, at INFO,
with what came of it. A multipart upload counts from the last part the upload took
rather than from its start, since a large snapshot takes long to upload part by part
on a healthy server too.

One thread watches every request of the process, and only while there are any: the
first request starts it, it sleeps until the earliest moment a request would be late,
and it ends once no request has been running for :data:`LINGER` seconds. A request
that ends in time costs an entry in a set, added and removed under a lock: no thread
and no timer of its own, and nothing logged.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from types import TracebackType

from statemigrate._errors import StoreError
from statemigrate.stores._object_errors import translate
from statemigrate.stores._options import check_seconds

__all__ = [
    "DEFAULT_WARN_AFTER",
    "LINGER",
    "THREAD_NAME",
    "Unwatched",
    "Watch",
    "Watcher",
    "check_warn_after",
    "watch",
]

_log = logging.getLogger("statemigrate.stores")

DEFAULT_WARN_AFTER = 5.0
"""Seconds a request may run before it is logged as slow: far above what a healthy
server takes for one request (at most a part of a snapshot), far below the timeouts."""
LINGER = 30.0
"""Seconds the watching thread waits for another request before it ends."""
THREAD_NAME = "statemigrate-slow-requests"


def check_warn_after(value: float | None) -> float | None:
    """``value`` as ``ObjectStore(warn_after=...)`` takes it: ``None`` (never warn), or
    seconds as the store's timeouts take them.

    Raises:
        ConfigurationError: it is neither ``None`` nor a number of seconds above 0 and
            at most a day.
    """
    return check_seconds("warn_after", value, zero_ok=False)


class Watch:
    """One request being watched: a context manager around it.

    Attributes:
        op: the operation (``open``, ``list``, ``write``, ``commit``, ``delete``).
        where: the object or folder it concerns, as errors name it.
        after: the seconds after which it is late.
    """

    __slots__ = ("_since", "_started", "_warned", "_watcher", "after", "op", "where")

    def __init__(self, watcher: Watcher, op: str, where: str, after: float) -> None:
        self._watcher = watcher
        self.op = op
        self.where = where
        self.after = after
        self._started = self._since = 0.0
        self._warned = False

    def __enter__(self) -> Watch:
        self._started = self._since = time.monotonic()
        self._watcher._add(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        warned = self._watcher._remove(self)
        if warned:
            took = time.monotonic() - self._started
            _log.info("%s %s: %s", self.op, self.where, self._outcome(took, exc))

    @property
    def deadline(self) -> float:
        """The moment (``time.monotonic``) after which the request is late."""
        return self._since + self.after

    def progress(self) -> None:
        """Count the wait from now on: the request moved on (an upload took a part)."""
        self._since = time.monotonic()

    def due(self, now: float) -> float | None:
        """The seconds the request has waited, when it is late at ``now`` and was not
        said to be before; ``None`` otherwise. Called by the watching thread alone,
        under its lock."""
        if self._warned or now < self.deadline:
            return None
        self._warned = True
        return now - self._since

    def _outcome(self, took: float, exc: BaseException | None) -> str:
        if exc is None:
            return f"answered after {took:.1f} s"
        if isinstance(exc, StoreError):
            detail = exc.detail
        elif isinstance(exc, Exception):
            detail = translate(self.op, self.where, exc).detail  # obstore's, in one line
        else:
            detail = type(exc).__name__
        return f"failed after {took:.1f} s: {detail}"


class Unwatched:
    """What :func:`watch` gives when warnings are off: a context manager that does
    nothing."""

    __slots__ = ()

    def __enter__(self) -> Unwatched:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def progress(self) -> None:
        return None


_UNWATCHED = Unwatched()


class Watcher:
    """Watches requests from one thread, started by the first and ended once none has
    been running for ``linger`` seconds.

    Args:
        linger: seconds the thread waits, with no request running, before it ends.
    """

    def __init__(self, *, linger: float = LINGER) -> None:
        self._linger = linger
        self._changed = threading.Condition(threading.Lock())
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread looks next; inf: not before a change

    @property
    def thread(self) -> threading.Thread | None:
        """The watching thread, while there is one."""
        return self._thread

    def watch(self, op: str, where: str, after: float | None) -> Watch | Unwatched:
        """A context manager around a request of ``op`` on ``where``, late after
        ``after`` seconds (``None``: never, and nothing is watched)."""
        if after is None:
            return _UNWATCHED
        return Watch(self, op, where, after)

    def _add(self, watch: Watch) -> None:
        with self._changed:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()
            elif watch.deadline < self._wake_at:
                self._changed.notify()

    def _remove(self, watch: Watch) -> bool:
        """Stop watching ``watch``; whether it was said to be late."""
        with self._changed:
            self._watches.discard(watch)
            warned = watch._warned
            if warned and not self._watches:
                self._changed.notify()  # the thread waits for a change: its idle time starts
        return warned

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._changed:
                now = time.monotonic()
                late = [(watch, waited) for watch in self._watches
                        if (waited := watch.due(now)) is not None]
                if not late:
                    if self._watches:
                        idle_since = None
                        self._wake_at = min(
                            (watch.deadline for watch in self._watches if not watch._warned),
                            default=math.inf,
                        )
                    else:
                        idle_since = now if idle_since is None else idle_since
                        if now - idle_since >= self._linger:
                            self._thread = None
                            return
                        self._wake_at = idle_since + self._linger
                    timeout = None if math.isinf(self._wake_at) else self._wake_at - now
                    self._changed.wait(timeout)
                    continue
            for watch, waited in late:  # outside the lock: a handler may be slow
                _log.warning(
                    "%s %s: no answer from the object store after %.1f s; still waiting"
                    " (a slow or hung server?)",
                    watch.op,
                    watch.where,
                    waited,
                )

    def _after_fork(self) -> None:
        """In a forked child: no thread runs, and the lock may have been held."""
        self._changed = threading.Condition(threading.Lock())
        self._watches = set()
        self._thread = None
        self._wake_at = math.inf


WATCHER = Watcher()
"""The watcher of every object store of the process."""

os.register_at_fork(after_in_child=lambda: WATCHER._after_fork())


def watch(op: str, where: str, after: float | None) -> Watch | Unwatched:
    """A context manager around a request, watched by :data:`WATCHER` (see
    :meth:`Watcher.watch`)."""
    return WATCHER.watch(op, where, after)
