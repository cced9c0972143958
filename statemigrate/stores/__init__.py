"""Where snapshots are committed: tmpfs files, sealed memfds, object storage, or memory
(for tests).

Every store commits atomically (a reader sees the previous snapshot or the new one,
never a torn one) and treats snapshots as opaque bytes. The object store needs the
optional ``obstore`` package (``pip install 'statemigrate[objectstore]'``), imported
only when an :class:`ObjectStore` is created.
"""

from __future__ import annotations

from statemigrate.stores._base import Buffer, SnapshotRef, Store
from statemigrate.stores._memfd import MemfdRef, MemfdStore, open_memfd
from statemigrate.stores._memory import MemoryRef, MemoryStore
from statemigrate.stores._object import ObjectRef, ObjectStore
from statemigrate.stores._tmpfs import TempFiles, TmpfsRef, TmpfsStore

__all__ = [
    "Buffer",
    "MemfdRef",
    "MemfdStore",
    "MemoryRef",
    "MemoryStore",
    "ObjectRef",
    "ObjectStore",
    "SnapshotRef",
    "Store",
    "TempFiles",
    "TmpfsRef",
    "TmpfsStore",
    "open_memfd",
]
