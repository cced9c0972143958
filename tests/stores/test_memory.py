"""MemoryStore: the in-memory store for tests follows the TmpfsStore contract."""

from __future__ import annotations

import pytest

from statemigrate import StoreError
from statemigrate.stores import MemfdStore, MemoryRef, MemoryStore, SnapshotRef, Store


def test_commit_open_and_previous() -> None:
    """open() is the latest commit, open_previous() the one before; refs name the latest."""
    store = MemoryStore(name="unit")
    assert isinstance(store, Store)
    with pytest.raises(StoreError, match="no snapshot"):
        store.open()
    with pytest.raises(StoreError, match="no previous"):
        store.open_previous()
    first = store.commit(b"one")
    assert isinstance(first, SnapshotRef) and isinstance(first, MemoryRef)
    assert (first.size, first.describe()) == (3, "memory:unit")
    second = store.commit([b"tw", memoryview(b"o")])
    assert store.open() == b"two" == first.open() == second.open() == store.open(first)
    assert store.open_previous() == b"one"
    store.commit(b"three")
    assert (store.open(), store.open_previous(), store.commits) == (b"three", b"two", 3)


def test_commit_copies_the_callers_buffers() -> None:
    """Changing a buffer after committing it does not change the snapshot."""
    store = MemoryStore()
    buffer = bytearray(b"abc")
    store.commit(buffer)
    buffer[0] = ord("X")
    assert store.open() == b"abc"


def test_refusals_leave_the_store_unchanged() -> None:
    """Oversized data, non-bytes items and refs of other stores are refused; the
    latest and previous snapshots stay as they were."""
    store = MemoryStore(max_size=4)
    store.commit(b"ab")
    store.commit(b"cd")
    with pytest.raises(StoreError, match="exceeds max_size"):
        store.commit([b"abc", b"de"])
    with pytest.raises(TypeError, match="bytes-like"):
        store.commit([b"a", 1])  # type: ignore[list-item]
    with pytest.raises(StoreError, match="not a snapshot of memory"):
        store.open(MemoryStore().commit(b"x"))
    with MemfdStore() as memfds, pytest.raises(StoreError, match="not a snapshot of memory"):
        store.open(memfds.commit(b"x"))
    assert (store.open(), store.open_previous(), store.commits) == (b"cd", b"ab", 2)
    with pytest.raises(ValueError):
        MemoryStore(max_size=-1)
