"""Exporting a snapshot in a forked child, while the parent goes on serving.

A full snapshot of a state that holds millions of entries takes seconds to export
and encode. Encoded in the serving process it competes with the requests for the
GIL, and whatever must stay still meanwhile (a checkpoint's writers) is held for as
long as it takes. Encoded in a child made with ``fork(2)``, as Redis's ``BGSAVE``
does, it costs the serving process only the fork itself (copying the page tables)
and the pages it writes afterwards, which the kernel copies on write. The child sees
the state as it was at the instant of the fork: whatever held the writers needs to
hold them only until :func:`fork_export` returns. A handoff's round 0 and a
checkpoint's full snapshot are exported this way.

The memfd the child writes into is created before the fork, so both hold the same
open file: the child writes the bytes and leaves with ``os._exit`` (no ``atexit``
handlers, no flushing of buffers it inherited, no finalizers of the parent's
objects), runs at the CPU priority its caller chose (``nice``: the parent's, or lower),
and the kernel kills it if the parent dies first. The parent
waits on the child's pidfd, as a step (see :mod:`statemigrate._runtime._wait`), so an
event loop keeps serving meanwhile, then checks the exit status and the size, and
seals the memfd. A child that fails writes one line on a pipe for the parent's error
message; one that succeeds may write a short note there instead (what it measured).
Whatever happens, the child is reaped and nothing is left open.

The cyclic garbage collector would undo the copy-on-write economy: a full collection
writes to every object's header, so in the child it would copy the whole heap, and
in the parent (while the child lives) every page it touches. So the child never
collects, and the parent freezes what it holds at the fork (``gc.freeze``: those
objects are left out of collections) until the last child is gone, unless it froze
objects of its own already (then it keeps managing that itself).

Forking a process that runs other threads copies only the forking thread. A lock
that another thread held at that instant stays held in the child forever, so a
child whose export waits on one hangs: the parent kills it at the deadline and the
export fails, with the parent serving as before. Python's own locks (``logging``,
``threading``, the import lock) are reset in the child by the interpreter.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

from statemigrate._errors import StateMigrateError, StoreError
from statemigrate._observe._instruments import use_sink
from statemigrate._observe._tracing import disable_tracing
from statemigrate._runtime._wait import Waits, wait_readable
from statemigrate.stores import _syscalls
from statemigrate.stores._base import Buffer
from statemigrate.stores._memfd import SEALS

__all__ = [
    "Exported",
    "Fail",
    "ForkedExport",
    "export_forked",
    "fork_export",
    "freeze_heap",
    "serving_pid",
    "thaw_heap",
]

#: What a child may write on its pipe (an error, or its note); the rest is cut.
_MAX_MESSAGE = 2000
_PR_SET_PDEATHSIG = 1
#: How long a child sent SIGKILL may take to go before the parent stops waiting.
_KILL_WAIT = 30.0
# Signals whose handlers the child must not run: the parent's Python handlers would
# act as if they were the parent (stop a server, start a handoff).
_DEFAULT_IN_CHILD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

# In an export's child: the pid of the parent, whose state the child exports.
_exporting_for: int | None = None


def serving_pid() -> int:
    """The pid of the process whose state a snapshot holds: the serving parent when
    called in an export's forked child (a snapshot's producer is the process that
    serves, not the short-lived child that wrote the bytes), else this process."""
    return os.getpid() if _exporting_for is None else _exporting_for


Fail = Callable[[str], StateMigrateError]
"""Builds the caller's error from a one-line reason (a handoff's ``HandoffError``,
a checkpoint's ``CheckpointError``)."""


