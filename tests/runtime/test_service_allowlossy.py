"""A service's allow_lossy per component: restore, start_from, snapshot(targets=...) and
commit run the lossy steps of the components named and refuse the others', with
nothing half-applied; a str is refused up front; a name of no component is logged."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from lossy_components import COMPONENTS, Held, lossy_both_ways
from lossy_components import service_at as lossy_service_at

from statemigrate import ConfigurationError, LossyMigrationError, RestoreError, Service
from statemigrate.handoff import HandoffError, choose_targets
from statemigrate.stores import MemoryStore

REGISTRY = lossy_both_ways()


def service_at(version: int, items: list[int], **options: Any) -> Service:
    # catalog first: staged before orders is refused
    return lossy_service_at(version, items, REGISTRY, **options)


def states(service: Service) -> dict[str, list[int]]:
    return {entry.component: list(cast(Held, entry.obj).items) for entry in service.components}


def v1_snapshot() -> bytes:
    return service_at(1, [3, 3, 1]).snapshot()[0].to_bytes()


def test_restore_upgrades_the_components_named_and_refuses_the_others_whole() -> None:
    """catalog's lossy upgrade is allowed, orders' is not: nothing is applied, catalog
    (migrated already) included."""
    reader = service_at(2, [7])
    blob = v1_snapshot()
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob, allow_lossy={"catalog"})
    assert (caught.value.phase, caught.value.component) == ("migrate", "orders/default")
    assert isinstance(caught.value.__cause__, LossyMigrationError)
    # The cure keeps catalog, which was allowed already.
    cure = "pass allow_lossy={'catalog', 'orders'} (or True, for every component)"
    assert cure in str(caught.value)
    assert states(reader) == {"catalog": [7], "orders": [7]}
    report = reader.restore(blob, allow_lossy={"catalog", "orders"})
    assert [c.steps for c in report.components] == [
        ("catalog 1 -> 2 (dedupe)",),
        ("orders 1 -> 2 (dedupe)",),
    ]
    assert states(reader) == {"catalog": [1, 3], "orders": [1, 3]}


def test_restore_with_true_and_false_as_before() -> None:
    blob = v1_snapshot()
    refused = service_at(2, [7])
    with pytest.raises(RestoreError):
        refused.restore(blob, allow_lossy=False)
    assert states(refused) == {"catalog": [7], "orders": [7]}
    allowed = service_at(2, [7])
    allowed.restore(blob, allow_lossy=True)
    assert states(allowed) == {"catalog": [1, 3], "orders": [1, 3]}


def test_a_str_is_refused_before_anything_is_read(caplog: pytest.LogCaptureFixture) -> None:
    reader = service_at(2, [7])
    with pytest.raises(ConfigurationError) as caught:
        reader.restore(v1_snapshot(), allow_lossy="catalog")
    assert str(caught.value) == (
        "allow_lossy: must be True, False or a collection of component names such as"
        " {'catalog'}, not the str 'catalog'"
    )
    assert states(reader) == {"catalog": [7], "orders": [7]}
    assert reader.status.state == "starting"


def test_a_name_of_no_component_is_logged_and_allows_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A warning, not an error: a component named for a release that no longer has it
    (or not yet) must not stop a restore, and naming it allows no loss anywhere."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    reader = service_at(2, [7])
    reader.restore(v1_snapshot(), allow_lossy=["catalog", "orders", "gone"])
    assert states(reader) == {"catalog": [1, 3], "orders": [1, 3]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "allow_lossy names 'gone', no component of service 'shop'"
        " (registered: catalog, orders); ignored"
    ]
    with pytest.raises(RestoreError, match="orders/default"):
        service_at(2, [7]).restore(v1_snapshot(), allow_lossy={"catalog", "order"})


def test_a_name_of_no_component_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    """The same setting given to each snapshot and commit (a checkpointer's) is warned
    about at the first; a name not seen before is warned about when it comes."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    writer = service_at(2, [5, 4, 3])
    store = MemoryStore()
    writer.snapshot(targets={"catalog": 1}, allow_lossy={"catalog", "gone"})
    writer.snapshot(targets={"catalog": 1}, allow_lossy={"catalog", "gone"})
    writer.commit(store, allow_lossy={"gone"})
    writer.commit(store, allow_lossy={"gone", "left"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "allow_lossy names 'gone', no component of service 'shop'"
        " (registered: catalog, orders); ignored",
        "allow_lossy names 'left', no component of service 'shop'"
        " (registered: catalog, orders); ignored",
    ]


def test_start_from_takes_the_per_component_form() -> None:
    blob = v1_snapshot()
    refused = service_at(2, [7])
    with pytest.raises(RestoreError, match="orders/default"):
        refused.start_from(blob, allow_lossy={"catalog"})
    assert states(refused) == {"catalog": [7], "orders": [7]}
    assert refused.status.state == "failed"
    cold = service_at(2, [7], on_restore_failure="serve_cold")
    assert cold.start_from(blob, allow_lossy={"catalog"}) is None
    assert states(cold) == {"catalog": [7], "orders": [7]}
    started = service_at(2, [7])
    started.start_from(blob, allow_lossy=("catalog", "orders"))
    assert states(started) == {"catalog": [1, 3], "orders": [1, 3]}


def test_start_from_refuses_a_str_up_front_even_with_a_serve_cold_policy() -> None:
    """A bad option is the program's mistake: raised, not a cold start."""
    service = service_at(2, [7], on_restore_failure="serve_cold")
    store = MemoryStore()
    with pytest.raises(ConfigurationError, match="not the str 'orders'"):
        service.start_from(store, allow_lossy="orders")
    assert service.status.state == "starting"


def test_snapshot_for_older_targets_downgrades_the_components_named_only() -> None:
    writer = service_at(2, [5, 4, 3])
    with pytest.raises(LossyMigrationError, match="'orders' from version 2 to 1"):
        writer.snapshot(targets={"catalog": 1, "orders": 1}, allow_lossy={"catalog"})
    one, _ = writer.snapshot(targets={"catalog": 1}, allow_lossy={"catalog"})
    assert [s.version for s in one.header.sections] == [1, 2]
    encoded, _ = writer.snapshot(
        targets={"catalog": 1, "orders": 1}, allow_lossy={"catalog", "orders"}
    )
    reader = service_at(1, [])
    reader.restore(encoded)
    assert states(reader) == {"catalog": [5, 4], "orders": [5, 4]}


def test_commit_downgrades_the_components_named_only() -> None:
    writer = service_at(2, [5, 4, 3])
    store = MemoryStore()
    with pytest.raises(LossyMigrationError, match="'orders'"):
        writer.commit(store, targets={"catalog": 1, "orders": 1}, allow_lossy={"catalog"})
    with pytest.raises(ConfigurationError, match="not the str 'catalog'"):
        writer.commit(store, targets={"catalog": 1}, allow_lossy="catalog")
    committed = writer.commit(store, targets={"catalog": 1, "orders": 1}, allow_lossy=COMPONENTS)
    reader = service_at(1, [])
    reader.restore(committed)
    assert states(reader) == {"catalog": [5, 4], "orders": [5, 4]}


def test_readable_versions_per_component() -> None:
    service = service_at(2, [])
    assert service.readable_versions(allow_lossy={"catalog"}) == {
        "catalog": [1, 2],
        "orders": [2],
    }


def test_a_handoff_export_downgrades_the_components_named_only() -> None:
    """The old process of a rollback: only the components named go down a lossy step;
    the refusal names the others with the set that would allow them too, keeping the
    components named already."""
    old = service_at(2, [5, 4, 3])
    readable = {"catalog": [1], "orders": [1]}
    with pytest.raises(HandoffError) as caught:
        choose_targets(old, readable, allow_lossy={"catalog"})
    cure = "pass allow_lossy={'catalog', 'orders'} (or True, for every component)"
    assert cure in caught.value.detail
    assert choose_targets(old, readable, allow_lossy={"catalog", "orders"}) == {
        "catalog": 1,
        "orders": 1,
    }
