"""Deltas refuse what full snapshots refuse under a left-to-right union: a record (or a
field sent whole) whose value an earlier member would take back as another value, in an
incremental checkpoint and in a pre-copy delta alike, and nothing is written."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import pytest
from pydantic import Field
from typing_extensions import TypedDict

from statemigrate import Checkpointer, ExportError, MemoryStore, Registry, Service, TrackedDict

IntStr = Annotated[int | str, Field(union_mode="left_to_right")]
BoolInt = Annotated[bool | int, Field(union_mode="left_to_right")]


class Entry(TypedDict):
    hits: int
    lr: IntStr


class Cache(TypedDict):
    entries: dict[str, Entry]
    flag: BoolInt


REGISTRY = Registry()
REGISTRY.add_schema("cache", 1, Cache)


@REGISTRY.migratable("cache", version=1)
class TrackedCache:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, Any] = TrackedDict()
        self.flag: Any = True


def checkpointed_cache() -> tuple[TrackedCache, Checkpointer, MemoryStore]:
    """A cache of 500 records checkpointed once, so that one more record makes a delta."""
    service = Service("lr-delta", registry=REGISTRY)
    cache = service.register(TrackedCache())
    service.start_cold("a new cache")
    for index in range(500):
        cache.entries[f"k{index}"] = {"hits": index, "lr": index}
    store = MemoryStore()
    checkpointer = Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, export="inline"
    )
    checkpointer.checkpoint_now()
    return cache, checkpointer, store


def test_an_incremental_checkpoint_refuses_a_record_that_would_come_back_changed() -> None:
    cache, checkpointer, store = checkpointed_cache()
    cache.entries["b"] = {"hits": 1, "lr": "b"}
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2  # a delta, which takes a str that stays one
    good = store.open()
    cache.entries["c"] = {"hits": 1, "lr": "7"}
    with pytest.raises(ExportError) as caught:
        checkpointer.checkpoint_now()
    assert "at entries['c'].lr: '7' (str) would come back as 7 (int)" in str(caught.value)
    assert store.open() == good


def test_an_incremental_checkpoint_refuses_a_field_sent_whole_that_would_come_back_changed(
) -> None:
    cache, checkpointer, store = checkpointed_cache()
    good = store.open()
    cache.flag = 1  # no record written: the delta carries the field alone
    with pytest.raises(ExportError) as caught:
        checkpointer.checkpoint_now()
    assert "at flag: 1 (int) would come back as True (bool)" in str(caught.value)
    assert store.open() == good


def test_a_pre_copy_delta_refuses_a_record_that_would_come_back_changed() -> None:
    source = Service("lr-precopy", registry=REGISTRY)
    cache = source.register(TrackedCache())
    cache.entries["a"] = {"hits": 1, "lr": 1}
    target = Service("lr-precopy", registry=REGISTRY)
    restored = target.register(TrackedCache())
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        cache.entries["b"] = {"hits": 2, "lr": "7"}
        with pytest.raises(ExportError) as caught:
            pieces.delta()
    assert "at entries['b'].lr: '7' (str) would come back as 7 (int)" in str(caught.value)
    assert dict(restored.entries) == {"a": {"hits": 1, "lr": 1}}
