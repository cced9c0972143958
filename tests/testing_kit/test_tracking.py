"""check_change_tracking: a change the change log misses is reported, with where it is."""

from __future__ import annotations

from typing import Any

import pytest
from typing_extensions import TypedDict

from statemigrate import (
    ChangeTrackingError,
    ConfigurationError,
    Registry,
    Service,
    StateMigrateError,
    TrackedDict,
)
from statemigrate.testing import check_change_tracking


class Entry(TypedDict):
    value: str
    hits: int


class CacheState(TypedDict):
    entries: dict[str, Entry]
    served: int


REGISTRY = Registry()
REGISTRY.add_schema("cache", 1, CacheState)


@REGISTRY.migratable("cache", version=1)
class Cache:
    """Entries in a TrackedDict; ``served`` is a plain field, sent whole in every delta."""

    def __init__(self) -> None:
        self.entries: TrackedDict[str, dict[str, Any]] = TrackedDict()
        self.served = 0

    def put(self, key: str, value: str) -> None:
        self.entries[key] = {"value": value, "hits": 0}

    def hit(self, key: str) -> None:
        entry = dict(self.entries[key])
        entry["hits"] += 1
        self.entries[key] = entry  # written again: logged
        self.served += 1

    def hit_in_place(self, key: str) -> None:
        self.entries[key]["hits"] += 1  # no write to the TrackedDict: not logged
        self.served += 1


UNTRACKED = Registry()
UNTRACKED.add_schema("cache", 1, CacheState)


@UNTRACKED.migratable("cache", version=1)
class PlainCache:
    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.served = 0


def cache_service() -> tuple[Service, Cache]:
    service = Service("svc", registry=REGISTRY)
    cache = service.register(Cache())
    for key in ("a", "b", "c"):
        cache.put(key, key.upper())
    return service, cache


def test_changes_written_through_the_tracked_dict_pass() -> None:
    service, cache = cache_service()

    def change() -> None:
        cache.hit("a")
        cache.put("d", "D")
        del cache.entries["b"]

    check_change_tracking(service, change)
    assert sorted(cache.entries) == ["a", "c", "d"] and cache.served == 1


def test_a_value_changed_in_place_is_reported_with_its_path() -> None:
    service, cache = cache_service()
    with pytest.raises(ChangeTrackingError) as caught:
        check_change_tracking(service, lambda: cache.hit_in_place("c"))
    error = caught.value
    assert (error.component, error.path) == ("cache/default", "['entries']['c']['hits']")
    assert "write its key again" in str(error)


def test_a_record_field_replaced_by_another_object_is_refused() -> None:
    service, cache = cache_service()

    def replace() -> None:
        cache.entries = TrackedDict({"z": {"value": "Z", "hits": 0}})

    with pytest.raises(StateMigrateError, match="entries"):
        check_change_tracking(service, replace)


def test_a_service_without_change_tracking_is_told_so() -> None:
    service = Service("svc", registry=UNTRACKED)
    service.register(PlainCache())
    with pytest.raises(ConfigurationError, match="'svc' sends no deltas"):
        check_change_tracking(service, lambda: None)
