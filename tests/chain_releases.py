"""Two releases of a cache whose upgrade has a whole-data step, and a checkpoint chain of
release 1, for the tests of chains folded before they are migrated.

Release 1 holds ``entries: dict[str, int]`` (keys ``"k0"``, ``"k1"``, ...) and a ``note``.
Release 2 comes in three forms, each a registry function the command line can load
(``--registry chain_releases:drop_note``):

* ``drop_note``: ``FieldChanges(drop=["note"])`` without ``records=``, as
  ``statemigrate makemigration`` writes it (lossy: restored with ``allow_lossy``);
* ``int_keys``: a Python step turning the keys into ints (``"k7"`` -> ``7``), which no
  record step can do;
* ``refusing``: ``int_keys`` that raises on the value only the chain's last delta
  writes (:data:`REFUSED`), so that it fails only when the deltas were applied.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm

SERVICE = "cache-service"
REFUSED = 666
"""The value the chain's last delta writes, which ``refusing`` raises on."""


class CacheV1(TypedDict):
    entries: dict[str, int]
    note: str


class CacheDropped(TypedDict):
    entries: dict[str, int]


class CacheIntKeys(TypedDict):
    entries: dict[int, int]
    note: str


def release1() -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("cache", 1, CacheV1)
    return registry


def drop_note() -> sm.Registry:
    registry = release1()
    registry.add_schema("cache", 2, CacheDropped)
    registry.add_migration("cache", 1, 2, sm.FieldChanges(drop=["note"]), lossy=("note",))
    registry.add_migration("cache", 2, 1, sm.FieldChanges(add={"note": ""}))
    return registry


def _int_keys(state: dict[str, Any]) -> dict[str, Any]:
    # Plain data holds map keys as text: "k7" becomes "7", which version 2 reads as 7.
    state["entries"] = {key[1:]: value for key, value in state["entries"].items()}
    return state


def int_keys() -> sm.Registry:
    registry = release1()
    registry.add_schema("cache", 2, CacheIntKeys)
    registry.add_migration("cache", 1, 2, _int_keys, name="int_keys")
    return registry


def _int_keys_refusing(state: dict[str, Any]) -> dict[str, Any]:
    if REFUSED in state["entries"].values():
        raise ValueError(f"refused for the test: a value of {REFUSED}")
    return _int_keys(state)


def refusing() -> sm.Registry:
    registry = release1()
    registry.add_schema("cache", 2, CacheIntKeys)
    registry.add_migration("cache", 1, 2, _int_keys_refusing, name="int_keys")
    return registry


RELEASES = {"drop_note": drop_note, "int_keys": int_keys, "refusing": refusing}


def cache_of(registry: sm.Registry) -> Any:
    """A new cache, of the class marked as the newest version ``registry`` holds."""

    class Cache:
        def __init__(self) -> None:
            self.entries: sm.TrackedDict[Any, int] = sm.TrackedDict()
            self.note = ""

    version = registry.latest("cache").version
    return registry.migratable("cache", version=version)(Cache)()


@dataclass(frozen=True)
class Written:
    """What release 1 wrote: its chain (a base and two deltas), a full snapshot of the
    same state taken after the chain's last piece, the chain as it was one delta
    earlier, and as it was first: its base alone."""

    chain: bytes
    full: bytes
    shorter: bytes
    base_alone: bytes


def write_chain(*, refused_value: bool = False) -> Written:
    """Release 1 checkpointed incrementally: a base of 40 entries; a delta that updates
    five, deletes two and changes the note; a delta that adds one and deletes another
    (adding :data:`REFUSED` when ``refused_value``)."""
    service = sm.Service(SERVICE, registry=release1())
    cache = service.register(cache_of(release1()))
    service.start_cold("a new cache")
    store = sm.MemoryStore()
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    cache.entries.update({f"k{i}": i for i in range(40)})
    cache.note = "base"
    checkpointer.checkpoint_now()
    base_alone = bytes(store.open())
    for i in range(5):
        cache.entries[f"k{i}"] = 100 + i
    del cache.entries["k10"], cache.entries["k11"]
    cache.note = "first delta"
    checkpointer.checkpoint_now()
    shorter = bytes(store.open())
    cache.entries["k40"] = REFUSED if refused_value else 40
    del cache.entries["k0"]
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3
    full, _ = service.snapshot()
    return Written(bytes(store.open()), full.to_bytes(), shorter, base_alone)


def restored_from_chain(release: str, chain: bytes) -> Any:
    """The cache of a service of ``release`` (a name of :data:`RELEASES`) that restored
    ``chain``, lossy steps allowed.

    Raises:
        RestoreError: the restore failed.
    """
    registry = RELEASES[release]()
    service = sm.Service(SERVICE, registry=registry)
    cache = service.register(cache_of(registry))
    service.restore(chain, allow_lossy=True)
    return cache
