"""The reference kvcache: its migrations (round trips, path independence, lossiness) and classes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from statemigrate._errors import LossyMigrationError
from statemigrate._model._component import export_component, import_component
from statemigrate._model._plaindata import copy_plain, is_plain
from statemigrate._model._plan import Plan, Step
from statemigrate._model._registry import Registry
from statemigrate.reference import (
    COMPONENT,
    MIGRATIONS_DIR,
    KVCacheV1,
    KVCacheV2,
    KVCacheV3,
    build_registry,
)

REGISTRY = build_registry()
VERSIONS = (1, 2, 3)

keys = st.text(max_size=6)
texts = st.text(max_size=6)
deadlines = st.none() | st.floats(allow_nan=False, allow_infinity=False)
STATES: dict[int, st.SearchStrategy[dict[str, Any]]] = {
    1: st.fixed_dictionaries({"entries": st.dictionaries(keys, texts, max_size=6)}),
    2: st.fixed_dictionaries(
        {
            "entries": st.dictionaries(
                keys,
                st.fixed_dictionaries({"value": texts, "expires_at": deadlines}),
                max_size=6,
            )
        }
    ),
    3: st.fixed_dictionaries(
        {
            "entries": st.dictionaries(
                keys,
                st.fixed_dictionaries(
                    {"data": texts, "expires_at": deadlines, "hits": st.integers(0, 2**63 - 1)}
                ),
                max_size=6,
            )
        }
    ),
}
# What an upgrade fills in for a field a downgrade declared lost.
DEFAULTS = {"expires_at": None, "hits": 0}


def run(steps: tuple[Step, ...] | list[Step], data: Any) -> Any:
    """Apply steps to a private copy: steps mutate their input in place."""
    data = copy_plain(data)
    for step in steps:
        data = step.apply(data)
    return data


def simple_paths(steps: list[Step], source: int, target: int) -> Iterator[tuple[Step, ...]]:
    """Every path without repeated versions from source to target."""

    def walk(here: int, seen: frozenset[int], path: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
        if here == target:
            yield path
            return
        for step in steps:
            if step.source == here and step.target not in seen:
                yield from walk(step.target, seen | {step.target}, (*path, step))

    yield from walk(source, frozenset({source}), ())


def reset_lost(state: dict[str, Any], lost_fields: Iterable[str]) -> dict[str, Any]:
    """Set every declared lost field (``entries.*.<name>``) that the state's version has
    back to its upgrade default."""
    state = copy_plain(state)
    for path in lost_fields:
        top, star, name = path.split(".")
        assert (top, star) == ("entries", "*") and name in DEFAULTS
        for entry in state["entries"].values():
            if isinstance(entry, dict) and name in entry:
                entry[name] = DEFAULTS[name]
    return state


# --- the registry the migrations directory builds -----------------------------------------


def test_registry_is_complete_and_loads_from_an_explicit_path() -> None:
    REGISTRY.check()
    assert REGISTRY.versions(COMPONENT) == [1, 2, 3]
    explicit = build_registry(MIGRATIONS_DIR)
    assert [str(s) for s in explicit.steps(COMPONENT)] == [
        str(s) for s in REGISTRY.steps(COMPONENT)
    ]
    assert [(s.source, s.target, s.lossy) for s in REGISTRY.steps(COMPONENT)] == [
        (1, 2, False),
        (1, 3, False),
        (2, 1, True),
        (2, 3, False),
        (3, 1, True),
        (3, 2, True),
    ]


def test_downgrades_are_refused_unless_loss_is_allowed() -> None:
    expected = {
        (2, 1): ["kvcache 2 -> 1 (drop_ttl)"],
        (3, 2): ["kvcache 3 -> 2 (drop_hits)"],
        (3, 1): ["kvcache 3 -> 1 (downgrade_3_to_1)"],
    }
    for (source, target), named in expected.items():
        with pytest.raises(LossyMigrationError) as info:
            REGISTRY.plan(COMPONENT, source, target)
        assert info.value.steps == named
        assert REGISTRY.plan(COMPONENT, source, target, allow_lossy=True).lossy_steps


def test_upgrades_need_no_permission_and_take_the_shortcut() -> None:
    assert str(REGISTRY.plan(COMPONENT, 1, 3)) == "kvcache 1 -> 3 (upgrade_1_to_3)"
    assert str(REGISTRY.plan(COMPONENT, 2, 3)) == "kvcache 2 -> 3 (add_hits)"


def test_missing_migrations_directory_is_a_clear_error(tmp_path: Any) -> None:
    from statemigrate._errors import RegistrationError

    with pytest.raises(RegistrationError, match="does not exist"):
        build_registry(tmp_path / "nowhere")


# --- properties of the steps --------------------------------------------------------------


@pytest.mark.parametrize("step", REGISTRY.steps(COMPONENT), ids=str)
@given(data=st.data())
def test_each_step_alone_gives_valid_target_data(step: Step, data: st.DataObject) -> None:
    """Property: every step turns a valid source state into plain data that is valid at
    the target version, and never mutates anything but its argument."""
    state = data.draw(STATES[step.source])
    REGISTRY.schema_for(COMPONENT, step.source).validate(state)
    original = copy_plain(state)
    result = run((step,), state)
    assert state == original
    assert is_plain(result)
    REGISTRY.schema_for(COMPONENT, step.target).validate(result)


@pytest.mark.parametrize(("low", "high"), [(1, 2), (2, 3), (1, 3)])
@given(data=st.data())
def test_up_then_down_is_identity(low: int, high: int, data: st.DataObject) -> None:
    """Property: downgrade(upgrade(x)) == x, since upgrades lose nothing."""
    state = data.draw(STATES[low])
    up = REGISTRY.plan(COMPONENT, low, high)
    down = REGISTRY.plan(COMPONENT, high, low, allow_lossy=True)
    assert run(down.steps, run(up.steps, state)) == state


@pytest.mark.parametrize("step", [s for s in REGISTRY.steps(COMPONENT) if s.lossy], ids=str)
@given(data=st.data())
def test_lossy_step_loses_only_what_it_declares(step: Step, data: st.DataObject) -> None:
    """Property: upgrade(downgrade(y)) equals y with the declared lost fields reset."""
    state = data.draw(STATES[step.source])
    back = REGISTRY.plan(COMPONENT, step.target, step.source)
    assert run(back.steps, run((step,), state)) == reset_lost(state, step.lost_fields)


def path_results(steps: list[Step], source: int, target: int, state: Any) -> list[Any]:
    """The result of every path, with the fields any of the paths loses reset."""
    paths = list(simple_paths(steps, source, target))
    lost = {name for path in paths for step in path for name in step.lost_fields}
    return [reset_lost(run(path, state), lost) for path in paths]


@pytest.mark.parametrize(
    ("source", "target"), [(a, b) for a in VERSIONS for b in VERSIONS if a != b]
)
@given(data=st.data())
def test_every_path_gives_the_same_result(source: int, target: int, data: st.DataObject) -> None:
    """Property: all paths between two versions (direct or through the middle version)
    migrate a state to the same data, except for fields a lossy step on one of them
    declares lost; so the planner's choice never changes anything else."""
    state = data.draw(STATES[source])
    results = path_results(REGISTRY.steps(COMPONENT), source, target, state)
    assert len(results) == 2  # the reference graph offers two paths between any pair
    assert all(result == results[0] for result in results)


