"""The kit's exact comparison (statemigrate/testing/_exact.py), and the step and paths
checks comparing with it: a step that changes what ``==`` overlooks fails its check."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypedDict

from statemigrate._errors import LossyMigrationError
from statemigrate._model._paths import FieldName
from statemigrate._model._registry import Registry
from statemigrate.testing import CheckReport, check_migrations, migration_checks
from statemigrate.testing._checks import _shortened
from statemigrate.testing._exact import cut, exact_differences


def test_dict_keys_in_another_order_differ() -> None:
    assert exact_differences({"b": 1, "a": 2}, {"b": 1, "a": 2}) == []
    assert exact_differences({"b": 1, "a": 2}, {"a": 2, "b": 1}) == [
        "(root): key order differs: expected ['b', 'a'], got ['a', 'b']"
    ]
    nested = exact_differences({"lru": {"k": 0, "z": 1, "a": 2}}, {"lru": {"k": 0, "a": 2, "z": 1}})
    assert nested == [
        "['lru']: key order differs from key 1 on: expected ['z', 'a'], got ['a', 'z']"
    ]
    # Keys missing or unexpected are reported as such; their order is no news then.
    assert exact_differences({"b": 1, "a": 2}, {"a": 2}) == ["['b']: expected 1, missing"]
    assert exact_differences({3, 1, 2}, {1, 2, 3}) == []  # a set has no order to keep


def test_paths_take_the_form_of_error_messages() -> None:
    """Fields (of a model, or of plain data where ``path_of`` knows the schema) read
    ``.name``, keys and indexes in brackets, set items in braces, the top ``(root)``."""
    assert exact_differences(Lru(lru={"a": 1}), Lru(lru={"a": 2})) == [
        "lru['a']: expected 1, got 2"
    ]
    assert exact_differences({"s": {1}}, {"s": {True}}) == [
        "['s']{1}: expected int 1, got bool True"
    ]
    assert exact_differences({1: "a"}, {True: "a"}) == [
        "(root) key 1: expected int 1, got bool True"
    ]
    fields = exact_differences(
        {"users": {"": {"": None}}},
        {"users": {"": {}}},
        path_of=lambda steps: [FieldName(steps[0]), *steps[1:]] if steps else steps,
    )
    assert fields == ["users['']['']: expected None, missing"]


def _hundred() -> int:
    return 100


def test_a_defaultdict_s_factory_and_a_deque_s_maxlen_count() -> None:
    """Before, both compared their items only: a restore that gave a defaultdict the
    factory ``int`` for ``_hundred``, or a deque no ``maxlen``, passed the checks."""
    kept = collections.defaultdict(_hundred, a=1)
    assert exact_differences({"q": kept}, {"q": collections.defaultdict(int, a=1)}) == [
        "['q']: expected default_factory=_hundred, got default_factory=int"
    ]
    assert exact_differences(kept, collections.defaultdict(_hundred, a=1)) == []
    ring = collections.deque([1, 2], maxlen=2)
    assert exact_differences(ring, collections.deque([1, 2])) == [
        "(root): expected maxlen=2, got maxlen=None"
    ]
    assert exact_differences(ring, collections.deque([1, 2], maxlen=2)) == []


def test_a_factory_made_again_is_the_same_factory() -> None:
    """A validator that rebuilds the defaultdict makes its ``lambda`` anew each time."""

    def made(bound: int) -> collections.defaultdict[str, int]:
        return collections.defaultdict(lambda: bound)

    assert exact_differences(made(100), made(100)) == []
    assert exact_differences(made(100), made(7)) != []


class Quotas(BaseModel):
    quotas: collections.defaultdict[str, int]


def test_the_snapshot_check_fails_on_a_defaultdict_whose_factory_a_restore_loses() -> None:
    """Before, the check passed: the snapshot was committed, restored with the factory
    ``int``, and compared by its items."""
    registry = Registry()
    registry.add_schema("quotas", 1, Quotas)
    drawn = st.integers().map(lambda n: Quotas(quotas=collections.defaultdict(_hundred, a=n)))
    report = check_migrations(
        registry, strategies={("quotas", 1): drawn}, max_examples=3, raise_on_failure=False
    )
    (failure,) = report.failures
    assert "default_factory=_hundred would come back with default_factory=int" in (
        failure.detail
    )


def test_complex_numbers_compare_by_representation() -> None:
    """Before, by ``==``: ``-0.0 + 1j`` equalled ``1j``, and a NaN part nothing."""
    nan = float("nan")
    assert exact_differences(complex(-0.0, 1.0), 1j) == ["(root): expected (-0+1j), got 1j"]
    assert exact_differences([complex(nan, 1.0)], [complex(nan, 1.0)]) == []


class _Name(str):
    pass


def test_a_long_key_in_a_path_shows_its_start_and_its_length() -> None:
    """Before, a path named a key whole, however long."""
    key = "k" * 100
    (line,) = exact_differences({key: 1}, {_Name(key): 1})
    assert line.startswith(f"(root) key {'k' * 40!r}...(100 chars): expected str ")


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
        "lru: key order differs: expected ['b', 'a'], got ['a', 'b']",
    ),
    "-0.0 made 0.0": (
        Zeros, Zeros2, "xs", "ys", positive_zeros, {"xs": [-0.0]},
        "xs[0]: expected -0.0, got 0.0",
    ),
    "True made 1": (
        Flags, Flags2, "v", "w", ints, {"v": [True]},
        "v[0]: expected bool True, got int 1",
    ),
    "True made 1 under Any": (
        Loose, Loose2, "v", "w", ints_in, {"v": {"k": True}},
        "v['k']: expected bool True, got int 1",
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


class Flagged(TypedDict):
    users: dict[str, dict[str, bool]]


class WideFlagged(TypedDict):
    users: dict[str, dict[str, bool | int | None]]


def entries_lost(*, upgrade_lost: tuple[str, ...], downgrade_lost: tuple[str, ...]) -> Registry:
    """Version 2 widens the flags; its downgrade drops every flag that is not a bool,
    and the upgrade drops every user whose name is not a number: each loses entries of
    a dict, named by a path ending in ``*``."""
    registry = Registry()
    registry.add_schema("flags", 1, Flagged)
    registry.add_schema("flags", 2, WideFlagged)

    def numeric_users(data: dict[str, Any]) -> dict[str, Any]:
        return {"users": {u: f for u, f in data["users"].items() if u.isdigit()}}

    def narrow(data: dict[str, Any]) -> dict[str, Any]:
        users = data["users"].items()
        return {"users": {u: {k: v for k, v in f.items() if type(v) is bool} for u, f in users}}

    registry.add_migration("flags", 1, 2, numeric_users, lossy=upgrade_lost)
    registry.add_migration("flags", 2, 1, narrow, lossy=downgrade_lost)
    return registry


def test_a_lost_path_ending_in_a_star_covers_the_entries_it_names() -> None:
    """``users.*.*`` names every flag of every user, ``users.*`` every user: a step that
    drops such entries loses what it declares. Before, a last ``*`` was read as a key
    named ``*``, and both steps failed for losing data beyond what they declare."""
    registry = entries_lost(upgrade_lost=("users.*",), downgrade_lost=("users.*.*",))
    old = {"users": {"7": {"a": True}, "x": {"b": False}}}
    new = {"users": {"0": {"": None, "b": True, "c": 3}}}
    report = check_migrations(
        registry,
        strategies={("flags", 1): st.just(old), ("flags", 2): st.just(new)},
        max_examples=3,
        raise_on_failure=False,
    )
    assert report.ok, report
    # A restore reads the same declarations as lossy steps.
    with pytest.raises(LossyMigrationError):
        registry.plan("flags", 2, 1)
    assert registry.plan("flags", 2, 1, allow_lossy=True).lossy_steps


def test_a_lost_path_ending_in_a_star_names_only_the_entries_below_it() -> None:
    """``users.*.*`` declares the flags lost, not the users: a step that also drops a
    user still fails, at the user's path."""
    registry = entries_lost(upgrade_lost=(), downgrade_lost=("users.*.*",))
    report = check_migrations(
        registry,
        strategies={("flags", 1): st.just({"users": {"x": {}}})},
        components=["flags"],
        max_examples=3,
        raise_on_failure=False,
    )
    (failure,) = [f for f in report.failures if f.check == "flags-step-1-2"]
    assert "numeric_users loses data, but is not declared lossy" in failure.what
    assert "users['x']: expected {}, missing" in failure.detail


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
    assert "by_name: key order differs: expected ['a', 'b'], got ['b', 'a']" in (
        result.failure.detail
    )


