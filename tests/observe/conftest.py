"""Fixtures of the metrics and status tests: a small service, a checkpointer whose store
can go down, and a sink left as found."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import statemigrate as sm
from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.reference import KVCacheV1, KVCacheV2, build_registry
from statemigrate.stores import Buffer
from statemigrate.stores._memory import MemoryRef

SERVICE = "observed"


class ListSink:
    """Keeps every record, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, tuple[str, ...]]] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        assert len(labels) == len(instrument.labels), instrument.name
        self.records.append((instrument.name, value, tuple(labels)))

    def values(self, name: str) -> list[tuple[float, tuple[str, ...]]]:
        return [(value, labels) for got, value, labels in self.records if got == name]


@pytest.fixture(autouse=True)
def no_sink() -> Iterator[None]:
    """Every test starts with nothing recording, and leaves it so."""
    previous = use_sink(None)
    yield
    use_sink(previous)


@pytest.fixture
def sink() -> ListSink:
    """A list sink, installed for the test."""
    recorder = ListSink()
    use_sink(recorder)
    return recorder


@pytest.fixture
def committed() -> tuple[sm.Service, sm.CommitReport]:
    """A v1 service with 50 entries, committed once to a MemoryStore."""
    service = sm.Service(SERVICE, registry=build_registry())
    cache = service.register(KVCacheV1())
    for i in range(50):
        cache.set(f"key:{i}", f"value {i}")
    return service, service.commit(sm.MemoryStore())


@pytest.fixture
def fresh() -> Callable[..., sm.Service]:
    """Makes fresh v2 services, to restore the v1 snapshot into (one step: 1 -> 2)."""

    def make(**options: Any) -> sm.Service:
        service = sm.Service(SERVICE, registry=build_registry(), **options)
        service.register(KVCacheV2())
        return service

    return make


class Unreachable(sm.MemoryStore):
    """A memory store whose commits fail while it is ``down``."""

    def __init__(self) -> None:
        super().__init__(name="unreachable")
        self.down = False

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
        if self.down:
            raise sm.StoreError("commit", "memory:unreachable", "connection refused")
        return super().commit(data)


@dataclass
class Checkpointing:
    """A started service's cache, checkpointed inline to a store that can go down."""

    cache: KVCacheV1
    store: Unreachable
    checkpointer: sm.Checkpointer

    def changed_and_failed(self, times: int) -> None:
        """Change the cache, then fail to checkpoint it, ``times`` times."""
        for n in range(times):
            self.cache.set(f"key:{n}", f"changed {n}")
            with pytest.raises(sm.StoreError, match="connection refused"):
                self.checkpointer.checkpoint_now()


@pytest.fixture
def checkpointing() -> Checkpointing:
    service = sm.Service(SERVICE, registry=build_registry())
    cache = service.register(KVCacheV1())
    service.start_cold("a test")
    store = Unreachable()
    checkpointer = sm.Checkpointer(service, store, quiesce=threading.Lock(), export="inline")
    return Checkpointing(cache, store, checkpointer)
