"""Exporting a snapshot in a forked child, while the parent goes on serving.

A pre-copy handoff's round 0 is a full snapshot of a state that may hold millions
of entries. Encoded in the serving process it would compete with the requests for
the GIL for as long as it takes; encoded in a child made with ``fork(2)``, as
Redis's ``BGSAVE`` does, it costs the serving process only the fork itself (copying
the page tables) and the pages it writes afterwards, which the kernel copies on
write. The child sees the state as it was at the instant of the fork.

The memfd the child writes into is created before the fork, so both hold the same
open file: the child writes the bytes and leaves with ``os._exit`` (no ``atexit``
handlers, no flushing of buffers it inherited, no finalizers of the parent's
objects), runs at a lower CPU priority than the parent (``nice`` 10: the serving
process comes first), and the kernel kills it if the parent dies first. The parent
waits on the child's pidfd, as a step, so an event loop keeps serving meanwhile,
then checks the exit status and the size, and seals the memfd. A child that fails
writes one line on a pipe for the parent's error message.

The cyclic garbage collector would undo the copy-on-write economy: a full collection
writes to every object's header, so in the child it would copy the whole heap, and
in the parent (while the child lives) every page it touches. So the child never
collects, and the parent freezes what it holds at the fork (``gc.freeze``: those
objects are left out of collections) until the child is gone, unless it froze
objects of its own already (then it keeps managing that itself).

Forking a process that runs other threads copies only the forking thread. A lock
that another thread held at that instant stays held in the child forever, so a
child whose export waits on one hangs: the parent kills it at the deadline and the
handoff fails, with the old process serving as before. Python's own locks
(``logging``, ``threading``, the import lock) are reset in the child by the
interpreter.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

from statemigrate._errors import HandoffError, StoreError
from statemigrate.handoff._drive import Steps, wait_readable
from statemigrate.stores import _syscalls
from statemigrate.stores._base import Buffer
from statemigrate.stores._memfd import SEALS

__all__ = ["Exported", "export_forked", "freeze_heap", "thaw_heap"]

#: What a child may write on the error pipe; the rest of a long message is cut.
_MAX_ERROR = 2000
_PR_SET_PDEATHSIG = 1
#: How much lower the child's CPU priority is than its parent's.
_NICE = 10
#: How long a child sent SIGKILL may take to go before the parent stops waiting.
_KILL_WAIT = 30.0
# Signals whose handlers the child must not run: the parent's Python handlers would
# act as if they were the parent (stop a server, start a handoff).
_DEFAULT_IN_CHILD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@dataclass(frozen=True, slots=True)
class Exported:
    """A snapshot a child wrote into a sealed memfd (the caller closes ``fd``).

    Attributes:
        fd: the memfd, sealed.
        size: its length in bytes.
        fork_seconds: how long ``fork(2)`` held the serving process.
        child_seconds: from the fork until the child was seen gone.
    """

    fd: int
    size: int
    fork_seconds: float
    child_seconds: float


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies (``PR_SET_PDEATHSIG``)."""
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _child(
    produce: Callable[[], Buffer | Iterable[Buffer]], fd: int, errors: int, parent: int
) -> None:
    """The child's whole life: export, write, leave. Never returns."""
    code = 1
    try:
        _die_with(parent)  # an export nobody waits for any more is wasted
        gc.disable()  # a collection would write to, so copy, every page of the heap
        with suppress(OSError):
            os.nice(_NICE)  # background work: the serving parent comes first for the CPU
        for signum in _DEFAULT_IN_CHILD:
            with suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_DFL)
        with suppress(ValueError):
            signal.set_wakeup_fd(-1)  # the parent's event loop reads that one
        import logging

        logging.disable(logging.CRITICAL)  # the parent logs; a child line would repeat it
        data = produce()
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else data
        for part in parts:
            _syscalls.write_all(fd, memoryview(part).cast("B"), where="memfd")
        code = 0
    except BaseException as exc:  # anything: the parent must hear of it, not a traceback
        with suppress(BaseException):
            message = f"{type(exc).__name__}: {exc}".encode(errors="replace")[:_MAX_ERROR]
            os.write(errors, message)
    finally:
        os._exit(code)


