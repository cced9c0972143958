"""Pausing the garbage collector while containers are built: the collector's state
after the pause, and an export migrated to an older version built under it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from typing_extensions import TypedDict

import statemigrate as sm
import statemigrate._runtime._gcpause as gcpause_module
from statemigrate._model._registry import component_spec
from statemigrate._runtime._export import export_section
from statemigrate._runtime._gcpause import gc_paused
from statemigrate._runtime._restore import Registered


@pytest.fixture
def collector_disabled() -> Iterator[None]:
    """No collection may move objects between generations meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def test_an_enabled_collector_is_enabled_again_even_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(collector_disabled: None) -> None:
    with gc_paused():
        pass
    assert not gc.isenabled()


class RowsV1(TypedDict):
    rows: dict[str, list[int]]


class RowsV2(TypedDict):
    rows: dict[str, list[int]]
    total: int


REGISTRY = sm.Registry()
REGISTRY.add_schema("rows", 1, RowsV1)
REGISTRY.add_schema("rows", 2, RowsV2)


@REGISTRY.migration("rows", 2, 1, lossy=("total",))
def drop_total(data: Any) -> Any:
    del data["total"]
    return data


@REGISTRY.migratable("rows", version=2)
class Rows:
    def __init__(self) -> None:
        self.rows = {f"r{i}": [i, i + 1] for i in range(300)}
        self.total = 300


def _young(obj: object) -> bool:
    return any(o is obj for generation in (0, 1) for o in gc.get_objects(generation))


def _downgraded_rows_are_young(monkeypatch: pytest.MonkeyPatch, *, promote: bool) -> bool:
    if not promote:
        monkeypatch.setattr(gcpause_module, "promote_young_objects", lambda: None)
    rows = Rows()
    entry = Registered(rows, component_spec(rows), "default", REGISTRY)
    section, steps, _ = export_section(entry, targets={"rows": 1}, allow_lossy=True)
    assert steps == ("rows 2 -> 1 (drop_total)",)
    assert section.data == {"rows": rows.rows}
    copied = section.data["rows"]
    return _young(copied) or _young(copied["r7"])


def test_a_downgraded_copy_starts_in_the_oldest_generation(
    monkeypatch: pytest.MonkeyPatch, collector_disabled: None
) -> None:
    """The copy a downgrade migrates is built with the collector paused, and no young
    collection walks it afterwards."""
    assert not _downgraded_rows_are_young(monkeypatch, promote=True)


def test_negative_control_without_promotion_the_copy_is_young(
    monkeypatch: pytest.MonkeyPatch, collector_disabled: None
) -> None:
    assert _downgraded_rows_are_young(monkeypatch, promote=False)
