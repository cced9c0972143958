"""What a restore says of its steps: a component upgraded to a version with no steps
back is warned of once (the rollback to the release that wrote the snapshot would be
refused), and a step whose output does not fit is named."""

from __future__ import annotations

import logging

import pytest
from typing_extensions import TypedDict

import statemigrate._runtime._waybackwarning as wayback
from statemigrate import MemoryStore, Registry, RestoreError, Service


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


def test_a_step_whose_output_does_not_fit_is_named_by_the_restore() -> None:
    """Validation names the path; the restore also names the step whose output it was,
    the code to look at."""
    registry = Registry()
    registry.add_schema("counts", 1, CountsV1)
    registry.add_schema("counts", 2, CountsV2)
    registry.add_migration("counts", 1, 2, lambda data: {**data, "total": "many"}, name="tally")

    @registry.migratable("counts", version=1)
    class Old:
        def __init__(self) -> None:
            self.counts = {"a": 1}

    @registry.migratable("counts", version=2)
    class New:
        def __init__(self) -> None:
            self.counts: dict[str, int] = {}
            self.total = 0

    writer = Service("app", registry=registry)
    writer.register(Old())
    reader = Service("app", registry=registry)
    reader.register(New())
    with pytest.raises(RestoreError) as caught:
        reader.restore(writer.snapshot()[0])
    assert (caught.value.phase, caught.value.step) == ("validate", "counts 1 -> 2 (tally)")
    assert str(caught.value).startswith(
        "restore failed during validate in counts/default at step counts 1 -> 2 (tally): "
    )
    assert "version 2: total: Input should be a valid integer" in str(caught.value)