def test_a_long_value_is_shortened_readably_never_cut_mid_token() -> None:
    """Before, a long value's repr was cut at 200 characters wherever that fell (inside
    a string, between a key and its value) and a refusal note at 200, mid-word."""
    value = {"symbol": "x" * 500, "orders": {str(i): {"side": "buy"} for i in range(40)}}
    shown = cut(value)
    assert len(shown) <= 200
    assert shown.startswith("{'symbol': 'xxxxxxxx") and shown.endswith("}")
    assert "...(500 chars)" in shown and "more" in shown
    assert cut(2**700, 40) == f"{str(2**700)[:16]}...(211 digits)"
    assert cut(Lru(lru={str(i): i for i in range(100)}), 60).startswith("Lru(lru={'0': 0, ")
    note = "at symbol: the string holds a lone surrogate, which UTF-8 cannot encode (store"
    assert _shortened(note, 60) == "at symbol: the string holds a lone surrogate, which UTF-8 ..."


def test_the_markdown_report_escapes_what_does_not_print() -> None:
    """A step's exception or a refusal may quote a drawn value as it is: a control
    character went raw into CI logs (an escape sequence recolours them), and a lone
    surrogate into a note that a UTF-8 stream cannot even write."""
    registry = Registry()
    registry.add_schema("c", 1, Counts)
    registry.add_schema("c", 2, Counts)

    def loud(data: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"no key like {next(iter(data['counts']))}")

    registry.add_migration("c", 1, 2, loud, name="loud")
    registry.add_migration("c", 2, 1, lambda data: data, name="back")
    report = check_migrations(
        registry,
        strategies={("c", 1): st.just({"counts": {"\x1b[31mred\x07": 1}})},
        components=["c"],
        max_examples=2,
        raise_on_failure=False,
    )
    with_note = dataclasses.replace(report.results[-1], note="refused: at k['\ud872\x05']")
    text = CheckReport((*report.results, with_note)).to_markdown()
    assert "ValueError: no key like \\x1b[31mred\\x07" in text
    assert "(refused: at k['\\ud872\\x05'])" in text
    text.encode("utf-8")  # no lone surrogate left
    assert all(char.isprintable() for line in text.splitlines() for char in line)
