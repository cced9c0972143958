"""Where snapshots are committed: tmpfs files, sealed memfds, object storage, or memory
(for tests).

Every store commits atomically (a reader sees the previous snapshot or the new one,
never a torn one) and treats snapshots as opaque bytes. The object store needs the
optional ``obstore`` package (``pip install 'statemigrate[objectstore]'``), imported
only when an :class:`ObjectStore` is created; its own modules load when
``ObjectStore`` or ``ObjectRef`` is first looked up here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statemigrate.stores._base import Buffer, SnapshotRef, Store
from statemigrate.stores._memfd import MemfdRef, MemfdStore, open_memfd
from statemigrate.stores._memory import MemoryRef, MemoryStore
from statemigrate.stores._tmpfs import TempFiles, TmpfsRef, TmpfsStore

if TYPE_CHECKING:
    from statemigrate.stores._object import ObjectRef, ObjectStore

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


def __getattr__(name: str) -> Any:
    # The object store is an optional integration: its modules load on first use.
    if name not in ("ObjectRef", "ObjectStore"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("statemigrate.stores._object"), name)
    globals()[name] = value  # from now on an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"ObjectRef", "ObjectStore"})
