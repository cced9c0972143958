"""NaN keys through deltas: a delta's NaN key means the one NaN key the dict holds,
for a checkpoint chain restored at start-up, pre-copy rounds, a chain composed offline
and the testing kit's check, which all agree with the live state, in its order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from typing_extensions import TypedDict

from statemigrate import Checkpointer, ExportError, MemoryStore, Registry, Service, TrackedDict
from statemigrate._runtime._chainread import compose_chain, open_chain
from statemigrate._snapshot._format import open_snapshot
from statemigrate.testing import check_change_tracking


class Floats(TypedDict):
    records: dict[float, int]


REGISTRY = Registry()
REGISTRY.add_schema("floats", 1, Floats)


@REGISTRY.migratable("floats", version=1)
class Holder:
    def __init__(self) -> None:
        self.records: TrackedDict[float, int] = TrackedDict()


NAN = float("nan")
Change = Callable[[TrackedDict[float, int]], None]


def _nan_of(d: TrackedDict[float, int]) -> float:
    return next(key for key in d if key != key)


def _delete(d: TrackedDict[float, int]) -> None:
    del d[_nan_of(d)]


def _set(value: int) -> Change:
    def change(d: TrackedDict[float, int]) -> None:
        d[_nan_of(d) if any(key != key for key in d) else NAN] = value

    return change


def _touch(d: TrackedDict[float, int]) -> None:
    key = _nan_of(d)
    d[key] = d.pop(key)  # an LRU's touch: to the end


def _delete_then_set_another(d: TrackedDict[float, int]) -> None:
    del d[_nan_of(d)]
    d[float("nan")] = 7  # another NaN object: the log holds both


SCENARIOS: dict[str, tuple[bool, list[Change]]] = {
    # name: (whether the base holds a NaN key, the changes before each delta)
    "deleted": (True, [_delete]),
    "set in two deltas": (False, [_set(1), _set(2)]),
    "set in place": (True, [_set(5), _set(6)]),
    "moved to the end": (True, [_touch, _set(3)]),
    "deleted, another NaN set": (True, [_delete_then_set_another]),
    "deleted, set again later": (True, [_delete, _set(4), _delete]),
}


def _plain(items: Any) -> list[tuple[Any, int]]:
    """Items with NaN keys made comparable (``nan != nan``), in their order."""
    return [("nan" if key != key else key, value) for key, value in items]


def _live(has_nan: bool) -> tuple[Service, Holder]:
    service = Service("floats", registry=REGISTRY)
    live = service.register(Holder())
    # Enough records that the small deltas extend the chain rather than compact it.
    for i in range(2_000):
        if has_nan and i == 1_000:
            live.records[NAN] = 99
        live.records[i + 0.5] = i
    service.start_cold("test")
    return service, live


def _checkpointed(has_nan: bool, changes: list[Change]) -> tuple[Service, Holder, MemoryStore]:
    service, live = _live(has_nan)
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    for change in changes:
        change(live.records)
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == len(changes) + 1
    return service, live, store


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_checkpoint_chain_restores_the_live_nan_key(scenario: str) -> None:
    """A restart from the chain holds the live records in the live order, one NaN key
    at most, and can take a full snapshot again."""
    service, live, store = _checkpointed(*SCENARIOS[scenario])
    restarted = Service("floats", registry=REGISTRY)
    restored = restarted.register(Holder())
    assert restarted.start_from(store) is not None
    assert _plain(restored.records.items()) == _plain(live.records.items())
    restarted.snapshot()  # two NaN keys would be refused here


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_chain_composed_offline_agrees_with_the_service(scenario: str) -> None:
    """What ``inspect --dump`` and ``migrate`` compose, with the registry or by text,
    is what a full snapshot of the live state holds."""
    service, _, store = _checkpointed(*SCENARIOS[scenario])
    full: Any = open_snapshot(service.snapshot()[0].to_bytes())
    expected = list(full.read_section(0)["records"].items())
    chain = open_chain(store.open())
    for registry in (REGISTRY, None):
        composed: Any = open_snapshot(compose_chain(chain, registry=registry).to_bytes())
        assert list(composed.read_section(0)["records"].items()) == expected


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_precopy_rounds_restore_the_live_nan_key(scenario: str) -> None:
    has_nan, changes = SCENARIOS[scenario]
    source, live = _live(has_nan)
    precopy = source.precopy_source()
    precopy.start()
    snapshots = [precopy.full()]
    for change in changes:
        change(live.records)
        snapshots.append(precopy.delta())
    target = Service("floats", registry=REGISTRY)
    restored = target.register(Holder())
    for snapshot in snapshots:
        target.restore(snapshot)
    assert _plain(restored.records.items()) == _plain(live.records.items())


def test_check_change_tracking_passes_a_nan_key_deleted_and_set_again() -> None:
    service, live = _live(True)
    check_change_tracking(service, lambda: _delete_then_set_another(live.records))


def test_a_failed_delta_gives_the_nan_key_its_value_back() -> None:
    """The rollback of a delta that set the held NaN key gives that key its old value,
    and adds no second NaN key."""
    source, live = _live(True)
    precopy = source.precopy_source()
    precopy.start()
    base = precopy.full()
    live.records[_nan_of(live.records)] = 1
    delta = precopy.delta()
    target = Service("floats", registry=REGISTRY)
    restored = target.register(Holder())
    target.restore(base)
    before = _plain(restored.records.items())

    class Failing(TrackedDict[float, int]):
        def __setitem__(self, key: float, value: int) -> None:
            if value == 1:
                dict.__setitem__(self, key, value)
                raise RuntimeError("refused")
            super().__setitem__(key, value)

    restored.records = Failing(restored.records)
    with pytest.raises(Exception, match="refused"):
        target.restore(delta)
    assert _plain(restored.records.items()) == before


def test_a_delta_setting_a_second_nan_key_is_refused_as_a_snapshot_is() -> None:
    """``d[float("nan")] = v`` with a NaN key held already leaves two keys, both written
    as ``nan``. A full snapshot refuses them; a delta carried only the new one, and the
    restore gave it without the other, with no word."""
    service, live = _live(True)
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    precopy = service.precopy_source()
    precopy.start()
    precopy.full()
    live.records[float("nan")] = 3  # another NaN object: a second key
    two = "two keys are both written as 'nan'"
    with pytest.raises(ExportError, match=r"records\[nan\]: " + two):
        checkpointer.checkpoint_now()
    with pytest.raises(ExportError, match=two):
        precopy.delta()
    with pytest.raises(ExportError, match=two):
        service.snapshot()