@dataclass(frozen=True, slots=True)
class Exported:
    """A snapshot a child wrote into a sealed memfd (the caller closes ``fd``).

    Attributes:
        fd: the memfd, sealed.
        size: its length in bytes.
        fork_seconds: how long ``fork(2)`` held the serving process.
        child_seconds: from the fork until the child was seen gone.
        note: what the child's ``note`` function returned (empty without one).
    """

    fd: int
    size: int
    fork_seconds: float
    child_seconds: float
    note: bytes = b""


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies (``PR_SET_PDEATHSIG``)."""
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _child(
    produce: Callable[[], Buffer | Iterable[Buffer]],
    note: Callable[[], bytes] | None,
    fd: int,
    pipe: int,
    parent: int,
    nice: int,
) -> None:
    """The child's whole life: export, write, leave. Never returns."""
    global _exporting_for
    _exporting_for = parent
    code = 1
    try:
        _die_with(parent)  # an export nobody waits for any more is wasted
        gc.disable()  # a collection would write to, so copy, every page of the heap
        if nice:
            with suppress(OSError):
                os.nice(nice)  # the caller's choice: see fork_export
        for signum in _DEFAULT_IN_CHILD:
            with suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_DFL)
        with suppress(ValueError):
            signal.set_wakeup_fd(-1)  # the parent's event loop reads that one
        import logging

        logging.disable(logging.CRITICAL)  # the parent logs; a child line would repeat it
        # Nor does it report to metrics or traces: what it recorded would die with it,
        # and a backend's lock that another thread held at the fork is held forever.
        use_sink(None)
        disable_tracing()
        data = produce()
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else data
        for part in parts:
            _syscalls.write_all(fd, memoryview(part).cast("B"), where="memfd")
        if note is not None:
            os.write(pipe, note()[:_MAX_MESSAGE])
        code = 0
    except BaseException as exc:  # anything: the parent must hear of it, not a traceback
        with suppress(BaseException):
            message = f"{type(exc).__name__}: {exc}".encode(errors="replace")[:_MAX_MESSAGE]
            os.write(pipe, message)
    finally:
        os._exit(code)


def _read_message(fd: int) -> bytes:
    try:
        return os.read(fd, _MAX_MESSAGE)
    except OSError:
        return b""


# Exports in flight that froze the heap: the last one to end unfreezes it. A
# checkpoint's child and a handoff's round 0 may overlap.
_frozen_lock = threading.Lock()
_frozen_by_us = 0


def freeze_heap() -> bool:
    """Leave every object alive now out of garbage collections (``gc.freeze``).

    A full collection of a large heap holds the GIL for a long time (about a second
    for a few million objects) and writes to every object, which after a fork copies
    every page. Returns whether it froze (or joined a freeze of this module still in
    force); a process that froze objects of its own already keeps managing that
    itself. Each freeze that returned True is undone by one :func:`thaw_heap`.
    """
    global _frozen_by_us
    with _frozen_lock:
        if _frozen_by_us:
            gc.freeze()  # what was made since the first freeze too
        elif gc.get_freeze_count():
            return False
        else:
            gc.freeze()
        _frozen_by_us += 1
        return True


def thaw_heap(frozen: bool) -> None:
    """Undo :func:`freeze_heap` (when it froze); the last one unfreezes the heap."""
    global _frozen_by_us
    if not frozen:
        return
    with _frozen_lock:
        _frozen_by_us -= 1
        if not _frozen_by_us:
            gc.unfreeze()


def _status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of a wait status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


