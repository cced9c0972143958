"""Safety checks for a store that lives in a shared file-system namespace.

``/dev/shm`` is writable by everyone, and this library cannot count on the kernel's
protections for sticky directories (``fs.protected_symlinks`` and
``fs.protected_regular`` may be off). So a store works in a private directory opened
once with ``O_DIRECTORY|O_NOFOLLOW``, and it judges every file it reads by ``fstat`` of
the opened descriptor, never by its path.
"""

from __future__ import annotations

import errno
import os
import stat

from statemigrate._errors import StoreError
from statemigrate.stores import _syscalls
from statemigrate.stores._base import too_large

__all__ = ["FILE_KINDS", "check_file", "open_private_directory"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
"""What a file of each type other than regular is called in messages."""


def check_file(
    st: os.stat_result,
    *,
    op: str,
    where: str,
    max_size: int | None = None,
    opened: bool = False,
    kind: str = "snapshot",
) -> None:
    """Refuse anything but a private regular file of ours with a single name.

    ``opened`` says that ``st`` describes an open descriptor: its file may have lost
    its name since it was opened (a commit renamed a newer snapshot over it), which
    leaves a complete snapshot with no link at all. Two or more links are refused
    either way: another name could be used to change the file. ``kind`` names what the
    file holds in the messages (another file is checked the same way: a trial record).

    Raises:
        StoreError: naming what is wrong with the file.
    """
    file_type = stat.S_IFMT(st.st_mode)
    if file_type != stat.S_IFREG:
        what = FILE_KINDS.get(file_type, "not a regular file")
        raise StoreError(op, where, f"is {what}, not a regular file; refusing it")
    euid = os.geteuid()
    if st.st_uid != euid:
        raise StoreError(
            op,
            where,
            f"is owned by uid {st.st_uid}, not by this process's uid {euid}; refusing it",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise StoreError(
            op,
            where,
            f"has mode {mode:#o}; a {kind} file must be private to its owner (0600); refusing it",
        )
    if st.st_nlink > 1 or (st.st_nlink == 0 and not opened):
        raise StoreError(
            op,
            where,
            f"has {st.st_nlink} hard links; a {kind} file has exactly one; refusing it",
        )
    if max_size is not None and st.st_size > max_size:
        if kind == "snapshot":
            raise too_large(op, where, st.st_size, max_size)  # as every store words it
        raise StoreError(
            op,
            where,
            f"has {st.st_size} bytes, more than a {kind} file may hold ({max_size}); refusing it",
        )


def open_private_directory(path: str, *, kind: str = "snapshot directory") -> int:
    """Create (0700) or open the snapshot directory and check that it is private to us.

    ``kind`` names the directory in errors (a trial directory is checked the same way).
    """
    created = False
    try:
        _syscalls.mkdir(path, 0o700, where=path)
        created = True
    except StoreError as exc:
        if exc.errno == errno.ENOENT:
            raise StoreError(
                "mkdir", path, "its parent directory does not exist", errno=exc.errno
            ) from exc.__cause__
        if exc.errno != errno.EEXIST:
            raise
    try:
        fd = _syscalls.open_at(path, _DIR_FLAGS, dir_fd=None, where=path)
    except StoreError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            # O_DIRECTORY|O_NOFOLLOW reports a symbolic link as ENOTDIR: say which it is.
            try:
                is_link = stat.S_ISLNK(os.lstat(path).st_mode)
            except OSError:
                is_link = False
            what = (
                "is a symbolic link; refusing to follow it" if is_link else ("is not a directory")
            )
            raise StoreError("open", path, what, errno=exc.errno) from exc.__cause__
        raise
    try:
        if created:
            # mkdir's mode went through the umask; make it exactly 0700.
            _syscalls.fchmod(fd, 0o700, where=path)
        st = _syscalls.fstat(fd, where=path)
        euid = os.geteuid()
        if st.st_uid != euid:
            raise StoreError(
                "open",
                path,
                f"is owned by uid {st.st_uid}, not by this process's uid"
                f" {euid}; the {kind} must be our own",
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise StoreError(
                "open",
                path,
                f"has mode {mode:#o}; the {kind} must be private to its owner (0700)",
            )
    except BaseException:
        _syscalls.close_quietly(fd)
        raise
    return fd
