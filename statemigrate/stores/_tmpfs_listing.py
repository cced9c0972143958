"""What a TmpfsStore's directory holds, looked at without opening the store.

A :class:`~statemigrate.stores.TmpfsStore` keeps ``current``, ``previous`` and, after a
start that could not restore its latest snapshot, ``unrestored``; a commit in the named
temporary-file mode writes ``.tmp.<pid>.<random>`` first, which stays behind when its
writer is killed. :func:`list_tmpfs` says which of these a directory holds, with each
file's size and time, newest first: what ``statemigrate list DIR`` shows.

Opening a ``TmpfsStore`` on the directory would change it: create it when missing,
create its lock file, remove the temporary files of interrupted commits. A listing
changes nothing. It opens the directory read-only (``O_DIRECTORY|O_NOFOLLOW``: a
symbolic link is refused, as the store refuses one), looks at each name with
``lstat`` relative to that descriptor, and reads a file only when asked
(:meth:`TmpfsFile.open`, or parts of it through :meth:`TmpfsFile.opened`), judged by
``fstat`` of the opened descriptor: a FIFO planted at a snapshot's name never blocks
the reader. Unlike the store, it does not require the
directory to be private or its files the caller's own: an operator may look at a
service's store as another user, as far as the file modes let them.
"""

from __future__ import annotations

import datetime
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from statemigrate._errors import StoreError
from statemigrate.stores import _syscalls
from statemigrate.stores._base import DEFAULT_MAX_SIZE, too_large
from statemigrate.stores._safedir import FILE_KINDS
from statemigrate.stores._tmpfs import CURRENT, PREVIOUS, TEMP_PATTERN, UNRESTORED

__all__ = ["FileRole", "OpenedFile", "TmpfsFile", "list_tmpfs"]

FileRole = Literal["current", "previous", "unrestored", "not committed"]
"""What a file is to the store: one of its snapshots, or a commit's temporary file."""

