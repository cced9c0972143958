"""Migration steps, plans and the pure planner, on literal and generated version graphs."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from statemigrate._errors import LossyMigrationError, NoMigrationPathError, RegistrationError
from statemigrate._model._plan import Plan, Step, plan_path, reachable

Planner = Callable[[list[Step], int, int], Plan]


def _same(data: Any) -> Any:
    return data


def step(source: int, target: int, *, lossy: bool = False, component: str = "c") -> Step:
    return Step(component, source, target, _same, f"s{source}_{target}", lossy)


def steps_of(pairs: Iterable[tuple[int, int]], lossy: Iterable[tuple[int, int]] = ()) -> list[Step]:
    lossy_set = set(lossy)
    return [step(a, b, lossy=(a, b) in lossy_set) for a, b in pairs]


def pairs(plan: Plan) -> list[tuple[int, int]]:
    return [(s.source, s.target) for s in plan.steps]


# --- literal graphs -----------------------------------------------------------------------


def test_linear_chain_upgrade_and_downgrade() -> None:
    chain = steps_of([(1, 2), (2, 3), (3, 4), (4, 3), (3, 2), (2, 1)])
    assert pairs(plan_path("c", chain, 1, 4)) == [(1, 2), (2, 3), (3, 4)]
    assert pairs(plan_path("c", chain, 4, 1)) == [(4, 3), (3, 2), (2, 1)]
    assert plan_path("c", chain, 2, 3).versions == (2, 3)


def test_branch_takes_the_shorter_path() -> None:
    graph = steps_of([(1, 2), (2, 3), (3, 4), (1, 4)])
    assert pairs(plan_path("c", graph, 1, 4)) == [(1, 4)]
    assert pairs(plan_path("c", graph, 2, 4)) == [(2, 3), (3, 4)]


def test_cycle_terminates_and_is_followed() -> None:
    graph = steps_of([(1, 2), (2, 3), (3, 1)])
    assert pairs(plan_path("c", graph, 2, 1)) == [(2, 3), (3, 1)]
    assert reachable(graph, 3) == {1, 2, 3}


def test_unreachable_version_lists_every_edge() -> None:
    graph = steps_of([(1, 2), (2, 1), (3, 4)])
    with pytest.raises(NoMigrationPathError) as info:
        plan_path("c", graph, 1, 4)
    err = info.value
    assert (err.component, err.source, err.target) == ("c", 1, 4)
    assert err.edges == [(1, 2), (2, 1), (3, 4)]
    assert "1->2, 2->1, 3->4" in str(err)


def test_a_version_nothing_registers_is_named_with_those_that_are() -> None:
    """Given the schema versions, the error names the version no schema or step knows.
    Before, it listed the steps only ('registered steps: none')."""
    graph = steps_of([(1, 2), (2, 1)])
    with pytest.raises(NoMigrationPathError) as info:
        plan_path("c", graph, 1, 7, versions=[1, 2, 3])
    err = info.value
    assert (err.unknown, err.versions) == ([7], [1, 2, 3])
    assert str(err) == (
        "no migration path for 'c' from version 1 to 7: version 7 is not registered;"
        " registered versions: 1, 2, 3"
    )
    with pytest.raises(NoMigrationPathError) as info:
        plan_path("c", [], 9, 0, versions=[1])
    assert str(info.value).endswith("versions 0 and 9 are not registered; registered versions: 1")
    with pytest.raises(NoMigrationPathError) as info:  # both known: the steps, as before
        plan_path("c", graph, 1, 3, versions=[1, 2, 3])
    assert info.value.unknown == [] and str(info.value).endswith("registered steps: 1->2, 2->1")


def test_only_lossy_path_is_refused_and_named() -> None:
    graph = steps_of([(2, 1), (1, 2)], lossy=[(2, 1)])
    with pytest.raises(LossyMigrationError) as info:
        plan_path("c", graph, 2, 1)
    assert info.value.steps == ["c 2 -> 1 (s2_1)"]
    assert "c 2 -> 1 (s2_1)" in str(info.value)
    plan = plan_path("c", graph, 2, 1, allow_lossy=True)
    assert [str(s) for s in plan.lossy_steps] == ["c 2 -> 1 (s2_1)"]


def test_loss_free_path_wins_even_when_longer() -> None:
    graph = steps_of([(3, 1), (3, 4), (4, 5), (5, 1)], lossy=[(3, 1)])
    for allow in (False, True):
        plan = plan_path("c", graph, 3, 1, allow_lossy=allow)
        assert pairs(plan) == [(3, 4), (4, 5), (5, 1)]
        assert plan.lossy_steps == ()


def test_fewest_lossy_steps_when_all_paths_lose() -> None:
    graph = steps_of([(1, 2), (2, 3), (1, 3)], lossy=[(1, 2), (2, 3), (1, 3)])
    assert pairs(plan_path("c", graph, 1, 3, allow_lossy=True)) == [(1, 3)]
    with pytest.raises(LossyMigrationError) as info:
        plan_path("c", graph, 1, 3)
    assert info.value.steps == ["c 1 -> 3 (s1_3)"]


def test_ties_break_on_smallest_versions_regardless_of_order() -> None:
    edges = [(1, 3), (3, 4), (1, 2), (2, 4), (1, 5), (5, 4)]
    rng = random.Random(7)
    seen = set()
    for _ in range(20):
        rng.shuffle(edges)
        seen.add(tuple(pairs(plan_path("c", steps_of(edges), 1, 4))))
    assert seen == {((1, 2), (2, 4))}


def test_same_version_is_an_empty_plan() -> None:
    plan = plan_path("c", [], 3, 3)
    assert plan.steps == () and plan.lossy_steps == ()
    data = {"x": 1}
    assert plan.apply(data) is data
    assert str(plan) == "c 3 (no steps)"


def test_steps_of_other_components_are_ignored() -> None:
    graph = [step(1, 2, component="other")]
    with pytest.raises(NoMigrationPathError) as info:
        plan_path("c", graph, 1, 2)
    assert info.value.edges == []


# --- steps and plans ----------------------------------------------------------------------


def test_step_prints_and_knows_its_direction() -> None:
    def add_ttl(data: Any) -> Any:
        return data

    up = Step("sessions", 1, 2, add_ttl)
    down = Step("sessions", 2, 1, add_ttl, "drop_ttl", lost_fields=("ttl",))
    assert str(up) == "sessions 1 -> 2 (add_ttl)"
    assert up.direction == "upgrade" and down.direction == "downgrade"
    assert down.lossy and down.lost_fields == ("ttl",)
    assert not up.lossy


@pytest.mark.parametrize(
    ("component", "source", "target"),
    [
        ("c", 1, 1),
        ("c", 0, 1),
        ("c", 1, -2),
        ("c", True, 2),
        ("c", 1, "2"),
        ("", 1, 2),
        ("a/b", 1, 2),
        (" c", 1, 2),
        ("c", 1, 2**31),
    ],
)
def test_invalid_steps_are_refused(component: str, source: Any, target: Any) -> None:
    with pytest.raises(RegistrationError):
        Step(component, source, target, _same)


def test_plan_applies_steps_in_order_and_may_mutate() -> None:
    def append(n: int) -> Callable[[Any], Any]:
        def run(data: list[int]) -> list[int]:
            data.append(n)
            return data

        return run

    plan = Plan("c", 1, 3, (Step("c", 1, 2, append(2)), Step("c", 2, 3, append(3))))
    data = [1]
    assert plan.apply(data) == [1, 2, 3]
    assert data == [1, 2, 3]  # in place, as documented
    assert str(plan) == "c 1 -> 2 -> 3 (run, run)"


def test_plan_failure_names_the_step() -> None:
    def boom(data: Any) -> Any:
        raise KeyError("missing")

    plan = Plan("c", 1, 3, (Step("c", 1, 2, _same, "fine"), Step("c", 2, 3, boom)))
    with pytest.raises(KeyError) as info:
        plan.apply({})
    assert "in migration step c 2 -> 3 (boom)" in info.value.__notes__


def test_step_returning_none_is_caught() -> None:
    def forgot(data: dict[str, Any]) -> None:
        data["x"] = 1

    with pytest.raises(TypeError, match="returned None"):
        Step("c", 1, 2, forgot).apply({})


def test_plan_must_be_a_chain() -> None:
    with pytest.raises(ValueError, match="does not continue"):
        Plan("c", 1, 3, (step(1, 2), step(3, 4)))
    with pytest.raises(ValueError, match="end at version 2"):
        Plan("c", 1, 3, (step(1, 2),))


# --- properties on generated graphs -------------------------------------------------------

VERSIONS = list(range(1, 8))


@st.composite
def graphs(draw: st.DrawFn, *, lossy: bool) -> tuple[list[Step], int, int]:
    possible = [(a, b) for a in VERSIONS for b in VERSIONS if a != b]
    edges = draw(st.lists(st.sampled_from(possible), unique=True, max_size=20))
    flags = draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
    graph = [step(a, b, lossy=lossy and flag) for (a, b), flag in zip(edges, flags, strict=True)]
    return graph, draw(st.sampled_from(VERSIONS)), draw(st.sampled_from(VERSIONS))


def bfs_distance(graph: list[Step], source: int, target: int) -> int | None:
    """Independent oracle: breadth-first distance over (source, target) pairs."""
    dist = {source: 0}
    todo = deque([source])
    while todo:
        here = todo.popleft()
        for s in graph:
            if s.source == here and s.target not in dist:
                dist[s.target] = dist[here] + 1
                todo.append(s.target)
    return dist.get(target)


def best_cost(graph: list[Step], source: int, target: int) -> tuple[int, int] | None:
    """Independent oracle: min (lossy steps, steps) over every simple path."""
    best: tuple[int, int] | None = None

    def walk(here: int, seen: set[int], lossy: int, length: int) -> None:
        nonlocal best
        if here == target:
            best = min(best or (lossy, length), (lossy, length))
            return
        for s in graph:
            if s.source == here and s.target not in seen:
                walk(s.target, seen | {s.target}, lossy + s.lossy, length + 1)

    walk(source, {source}, 0, 0)
    return best


def plan_problems(planner: Planner, graph: list[Step], source: int, target: int) -> list[str]:
    """Everything wrong with ``planner``'s answer (allow_lossy) against the oracles."""
    expected = best_cost(graph, source, target)
    try:
        plan = planner(graph, source, target)
    except NoMigrationPathError:
        return [] if expected is None else [f"no path found, expected cost {expected}"]
    problems = []
    at = source
    for s in plan.steps:
        if s.source != at or s not in graph:
            problems.append(f"step {s} does not continue at {at}")
        at = s.target
    if at != target:
        problems.append(f"plan ends at {at}")
    got = (len(plan.lossy_steps), len(plan.steps))
    if got != expected:
        problems.append(f"cost {got}, expected {expected}")
    return problems


