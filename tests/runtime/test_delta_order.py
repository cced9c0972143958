"""Deltas keep key order: a full snapshot and its deltas restore a record field in the
live dict's order, whether applied to a service (pre-copy, a checkpoint chain at
start-up) or composed offline, and a failed delta gives the old order back."""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import TypedDict

from statemigrate import (
    Checkpointer,
    MemoryStore,
    Registry,
    RestoreError,
    Service,
    TrackedDict,
)
from statemigrate._model._tracked import Changes
from statemigrate._runtime._chainread import compose_chain, open_chain
from statemigrate._snapshot._format import open_snapshot
from statemigrate.reference import KVCacheV1, build_registry


class State(TypedDict):
    entries: dict[str, int]


REGISTRY = Registry()
REGISTRY.add_schema("ordered", 1, State)


@REGISTRY.migratable("ordered", version=1)
class Holder:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, int] = TrackedDict()


KEYS = st.sampled_from([f"k{i}" for i in range(6)])
OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, st.integers(0, 9)),
    st.tuples(st.just("touch"), KEYS),  # d[k] = d.pop(k): an LRU's touch
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("popitem")),
    st.tuples(st.just("update"), st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=3)),
    st.tuples(st.just("setdefault"), KEYS, st.integers(0, 9)),
    st.tuples(st.just("clear")),
)


def _run(d: TrackedDict[str, int], op: tuple[Any, ...]) -> None:
    match op:
        case ("set", key, value):
            d[key] = value
        case ("touch", key):
            if key in d:
                d[key] = d.pop(key)
        case ("pop", key):
            d.pop(key, None)
        case ("popitem",):
            if d:
                d.popitem()
        case ("update", pairs):
            d.update(pairs)
        case ("setdefault", key, value):
            d.setdefault(key, value)
        case ("clear",):
            d.clear()


def _items(holder: Holder) -> list[tuple[str, int]]:
    return list(holder.entries.items())


def _service(name: str = "order") -> tuple[Service, Holder]:
    service = Service(name, registry=REGISTRY)
    return service, service.register(Holder())


@given(
    st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=6),
    st.lists(st.lists(OPS, max_size=8), min_size=1, max_size=3),
    st.sampled_from([None, 1, 2]),
)
def test_precopy_rounds_restore_the_live_order(
    initial: list[tuple[str, int]], rounds: list[list[tuple[Any, ...]]], limit: int | None
) -> None:
    """Property: for any writes between a pre-copy's full snapshot and each of its
    deltas (whole or in slices of ``limit`` records), the successor's state has the
    live items in the live order."""
    source, live = _service()
    live.entries.update(initial)
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    snapshots = [precopy.full()]
    for ops in rounds:
        for op in ops:
            _run(live.entries, op)
        snapshots.append(precopy.delta(limit=limit))
    while precopy.pending():
        snapshots.append(precopy.delta(limit=limit))
    target, restored = _service()
    for snapshot in snapshots:
        target.restore(snapshot)
    assert _items(restored) == _items(live)


def _checkpointed(rounds: list[list[tuple[Any, ...]]]) -> tuple[MemoryStore, Holder]:
    """A holder checkpointed incrementally: a base, then a delta after each round."""
    service, live = _service()
    # Enough entries that the small deltas extend the chain rather than compact it.
    live.entries.update((f"k{i}", i) for i in range(2_000))
    service.start_cold("test")
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    for ops in rounds:
        for op in ops:
            _run(live.entries, op)
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == len(rounds) + 1
    return store, live


ROUNDS: list[list[tuple[Any, ...]]] = [
    [("touch", "k0"), ("set", "k2", 20), ("set", "new", 1)],
    [("touch", "k1"), ("pop", "k3"), ("touch", "k0")],
    [("set", "k3", 3), ("set", "new", 2), ("touch", "k4")],
]


def test_a_checkpoint_chain_restores_the_live_order_at_start_up() -> None:
    store, live = _checkpointed(ROUNDS)
    service, restored = _service()
    assert service.start_from(store) is not None
    assert _items(restored) == _items(live)


