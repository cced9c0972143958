"""MemfdStore and open_memfd: snapshots in sealed anonymous memory files.

A memfd is a file that lives only in memory and has no name in any directory; its
descriptor can be inherited by a child process or sent over a Unix socket, which makes
it the natural vessel for handing a snapshot to the next process. Once written it is
sealed with ``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL``: from then on
nobody, not even the writer through its own descriptor, can change, shrink or grow it,
or lift the seals.

The receiver (:func:`open_memfd`) maps it read-only. That is safe only because of the
seals: without ``F_SEAL_SHRINK`` a peer could truncate the file under the mapping and
kill the reader with SIGBUS, and without ``F_SEAL_WRITE`` it could change the bytes
after they were verified. So an unsealed memfd is refused, and so is anything that is
not a memfd, whatever seals it reports (``F_GET_SEALS`` also answers for tmpfs files).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections import deque
from collections.abc import Iterable

from statemigrate._errors import StoreError
from statemigrate.stores import _syscalls
from statemigrate.stores._base import (
    DEFAULT_MAX_SIZE,
    Buffer,
    Closing,
    SnapshotRef,
    too_large,
    write_bounded,
)
from statemigrate.stores._options import check_max_size, check_memfd_name

__all__ = ["SEALS", "MemfdRef", "MemfdStore", "open_memfd"]

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
"""The seals a snapshot memfd must carry before anyone reads it."""

_SEAL_NAMES = {
    fcntl.F_SEAL_SHRINK: "F_SEAL_SHRINK",
    fcntl.F_SEAL_GROW: "F_SEAL_GROW",
    fcntl.F_SEAL_WRITE: "F_SEAL_WRITE",
    fcntl.F_SEAL_SEAL: "F_SEAL_SEAL",
}

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a pipe or FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def open_memfd(
    fd: int, *, max_size: int = DEFAULT_MAX_SIZE, close_fd: bool = False
) -> bytes | memoryview:
    """Return the bytes of a sealed snapshot memfd received from another process.

    Checks, on the descriptor itself: that it is a regular file; that
    ``/proc/self/fd/<fd>`` names a memfd (``/memfd:...``); that it carries all of
    ``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL``; and that its size is at
    most ``max_size``. Then it maps the file read-only and returns a read-only
    ``memoryview`` of the mapping (``b""`` for an empty file): no copy, and the seals
    guarantee that the bytes can neither change nor disappear under it. The view keeps
    the mapping (and, before Python 3.13, a duplicate descriptor) alive until it is
    released or garbage collected.

    Args:
        fd: the descriptor, inherited or received over a socket.
        max_size: the largest snapshot, in bytes, accepted.
        close_fd: take ownership of ``fd`` and close it before returning, whether the
            checks pass or not. By default ``fd`` stays open and is the caller's.

    Raises:
        StoreError: ``fd`` is not an open descriptor, not a memfd, not fully sealed, or
            too large.
    """
    check_max_size(max_size)
    where = f"memfd:{fd}"
    try:
        view = _map_checked(fd, max_size, where)
    except BaseException:
        if close_fd:
            _syscalls.close_quietly(fd)
        raise
    if close_fd:
        _syscalls.close(fd, where=where)
    return view


def _map_checked(fd: int, max_size: int, where: str) -> bytes | memoryview:
    st = _syscalls.fstat(fd, where=where)
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        what = _KINDS.get(kind, "not a regular file")
        raise StoreError("open", where, f"is {what}, not a memfd; refusing it")
    target = _syscalls.readlink(f"/proc/self/fd/{fd}", where=where)
    if not target.startswith("/memfd:"):
        raise StoreError(
            "open", where, f"is {target!r}, not a memfd; refusing it (seals alone do not"
            " prove it is one)",
        )
    seals = _syscalls.get_seals(fd, where=where)
    missing = SEALS & ~seals
    if missing:
        names = "|".join(name for bit, name in _SEAL_NAMES.items() if missing & bit)
        raise StoreError(
            "open", where, f"is not sealed (missing {names}); its bytes could change or"
            " vanish while being read; refusing it",
        )
    if st.st_size > max_size:
        raise too_large("open", where, st.st_size, max_size)
    if st.st_size == 0:
        return b""  # mmap cannot map zero bytes
    return memoryview(_syscalls.mmap_readonly(fd, st.st_size, where=where))


class MemfdRef(Closing):
    """A sealed memfd holding one committed snapshot.

    The descriptor is close-on-exec; hand it to a child with ``pass_fds`` or send it
    over a Unix socket. Use the reference as a context manager, or call :meth:`close`.

    Attributes:
        size: the snapshot's size in bytes.
    """

    __slots__ = ("_fd", "_max_size", "size")

    def __init__(self, fd: int, size: int, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._fd = fd
        self.size = size
        self._max_size = max_size

    @property
    def fd(self) -> int:
        """The memfd's descriptor (-1 once closed)."""
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd < 0

    def open(self) -> bytes | memoryview:
        """Return the snapshot bytes, checked as :func:`open_memfd` checks them.

        Raises:
            StoreError: the reference is closed, or the checks fail.
        """
        if self._fd < 0:
            raise StoreError("open", "memfd", "the snapshot reference is closed")
        return open_memfd(self._fd, max_size=self._max_size)

    def describe(self) -> str:
        """``memfd:<fd>``."""
        return f"memfd:{self._fd}" if self._fd >= 0 else "memfd:(closed)"

    def close(self) -> None:
        """Close the descriptor. Idempotent. Mappings already returned stay valid."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<MemfdRef {self.describe()} size={self.size}>"


class MemfdStore(Closing):
    """Commit snapshots to sealed memfds, ready to hand to another process.

    The store keeps the latest two snapshots it committed and closes older ones as
    new ones arrive; :meth:`close` closes those it still holds. A reference returned
    by :meth:`commit` therefore stays usable for two commits, or until closed by
    whoever holds it.

    Args:
        name: the memfd name, shown in ``/proc/<pid>/fd`` as ``/memfd:<name>``.
        max_size: the largest snapshot, in bytes, that the store commits or opens.

    Raises:
        ConfigurationError: an option has an invalid value (a ``ValueError``).
    """

    # The refs it closes are handed out to callers, who may still be using them.
    close_on_collect = False

    def __init__(self, *, name: str = "statemigrate", max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._name = check_memfd_name(name)
        self._max_size = check_max_size(max_size)
        self._refs: deque[MemfdRef] = deque()  # oldest first, at most two
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def latest(self) -> MemfdRef | None:
        """The reference to the latest snapshot, if any."""
        return self._refs[-1] if self._refs else None

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemfdRef:
        """Write ``data`` to a new memfd and seal it.

        Returns:
            The reference to the new, sealed memfd.

        Raises:
            StoreError: naming the operation that failed; the new memfd is closed and
                the store's snapshots are unchanged.
            TypeError: ``data`` holds something that is not bytes-like.
        """
        if self._closed:
            raise StoreError("commit", f"memfd:{self._name}", "the store is closed")
        where = f"memfd:{self._name}"
        fd = _syscalls.memfd_create(
            self._name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING, where=where
        )
        try:
            where = f"memfd:{fd}"
            # write(2), never a writable mapping: F_SEAL_WRITE is refused while a
            # shared writable mapping exists.
            size = write_bounded(fd, data, max_size=self._max_size, where=where)
            _syscalls.add_seals(fd, SEALS, where=where)
        except BaseException:
            _syscalls.close_quietly(fd)
            raise
        ref = MemfdRef(fd, size, max_size=self._max_size)
        self._refs.append(ref)
        while len(self._refs) > 2:
            self._refs.popleft().close()
        return ref

    def open(self, ref: SnapshotRef | None = None) -> bytes | memoryview:
        """Return the bytes of ``ref``, or of the latest snapshot when ``ref`` is None.

        Raises:
            StoreError: no snapshot was committed, ``ref`` is not a :class:`MemfdRef`,
                or it is closed or fails the checks of :func:`open_memfd`.
        """
        if ref is None:
            if self._closed or not self._refs:
                raise StoreError(
                    "open",
                    f"memfd:{self._name}",
                    "no snapshot has been committed",
                    errno=None if self._closed else errno.ENOENT,
                )
            ref = self._refs[-1]
        elif not isinstance(ref, MemfdRef):
            raise StoreError("open", ref.describe(), "is not a memfd snapshot reference")
        return ref.open()

    def open_previous(self) -> bytes | memoryview:
        """Return the snapshot committed before the latest one.

        Raises:
            StoreError: there is none.
        """
        if self._closed or len(self._refs) < 2:
            raise StoreError("open", f"memfd:{self._name}", "there is no previous snapshot")
        return self._refs[0].open()

    def close(self) -> None:
        """Close the memfds the store still holds. Idempotent."""
        self._closed = True
        while self._refs:
            self._refs.popleft().close()

    def __repr__(self) -> str:
        return f"<MemfdStore {self._name!r} snapshots={len(self._refs)}>"
