"""Thin wrappers over the system calls the stores make, plus a failpoint for tests.

Every file operation a store performs goes through one function here, for two reasons:

* errors are translated in one place: an ``OSError`` becomes a
  :class:`~statemigrate.StoreError` that names the operation (``open``, ``write``,
  ``fsync``, ``rename``, ...), the target and the errno, chained from the original;
* tests can make the k-th operation fail (or every one from the k-th on), with any
  errno, turn a write into a short write, or run a callback at a known point (to pause
  or kill a writer inside its commit). This is how the commit protocol is checked at
  every step, the way SQLite tests its I/O layer.

When no failpoint is installed the cost is one global read and a comparison per call.
The failpoint is process-wide and not meant for threads: install it only in tests that
drive one store from one thread.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from statemigrate._errors import StoreError

__all__ = [
    "Failpoint",
    "add_seals",
    "close",
    "close_quietly",
    "failpoint",
    "fchmod",
    "flock",
    "fstat",
    "fsync",
    "get_seals",
    "link_fd_at",
    "listdir",
    "lstat_at",
    "memfd_create",
    "mkdir",
    "mmap_readonly",
    "open_at",
    "pread_exactly",
    "read_all",
    "readlink",
    "rename_at",
    "unlink_at",
    "write_all",
]

FailpointAction = Literal["error", "short_write"] | Callable[[str], None]


@dataclass
class Failpoint:
    """Which operations to disturb, and a record of every operation seen.

    Attributes:
        at: 1-based position, among the operations seen while the failpoint is
            installed, of the first one to trip; ``None`` never trips (the failpoint
            then only records ``ops``, which is how a test learns how many operations
            a commit makes).
        errno: the error number a tripped operation fails with.
        persistent: trip every operation from ``at`` on, not only the ``at``-th.
        action: ``"error"`` raises ``OSError(errno)`` instead of doing the operation;
            ``"short_write"`` makes a tripped ``write`` write half of what it was given
            (other operations pass untouched); a callable is called with the operation
            name and the operation then runs normally (to pause, kill or swap files at
            a known point).
        ops: every operation seen, in order.
        tripped: the operations that tripped.
    """

    at: int | None = None
    errno: int = _errno.EIO
    persistent: bool = False
    action: FailpointAction = "error"
    ops: list[str] = field(default_factory=list)
    tripped: list[str] = field(default_factory=list)

    def _trips(self, op: str) -> bool:
        self.ops.append(op)
        seen = len(self.ops)
        if self.at is None or seen < self.at or (seen > self.at and not self.persistent):
            return False
        if self.action == "short_write" and op != "write":
            return False
        self.tripped.append(op)
        return True


_active: Failpoint | None = None


@contextmanager
def failpoint(
    at: int | None = None,
    *,
    errno: int = _errno.EIO,
    persistent: bool = False,
    action: FailpointAction = "error",
) -> Iterator[Failpoint]:
    """Install a :class:`Failpoint` for the duration of a ``with`` block (tests only).

    Example::

        with failpoint(3, errno=errno.ENOSPC) as fp:
            store.commit(data)      # the third I/O operation fails with ENOSPC
        fp.ops                      # ['open', 'fstat', 'lock', ...]
    """
    global _active
    if _active is not None:
        raise RuntimeError("a failpoint is already installed")
    point = Failpoint(at=at, errno=errno, persistent=persistent, action=action)
    _active = point
    try:
        yield point
    finally:
        _active = None


def _enter(op: str) -> bool:
    """Count ``op`` against the failpoint; True means "make this write short"."""
    point = _active
    if point is None or not point._trips(op):
        return False
    action = point.action
    if callable(action):
        action(op)
        return False
    if action == "error":
        raise OSError(point.errno, os.strerror(point.errno))
    return True


def _error(op: str, where: str, exc: OSError) -> StoreError:
    code = exc.errno
    name = _errno.errorcode.get(code, str(code)) if code is not None else "no errno"
    detail = f"{exc.strerror or exc} ({name})"
    return StoreError(op, where, detail, errno=code)


def open_at(
    name: str, flags: int, *, dir_fd: int | None, mode: int = 0o600, where: str
) -> int:
    """``open(2)`` relative to ``dir_fd`` (or the working directory when ``None``)."""
    try:
        _enter("open")
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        error = _error("open", where, exc)
        if exc.errno == _errno.ELOOP and flags & os.O_NOFOLLOW:
            # With O_NOFOLLOW, ELOOP means the last component is a symbolic link.
            error = StoreError(
                "open", where, "is a symbolic link; refusing to follow it (ELOOP)",
                errno=exc.errno,
            )
        raise error from exc


def mkdir(path: str, mode: int, *, where: str) -> None:
    """``mkdir(2)``; the caller decides what EEXIST means."""
    try:
        _enter("mkdir")
        os.mkdir(path, mode)
    except OSError as exc:
        raise _error("mkdir", where, exc) from exc


def fstat(fd: int, *, where: str) -> os.stat_result:
    """``fstat(2)``: facts about the object an open descriptor refers to."""
    try:
        _enter("fstat")
        return os.fstat(fd)
    except OSError as exc:
        raise _error("fstat", where, exc) from exc


def lstat_at(name: str, *, dir_fd: int, where: str) -> os.stat_result:
    """``fstatat(2)`` without following a final symbolic link."""
    try:
        _enter("stat")
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _error("stat", where, exc) from exc


def fchmod(fd: int, mode: int, *, where: str) -> None:
    """``fchmod(2)``, used to make permissions exact whatever the umask."""
    try:
        _enter("chmod")
        os.fchmod(fd, mode)
    except OSError as exc:
        raise _error("chmod", where, exc) from exc


def write_all(fd: int, data: memoryview, *, where: str) -> None:
    """Write every byte of ``data``, looping over short writes.

    Raises:
        StoreError: ``op="write"``; also when a write makes no progress at all, which
            would otherwise loop forever.
    """
    view = data
    try:
        while view.nbytes:
            short = _enter("write")
            piece = view[: view.nbytes // 2] if short else view
            written = os.write(fd, piece)
            if written <= 0:
                raise OSError(_errno.EIO, "write made no progress")
            view = view[written:]
    except OSError as exc:
        raise _error("write", where, exc) from exc


def read_all(fd: int, size: int, *, where: str) -> bytes:
    """Read exactly ``size`` bytes and check that the file ends there.

    Raises:
        StoreError: ``op="read"``, also when the file is shorter or longer than
            ``size`` (it changed while being read).
    """
    parts: list[bytes] = []
    remaining = size
    try:
        while remaining:
            _enter("read")
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        if not remaining:
            _enter("read")
            extra = os.read(fd, 1)
        else:
            extra = b""
    except OSError as exc:
        raise _error("read", where, exc) from exc
    if remaining or extra:
        raise StoreError(
            "read", where, f"file changed while being read: expected {size} bytes"
        )
    # The common case is one read of the whole file: return it without a copy.
    return parts[0] if len(parts) == 1 else b"".join(parts)


def pread_exactly(fd: int, length: int, offset: int, *, where: str) -> bytes:
    """Read exactly ``length`` bytes at ``offset``, leaving the file position alone.

    Raises:
        StoreError: ``op="read"``, also when the file ends before (it changed while
            being read).
    """
    parts: list[bytes] = []
    remaining = length
    try:
        while remaining:
            _enter("read")
            chunk = os.pread(fd, remaining, offset + length - remaining)
            if not chunk:
                raise StoreError(
                    "read",
                    where,
                    f"file changed while being read: it ends before byte {offset + length}",
                )
            parts.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise _error("read", where, exc) from exc
    return parts[0] if len(parts) == 1 else b"".join(parts)


def fsync(fd: int, *, where: str) -> None:
    """``fsync(2)``. Callers never retry it: after a failure the page state is unknown."""
    try:
        _enter("fsync")
        os.fsync(fd)
    except OSError as exc:
        raise _error("fsync", where, exc) from exc


def rename_at(src: str, dst: str, *, dir_fd: int, where: str) -> None:
    """``renameat(2)`` within one directory; replaces ``dst`` atomically."""
    try:
        _enter("rename")
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise _error("rename", where, exc) from exc


def link_fd_at(fd: int, name: str, *, dir_fd: int, where: str) -> None:
    """Give the open (``O_TMPFILE``) file ``fd`` the name ``name`` in ``dir_fd``.

    Goes through ``/proc/self/fd`` because ``linkat(AT_EMPTY_PATH)`` needs a
    capability that an ordinary service does not have.
    """
    try:
        _enter("link")
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except OSError as exc:
        raise _error("link", where, exc) from exc


def unlink_at(name: str, *, dir_fd: int, where: str) -> None:
    """``unlinkat(2)``: removes the name itself, never what a link points to."""
    try:
        _enter("unlink")
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise _error("unlink", where, exc) from exc


def listdir(dir_fd: int, *, where: str) -> list[str]:
    """The names in the directory open as ``dir_fd``."""
    try:
        _enter("listdir")
        return os.listdir(dir_fd)
    except OSError as exc:
        raise _error("listdir", where, exc) from exc


def flock(fd: int, operation: int, *, where: str) -> None:
    """``flock(2)``; blocks for ``LOCK_EX`` until the lock is free."""
    try:
        _enter("lock")
        fcntl.flock(fd, operation)
    except OSError as exc:
        raise _error("lock", where, exc) from exc


def close(fd: int, *, where: str) -> None:
    """``close(2)``.

    Linux releases the descriptor even when close reports an error, so an injected
    failure closes it too: the failpoint must not invent descriptor leaks.
    """
    try:
        _enter("close")
    except OSError as exc:
        os.close(fd)
        raise _error("close", where, exc) from exc
    try:
        os.close(fd)
    except OSError as exc:
        raise _error("close", where, exc) from exc


def close_quietly(fd: int) -> None:
    """Close ``fd`` on an error path, where a second error would hide the first."""
    try:
        close(fd, where=f"fd {fd}")
    except StoreError:
        pass


def memfd_create(name: str, flags: int, *, where: str) -> int:
    """``memfd_create(2)``."""
    try:
        _enter("memfd_create")
        return os.memfd_create(name, flags)
    except OSError as exc:
        raise _error("memfd_create", where, exc) from exc


def add_seals(fd: int, seals: int, *, where: str) -> None:
    """``fcntl(F_ADD_SEALS)``."""
    try:
        _enter("seal")
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError as exc:
        raise _error("seal", where, exc) from exc


def get_seals(fd: int, *, where: str) -> int:
    """``fcntl(F_GET_SEALS)``."""
    try:
        _enter("get_seals")
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        raise _error("get_seals", where, exc) from exc


def readlink(path: str, *, where: str) -> str:
    """``readlink(2)``, used on ``/proc/self/fd/N`` to learn what a descriptor is."""
    try:
        _enter("readlink")
        return os.readlink(path)
    except OSError as exc:
        raise _error("readlink", where, exc) from exc


def mmap_readonly(fd: int, size: int, *, where: str) -> mmap.mmap:
    """Map ``size`` bytes of ``fd`` shared and read-only.

    CPython (before 3.13) keeps a duplicate of ``fd`` inside the mmap object until the
    mapping is released.
    """
    try:
        _enter("mmap")
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    except OSError as exc:
        raise _error("mmap", where, exc) from exc