def test_a_chain_composed_offline_holds_the_live_order() -> None:
    """What ``statemigrate inspect`` and ``migrate`` read of a chain: its pieces
    composed into one full snapshot, without a service."""
    store, live = _checkpointed(ROUNDS)
    composed = open_snapshot(compose_chain(open_chain(store.open())).to_bytes())
    section: Any = composed.read_section(0)
    assert list(section["entries"].items()) == _items(live)


def test_the_reference_lru_cache_evicts_the_same_keys_after_a_handoff() -> None:
    """The demo's cache evicts its least recently used key: after a pre-copy hand-over
    whose deltas carry touches, the successor evicts what the old process would."""
    registry = build_registry()
    source = Service("lru", registry=registry)
    live = source.register(KVCacheV1(max_entries=4))
    for key in "abcd":
        live.set(key, key.upper())
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    full = precopy.full()
    live.get("a")  # a becomes the most recently used
    delta = precopy.delta()
    target = Service("lru", registry=registry)
    restored = target.register(KVCacheV1(max_entries=4))
    target.restore(full)
    target.restore(delta)
    live.set("e", "E")
    restored.set("e", "E")
    assert list(restored.entries) == list(live.entries) == ["c", "d", "a", "e"]


def test_a_failed_delta_gives_the_old_order_back() -> None:
    """A delta that moves keys and then fails to apply (a later component refuses its
    records) leaves the first component's keys in their old order, values and all."""
    source, live = _service()
    other_source = source.register(Holder(), instance="other")
    live.entries.update((f"k{i}", i) for i in range(5))
    other_source.entries.update(a=1)
    source.start_cold("test")
    precopy = source.precopy_source()
    precopy.start()
    full = precopy.full()
    live.entries["k0"] = live.entries.pop("k0")
    live.entries["k2"] = live.entries.pop("k2")
    live.entries["new"] = 9
    other_source.entries["b"] = 2
    delta = precopy.delta()
    target, restored = _service()
    failing = target.register(_Refusing(), instance="other")
    target.restore(full)
    before = _items(restored)
    failing.refuse = True
    with pytest.raises(RestoreError):
        target.restore(delta)
    assert _items(restored) == before == [(f"k{i}", i) for i in range(5)]


class _RefusingDict(TrackedDict[str, int]):
    """A record field that refuses a write once told to, as a failing apply would."""

    owner: _Refusing

    def __setitem__(self, key: str, value: int) -> None:
        if self.owner.refuse:
            raise RuntimeError("refused")
        super().__setitem__(key, value)


@REGISTRY.migratable("ordered", version=1)
class _Refusing:
    def __init__(self) -> None:
        self.refuse = False
        self.entries = _RefusingDict()
        self.entries.owner = self


