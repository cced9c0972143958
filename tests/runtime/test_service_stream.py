"""Service.commit streams the snapshot into the store: an error of the data found while
the store writes commits nothing and leaves the previous snapshot, on every store."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from _store_helpers import scratch_dir, temp_names
from _store_helpers.azurite import AZURITE, running_azurite
from _store_helpers.object_server import SEAWEEDFS, names, running_seaweedfs, s3_place
from typing_extensions import TypedDict

from statemigrate import ExportError, Registry, Service
from statemigrate.stores import MemfdStore, MemoryStore, ObjectStore, TmpfsStore
from statemigrate.stores._base import Buffer

MiB = 1 << 20
ENTRIES = 400_000
"""Random hex values of 64 characters: about 29 MiB packed, 15 MiB stored, so several
chunks (and, on object stores, more than one upload part) are written before the
value that cannot be packed."""


class Table(TypedDict):
    entries: dict[str, str]


REGISTRY = Registry()
REGISTRY.add_schema("table", 1, Table)


@REGISTRY.migratable("table", version=1)
class Holder:
    def __init__(self) -> None:
        self.entries: dict[str, Any] = {"a": "1"}


class Watched:
    """A store that counts the bytes its commit took before it returned or raised."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.taken = 0

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        assert not isinstance(data, bytes | bytearray | memoryview)
        def counted() -> Iterator[Buffer]:
            for part in data:
                self.taken += memoryview(part).nbytes
                yield part

        return self.store.commit(counted())

    def open(self, ref: Any = None) -> Any:
        return self.store.open(ref)


def _late_failure() -> dict[str, Any]:
    entries: dict[str, Any] = {f"k{i:07d}": os.urandom(32).hex() for i in range(ENTRIES)}
    # Packed last. A str to validation, so the commit's check of the records passes it;
    # UTF-8 cannot encode it, so the packer refuses it, while the store writes.
    entries["zzz"] = "lone \ud800 surrogate"
    return entries


STORES: list[Any] = [
    "tmpfs-anonymous", "tmpfs-named", "memfd", "memory", "object-file", "object-s3"
]
if SEAWEEDFS:
    STORES.append(pytest.param("object-seaweedfs", marks=pytest.mark.seaweedfs))
if AZURITE:
    STORES.append(pytest.param("object-azurite", marks=pytest.mark.azurite))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    kind = request.param
    if kind.startswith("tmpfs"):
        with scratch_dir() as path:
            temp_files = kind.removeprefix("tmpfs-")
            with TmpfsStore(path / "store", temp_files=temp_files) as tmpfs:
                yield tmpfs
    elif kind == "memfd":
        with MemfdStore() as memfd:
            yield memfd
    elif kind == "memory":
        yield MemoryStore()
    elif kind == "object-file":
        with scratch_dir() as path:
            yield ObjectStore(f"file://{path}/objects")
    elif kind == "object-s3":
        yield s3_place(request.getfixturevalue("s3")).store()
    elif kind == "object-azurite":
        with running_azurite() as azurite:
            yield azurite.place().store()
    else:
        with running_seaweedfs() as server:
            yield server.place().store()


def _leftovers(store: Any) -> list[str]:
    """What a failed commit could leave behind: temporary files, objects."""
    if isinstance(store, TmpfsStore):
        return temp_names(store.directory)
    if isinstance(store, ObjectStore):
        return names(store)
    return []


def test_a_data_error_found_while_the_store_writes_commits_nothing(store: Any) -> None:
    """The export error surfaces inside the store's commit, after megabytes were
    written: the store commits nothing, the previous snapshot is still the latest, and
    nothing of the failed commit is left (no temporary file, no object, no pointer
    moved)."""
    holder = Holder()
    service = Service("svc", registry=REGISTRY)
    service.register(holder)
    service.commit(store)
    previous = bytes(store.open())
    before = _leftovers(store)

    holder.entries = _late_failure()
    watched = Watched(store)
    with pytest.raises(ExportError) as caught:
        service.commit(watched)
    assert "entries" in str(caught.value) and "zzz" in str(caught.value)
    assert watched.taken > 4 * MiB  # the error came while the store was writing
    assert bytes(store.open()) == previous
    assert _leftovers(store) == before

    holder.entries = {"b": "2"}  # the store still commits, and the snapshot restores
    service.commit(store)
    reader = Service("svc", registry=REGISTRY)
    restored = reader.register(Holder())
    reader.restore(store.open())
    assert restored.entries == {"b": "2"}
