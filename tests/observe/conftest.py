"""Fixtures of the metrics and status tests: a small service, and a sink left as found."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import statemigrate as sm
from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.reference import KVCacheV1, KVCacheV2, build_registry

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