def test_the_order_checks_catch_deltas_that_set_every_key_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Negative control: with deltas that move no key (as before they carried moves),
    the checks above find the order lost."""
    take = TrackedDict.take_changes

    def take_without_moves(self: TrackedDict[Any, Any], mark: Any, **kwargs: Any) -> Changes:
        changes = take(self, mark, **kwargs)
        return Changes(changes.set, changes.deleted, 0)

    monkeypatch.setattr(TrackedDict, "take_changes", take_without_moves)
    store, live = _checkpointed(ROUNDS)
    service, restored = _service()
    assert service.start_from(store) is not None
    assert dict(restored.entries) == dict(live.entries)
    assert _items(restored) != _items(live)


def _keyed(key_type: Any) -> tuple[Registry, type]:
    """A registry and a component class whose record field is keyed by ``key_type``."""

    # The functional form: a class body's annotations would stay strings here, naming
    # a local variable that pydantic cannot resolve.
    keyed = TypedDict("keyed", {"records": dict[key_type, int]})  # noqa: UP013
    registry = Registry()
    registry.add_schema("keyed", 1, keyed)

    @registry.migratable("keyed", version=1)
    class Holder:
        def __init__(self) -> None:
            self.records: TrackedDict[Any, int] = TrackedDict()

    return registry, Holder


@pytest.mark.parametrize(
    ("key_type", "key"),
    [
        (int, lambda i: i),
        (int, lambda i: 2**70 + i),  # written as text, beyond 64 bits
        (bytes, lambda i: bytes([255, i % 256, i // 256])),  # not UTF-8
        (float, lambda i: i + 0.5),
        (uuid.UUID, lambda i: uuid.UUID(int=i)),
        (decimal.Decimal, lambda i: decimal.Decimal(i) / 4),
    ],
)
def test_keys_of_any_type_are_deleted_and_moved_in_their_plain_form(
    key_type: Any, key: Any
) -> None:
    """A deleted key is written in the plain form its records' keys take (text for a
    number, bytes as they are), so a checkpoint chain composed offline deletes it and
    holds what a full snapshot of the live state holds, in its order; a restart from
    the chain restores the live dict."""
    registry, holder_class = _keyed(key_type)
    service = Service("keyed", registry=registry)
    live = service.register(holder_class())
    live.records.update((key(i), i) for i in range(2_000))
    service.start_cold("test")
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    del live.records[key(7)]
    live.records[key(3)] = live.records.pop(key(3))
    live.records[key(5000)] = 1
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2
    composed: Any = open_snapshot(compose_chain(open_chain(store.open())).to_bytes())
    full: Any = open_snapshot(service.snapshot()[0].to_bytes())
    assert list(composed.read_section(0)["records"].items()) == list(
        full.read_section(0)["records"].items()
    )
    restarted = Service("keyed", registry=registry)
    restored = restarted.register(holder_class())
    assert restarted.start_from(store) is not None
    assert list(restored.records.items()) == list(live.records.items())


UTC_PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))


@pytest.mark.parametrize(
    ("key_type", "key", "other_spelling"),
    [
        (float, lambda i: float(i), lambda k: -k if k == 0 else k),  # -0.0 == 0.0
        (decimal.Decimal, decimal.Decimal, lambda k: k.quantize(decimal.Decimal("0.1"))),
        (
            datetime.datetime,
            lambda i: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
            + datetime.timedelta(minutes=i),
            lambda k: k.astimezone(UTC_PLUS_ONE),  # the same instant, another offset
        ),
    ],
)
@pytest.mark.parametrize("reinsert", [False, True])
def test_a_chain_composed_with_the_registry_matches_keys_by_value(
    key_type: Any, key: Any, other_spelling: Any, reinsert: bool
) -> None:
    """A key deleted (or deleted and inserted again) through a value equal to it but
    written otherwise (``-0.0`` for ``0.0``, ``Decimal("0.0")`` for ``Decimal("0")``,
    another UTC offset) is matched by value when the chain is composed with the
    registry, as a restore matches it: the composed state is a full snapshot's. By
    text alone (no registry) the deleted record stays: the negative control."""
    registry, holder_class = _keyed(key_type)
    service = Service("keyed", registry=registry)
    live = service.register(holder_class())
    live.records.update((key(i), i) for i in range(2_000))
    service.start_cold("test")
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    del live.records[other_spelling(key(0))]
    if reinsert:
        live.records[other_spelling(key(0))] = -1
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2
    full: Any = open_snapshot(service.snapshot()[0].to_bytes())
    expected = list(full.read_section(0)["records"].items())
    chain = open_chain(store.open())
    by_value: Any = open_snapshot(compose_chain(chain, registry=registry).to_bytes())
    assert list(by_value.read_section(0)["records"].items()) == expected
    by_text: Any = open_snapshot(compose_chain(chain).to_bytes())
    assert list(by_text.read_section(0)["records"].items()) != expected
    restarted = Service("keyed", registry=registry)
    restored = restarted.register(holder_class())
    assert restarted.start_from(store) is not None
    assert list(restored.records.items()) == list(live.records.items())