class ForkedExport:
    """A child exporting a snapshot into a memfd: made by :func:`fork_export`, ended by
    :meth:`wait` (or :meth:`close`, which kills it)."""

    def __init__(self, fd: int, *, label: str, fail: Fail, nice: int) -> None:
        self._fd = fd
        self._nice = nice
        self._pipe = -1
        self._label = label
        self._fail = fail
        self._frozen = False
        self.pid: int | None = None
        """The child's pid while it has not been reaped."""
        self._pidfd: int | None = None
        self._began = 0.0
        self._forked = 0.0

    def _fork(
        self, produce: Callable[[], Buffer | Iterable[Buffer]], note: Callable[[], bytes] | None
    ) -> None:
        try:
            self._pipe, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise self._fail(f"cannot fork the {self._label} export: {exc}") from exc
        try:
            self._frozen = freeze_heap()  # undone by wait() or close(), whatever happens
            parent = os.getpid()
            self._began = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    # Python 3.12+ warns of fork() in a threaded process; see the module
                    # docstring for what that risks here and how it is bounded.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
            except OSError as exc:
                raise self._fail(f"cannot fork the {self._label} export: {exc}") from exc
            if pid == 0:  # pragma: no cover - the child; its effects are what the tests see
                _child(produce, note, self._fd, write_end, parent, self._nice)
            self.pid = pid
            self._forked = time.perf_counter()
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError as exc:  # the child is killed and reaped by close()
                raise self._fail(f"cannot wait for the {self._label} export: {exc}") from exc
        finally:
            os.close(write_end)

    def wait(self, deadline: float) -> Waits[Exported]:
        """Steps: wait for the child, then check what it wrote and seal it.

        Args:
            deadline: on the ``time.monotonic()`` clock; a child still running then is
                killed (``SIGKILL``) and reaped.

        Raises:
            StateMigrateError: the caller's error (see :func:`fork_export`): the child
                failed (its error), was killed by a signal, or ran past the deadline,
                or the memfd could not be sealed. Whatever happened, the child is
                reaped and nothing is left open but the returned memfd.
        """
        try:
            assert self._pidfd is not None and self.pid is not None
            ended = yield from wait_readable((self._pidfd,), deadline)
            if ended is None:
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                yield from wait_readable((self._pidfd,), time.monotonic() + _KILL_WAIT)
            _pid, status = os.waitpid(self.pid, 0)
            self.pid = None
            thaw_heap(self._frozen)
            self._frozen = False
            done = time.perf_counter()
            code, killed = _status(status)
            what = f"the {self._label} export"
            if ended is None:
                raise self._fail(f"{what} ran past its deadline; its child was killed")
            if killed is not None:
                raise self._fail(
                    f"{what}'s child was killed by {signal.Signals(killed).name}"
                )
            message = _read_message(self._pipe)
            if code != 0:
                error = message.decode(errors="replace").strip() or "no reason given"
                raise self._fail(f"{what} failed (status {code}): {error}")
            try:
                size = _syscalls.fstat(self._fd, where="memfd").st_size
                _syscalls.add_seals(self._fd, SEALS, where="memfd")
            except StoreError as exc:
                raise self._fail(f"cannot seal the {self._label} memfd: {exc}") from exc
            exported = Exported(
                self._fd, size, self._forked - self._began, done - self._forked, message
            )
            self._fd = -1  # the caller's now
            return exported
        finally:
            self.close()

    def close(self) -> None:
        """End the export: a child still running is killed and reaped, the memfd (unless
        :meth:`wait` returned it) and the pipe are closed. Idempotent."""
        thaw_heap(self._frozen)
        self._frozen = False
        pid, self.pid = self.pid, None
        if pid is not None:  # dropped or interrupted while the child ran: end it here
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for name in ("_pidfd", "_pipe", "_fd"):
            leftover = getattr(self, name)
            if leftover is not None and leftover >= 0:
                os.close(leftover)
            setattr(self, name, -1)


def fork_export(
    produce: Callable[[], Buffer | Iterable[Buffer]],
    *,
    label: str,
    fail: Fail,
    name: str,
    nice: int,
    note: Callable[[], bytes] | None = None,
) -> ForkedExport:
    """Fork a child that runs ``produce`` and writes its bytes into a new memfd.

    Returns once the child exists: the state it exports is the one of this instant,
    whatever the parent does next. End it with :meth:`ForkedExport.wait` (or
    :meth:`ForkedExport.close`).

    Args:
        produce: builds the snapshot bytes (or buffers) from the state the child
            inherited; it runs only in the child.
        label: names the export in errors (``round-0``, ``checkpoint``).
        fail: builds the error raised, from a one-line reason.
        name: the memfd's name, as shown in ``/proc/<pid>/fd``.
        nice: how much lower than the parent's the child's CPU priority is (added
            with ``os.nice``; 0 keeps the parent's). A process cannot raise its
            priority back without ``CAP_SYS_NICE``, so this holds for the child's
            whole life: on saturated cores a child at a lower priority gets only the
            CPU the serving process leaves, and may take many times its idle time.
            Lower it only where that delay risks nothing; each caller says why.
        note: runs in the child once the bytes are written; what it returns (at
            most 2,000 bytes) is :attr:`Exported.note`.

    Raises:
        StateMigrateError: from ``fail``: the memfd or the pipe could not be made,
            or the fork failed. Nothing is left open, no child left running.
    """
    try:
        fd = _syscalls.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING, where="memfd")
    except StoreError as exc:
        raise fail(f"cannot make the {label} memfd: {exc}") from exc
    export = ForkedExport(fd, label=label, fail=fail, nice=nice)
    try:
        export._fork(produce, note)
    except BaseException:
        export.close()
        raise
    return export


def export_forked(
    produce: Callable[[], Buffer | Iterable[Buffer]],
    *,
    deadline: float,
    label: str,
    fail: Fail,
    name: str,
    nice: int,
    note: Callable[[], bytes] | None = None,
) -> Waits[Exported]:
    """Steps: :func:`fork_export`, then :meth:`ForkedExport.wait` for it.

    Raises:
        StateMigrateError: as :func:`fork_export` and :meth:`ForkedExport.wait`.
    """
    export = fork_export(produce, label=label, fail=fail, name=name, nice=nice, note=note)
    return (yield from export.wait(deadline))
