"""The kit's exact comparison (statemigrate/testing/_exact.py), and the step and paths
checks comparing with it: a step that changes what ``==`` overlooks fails its check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypedDict

from statemigrate._model._registry import Registry
from statemigrate.testing import check_migrations, migration_checks
from statemigrate.testing._exact import exact_differences


def test_dict_keys_in_another_order_differ() -> None:
    assert exact_differences({"b": 1, "a": 2}, {"b": 1, "a": 2}) == []
    assert exact_differences({"b": 1, "a": 2}, {"a": 2, "b": 1}) == [
        "(top level): key order differs: expected ['b', 'a'], got ['a', 'b']"
    ]
    nested = exact_differences({"lru": {"k": 0, "z": 1, "a": 2}}, {"lru": {"k": 0, "a": 2, "z": 1}})
    assert nested == [
        "['lru']: key order differs from key 1 on: expected ['z', 'a'], got ['a', 'z']"
    ]
    # Keys missing or unexpected are reported as such; their order is no news then.
    assert exact_differences({"b": 1, "a": 2}, {"a": 2}) == ["['b']: expected 1, missing"]
    assert exact_differences({3, 1, 2}, {1, 2, 3}) == []  # a set has no order to keep


class Lru(BaseModel):
    lru: dict[str, int]


class Cache(BaseModel):
    cache: dict[str, int]


class Zeros(BaseModel):
    xs: list[float]


class Zeros2(BaseModel):
    ys: list[float]


class Flags(BaseModel):
    v: list[int | bool]


class Flags2(BaseModel):
    w: list[int | bool]


class Loose(BaseModel):
    v: dict[str, Any]


class Loose2(BaseModel):
    w: dict[str, Any]


def renamed(old: str, new: str, change: Callable[[Any], Any] = lambda value: value) -> Any:
    return lambda data: {new: change(data[old])}


def sorted_dict(value: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(value.items()))


def positive_zeros(values: list[float]) -> list[float]:
    return [abs(x) if x == 0 else x for x in values]


def ints(values: list[Any]) -> list[Any]:
    return [int(x) for x in values]


def ints_in(values: dict[str, Any]) -> dict[str, Any]:
    return {k: int(x) if isinstance(x, bool) else x for k, x in values.items()}


# (old type, new type, old field, new field, what the upgrade does, the input, the line
# the check must show)
PLANTED: dict[str, tuple[type[BaseModel], type[BaseModel], str, str, Any, Any, str]] = {
    "re-sorted dict": (
        Lru, Cache, "lru", "cache", sorted_dict, {"lru": {"b": 1, "a": 2}},
        "['lru']: key order differs: expected ['b', 'a'], got ['a', 'b']",
    ),
    "-0.0 made 0.0": (
        Zeros, Zeros2, "xs", "ys", positive_zeros, {"xs": [-0.0]},
        "['xs'][0]: expected -0.0, got 0.0",
    ),
    "True made 1": (
        Flags, Flags2, "v", "w", ints, {"v": [True]},
        "['v'][0]: expected bool True, got int 1",
    ),
    "True made 1 under Any": (
        Loose, Loose2, "v", "w", ints_in, {"v": {"k": True}},
        "['v']['k']: expected bool True, got int 1",
    ),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_step_that_changes_what_equality_overlooks_fails(name: str) -> None:
    """Before, the step checks compared with ``==``: each of these upgrades passed every
    check, even on the very input it changes."""
    old, new, before, after, change, x, line = PLANTED[name]
    registry = Registry()
    registry.add_schema("s", 1, old)
    registry.add_schema("s", 2, new)
    registry.add_migration("s", 1, 2, renamed(before, after, change), name="up")
    registry.add_migration("s", 2, 1, renamed(after, before), name="down")
    (check,) = [c for c in migration_checks(registry) if c.id == "s-step-1-2"]
    check = dataclasses.replace(check, strategy=st.just(x))
    result = check.run(max_examples=3)
    assert result.failure is not None
    assert result.failure.what == "down(up(x)) != x: up loses data, but is not declared lossy"
    assert line in result.failure.detail.splitlines()


class Counts(TypedDict):
    counts: dict[str, int]


def test_a_declared_lost_key_put_back_elsewhere_is_no_difference() -> None:
    """What a lossy step declares lost is left out before the order of the rest is
    compared: a reverse that puts the key back at the end keeps the others' order."""
    registry = Registry()
    registry.add_schema("c", 1, Counts)
    registry.add_schema("c", 2, Counts)

    def drop_x(data: dict[str, Any]) -> dict[str, Any]:
        return {"counts": {k: v for k, v in data["counts"].items() if k != "x"}}

    def put_x_last(data: dict[str, Any]) -> dict[str, Any]:
        return {"counts": {**data["counts"], "x": 0}}

    registry.add_migration("c", 1, 2, drop_x, name="drop_x", lossy=("counts.x",))
    registry.add_migration("c", 2, 1, put_x_last, name="put_x_last", lossy=("counts.x",))
    x = {"counts": {"x": 5, "b": 1, "a": 2}}
    report = check_migrations(
        registry, strategies={("c", 1): st.just(x)}, max_examples=3, raise_on_failure=False
    )
    assert report.ok, report


class Keyed(BaseModel):
    by_name: dict[str, int]


def test_paths_whose_dicts_come_in_another_order_disagree() -> None:
    """A shortcut that re-sorts a dict gives a restore through it another order than
    the chain of steps it stands for."""
    registry = Registry()
    for version in (1, 2, 3):
        registry.add_schema("k", version, Keyed)
    keep = renamed("by_name", "by_name")
    resort = renamed("by_name", "by_name", sorted_dict)
    for source, target in ((1, 2), (2, 3), (2, 1), (3, 2), (3, 1)):
        registry.add_migration("k", source, target, keep, name=f"keep_{source}_{target}")
    registry.add_migration("k", 1, 3, resort, name="shortcut")
    (check,) = [c for c in migration_checks(registry) if c.id == "k-paths-1-3"]
    check = dataclasses.replace(check, strategy=st.just({"by_name": {"b": 1, "a": 2}}))
    result = check.run(max_examples=3)
    assert result.failure is not None
    assert result.failure.what.startswith("paths disagree: 1 -> 3 (shortcut) and 1 -> 2 -> 3")
    assert "['by_name']: key order differs: expected ['a', 'b'], got ['b', 'a']" in (
        result.failure.detail
    )