_ROLES: dict[str, FileRole] = {CURRENT: "current", PREVIOUS: "previous", UNRESTORED: "unrestored"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# As the store reads: O_NONBLOCK, so that a FIFO planted at a snapshot's name is
# refused by fstat instead of waiting for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class TmpfsFile:
    """One file of a TmpfsStore's directory, as ``lstat`` found it.

    Attributes:
        name: its name in the directory (``current``, ``.tmp.4242.<random>``, ...).
        role: ``current``, ``previous``, ``unrestored``, or ``not committed`` for a
            commit's temporary file.
        path: its absolute path.
        size: its size in bytes.
        modified: when it was last written (its mtime, in UTC): a snapshot keeps the
            time of its commit when it is renamed to ``previous``.
        not_regular: what it is when it is not a regular file (``"a symbolic link"``,
            ``"a FIFO"``, ...), which the store refuses to read; ``None`` for a
            regular file.
    """

    name: str
    role: FileRole
    path: str
    size: int
    modified: datetime.datetime
    not_regular: str | None = None

    def open(self, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """The file's bytes, read as the store reads a snapshot: never through a
        symbolic link, refused unless the opened file is a regular one of at most
        ``max_size`` bytes.

        Raises:
            StoreError: the file is gone, is not a regular file, is larger than
                ``max_size``, or could not be read (naming the operation and errno).
        """
        with self.opened() as file:
            if file.size > max_size:
                raise too_large("open", self.path, file.size, max_size)
            return _syscalls.read_all(file.fd, file.size, where=self.path)

    @contextmanager
    def opened(self) -> Iterator[OpenedFile]:
        """The file opened as :meth:`open` opens it, for reads of its parts
        (:meth:`OpenedFile.read_range`), all of the one file opened, whatever a
        commit renames to its name meanwhile; closed on leaving the block.

        Raises:
            StoreError: the file is gone, is not a regular file, or could not be
                opened (naming the operation and errno).
        """
        directory = os.path.dirname(self.path)
        dir_fd = _syscalls.open_at(directory, _DIR_FLAGS, dir_fd=None, where=directory)
        try:
            fd = _syscalls.open_at(self.name, _READ_FLAGS, dir_fd=dir_fd, where=self.path)
        finally:
            _syscalls.close_quietly(dir_fd)
        try:
            st = _syscalls.fstat(fd, where=self.path)
            kind = stat.S_IFMT(st.st_mode)
            if kind != stat.S_IFREG:
                what = FILE_KINDS.get(kind, "not a regular file")
                raise StoreError("open", self.path, f"is {what}, not a regular file; refusing it")
            yield OpenedFile(self.path, fd, st.st_size)
        finally:
            _syscalls.close_quietly(fd)


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file of a TmpfsStore's directory, open for reads of its parts
    (:meth:`TmpfsFile.opened`).

    Attributes:
        path: its absolute path.
        fd: the open descriptor, the caller's to read, not to close.
        size: its size in bytes when it was opened.
    """

    path: str
    fd: int
    size: int

    def read_range(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``.

        Raises:
            ValueError: the range does not lie within the file's ``size`` bytes.
            StoreError: the read failed, or the file is shorter than it was when
                opened.
        """
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"bytes {offset}-{offset + length} of {self.size}")
        return _syscalls.pread_exactly(self.fd, length, offset, where=self.path)


def list_tmpfs(directory: str | os.PathLike[str]) -> list[TmpfsFile]:
    """The snapshots and temporary files in a TmpfsStore's ``directory``, newest first
    (by modification time; ``current`` before ``previous`` before ``unrestored`` when
    two times are equal). Changes nothing in the directory.

    Raises:
        StoreError: ``directory`` is missing, is a file, a symbolic link or anything
            else that is not a directory, cannot be opened or listed (permissions), or
            holds none of a store's files (``errno`` ENOENT: not a store's directory,
            or nothing was committed there yet). Each says so in one line naming the
            path.
    """
    path = os.path.abspath(os.fspath(directory))
    dir_fd = _open_directory(path)
    try:
        names = _syscalls.listdir(dir_fd, where=path)
        found = [
            _looked_at(name, role, dir_fd, path)
            for name in sorted(names)
            if (role := _role_of(name)) is not None
        ]
    finally:
        _syscalls.close_quietly(dir_fd)
    files = [entry for entry in found if entry is not None]
    if not files:
        raise StoreError(
            "list",
            path,
            "holds no snapshot: no current, previous or unrestored file (not a TmpfsStore's"
            " directory, or nothing was committed there yet)",
            errno=errno.ENOENT,
        )
    order = list(_ROLES.values()) + ["not committed"]
    files.sort(key=lambda entry: (order.index(entry.role), entry.name))
    files.sort(key=lambda entry: entry.modified, reverse=True)  # stable: ties keep the order
    return files


def _role_of(name: str) -> FileRole | None:
    if name in _ROLES:
        return _ROLES[name]
    return "not committed" if TEMP_PATTERN.match(name) else None


def _open_directory(path: str) -> int:
    """A read-only descriptor of the directory ``path``, or the reason it is not one."""
    try:
        return _syscalls.open_at(path, _DIR_FLAGS, dir_fd=None, where=path)
    except StoreError as exc:
        if exc.errno == errno.ENOENT:
            raise StoreError("list", path, "no such directory", errno=exc.errno) from exc
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        # O_DIRECTORY|O_NOFOLLOW says ENOTDIR of a symbolic link too: say which it is.
        try:
            kind = stat.S_IFMT(os.lstat(path).st_mode)
        except OSError:
            kind = 0
        if kind == stat.S_IFREG:
            what = "is a file, not a directory (`statemigrate inspect` reads a snapshot file)"
        elif kind == stat.S_IFLNK:
            what = "is a symbolic link, which a TmpfsStore refuses; give the directory itself"
        else:
            what = "is not a directory"
        raise StoreError("list", path, what, errno=exc.errno) from exc


def _looked_at(name: str, role: FileRole, dir_fd: int, directory: str) -> TmpfsFile | None:
    """``name`` as ``lstat`` finds it; ``None`` when it went away since the listing (a
    commit renamed or removed it)."""
    where = f"{directory}/{name}"
    try:
        st = _syscalls.lstat_at(name, dir_fd=dir_fd, where=where)
    except StoreError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    kind = stat.S_IFMT(st.st_mode)
    return TmpfsFile(
        name=name,
        role=role,
        path=where,
        size=st.st_size,
        modified=datetime.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=datetime.UTC),
        not_regular=None if kind == stat.S_IFREG else FILE_KINDS.get(kind, "not a regular file"),
    )
