"""TmpfsStore: snapshots committed atomically as files in a private directory.

The directory normally lives on tmpfs (``/dev/shm``), where a snapshot survives the
crash or restart of the process that wrote it, but not a reboot of the host. The same
code is correct on a disk file system: it fsyncs the file and the directory, which
costs nothing on tmpfs (its fsync is a no-op).

Layout of the directory::

    current     the latest snapshot
    previous    the one before it
    .lock       flock()ed by a commit, so that writers take turns

Commit protocol (the "anonymous" temp-file mode, used whenever the kernel allows it):

1. take the lock;
2. create an unnamed file with ``O_TMPFILE`` (mode 0600), write every byte, fsync it;
3. rename ``current`` to ``previous`` (replacing the older one);
4. give the new file the name ``current`` with ``linkat``; fsync the directory.

A process killed at any instant leaves ``current`` complete, or no ``current`` and a
complete ``previous``; readers fall back to ``previous``. An unnamed file has no name to
leave behind, so nothing needs cleaning up after a crash or a failed commit. Where
``O_TMPFILE`` is not available, the "named" mode writes ``.tmp.<pid>.<random>``
(``O_CREAT|O_EXCL|O_NOFOLLOW``) and renames it to ``current``; a writer killed inside
its commit leaves at most one such file, which the next :class:`TmpfsStore` on the
directory removes.

Every operation is made relative to one descriptor of the directory, opened
``O_DIRECTORY|O_NOFOLLOW``, so that nothing planted in the path can redirect it, and
every file opened for reading is checked through ``fstat`` of the opened descriptor.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterable
from typing import Literal

from statemigrate._errors import StoreError
from statemigrate.stores import _syscalls
from statemigrate.stores._base import (
    DEFAULT_MAX_SIZE,
    Buffer,
    Claim,
    Closing,
    Holding,
    SnapshotRef,
    check_other_writer,
    claimed,
    note_commit,
    note_maybe_committed,
    note_read,
    write_bounded,
)
from statemigrate.stores._options import check_choice, check_max_size, refused
from statemigrate.stores._safedir import check_file, open_private_directory
from statemigrate.stores._writer import Writer, latest_writer

__all__ = ["CURRENT", "LOCK", "PREVIOUS", "TEMP_PATTERN", "TempFiles", "TmpfsRef", "TmpfsStore"]

_log = logging.getLogger("statemigrate.stores")

CURRENT = "current"
PREVIOUS = "previous"
UNRESTORED = "unrestored"
LOCK = ".lock"
TEMP_PATTERN = re.compile(r"\.tmp\.[0-9]+\.[0-9a-f]{16}\Z")
"""Names of the temporary files of the named mode; only these are ever cleaned up."""

TempFiles = Literal["auto", "anonymous", "named"]

# O_NONBLOCK: a FIFO planted at a snapshot's name must not hang the reader.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ANONYMOUS_FLAGS = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
_NAMED_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# How open(O_TMPFILE) says that the kernel or the file system cannot do it.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


class _Progress:
    """How far a commit got; errors after publication must say so. ``identity`` is the
    inode and modification time of the file written, for :meth:`TmpfsStore.holds`:
    both stay with the file when it is given its name."""

    __slots__ = ("identity", "published")

    def __init__(self) -> None:
        self.published = False
        self.identity: tuple[int, int] | None = None


def _identity(fd: int, where: str) -> tuple[int, int]:
    st = _syscalls.fstat(fd, where=where)
    return st.st_ino, st.st_mtime_ns


class TmpfsStore(Closing):
    """Commit snapshots atomically to files in a private directory, normally on tmpfs.

    Snapshots survive the crash or restart of the process, not a reboot of the host
    (tmpfs is memory). The store keeps the latest snapshot (``current``) and the one
    before it (``previous``). Several processes may commit to the same directory:
    commits take turns under an ``flock``. Readers take no lock.

    The store holds one descriptor of its directory until :meth:`close` (or the end of
    a ``with`` block). When that directory is removed (``rm -rf`` by a clean-up script),
    the next commit or read notices (the directory held has no name any more),
    re-creates the directory, or opens the one re-created in its place, with the checks
    made here (never through a symbolic link), and logs a warning; the snapshots the
    removed directory held are lost.

    Args:
        directory: where the snapshots live. Created with mode 0700 if missing (its
            parent must exist). If it exists it must be a real directory, not a
            symbolic link, owned by this process's effective uid and not accessible to
            group or others.
        max_size: the largest snapshot, in bytes, that the store commits or opens.
        temp_files: ``"anonymous"`` writes each new snapshot to an unnamed
            ``O_TMPFILE`` file, so a crash leaves nothing behind; ``"named"`` writes to
            ``.tmp.<pid>.<random>`` and renames it; ``"auto"`` uses anonymous where the
            kernel and file system support it and named otherwise.

    Attributes:
        orphans_removed: how many temporary files of interrupted commits were removed
            when the store was opened.

    Raises:
        StoreError: the directory cannot be created or opened, or is not private.
        ConfigurationError: an option has an invalid value (a ``ValueError``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        temp_files: TempFiles = "auto",
    ) -> None:
        check_choice("temp_files", temp_files, ("auto", "anonymous", "named"))
        if not isinstance(directory, str | os.PathLike) or not os.fspath(directory):
            # abspath("") would be the working directory, which nobody means.
            raise refused("directory", "a non-empty path (str or os.PathLike)", directory)
        self._dir_fd = -1
        self._max_size = check_max_size(max_size)
        self._path = os.path.abspath(os.fspath(directory))
        self._auto = temp_files == "auto"
        # linkat() of an O_TMPFILE file goes through /proc/self/fd.
        self._anonymous = temp_files == "anonymous" or (
            self._auto and os.path.isdir("/proc/self/fd")
        )
        self._dir_fd = open_private_directory(self._path)
        self._reopening = threading.Lock()
        self.orphans_removed = self._remove_orphans()

    # -- public API ----------------------------------------------------------------

    @property
    def directory(self) -> str:
        """The absolute path of the snapshot directory."""
        return self._path

    @property
    def max_size(self) -> int:
        """The largest snapshot, in bytes, this store commits or opens."""
        return self._max_size

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._dir_fd < 0

    def commit(self, data: Buffer | Iterable[Buffer]) -> TmpfsRef:
        """Commit ``data`` as the new ``current`` snapshot, atomically.

        Args:
            data: the snapshot bytes, as one buffer or an iterable of buffers.

        Returns:
            A reference to the store's latest snapshot.

        Raises:
            StoreError: naming the operation that failed and its errno. Nothing was
                published: ``open()`` returns what it returned before (the message
                says otherwise when a step after the new snapshot got its name failed:
                the directory's fsync, or closing a descriptor; the snapshot then counts
                as this process's commit). When the directory was
                removed and cannot be re-created safely, the message says so. No temporary file is
                left, except in named mode when removing it failed too.
            TypeError: ``data`` holds something that is not bytes-like.
        """
        self._require_open("commit")
        progress = _Progress()
        try:
            lock_fd = self._lock_fresh()
            try:
                size = self._commit_anonymous(data, progress) if self._anonymous else None
                if size is None:
                    size = self._commit_named(data, progress)
            except BaseException:
                _syscalls.close_quietly(lock_fd)
                raise
            _syscalls.close(lock_fd, where=self._where(LOCK))  # releases the lock
        except StoreError as exc:
            if not progress.published:
                if self._directory_removed():
                    raise _amended(
                        exc,
                        f"{exc.detail}; the directory {self._path} was removed during the"
                        " commit; the next commit re-creates it",
                    ) from (exc.__cause__ or exc)
                raise
            raise _amended(
                exc, f"{exc.detail}; the new snapshot had already been published as {CURRENT!r}"
            ) from (exc.__cause__ or exc)
        finally:
            # Once published, 'current' is this process's commit even when a step after
            # it failed: unrecorded, the next commit would take it for another writer's.
            if progress.published:
                note_commit(f"tmpfs:{self._path}", progress.identity)
        return TmpfsRef(self, size, progress.identity)

    def claim(self) -> Claim:
        """Make this process the directory's writer: its next commit goes over
        ``current`` as it is now, whoever committed it, and says so at WARNING.

        The way out of :class:`~statemigrate.StoreSharedError` once the other process
        has stopped committing here: without it, that process's snapshot stays
        ``current`` and every commit of this one is refused. A snapshot committed after
        the claim is refused as before (claim again once that process has stopped).

        Returns:
            What the next commit replaces, and who committed it.

        Raises:
            StoreError: the directory could not be read.
        """
        self._require_open("claim")
        self._reopen_if_removed()
        where = self._where(CURRENT)
        try:
            st = _syscalls.lstat_at(CURRENT, dir_fd=self._dir_fd, where=where)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return claimed(f"tmpfs:{self._path}", None, None, None)
        # The identity a commit compares with (see _keep_current_as_previous).
        latest = (st.st_ino, st.st_mtime_ns)
        return claimed(f"tmpfs:{self._path}", latest, where, self._current_writer())

    def holds(self, ref: SnapshotRef) -> bool:
        """Whether ``current`` is still the snapshot ``ref``'s commit wrote, or one
        committed after it (by another writer sharing the directory): see
        :meth:`holding`.

        Raises:
            StoreError: as :meth:`holding`.
        """
        return self.holding(ref) != "lost"

    def holding(self, ref: SnapshotRef) -> Holding:
        """What ``current`` is of the snapshot ``ref``'s commit wrote, as one stat
        tells: that very file (``held``), another one (``replaced``: another writer
        sharing the directory committed since), or none (``lost``).

        Raises:
            StoreError: the stat failed otherwise than with ENOENT, or the directory
                was removed and cannot be re-created (see the class docstring).
        """
        if not (isinstance(ref, TmpfsRef) and ref.store is self):
            return "lost"
        self._reopen_if_removed()
        where = self._where(CURRENT)
        try:
            st = _syscalls.lstat_at(CURRENT, dir_fd=self._dir_fd, where=where)
        except StoreError as exc:
            if exc.errno == errno.ENOENT:
                return "lost"
            raise
        if not stat.S_ISREG(st.st_mode):
            return "lost"
        if ref._identity is None:  # a reference no commit of this object returned
            return "held" if st.st_size == ref.size else "replaced"
        # The inode alone could be another writer's file on a file system that reuses
        # inodes at once; with its mtime, to the nanosecond, it is this commit's.
        return "held" if (st.st_ino, st.st_mtime_ns) == ref._identity else "replaced"

    def open(self, ref: SnapshotRef | None = None) -> bytes:
        """Return the latest snapshot: ``current``, or ``previous`` when there is none.

        Args:
            ref: a :class:`TmpfsRef` of this directory, or ``None``; both name the
                latest snapshot.

        Raises:
            StoreError: no snapshot was committed (``errno`` ENOENT), or the file found
                is not safe to read: a symbolic link, FIFO, directory, a file with
                several links, not private, owned by another user, or larger than
                ``max_size``. Such a file is refused, never followed or waited on.
        """
        self._require_open("open")
        if ref is not None and not (isinstance(ref, TmpfsRef) and ref.directory == self._path):
            raise StoreError(
                "open", ref.describe(), f"is not a snapshot of the store in {self._path}"
            )
        self._reopen_if_removed()
        # Read by a start, most often: its first commit here must not take the place
        # from the process that committed what it read, if that one still runs.
        note_read(f"tmpfs:{self._path}")
        try:
            return self._read(CURRENT)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                raise
        try:
            return self._read(PREVIOUS)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise StoreError(
                "open", self._path, "no snapshot has been committed here", errno=exc.errno
            ) from exc.__cause__

    def open_previous(self) -> bytes:
        """Return the snapshot kept as ``previous``.

        Raises:
            StoreError: there is none (``errno`` ENOENT), or it is not safe to read.
        """
        self._require_open("open")
        self._reopen_if_removed()
        note_read(f"tmpfs:{self._path}")
        try:
            return self._read(PREVIOUS)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise StoreError(
                "open", self._where(PREVIOUS), "there is no previous snapshot", errno=exc.errno
            ) from exc.__cause__

    def keep_unrestored(self, data: Buffer) -> str:
        """Keep ``data``, a snapshot of this store that could not be restored, as
        ``unrestored`` in the directory, replacing the one kept before.

        Commits never touch it: ``current`` and ``previous`` rotate as usual while this
        copy stays until it is deleted or replaced. :meth:`Service.start_from
        <statemigrate.Service.start_from>` keeps there the latest snapshot when it
        cannot restore it, so that a service that goes on without its state (from
        ``previous``, or cold) does not checkpoint that state out of reach; ``statemigrate
        inspect`` and ``statemigrate migrate`` read the file.

        Returns:
            The file's path.

        Raises:
            StoreError: as :meth:`commit`; no temporary file is left.
        """
        self._require_open("keep")
        lock_fd = self._lock_fresh()
        try:
            self._commit_named(data, _Progress(), target=UNRESTORED)
        finally:
            _syscalls.close_quietly(lock_fd)
        return self._where(UNRESTORED)

    def fell_back_to_previous(self, data: Buffer) -> None:
        """A start restored ``previous`` because it could not restore ``current``, whose
        snapshot is ``data`` (kept as ``unrestored`` by :meth:`keep_unrestored`):
        ``previous`` becomes ``current`` again, so that the next commit keeps it as
        ``previous``, the one a later start falls back to, rather than the snapshot
        that cannot be restored. Nothing changes when ``current`` is no longer
        ``data`` (another writer committed meanwhile).

        Raises:
            StoreError: as :meth:`commit`.
        """
        self._require_open("fall back")
        lock_fd = self._lock_fresh()
        try:
            try:
                held = self._read(CURRENT)
            except StoreError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            if held != bytes(memoryview(data).cast("B")):
                return
            _syscalls.rename_at(PREVIOUS, CURRENT, dir_fd=self._dir_fd, where=self._where(CURRENT))
        finally:
            _syscalls.close_quietly(lock_fd)

    def close(self) -> None:
        """Close the directory descriptor. Idempotent."""
        # Not while a re-open swaps the descriptor (see _reopen_if_removed).
        with self._reopening:
            fd, self._dir_fd = self._dir_fd, -1
        if fd >= 0:
            os.close(fd)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<TmpfsStore {self._path!r}{state}>"

    def _same_place(self, other: TmpfsStore) -> bool:
        """Whether ``other`` commits to this directory, however its path was spelled
        (a symbolic link, a relative path)."""
        try:
            return os.path.samefile(self._path, other._path)
        except OSError:
            return False

    # -- commit --------------------------------------------------------------------

    def _commit_anonymous(self, data: Buffer | Iterable[Buffer], progress: _Progress) -> int | None:
        """Commit through an O_TMPFILE file; None if the file system cannot make one."""
        where = self._where("(new snapshot)")
        try:
            fd = _syscalls.open_at(".", _ANONYMOUS_FLAGS, dir_fd=self._dir_fd, where=where)
        except StoreError as exc:
            if self._auto and exc.errno in _NO_TMPFILE:
                _log.info("%s: O_TMPFILE is not supported, using named temporary files", self._path)
                self._anonymous = False
                return None
            raise
        try:
            _syscalls.fchmod(fd, 0o600, where=where)  # exact, whatever the umask
            size = self._write(fd, data, where)
            _syscalls.fsync(fd, where=where)
            progress.identity = _identity(fd, where)
            note_maybe_committed(progress.identity)  # see _commit_named
            self._keep_current_as_previous()
            _syscalls.link_fd_at(fd, CURRENT, dir_fd=self._dir_fd, where=self._where(CURRENT))
            progress.published = True
            _syscalls.fsync(self._dir_fd, where=self._path)
        except BaseException:
            # The file has no name: closing it is all the cleanup there is.
            _syscalls.close_quietly(fd)
            raise
        _syscalls.close(fd, where=where)
        return size

    def _commit_named(
        self, data: Buffer | Iterable[Buffer], progress: _Progress, target: str = CURRENT
    ) -> int:
        """Commit through a ``.tmp.<pid>.<random>`` file renamed to ``target``: to
        ``current``, once the old one is kept as ``previous``."""
        name = self._temp_name()
        where = self._where(name)
        fd = _syscalls.open_at(name, _NAMED_FLAGS, dir_fd=self._dir_fd, where=where)
        try:
            try:
                _syscalls.fchmod(fd, 0o600, where=where)
                size = self._write(fd, data, where)
                _syscalls.fsync(fd, where=where)
                progress.identity = _identity(fd, where)
                # Known as this process's before anyone can see it: another thread of
                # this process that commits next must not take it for another writer's.
                note_maybe_committed(progress.identity)
            except BaseException:
                _syscalls.close_quietly(fd)
                raise
            _syscalls.close(fd, where=where)
            if target == CURRENT:
                self._keep_current_as_previous()
            _syscalls.rename_at(name, target, dir_fd=self._dir_fd, where=self._where(target))
            progress.published = True
            _syscalls.fsync(self._dir_fd, where=self._path)
        except BaseException:
            if not progress.published:
                self._discard(name)
            raise
        return size

    def _write(self, fd: int, data: Buffer | Iterable[Buffer], where: str) -> int:
        return write_bounded(fd, data, max_size=self._max_size, where=where)

    def _keep_current_as_previous(self) -> None:
        """Rename ``current`` to ``previous``, if there is a ``current`` fit to keep."""
        where = self._where(CURRENT)
        try:
            st = _syscalls.lstat_at(CURRENT, dir_fd=self._dir_fd, where=where)
        except StoreError as exc:
            if exc.errno == errno.ENOENT:
                return  # the first commit, or the last one stopped between its renames
            raise
        # Something planted at 'current' is refused rather than kept as 'previous'.
        check_file(st, op="rename", where=where)
        check_other_writer(
            f"tmpfs:{self._path}", (st.st_ino, st.st_mtime_ns), self._current_writer
        )
        _syscalls.rename_at(CURRENT, PREVIOUS, dir_fd=self._dir_fd, where=self._where(PREVIOUS))

    def _current_writer(self) -> Writer | None:
        """Who committed ``current``, from its header (a few small reads); ``None``
        when it cannot be read. A question, not a step of the protocol: plain
        ``os`` calls, which the failpoint tests neither count nor fail."""
        try:
            fd = os.open(CURRENT, _READ_FLAGS, dir_fd=self._dir_fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return latest_writer(lambda offset, length: os.pread(fd, length, offset), st.st_size)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _discard(self, name: str) -> None:
        try:
            _syscalls.unlink_at(name, dir_fd=self._dir_fd, where=self._where(name))
        except StoreError as exc:
            _log.warning(
                "could not remove %s (%s); the next TmpfsStore on %s removes it",
                self._where(name),
                exc.detail,
                self._path,
            )

    def _temp_name(self) -> str:
        return f".tmp.{os.getpid()}.{secrets.token_hex(8)}"

    # -- the directory, removed behind the store's back ------------------------------

    def _directory_removed(self) -> bool:
        """Whether the directory this store holds has no name any more (``rm -rf``):
        a directory removed while open keeps no link, and nothing can be created in it."""
        fd = self._dir_fd
        if fd < 0:
            return False
        # os.fstat, not _syscalls.fstat: a question, not a step of the protocol that the
        # failpoint tests count and fail; an error here leaves the answer to the
        # operation that follows.
        try:
            return os.fstat(fd).st_nlink == 0
        except OSError:
            return False

    def _reopen_if_removed(self) -> None:
        """Re-create (or open, if someone re-created it) the directory when the one
        held was removed, with the checks the store made when it was opened: created
        0700, opened ``O_DIRECTORY|O_NOFOLLOW`` (a symbolic link planted at the path is
        refused, never followed), ours, private.

        The new descriptor takes the old one's number (``dup2``), so an operation of
        another thread uses either the old directory or the new one, never a
        descriptor closed under it or reused for another file.

        Raises:
            StoreError: the directory was removed and cannot be re-created or opened
                safely; the message says both.
        """
        if not self._directory_removed():
            return
        with self._reopening:
            if self._dir_fd < 0 or not self._directory_removed():
                return  # closed, or another thread re-opened it first
            try:
                fd = open_private_directory(self._path)
            except StoreError as exc:
                why = exc.detail
                detail = f"the store's directory was removed, and re-creating it failed: {why}"
                raise _amended(exc, detail) from (exc.__cause__ or exc)
            try:
                os.dup2(fd, self._dir_fd, inheritable=False)
            except OSError as exc:
                raise StoreError(
                    "open", self._path, "the store's directory was removed, and re-opening"
                    f" it failed: {exc.strerror}", errno=exc.errno
                ) from exc
            finally:
                os.close(fd)
        _log.warning(
            "%s: the snapshot directory was removed while the store held it; re-opened it"
            " (re-created 0700 if missing) and commits go there; the snapshots it held are"
            " gone",
            self._path,
        )

    def _lock_fresh(self) -> int:
        """:meth:`_lock`, in a new directory if the one held was removed, also if it
        is removed between the check and the lock."""
        self._reopen_if_removed()
        try:
            return self._lock()
        except StoreError as exc:
            if exc.errno != errno.ENOENT or not self._directory_removed():
                raise
        self._reopen_if_removed()
        return self._lock()

    # -- lock and cleanup ----------------------------------------------------------

    def _lock(self) -> int:
        """Open and flock the lock file; closing the returned descriptor unlocks."""
        where = self._where(LOCK)
        fd = _syscalls.open_at(LOCK, _LOCK_FLAGS, dir_fd=self._dir_fd, where=where)
        try:
            check_file(_syscalls.fstat(fd, where=where), op="lock", where=where)
            _syscalls.flock(fd, fcntl.LOCK_EX, where=where)
        except BaseException:
            _syscalls.close_quietly(fd)
            raise
        return fd

    def _remove_orphans(self) -> int:
        """Remove temporary files left by writers killed inside a commit.

        Runs under the lock, so a live writer's temporary file is never taken for an
        orphan. Problems are logged, not raised: cleaning up must not stop a reader.
        """
        try:
            lock_fd = self._lock()
        except StoreError as exc:
            _log.warning("not looking for leftover temporary files: %s", exc)
            return 0
        removed = 0
        try:
            for name in _syscalls.listdir(self._dir_fd, where=self._path):
                if TEMP_PATTERN.match(name) and self._remove_orphan(name):
                    removed += 1
        except StoreError as exc:
            _log.warning("not looking for leftover temporary files: %s", exc)
        finally:
            _syscalls.close_quietly(lock_fd)
        if removed:
            _log.warning(
                "%s: removed %d temporary file(s) left by an interrupted commit",
                self._path,
                removed,
            )
        return removed

    def _remove_orphan(self, name: str) -> bool:
        where = self._where(name)
        try:
            st = _syscalls.lstat_at(name, dir_fd=self._dir_fd, where=where)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                # Not something a commit of ours could have left: not ours to delete.
                _log.warning("leaving %s alone: not a regular file of ours", where)
                return False
            _syscalls.unlink_at(name, dir_fd=self._dir_fd, where=where)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                _log.warning("could not remove %s: %s", where, exc.detail)
            return False
        return True

    # -- reading -------------------------------------------------------------------

    def _read(self, name: str) -> bytes:
        where = self._where(name)
        fd = _syscalls.open_at(name, _READ_FLAGS, dir_fd=self._dir_fd, where=where)
        try:
            # Check what was opened, not the path: the name may have changed since.
            st = _syscalls.fstat(fd, where=where)
            check_file(st, op="open", where=where, max_size=self._max_size, opened=True)
            data = _syscalls.read_all(fd, st.st_size, where=where)
        except BaseException:
            _syscalls.close_quietly(fd)
            raise
        _syscalls.close(fd, where=where)
        return data

    def _require_open(self, op: str) -> int:
        if self._dir_fd < 0:
            raise StoreError(op, self._path, "the store is closed")
        return self._dir_fd

    def _where(self, name: str) -> str:
        return f"{self._path}/{name}"


class TmpfsRef:
    """Names the latest snapshot of a :class:`TmpfsStore`.

    The store keeps two files, not numbered generations, so a reference always reads
    the latest snapshot; the snapshot format records its own generation.

    Attributes:
        size: the number of bytes committed by the commit that returned this reference.
    """

    __slots__ = ("_identity", "_store", "size")

    def __init__(
        self, store: TmpfsStore, size: int, identity: tuple[int, int] | None = None
    ) -> None:
        self._store = store
        self.size = size
        self._identity = identity  # inode and mtime of the file committed, if known

    @property
    def store(self) -> TmpfsStore:
        """The store this reference belongs to."""
        return self._store

    @property
    def directory(self) -> str:
        """The snapshot directory."""
        return self._store.directory

    def open(self) -> bytes:
        """Return the store's latest snapshot; see :meth:`TmpfsStore.open`."""
        return self._store.open(self)

    def describe(self) -> str:
        """``tmpfs:<directory>/current``."""
        return f"tmpfs:{self._store.directory}/{CURRENT}"

    def __repr__(self) -> str:
        return f"<TmpfsRef {self.describe()} size={self.size}>"


def _amended(exc: StoreError, detail: str) -> StoreError:
    """``exc`` with ``detail`` in place of its own: what else a caller knows of it."""
    return StoreError(exc.op, exc.target, detail, errno=exc.errno)
