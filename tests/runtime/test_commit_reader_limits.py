"""A snapshot commits only if the service's own restores accept it: no section larger
than its ``DecodeLimits``, and no flood of empty lists and dicts past what a section of
that size may hold. Dense states that fit (a list of mostly empty lists) restore."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from holders import Holder
from typing_extensions import TypedDict

from statemigrate import DecodeLimits, ExportError, MemoryStore, Registry, RestoreError, Service
from statemigrate._runtime import _service
from statemigrate._snapshot._limits import CONTAINER_ALLOWANCE
from statemigrate.stores import TmpfsStore


class Graph(TypedDict):
    adjacency: list[list[int]]


class Blob(TypedDict):
    data: bytes


REGISTRY = Registry()
REGISTRY.add_schema("graph", 1, Graph)
REGISTRY.add_schema("blob", 1, Blob)


@REGISTRY.migratable("graph", version=1)
class GraphHolder(Holder):
    pass


@REGISTRY.migratable("blob", version=1)
class BlobHolder(Holder):
    pass


HOLDERS: dict[str, type[Holder]] = {"graph": GraphHolder, "blob": BlobHolder}


def _service_with(
    limits: DecodeLimits | None, **states: Any
) -> tuple[Service, dict[str, Holder]]:
    service = Service("limits", registry=REGISTRY, limits=limits)
    holders: dict[str, Holder] = {}
    for component, state in states.items():
        holder = HOLDERS[component](state)
        service.register(holder)
        holders[component] = holder
    return service, holders


def _restored(ref: Any, limits: DecodeLimits | None, **empty: Any) -> dict[str, Any]:
    service, holders = _service_with(limits, **empty)
    service.restore(ref)
    return {name: holder.state for name, holder in holders.items()}


def test_a_state_of_mostly_empty_lists_commits_and_restores(tmp_path: Path) -> None:
    """200,000 empty lists are 1 byte each: past one per two bytes, which a section of
    any size may hold, yet far from what the largest section may hold."""
    graph = {"adjacency": [[] if i % 10 else [i] for i in range(200_000)]}
    service, _ = _service_with(None, graph=graph)
    committed = service.commit(TmpfsStore(tmp_path / "store"))
    assert committed.snapshot.sections[0].raw_size < 2 * 200_000
    assert _restored(committed.ref, None, graph={"adjacency": []}) == {"graph": graph}


def test_a_section_over_the_readers_size_limit_is_refused_at_commit(tmp_path: Path) -> None:
    limits = DecodeLimits(max_section_size=64 << 10)
    store = TmpfsStore(tmp_path / "store")
    service, holders = _service_with(limits, blob={"data": b"x" * 1000})
    first = service.commit(store)
    holders["blob"].state = {"data": b"x" * (100 << 10)}
    with pytest.raises(ExportError) as refused:
        service.commit(store)
    message = str(refused.value)
    assert message.startswith("blob/default version 1 cannot be snapshotted: at (root):")
    assert f"more than {64 << 10} bytes" in message
    assert "DecodeLimits.max_section_size" in message
    assert store.open() == first.ref.open()  # the last good snapshot is still current
    assert _restored(store.open(), limits, blob={"data": b""}) == {
        "blob": {"data": b"x" * 1000}
    }


def test_sections_over_the_readers_total_limit_are_refused_at_snapshot() -> None:
    limits = DecodeLimits(max_section_size=64 << 10, max_total_size=64 << 10)
    service, _ = _service_with(
        limits, blob={"data": b"x" * (40 << 10)}, graph={"adjacency": [[1]] * (20 << 10)}
    )
    with pytest.raises(ExportError, match=r"DecodeLimits\.max_total_size"):
        service.snapshot()


@pytest.mark.parametrize("via", ["commit", "snapshot"])
def test_every_flood_of_empty_lists_either_restores_or_is_refused_before_it_commits(
    tmp_path: Path, via: str
) -> None:
    """Across the boundary of the budget, nothing commits that the restore refuses."""
    verdicts = _sweep(tmp_path, via)
    assert "refused" in verdicts.values() and "restored" in verdicts.values()
    assert "lost" not in verdicts.values(), verdicts


def test_negative_control_the_sweep_finds_states_lost_by_a_writer_without_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sweep, with the writer no longer told the reader's limits: some flood
    then commits and fails every restore, which is what the test above rules out."""
    encoding = _service.Service._encoding

    def without_limits(self: Service, meta: Any) -> dict[str, Any]:
        return {**encoding(self, meta), "limits": None}

    monkeypatch.setattr(_service.Service, "_encoding", without_limits)
    assert "lost" in _sweep(tmp_path, "commit").values()


_LIMITS = DecodeLimits(max_section_size=4 * CONTAINER_ALLOWANCE)


def _sweep(tmp_path: Path, via: str) -> dict[int, str]:
    """For lists of ``count`` empty lists around the budget of a reader taking sections
    of 64 KiB: "restored", "refused" (at snapshot) or "lost" (committed, not restored)."""
    largest = _LIMITS.max_section_size
    verdicts: dict[int, str] = {}
    for count in range(largest // 2 - 8, largest + 64, CONTAINER_ALLOWANCE // 8):
        graph: dict[str, list[list[int]]] = {"adjacency": [[] for _ in range(count)]}
        service, _ = _service_with(_LIMITS, graph=graph)
        try:
            if via == "commit":
                ref: Any = service.commit(TmpfsStore(tmp_path / f"store-{count}")).ref
            else:
                ref = service.snapshot()[0].to_bytes()
        except ExportError:
            verdicts[count] = "refused"
            continue
        try:
            restored = _restored(ref, _LIMITS, graph={"adjacency": []})
        except RestoreError:
            verdicts[count] = "lost"
        else:
            assert restored == {"graph": graph}
            verdicts[count] = "restored"
    return verdicts


def test_more_sections_than_the_reader_takes_are_refused_before_anything_is_written() -> None:
    limits = DecodeLimits(max_sections=1)
    service = Service("limits", registry=REGISTRY, limits=limits)
    service.register(GraphHolder({"adjacency": []}))
    service.register(BlobHolder({"data": b""}))
    store = MemoryStore()
    with pytest.raises(ExportError, match=r"2 sections, more than the 1 .*max_sections"):
        service.commit(store)
    assert store.commits == 0


def test_a_snapshot_larger_than_the_reader_takes_is_refused_while_it_is_written() -> None:
    limits = DecodeLimits(max_snapshot_size=64 << 10)
    store = MemoryStore()
    service = Service("limits", registry=REGISTRY, limits=limits)
    blob = service.register(BlobHolder({"data": b""}))
    first = service.commit(store)
    blob.state = {"data": os.urandom(100 << 10)}  # incompressible: stored as it is
    with pytest.raises(ExportError, match=r"more than 65536 bytes.*max_snapshot_size"):
        service.commit(store)
    assert store.open() == first.ref.open()