def _read_error(fd: int) -> str:
    try:
        text = os.read(fd, _MAX_ERROR)
    except OSError:
        return ""
    return text.decode(errors="replace").strip()


def freeze_heap() -> bool:
    """Leave every object alive now out of garbage collections (``gc.freeze``).

    A full collection of a large heap holds the GIL for a long time (about a second
    for a few million objects) and writes to every object, which after a fork copies
    every page. Returns whether it froze: a process that froze objects of its own
    already keeps managing that itself.
    """
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def thaw_heap(frozen: bool) -> None:
    """Undo :func:`freeze_heap` (when it froze)."""
    if frozen:
        gc.unfreeze()


def _status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of a wait status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def export_forked(
    produce: Callable[[], Buffer | Iterable[Buffer]],
    *,
    deadline: float,
    stage: str,
    name: str = "statemigrate-precopy",
) -> Steps[Exported]:
    """Steps: run ``produce`` in a forked child and return the sealed memfd it wrote.

    Args:
        produce: builds the snapshot bytes (or buffers) from the state the child
            inherited; it runs only in the child.
        deadline: on the ``time.monotonic()`` clock; a child still running then is
            killed (``SIGKILL``) and reaped.
        stage: the stage named by errors.
        name: the memfd's name, as shown in ``/proc/<pid>/fd``.

    Raises:
        HandoffError: the memfd could not be made, the fork failed, the child
            failed (its error), was killed by a signal, or ran past the deadline.
            The child is reaped and nothing is left open, whatever happened.
    """
    try:
        fd = _syscalls.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING, where="memfd")
    except StoreError as exc:
        raise HandoffError(stage, f"cannot make the round-0 memfd: {exc}") from exc
    pid: int | None = None
    pidfd: int | None = None
    frozen = False
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        frozen = freeze_heap()  # undone below, whatever happens
        parent = os.getpid()
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork() in a threaded process; see the module
                # docstring for what that risks here and how it is bounded.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:
            raise HandoffError(stage, f"cannot fork the round-0 export: {exc}") from exc
        if pid == 0:  # pragma: no cover - the child; its effects are what the tests see
            _child(produce, fd, write_end, parent)
        forked = time.perf_counter()
        os.close(write_end)
        write_end = -1
        pidfd = os.pidfd_open(pid)
        ended = yield from wait_readable((pidfd,), deadline)
        if ended is None:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            yield from wait_readable((pidfd,), time.monotonic() + _KILL_WAIT)
        _pid, status = os.waitpid(pid, 0)
        pid = None
        thaw_heap(frozen)
        frozen = False
        done = time.perf_counter()
        code, killed = _status(status)
        if ended is None:
            raise HandoffError(
                stage, "the round-0 export ran past its deadline; its child was killed"
            )
        if killed is not None:
            raise HandoffError(
                stage, f"the round-0 export's child was killed by {signal.Signals(killed).name}"
            )
        if code != 0:
            error = _read_error(read_end) or "no reason given"
            raise HandoffError(stage, f"the round-0 export failed (status {code}): {error}")
        try:
            size = _syscalls.fstat(fd, where="memfd").st_size
            _syscalls.add_seals(fd, SEALS, where="memfd")
        except StoreError as exc:
            raise HandoffError(stage, f"cannot seal the round-0 memfd: {exc}") from exc
        exported = Exported(fd, size, forked - began, done - forked)
        fd = -1  # the caller's now
        return exported
    finally:
        thaw_heap(frozen)
        if pid is not None:  # dropped or interrupted while the child ran: end it here
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for leftover in (pidfd, read_end, write_end, fd):
            if leftover is not None and leftover >= 0:
                os.close(leftover)
