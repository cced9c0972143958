"""A restore that moves a component to a version with no steps back says so once: the
rollback to the release that wrote the snapshot would be refused."""

from __future__ import annotations

import logging

import pytest
from typing_extensions import TypedDict

import statemigrate._runtime._waybackwarning as wayback
from statemigrate import MemoryStore, Registry, Service


class CountsV1(TypedDict):
    counts: dict[str, int]


class CountsV2(TypedDict):
    counts: dict[str, int]
    total: int


def _with_total(data: dict[str, object]) -> dict[str, object]:
    counts = data["counts"]
    assert isinstance(counts, dict)
    return {**data, "total": sum(counts.values())}


def _without_total(data: dict[str, object]) -> dict[str, object]:
    return {"counts": data["counts"]}


def _release(version: int, *, downgrade: bool) -> tuple[Service, object]:
    registry = Registry()
    registry.add_schema("counts", 1, CountsV1)
    registry.add_schema("counts", 2, CountsV2)
    registry.add_migration("counts", 1, 2, _with_total)
    if downgrade:
        registry.add_migration("counts", 2, 1, _without_total, lossy=("total",))

    @registry.migratable("counts", version=version)
    class Counts:
        def __init__(self) -> None:
            self.counts = {"a": 1}
            if version == 2:
                self.total = 1

    service = Service("app", registry=registry)
    return service, service.register(Counts())


@pytest.mark.parametrize("downgrade", [False, True], ids=["no-way-back", "way-back"])
def test_an_upgrade_with_no_step_back_is_warned_of_once(
    downgrade: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wayback, "_warned", set())
    old, _ = _release(1, downgrade=downgrade)
    store = MemoryStore()
    old.commit(store)
    caplog.set_level(logging.WARNING, logger="statemigrate")
    for _ in range(2):
        new, _ = _release(2, downgrade=downgrade)
        assert new.start_from(store) is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if downgrade:
        assert warnings == []
    else:
        assert warnings == [
            "counts was restored from version 1 into version 2, which has no steps back to"
            " 1: a rollback to the release that wrote this snapshot cannot take its state"
            " over; register a 2 -> 1 step (`statemigrate check` lists every such gap)"
        ]
