"""The sources a restore reads a snapshot from: which are accepted, and reading their bytes.

Besides bytes, encoded snapshots, store references and commit reports, start-up makes
references of its own over a store's reads (:class:`Reader`, :class:`Failing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from statemigrate._errors import SourceTypeError, StoreError
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate._snapshot._format import byte_view

if TYPE_CHECKING:
    from statemigrate._runtime._report import CommitReport
    from statemigrate.stores import SnapshotRef

__all__ = ["Failing", "Fetched", "Reader", "bytes_of", "check_source", "fetch"]

SOURCES = (
    "bytes, the encoded snapshot Service.snapshot() returns first, a store reference or a"
    " CommitReport"
)
_PAIR = (
    "the (encoded, report) pair Service.snapshot() returns; give its first item:"
    " encoded, report = service.snapshot(), then restore(encoded)"
)


def check_source(source: object) -> None:
    """Refuse, before anything is touched, a source no snapshot can be read from.

    Raises:
        SourceTypeError: ``source`` is not bytes-like, not an encoded snapshot, and
            has no ``open()`` (a path, say); or it is a memoryview whose bytes are not
            contiguous (``view[::2]``), which no reader can index.
    """
    if isinstance(source, memoryview):
        byte_view(source, argument="source", accepted=SOURCES)
        return
    if isinstance(source, bytes | bytearray | EncodedSnapshot):
        return
    if isinstance(source, tuple) and source and isinstance(source[0], EncodedSnapshot):
        raise SourceTypeError(source, SOURCES, given=_PAIR)
    if not callable(getattr(source, "open", None)):
        raise SourceTypeError(source, SOURCES)


def bytes_of(
    source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
) -> bytes | bytearray | memoryview:
    """The snapshot bytes of a checked source, read from its store when it has one."""
    if isinstance(source, bytes | bytearray | memoryview):
        return source
    if isinstance(source, EncodedSnapshot):
        return source.to_bytes()
    return source.open()


class Reader:
    """A :class:`SnapshotRef` over a function that reads the bytes."""

    def __init__(self, read: Callable[[], bytes | memoryview], where: str) -> None:
        self._read = read
        self._where = where

    def open(self) -> bytes | memoryview:
        return self._read()

    def describe(self) -> str:
        return self._where


class Fetched:
    """A :class:`SnapshotRef` over bytes read from a store already, with the seconds the
    read took: start-up reads a snapshot before it restores it (to fall back, to keep
    it aside, to tell a chain), and the restore's ``read`` phase must still count the
    download."""

    def __init__(self, data: bytes | memoryview, seconds: float, where: str) -> None:
        self.data = data
        self.seconds = seconds
        self._where = where

    def open(self) -> bytes | memoryview:
        return self.data

    def describe(self) -> str:
        return self._where


def fetch(read: Callable[[], bytes | memoryview], where: str) -> Fetched:
    """Call ``read`` and time it.

    Raises:
        StoreError: as ``read`` does.
    """
    began = time.perf_counter()
    data = read()
    return Fetched(data, time.perf_counter() - began, where)


class Failing:
    """A :class:`SnapshotRef` whose reading failed already: ``open()`` raises that error."""

    def __init__(self, error: StoreError) -> None:
        self.error = error

    def open(self) -> bytes | memoryview:
        raise self.error

    def describe(self) -> str:
        return self.error.target