def real_planner(graph: list[Step], source: int, target: int) -> Plan:
    return plan_path("c", graph, source, target, allow_lossy=True)


def depth_first_planner(graph: list[Step], source: int, target: int) -> Plan:
    """A deliberately wrong planner: the first path a depth-first search finds."""

    def walk(here: int, seen: set[int], path: tuple[Step, ...]) -> tuple[Step, ...] | None:
        if here == target:
            return path
        for s in graph:
            if s.source == here and s.target not in seen:
                found = walk(s.target, seen | {s.target}, (*path, s))
                if found is not None:
                    return found
        return None

    path = walk(source, {source}, ())
    if path is None:
        raise NoMigrationPathError("c", source, target, [])
    return Plan("c", source, target, path)


@given(graphs(lossy=False))
def test_plan_length_is_bfs_distance(case: tuple[list[Step], int, int]) -> None:
    """Property: on loss-free graphs a plan exists iff BFS reaches the target, its length
    is the BFS distance, and every step starts where the previous one ended."""
    graph, source, target = case
    distance = bfs_distance(graph, source, target)
    if distance is None:
        with pytest.raises(NoMigrationPathError):
            plan_path("c", graph, source, target)
        return
    plan = plan_path("c", graph, source, target)
    assert len(plan.steps) == distance
    assert plan.versions[0] == source and plan.versions[-1] == target
    for before, after in zip(plan.steps, plan.steps[1:], strict=False):
        assert before.target == after.source


