"""MemoryStore: snapshots kept in process memory, for tests.

It follows the contract of :class:`~statemigrate.stores.TmpfsStore` (latest and
previous snapshot, references that name the latest one, the same errors) without
touching the file system, so code written against a store can be tested quickly. It
offers no durability at all: its snapshots die with the process.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from statemigrate._errors import StoreError
from statemigrate.stores._base import DEFAULT_MAX_SIZE, Buffer, SnapshotRef, chunks
from statemigrate.stores._options import check_max_size

__all__ = ["MemoryRef", "MemoryStore"]


class MemoryStore:
    """Keep the latest two committed snapshots in memory (tests only).

    Args:
        name: shown by :meth:`MemoryRef.describe` as ``memory:<name>``.
        max_size: the largest snapshot, in bytes, that the store commits.

    Raises:
        ConfigurationError: ``max_size`` is not an int of 0 or more (a ``ValueError``).
    """

    def __init__(self, *, name: str = "memory", max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._name = name
        self._max_size = check_max_size(max_size)
        self._current: bytes | None = None
        self._previous: bytes | None = None
        self.commits = 0
        """How many commits succeeded."""

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
        """Copy ``data`` in as the latest snapshot; the latest becomes the previous.

        Raises:
            StoreError: ``data`` is larger than ``max_size``; nothing changed.
            TypeError: ``data`` holds something that is not bytes-like.
        """
        parts: list[bytes] = []
        size = 0
        for view in chunks(data):
            size += view.nbytes
            if size > self._max_size:
                raise StoreError(
                    "write", f"memory:{self._name}",
                    f"snapshot exceeds max_size {self._max_size} (at least {size} bytes)",
                )
            parts.append(view.tobytes())  # a private copy: the caller may reuse its buffers
        self._previous, self._current = self._current, b"".join(parts)
        self.commits += 1
        return MemoryRef(self, size)

    def open(self, ref: SnapshotRef | None = None) -> bytes:
        """Return the latest snapshot.

        Args:
            ref: a :class:`MemoryRef` of this store, or ``None``; both name the latest.

        Raises:
            StoreError: nothing was committed, or ``ref`` belongs to another store.
        """
        if ref is not None and not (isinstance(ref, MemoryRef) and ref.store is self):
            raise StoreError("open", ref.describe(), f"is not a snapshot of memory:{self._name}")
        if self._current is None:
            raise StoreError(
                "open",
                f"memory:{self._name}",
                "no snapshot has been committed",
                errno=errno.ENOENT,
            )
        return self._current

    def open_previous(self) -> bytes:
        """Return the snapshot committed before the latest one.

        Raises:
            StoreError: there is none.
        """
        if self._previous is None:
            raise StoreError("open", f"memory:{self._name}", "there is no previous snapshot")
        return self._previous

    def __repr__(self) -> str:
        return f"<MemoryStore {self._name!r} commits={self.commits}>"


class MemoryRef:
    """Names the latest snapshot of a :class:`MemoryStore`.

    Attributes:
        size: the number of bytes committed by the commit that returned it.
    """

    __slots__ = ("_store", "size")

    def __init__(self, store: MemoryStore, size: int) -> None:
        self._store = store
        self.size = size

    @property
    def store(self) -> MemoryStore:
        """The store this reference belongs to."""
        return self._store

    def open(self) -> bytes:
        """Return the store's latest snapshot."""
        return self._store.open(self)

    def describe(self) -> str:
        """``memory:<name>``."""
        return f"memory:{self._store.name}"

    def __repr__(self) -> str:
        return f"<MemoryRef {self.describe()} size={self.size}>"
