"""Deliberately broken store variants: the negative controls of the reliability tests.

None of these is part of the library. Each one makes a mistake the real stores avoid,
so a test can show that its checker notices the mistake.
"""

from __future__ import annotations

import os
import secrets

from statemigrate.stores import TmpfsStore, _syscalls


class InPlaceStore:
    """Truncates ``current`` and rewrites it in place (in two halves): a kill between
    the truncation and the last write leaves a torn snapshot."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def commit(self, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = _syscalls.open_at("current", flags, dir_fd=self._dir_fd, where="current")
        view = memoryview(data)
        half = len(view) // 2
        _syscalls.write_all(fd, view[:half], where="current")
        _syscalls.write_all(fd, view[half:], where="current")
        _syscalls.close(fd, where="current")

    def close(self) -> None:
        os.close(self._dir_fd)


class LeakyStore:
    """Temp file + rename, but with no cleanup at all on errors: leaks the temp file
    and the descriptor whenever an operation fails."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def commit(self, data: bytes) -> None:
        name = f".tmp.{os.getpid()}.{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = _syscalls.open_at(name, flags, dir_fd=self._dir_fd, where=name)
        _syscalls.write_all(fd, memoryview(data), where=name)
        _syscalls.fsync(fd, where=name)
        _syscalls.close(fd, where=name)
        _syscalls.rename_at(name, "current", dir_fd=self._dir_fd, where="current")

    def open(self) -> bytes:
        fd = os.open("current", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir_fd)
        try:
            return os.read(fd, 1 << 30)
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self._dir_fd)


class FsyncRetryStore(LeakyStore):
    """Cleans up, but "handles" a failed fsync by retrying it and trusting the retry,
    then publishes: the mistake PostgreSQL's fsyncgate made famous."""

    def commit(self, data: bytes) -> None:
        name = f".tmp.{os.getpid()}.{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = _syscalls.open_at(name, flags, dir_fd=self._dir_fd, where=name)
        try:
            _syscalls.write_all(fd, memoryview(data), where=name)
            try:
                _syscalls.fsync(fd, where=name)
            except Exception:
                _syscalls.fsync(fd, where=name)  # the retry "succeeds": the dirty pages are gone
        finally:
            _syscalls.close_quietly(fd)
        _syscalls.rename_at(name, "current", dir_fd=self._dir_fd, where="current")


class UnlockedStore(TmpfsStore):
    """A TmpfsStore whose commit lock does nothing: concurrent writers overlap."""

    def _lock(self) -> int:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

