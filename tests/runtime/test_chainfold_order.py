"""A records-protocol component's order travels with its deltas: an LRU whose touches
move keys to the end comes back in its live order from a restore piece by piece (its
``import_records`` told which records moved) and from a composed chain (a folded
restore, `statemigrate migrate`, `inspect --dump`) alike; so does the reference cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from typing_extensions import TypedDict

from statemigrate import Checkpointer, MemoryStore, Registry, Service, TrackedDict
from statemigrate._runtime._chainread import compose_chain, open_chain
from statemigrate._snapshot._format import DecodeLimits

REGISTRY = Registry()


class LruState(TypedDict):
    entries: dict[str, int]


REGISTRY.add_schema("lru", 1, LruState)


@REGISTRY.migratable("lru", version=1)
class Lru:
    """An OrderedDict LRU on the records protocol, its TrackedDict kept in its order:
    a touch moves the key to the end of both."""

    def __init__(self) -> None:
        self.cache: OrderedDict[str, int] = OrderedDict()
        self.mirror: TrackedDict[str, int] = TrackedDict()

    def put(self, key: str, value: int) -> None:
        self.cache[key] = value
        self.cache.move_to_end(key)
        self.mirror.pop(key, None)
        self.mirror[key] = value

    def touch(self, key: str) -> None:
        self.put(key, self.cache[key])

    def export_state(self) -> dict[str, Any]:
        return {"entries": dict(self.cache)}

    def import_state(self, state: Mapping[str, Any]) -> None:
        self.cache = OrderedDict(state["entries"])
        self.mirror = TrackedDict(state["entries"])

    def tracked_records(self) -> dict[str, TrackedDict[str, int]]:
        return {"entries": self.mirror}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        return {key: self.cache[key] for key in keys if key in self.cache}

    def import_records(
        self, field: str, records: Mapping[str, int], deleted: Sequence[str], moved: int = 0
    ) -> None:
        """Values replaced in place keep their place; the last ``moved`` go to the end."""
        for key in deleted:
            self.cache.pop(key, None)
            self.mirror.pop(key, None)
        in_place = len(records) - moved
        for index, (key, value) in enumerate(records.items()):
            if index >= in_place:
                self.put(key, value)
            else:
                self.cache[key] = value
                self.mirror[key] = value


def lru_service() -> tuple[Service, Lru]:
    service = Service("lru", registry=REGISTRY)
    return service, service.register(Lru())


def test_a_folded_chain_keeps_the_order_a_restore_piece_by_piece_gives() -> None:
    service, lru = lru_service()
    service.start_cold("test")
    for number in range(200):
        lru.put(f"k{number}", number)
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()  # the base
    for number in range(0, 200, 7):
        lru.touch(f"k{number}")  # to the end, in this order
    lru.put("k5", -5)  # a write is a use too: to the end
    lru.cache["k6"] = lru.mirror["k6"] = -6  # a value replaced in place keeps its place
    lru.put("new", 1)
    del lru.cache["k3"], lru.mirror["k3"]
    report = checkpointer.checkpoint_now()
    assert report.committed is not None and report.committed.snapshot.chain == 2
    live = list(lru.cache.items())
    chain = bytes(store.open())

    piecewise, by_pieces = lru_service()
    piecewise.restore(chain)
    assert list(by_pieces.cache.items()) == live

    composed = compose_chain(open_chain(chain, key=None, limits=DecodeLimits()))
    folded, by_fold = lru_service()
    folded.restore(composed.to_bytes())
    assert list(by_fold.cache.items()) == live


def test_the_reference_cache_restores_its_lru_order_from_a_chain() -> None:
    """KVCacheV3 (records protocol, an LRU): entries read since the base move to the
    end in the restored cache too, so both evict the same keys next."""
    from statemigrate.reference import KVCacheV3, build_registry

    registry = build_registry()

    def cache_service() -> tuple[Service, KVCacheV3]:
        service = Service("reference", registry=registry)
        return service, service.register(KVCacheV3(max_entries=50))

    service, cache = cache_service()
    service.start_cold("test")
    for number in range(50):
        cache.set(f"k{number}", str(number))
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()
    for number in (3, 0, 17, 8):
        assert cache.get(f"k{number}") is not None  # used: to the end
    checkpointer.checkpoint_now()
    restarted, again = cache_service()
    restarted.restore(bytes(store.open()))
    assert list(again.export_state()["entries"]) == list(cache.export_state()["entries"])
    for number in range(50, 55):
        cache.set(f"k{number}", "new")
        again.set(f"k{number}", "new")
    assert again.export_state() == cache.export_state()
