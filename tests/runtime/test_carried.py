"""Sections no component claims, carried: a rollback to a release without a component
writes its section unchanged into every snapshot, so the release that has it restores it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from inprocess_handoff import hand_over_in_process
from typing_extensions import TypedDict

from statemigrate import (
    Checkpointer,
    MemoryStore,
    RegistrationError,
    Registry,
    RestoreError,
    Service,
    TmpfsStore,
    TrackedDict,
    open_snapshot,
)
from statemigrate._runtime._chain import split_chain

SERVICE = "shop"
T = TypeVar("T")


class LedgerV1(TypedDict):
    count: int
    items: dict[str, int]


class QuotasV1(TypedDict):
    limits: dict[str, int]


class QuotasV2(TypedDict):
    limits: dict[str, int]
    unit: str


class Ledger:
    def __init__(self) -> None:
        self.count = 0
        self.items: TrackedDict[str, int] = TrackedDict()

    def write(self, key: str, value: int) -> None:
        self.items[key] = value
        self.count += 1


class Quotas:
    def __init__(self) -> None:
        self.limits: TrackedDict[str, int] = TrackedDict()


class QuotasInUnits:
    def __init__(self) -> None:
        self.limits: TrackedDict[str, int] = TrackedDict()
        self.unit = ""


def bound(registry: Registry, component: str, version: int, base: type[T]) -> type[T]:
    """A subclass of ``base`` marked as ``component`` of ``registry``: one per release."""
    made = cast("type[T]", type(base.__name__, (base,), {}))
    return registry.migratable(component, version=version)(made)


def release_a(*, retire: bool = False) -> tuple[Service, Ledger]:
    """The release without the quotas component."""
    registry = Registry()
    registry.add_schema("ledger", 1, LedgerV1)
    if retire:
        registry.retire("quotas")
    ledger_class = bound(registry, "ledger", 1, Ledger)
    service = Service(SERVICE, registry=registry)
    return service, service.register(ledger_class())


def release_b(*, register_quotas: bool = True) -> tuple[Service, Ledger, Quotas]:
    """The release that added quotas; without ``register_quotas``, its component is
    made but not registered."""
    registry = Registry()
    registry.add_schema("ledger", 1, LedgerV1)
    registry.add_schema("quotas", 1, QuotasV1)
    ledger_class = bound(registry, "ledger", 1, Ledger)
    quotas_class = bound(registry, "quotas", 1, Quotas)
    service = Service(SERVICE, registry=registry)
    ledger = service.register(ledger_class())
    quotas = quotas_class()
    return service, ledger, service.register(quotas) if register_quotas else quotas


def release_c() -> tuple[Service, QuotasInUnits]:
    """A later release whose quotas are at version 2, with a step from version 1."""
    registry = Registry()
    registry.add_schema("ledger", 1, LedgerV1)
    registry.add_schema("quotas", 1, QuotasV1)
    registry.add_schema("quotas", 2, QuotasV2)
    registry.add_migration("quotas", 1, 2, lambda data: {**data, "unit": "req/s"})
    registry.add_migration("quotas", 2, 1, lambda data: {"limits": data["limits"]})
    ledger_class = bound(registry, "ledger", 1, Ledger)
    quotas_class = bound(registry, "quotas", 2, QuotasInUnits)
    service = Service(SERVICE, registry=registry)
    service.register(ledger_class())
    return service, service.register(quotas_class())


def filled_b(ledger_items: int = 1) -> tuple[Service, Ledger, Quotas]:
    """Release B with 100 quota records, and ``ledger_items`` in its ledger."""
    service, ledger, quotas = release_b()
    service.start_cold("new")
    for n in range(100):
        quotas.limits[f"tenant-{n}"] = n
    for n in range(ledger_items):
        ledger.write("a" if n == 0 else f"item-{n}", n + 1)
    return service, ledger, quotas


def section_entry(data: Any, component: str) -> Any:
    header = open_snapshot(data).header
    return next(s for s in header.sections if s.component == component)


def entry_fields(info: Any) -> tuple[Any, ...]:
    return (info.version, info.fingerprint, info.raw_size, info.checksum, info.chunks)


def carried_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.levelno == logging.WARNING and "is carried" in r.getMessage()
    ]


def test_a_rollback_carries_the_section_it_lacks_back_to_the_release_that_has_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B -> A -> B through a tmpfs store: A commits without knowing quotas, and B finds
    every quota record again, the section written by A as B wrote it."""
    store = TmpfsStore(tmp_path / "store")
    b, _, quotas = filled_b()
    b.commit(store)
    written_by_b = section_entry(store.open(), "quotas")

    a, ledger = release_a()
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        report = a.start_from(store)
    assert report is not None
    assert report.unknown == ("quotas/default",)
    assert report.carried == ("quotas/default",)
    assert "carried unchanged: quotas/default" in report.summary()
    (warning,) = carried_warnings(caplog)
    assert "quotas/default (version 1)" in warning
    assert "written unchanged into this service's snapshots" in warning
    assert "registry.retire('quotas')" in warning
    ledger.write("b", 2)
    a.commit(store)
    a.commit(store)  # every commit, not just the first
    assert entry_fields(section_entry(store.open(), "quotas")) == entry_fields(written_by_b)

    b2, ledger2, quotas2 = release_b()
    report = b2.start_from(store)
    assert report is not None and report.unknown == () and report.carried == ()
    assert dict(quotas2.limits) == dict(quotas.limits) and len(quotas2.limits) == 100
    assert dict(ledger2.items) == {"a": 1, "b": 2}

    # A release with quotas at a newer version migrates the carried section as any.
    c, quotas3 = release_c()
    c.start_from(store)
    assert dict(quotas3.limits) == dict(quotas.limits) and quotas3.unit == "req/s"