@given(graphs(lossy=True))
def test_plan_minimizes_loss_then_length(case: tuple[list[Step], int, int]) -> None:
    """Property: with lossy steps allowed the plan has the fewest lossy steps of any path,
    then the fewest steps; without, it is refused exactly when every path loses data."""
    graph, source, target = case
    assert plan_problems(real_planner, graph, source, target) == []
    expected = best_cost(graph, source, target)
    if expected is not None and expected[0] > 0:
        with pytest.raises(LossyMigrationError):
            plan_path("c", graph, source, target)
    elif expected is not None:
        assert plan_path("c", graph, source, target).lossy_steps == ()


@given(graphs(lossy=True), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_step_order(
    case: tuple[list[Step], int, int], rng: random.Random
) -> None:
    """Property: shuffling the registered steps never changes the plan."""
    graph, source, target = case
    shuffled = list(graph)
    rng.shuffle(shuffled)
    try:
        first = plan_path("c", graph, source, target, allow_lossy=True)
    except NoMigrationPathError:
        with pytest.raises(NoMigrationPathError):
            plan_path("c", shuffled, source, target, allow_lossy=True)
        return
    assert plan_path("c", shuffled, source, target, allow_lossy=True) == first


@pytest.mark.slow
def test_negative_control_property_catches_a_depth_first_planner() -> None:
    """The optimality check above finds a graph where a first-found path is not best."""
    bad = find(
        graphs(lossy=True),
        lambda case: bool(plan_problems(depth_first_planner, *case)),
    )
    assert plan_problems(depth_first_planner, *bad)
    assert plan_problems(real_planner, *bad) == []
