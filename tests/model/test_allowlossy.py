"""allow_lossy per component: its forms, checked up front, and the planner's answer per
component (True every component, False none, a collection those named)."""

from __future__ import annotations

from typing import Any

import pytest

from statemigrate import ConfigurationError, LossyMigrationError, Registry
from statemigrate._model._allowlossy import (
    check_allow_lossy,
    lossy_allowed,
    names_shown,
    unregistered_names,
)


def _same(data: Any) -> Any:
    return data


def lossy_upgrades() -> Registry:
    """catalog and orders, each upgraded 1 -> 2 only through a lossy step."""
    registry = Registry()
    for component in ("catalog", "orders"):
        registry.add_schema(component, 1, dict[str, list[int]])
        registry.add_schema(component, 2, dict[str, list[int]])
        registry.add_migration(component, 1, 2, _same, lossy=True, name="dedupe")
    return registry


@pytest.mark.parametrize(
    ("given", "checked"),
    [
        (True, True),
        (False, False),
        ({"catalog"}, frozenset({"catalog"})),
        (["catalog", "orders", "catalog"], frozenset({"catalog", "orders"})),
        (("orders",), frozenset({"orders"})),
        (frozenset(), frozenset()),
    ],
)
def test_the_forms_allowed(given: object, checked: object) -> None:
    assert check_allow_lossy(given) == checked


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "catalog",
            "allow_lossy: must be True, False or a collection of component names such as"
            " {'catalog'}, not the str 'catalog'",
        ),
        (
            b"catalog",
            "allow_lossy: must be True, False or a collection of component names such as"
            " {'catalog'}, not the bytes b'catalog'",
        ),
        (
            {"catalog": True},
            "allow_lossy: must be True, False or a collection of component names such as"
            " {'catalog'}, not {'catalog': True}",
        ),
        (
            None,
            "allow_lossy: must be True, False or a collection of component names such as"
            " {'catalog'}, not None",
        ),
        (1, "allow_lossy: must be True, False or a collection of component names such as"
            " {'catalog'}, not 1"),
        (["catalog", 3], "allow_lossy: component names must be non-empty strs, not 3"),
        (["catalog", ""], "allow_lossy: component names must be non-empty strs, not ''"),
    ],
)
def test_a_bad_form_is_one_configuration_error_naming_it(given: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_allow_lossy(given)
    assert str(caught.value) == message
    assert caught.value.option == "allow_lossy"


def test_lossy_allowed_answers_per_component() -> None:
    assert lossy_allowed(True, "catalog") and not lossy_allowed(False, "catalog")
    assert lossy_allowed({"catalog"}, "catalog")
    assert not lossy_allowed({"catalog"}, "orders")
    assert not lossy_allowed(set(), "catalog")
    with pytest.raises(ConfigurationError, match="not the str 'catalog'"):
        # Read as its characters, 'catalog' would allow components named 'c', 'a', ...
        lossy_allowed("catalog", "c")


def test_names_not_registered_and_names_shown() -> None:
    assert unregistered_names(True, ["catalog"]) == []
    assert unregistered_names(frozenset({"orders", "catalgo", "b"}), ["orders"]) == [
        "b",
        "catalgo",
    ]
    assert names_shown(["orders", "catalog"]) == "{'catalog', 'orders'}"


def test_the_planner_allows_loss_for_the_components_named_only() -> None:
    registry = lossy_upgrades()
    plan = registry.plan("catalog", 1, 2, allow_lossy={"catalog"})
    assert [str(step) for step in plan.lossy_steps] == ["catalog 1 -> 2 (dedupe)"]
    with pytest.raises(LossyMigrationError) as caught:
        registry.plan("orders", 1, 2, allow_lossy={"catalog"})
    assert str(caught.value) == (
        "migrating 'orders' from version 1 to 2 loses data in orders 1 -> 2 (dedupe);"
        " pass allow_lossy={'catalog', 'orders'} (or True, for every component) to accept that"
    )
    assert registry.plan("orders", 1, 2, allow_lossy=True).lossy_steps
    with pytest.raises(LossyMigrationError):
        registry.plan("orders", 1, 2, allow_lossy=False)


def test_migrate_takes_the_per_component_form() -> None:
    registry = lossy_upgrades()
    data = {"items": [1, 1, 2]}
    result = registry.migrate("catalog", data, 1, 2, allow_lossy=["catalog"])
    assert result.data == data
    with pytest.raises(LossyMigrationError, match="allow_lossy=\\{'catalog', 'orders'\\}"):
        registry.migrate("orders", data, 1, 2, allow_lossy=["catalog"])


def test_a_str_is_refused_by_the_planner_even_where_no_step_is_lossy() -> None:
    """Caught up front, not only once a lossy step comes up."""
    registry = lossy_upgrades()
    with pytest.raises(ConfigurationError, match="not the str 'catalog'"):
        registry.plan("catalog", 1, 1, allow_lossy="catalog")