def test_a_later_restore_replaces_what_is_carried_and_strict_carries_nothing() -> None:
    b, _, _ = filled_b()
    with_quotas = b.snapshot()[0]
    without = release_a()[0].snapshot()[0]
    a, _ = release_a()
    a.restore(without)
    assert a.restore(with_quotas).carried == ("quotas/default",)
    assert a.restore(without, allow_older=True).carried == ()
    assert [s.component for s in a.snapshot()[0].header.sections] == ["ledger"]
    # A strict restore still refuses the section, and carries nothing.
    strict, _ = release_a()
    with pytest.raises(RestoreError, match="no component claims: quotas/default"):
        strict.restore(with_quotas, strict=True)
    assert [s.component for s in strict.snapshot()[0].header.sections] == ["ledger"]


def test_a_retired_component_is_dropped_at_restore(caplog: pytest.LogCaptureFixture) -> None:
    b, _, _ = filled_b()
    a, _ = release_a(retire=True)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        report = a.restore(b.snapshot()[0])
    assert report.unknown == ("quotas/default",) and report.carried == ()
    assert carried_warnings(caplog) == []
    assert any(
        "quotas/default (version 1) is dropped: its component is retired" in r.getMessage()
        and r.levelno == logging.INFO
        for r in caplog.records
    )
    assert [s.component for s in a.snapshot()[0].header.sections] == ["ledger"]


def test_only_a_component_without_schemas_can_be_retired() -> None:
    registry = Registry()
    registry.add_schema("quotas", 1, QuotasV1)
    with pytest.raises(RegistrationError, match="cannot retire component 'quotas'"):
        registry.retire("quotas")
    retired = Registry()
    retired.retire("quotas")
    retired.retire("quotas")
    assert retired.retired() == ["quotas"] == retired.copy().retired()
    with pytest.raises(RegistrationError, match="'quotas' is retired"):
        retired.add_schema("quotas", 1, QuotasV1)
    with pytest.raises(RegistrationError, match="'quotas' is retired"):
        retired.migratable("quotas", version=1)


def test_a_component_registered_over_a_carried_section_waits_for_its_restore(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Registered after the restore, the component would replace the section carried at
    the next snapshot: snapshots are refused until a restore migrates it into it."""
    b, _, quotas = filled_b()
    taken = b.snapshot()[0]
    a, _, late = release_b(register_quotas=False)
    a.restore(taken)
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        a.register(late)
    assert any("restore that snapshot again" in r.getMessage() for r in caplog.records)
    with pytest.raises(RegistrationError, match="quotas/default is registered .* carries"):
        a.snapshot()
    with pytest.raises(RegistrationError, match="carries its section"):
        a.commit(MemoryStore())
    report = a.restore(taken)  # restores the component registered since
    assert [c.component for c in report.components] == ["quotas"] and report.carried == ()
    assert dict(late.limits) == dict(quotas.limits)
    assert [s.component for s in a.snapshot()[0].header.sections] == ["ledger", "quotas"]


def test_a_checkpoint_chain_carries_the_section_in_its_base() -> None:
    """B's chain changes quotas in a delta; A restores it, carries the section with the
    delta applied, and its own chain's base holds it (its deltas need not): B restores
    every record."""
    b, ledger, quotas = filled_b(ledger_items=200)
    store = MemoryStore()
    b_checkpoints = Checkpointer(b, store, quiesce=threading.Lock(), incremental=True)
    b_checkpoints.checkpoint_now()
    quotas.limits["tenant-0"] = 1_000
    quotas.limits["tenant-new"] = 7
    del quotas.limits["tenant-1"]
    b_checkpoints.checkpoint_now()
    assert len(split_chain(store.open())) == 2  # the change is in a delta

    a, a_ledger = release_a()
    report = a.start_from(store)
    assert report is not None and report.chain == 2 and report.carried == ("quotas/default",)
    a_checkpoints = Checkpointer(a, store, quiesce=threading.Lock(), incremental=True)
    a_checkpoints.checkpoint_now()
    a_ledger.write("b", 2)
    a_checkpoints.checkpoint_now()
    pieces = [open_snapshot(piece).header for piece in split_chain(store.open())]
    assert [[s.component for s in h.sections] for h in pieces] == [
        ["ledger", "quotas"], ["ledger"]
    ]

    b2, ledger2, quotas2 = release_b()
    b2.start_from(store)
    assert dict(quotas2.limits) == dict(quotas.limits)
    assert list(quotas2.limits) == list(quotas.limits)  # the order of the records too
    assert dict(ledger2.items) == {**ledger.items, "b": 2}


def _handed_over(old: Service, new: Service) -> None:
    assert hand_over_in_process(old, new).ok


def test_a_handoff_carries_the_section_through_a_release_without_it() -> None:
    """B hands over to A (a rollback: A has no quotas, and carries them), A to another
    process of A, and that one back to B: the quotas come back whole."""
    b, _, quotas = filled_b()
    a, _ = release_a()
    _handed_over(b, a)
    a2, _ = release_a()
    _handed_over(a, a2)
    b2, _, quotas2 = release_b()
    _handed_over(a2, b2)
    assert dict(quotas2.limits) == dict(quotas.limits) and len(quotas2.limits) == 100


def test_a_handoff_to_a_release_that_retired_the_component_drops_it() -> None:
    b, ledger, _ = filled_b()
    c, ledger_c = release_a(retire=True)
    _handed_over(b, c)
    assert dict(ledger_c.items) == dict(ledger.items)
    assert [s.component for s in c.snapshot()[0].header.sections] == ["ledger"]