def _replace(steps: list[Step], name: str, func: Callable[[Any], Any]) -> list[Step]:
    return [
        Step(s.component, s.source, s.target, func, s.name, s.lossy, s.lost_fields)
        if s.name == name
        else s
        for s in steps
    ]


def test_negative_control_path_check_catches_a_wrong_shortcut() -> None:
    """A shortcut that starts hit counters at 1 is caught by the path-independence check."""

    def sloppy_upgrade(data: dict[str, Any]) -> dict[str, Any]:
        entries = data["entries"]
        for key, value in entries.items():
            entries[key] = {"data": value, "expires_at": None, "hits": 1}
        return data

    broken = _replace(REGISTRY.steps(COMPONENT), "upgrade_1_to_3", sloppy_upgrade)
    bad = find(STATES[1], lambda s: len({repr(r) for r in path_results(broken, 1, 3, s)}) > 1)
    assert bad["entries"]


def test_negative_control_round_trip_catches_a_forgetful_downgrade() -> None:
    """A downgrade that forgets to rename ``data`` back breaks the round trip check."""

    def forgetful(data: dict[str, Any]) -> dict[str, Any]:
        for entry in data["entries"].values():
            entry["value"] = entry.get("data", "")
            del entry["hits"]
        return data

    down = Plan(COMPONENT, 3, 2, (Step(COMPONENT, 3, 2, forgetful, lossy=True),))
    up = REGISTRY.plan(COMPONENT, 2, 3)
    bad = find(STATES[2], lambda s: run(down.steps, run(up.steps, s)) != s)
    assert bad["entries"]


