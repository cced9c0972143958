"""Where snapshots are committed: tmpfs files, sealed memfds, object storage, or memory
(for tests).

Every store commits atomically (a reader sees the previous snapshot or the new one,
never a torn one) and treats snapshots as opaque bytes. The object store needs the
optional ``obstore`` package (``pip install 'statemigrate[objectstore]'``), imported
only when an :class:`ObjectStore` is created; the object store's own modules (and the
pydantic model of its pointer) load on first access to :class:`ObjectStore` or
:class:`ObjectRef`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statemigrate import _lazy
from statemigrate.stores._base import Buffer, Claim, SnapshotRef, Store
from statemigrate.stores._memfd import MemfdRef, MemfdStore, open_memfd
from statemigrate.stores._memory import MemoryRef, MemoryStore
from statemigrate.stores._tmpfs import TempFiles, TmpfsRef, TmpfsStore

if TYPE_CHECKING:
    from statemigrate.stores._object import ObjectRef, ObjectStore

__all__ = [
    "Buffer",
    "Claim",
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

__getattr__, __dir__ = _lazy.lazy_names(
    __name__, globals(), dict.fromkeys(("ObjectRef", "ObjectStore"), "statemigrate.stores._object")
)