# --- the cache classes --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_v1_cache_get_set_delete_and_eviction() -> None:
    cache = KVCacheV1(max_entries=2)
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == "1"  # now "b" is the least recently used
    cache.set("c", "3")
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.delete("a") and not cache.delete("a")
    assert (len(cache), cache.get("a", "gone")) == (1, "gone")
    with pytest.raises(ValueError):
        KVCacheV1(max_entries=0)


@pytest.mark.parametrize("cls", [KVCacheV2, KVCacheV3])
def test_expiry(cls: type[KVCacheV2] | type[KVCacheV3]) -> None:
    clock = FakeClock()
    cache = cls(clock=clock)
    cache.set("short", "s", ttl=5)
    cache.set("long", "l", ttl=50)
    cache.set("forever", "f")
    clock.now += 10
    assert cache.get("short") is None and "short" not in cache
    assert (cache.get("long"), cache.get("forever")) == ("l", "f")
    clock.now += 100
    if isinstance(cache, KVCacheV2):
        assert cache.purge_expired() == 1
    assert (cache.get("long"), cache.get("forever")) == (None, "f")


def test_v3_counts_hits_and_exports_them() -> None:
    cache = KVCacheV3(clock=FakeClock())
    cache.set("k", "v", ttl=10)
    for _ in range(3):
        cache.get("k")
    assert cache.hits("k") == 3 and cache.hits("absent") == 0
    assert export_component(cache, registry=REGISTRY) == {
        "entries": {"k": {"data": "v", "expires_at": 1010.0, "hits": 3}}
    }


def test_v3_import_replaces_entries() -> None:
    cache = KVCacheV3()
    cache.set("old", "o")
    before = cache.export_state()
    state = REGISTRY.schema_for(COMPONENT, 3).validate(
        {"entries": {"new": {"data": "n", "expires_at": None, "hits": 7}}}
    )
    import_component(cache, state, registry=REGISTRY)
    assert ("old" in cache, cache.get("new"), cache.hits("new")) == (False, "n", 8)
    import_component(cache, before, registry=REGISTRY)
    assert cache.export_state() == before


def migrate_into(registry: Registry, data: Any, source: int, target_obj: Any) -> None:
    """What a restore does for one component: plan, migrate, validate, import."""
    target = 3 if isinstance(target_obj, KVCacheV3) else 1
    plan = registry.plan(COMPONENT, source, target, allow_lossy=True)
    state = registry.schema_for(COMPONENT, target).validate(plan.apply(data))
    import_component(target_obj, state, registry=registry)


OLD_CODE = textwrap.dedent(
    """
    import sys
    import msgpack
    from statemigrate._model._component import export_component
    from statemigrate.reference import KVCacheV1, build_registry

    cache = KVCacheV1()
    for i in range(50):
        cache.set(f"key{i}", f"value{i}")
    data = export_component(cache, registry=build_registry())
    sys.stdout.buffer.write(msgpack.packb(data, use_bin_type=True))
    """
)


def test_old_code_state_upgrades_into_new_code_and_back() -> None:
    """Release 1 runs in a child process; its state is migrated into release 3 here."""
    child = subprocess.run(
        [sys.executable, "-c", OLD_CODE], capture_output=True, timeout=120, check=True
    )
    data = msgpack.unpackb(child.stdout, raw=False, strict_map_key=True)
    new = KVCacheV3()
    migrate_into(REGISTRY, data, 1, new)
    assert len(new) == 50
    assert (new.get("key7"), new.hits("key7")) == ("value7", 1)
    old_again = KVCacheV1()
    migrate_into(REGISTRY, copy_plain(new.export_state()), 3, old_again)
    assert old_again.entries == {f"key{i}": f"value{i}" for i in range(50)}
