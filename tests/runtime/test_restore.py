"""The restore transaction: idempotence, paths, rollback at every failpoint, bad bytes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from restore_children.components import (
    Counters,
    CountersRelease1,
    FailingKV,
    Failpoints,
    Fault,
    InjectedFault,
    Site,
    Tags,
    TagsRelease1,
    When,
    build_registry,
    canonical,
    exports,
    set_state,
    validation_failpoint,
)

import statemigrate._runtime._gcpause as gcpause_module
import statemigrate._runtime._history as history_module
import statemigrate._runtime._restore as restore_module
from statemigrate import (
    LossyMigrationError,
    Registry,
    RestoreError,
    RestoreReport,
    Service,
    SnapshotError,
    ValidationError,
    export_component,
    import_component,
    migratable,
)
from statemigrate._model._plaindata import copy_plain
from statemigrate._model._plan import Step
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer
from statemigrate.reference import COMPONENT, KVCacheV1, KVCacheV2, KVCacheV3

REGISTRY = build_registry()
KV_CLASSES: dict[int, type] = {1: KVCacheV1, 2: KVCacheV2, 3: KVCacheV3}
COUNTER_CLASSES: dict[int, type] = {1: CountersRelease1, 2: Counters}
KEY = b"k" * 32

# --- strategies ---------------------------------------------------------------------

keys = st.text(max_size=5)
texts = st.text(max_size=5)
deadlines = st.none() | st.floats(allow_nan=False, allow_infinity=False)
KV_STATES: dict[int, st.SearchStrategy[dict[str, Any]]] = {
    1: st.fixed_dictionaries({"entries": st.dictionaries(keys, texts, max_size=5)}),
    2: st.fixed_dictionaries(
        {
            "entries": st.dictionaries(
                keys, st.fixed_dictionaries({"value": texts, "expires_at": deadlines}), max_size=5
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
                max_size=5,
            )
        }
    ),
}
counts = st.dictionaries(keys, st.integers(0, 2**40), max_size=5)

# D1's target in the reliability matrix is at least 500 examples per CI run: raise a
# CI-sized profile to that (the quick dev profile stays as it is).
D1_EXAMPLES = (
    max(500, settings().max_examples)
    if settings().max_examples >= 200
    else settings().max_examples
)


def counter_state(version: int, values: dict[str, int]) -> dict[str, Any]:
    """The plain state of counters at ``version`` holding ``values``."""
    if version == 1:
        return {"counts": values}
    return {"counts": values, "total": sum(values.values())}


def kv(version: int, state: dict[str, Any] | None = None, registry: Registry = REGISTRY) -> Any:
    """A reference cache of release ``version``, holding ``state`` if given."""
    cache = KV_CLASSES[version]()
    if state is not None:
        set_state(cache, registry, state)
    return cache


def counters(version: int, values: dict[str, int], registry: Registry = REGISTRY) -> Any:
    """A counters component of release ``version`` holding ``values``."""
    obj = COUNTER_CLASSES[version]()
    set_state(obj, registry, counter_state(version, values))
    return obj


def service_of(
    *components: tuple[object, str], registry: Registry = REGISTRY, **kw: Any
) -> Service:
    """A service holding ``components`` as ``(object, instance)`` pairs."""
    service = Service("restore-test", registry=registry, **kw)
    for obj, instance in components:
        service.register(obj, instance=instance)
    return service


def migrate(registry: Registry, component: str, source: int, target: int, data: Any) -> bytes:
    """Canonical export of ``data`` brought from ``source`` to ``target`` by the planner."""
    plan = registry.plan(component, source, target, allow_lossy=True)
    schema = registry.schema_for(component, target)
    return canonical(schema.export(schema.validate(plan.apply(copy_plain(data)))))


def direct_paths(steps: list[Step], source: int, target: int) -> Iterator[tuple[Step, ...]]:
    """Every path from ``source`` to ``target`` whose steps all go the same way.

    (A path that goes down and back up passes through a lossy downgrade, so it is
    expected to differ.)"""

    def walk(here: int, seen: frozenset[int], path: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
        if here == target:
            yield path
            return
        for step in steps:
            towards = (step.target - step.source) * (target - source) > 0
            if step.source == here and step.target not in seen and towards:
                yield from walk(step.target, seen | {step.target}, (*path, step))

    yield from walk(source, frozenset({source}), ())


# --- D1 and round trips -------------------------------------------------------------


@given(version=st.sampled_from([1, 2, 3]), data=st.data())
def test_every_reference_version_round_trips_through_snapshot_and_restore(
    version: int, data: st.DataObject
) -> None:
    """Property: a state of any kvcache version, snapshotted and restored into the same
    version, exports exactly as before (and so do the BaseModel components)."""
    state = data.draw(KV_STATES[version])
    values = data.draw(counts)
    tags = data.draw(st.lists(texts, max_size=4))
    writer = service_of(
        (kv(version, state), "default"),
        (counters(2, values), "default"),
        (Tags(tags, owner="ops"), "default"),
    )
    encoded, _ = writer.snapshot()
    reader = service_of(
        (kv(version), "default"), (counters(2, {"x": 1}), "default"), (Tags(), "default")
    )
    report = reader.restore(encoded.to_bytes())
    assert not report.skipped
    assert exports(reader) == exports(writer)
    assert exports(reader)["kvcache/default"] == canonical(state)


@settings(max_examples=D1_EXAMPLES)
@given(
    version=st.sampled_from([1, 2, 3]),
    counter_version=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_restore_twice_equals_restore_once(
    version: int, counter_version: int, data: st.DataObject
) -> None:
    """Property (D1): restoring a snapshot a second time changes nothing and reports
    ``skipped``; ``force=True`` applies it again with the same result; and the result
    does not depend on the state the components held before."""
    writer = service_of(
        (kv(version, data.draw(KV_STATES[version])), "a"),
        (kv(version, data.draw(KV_STATES[version])), "b"),
        (counters(counter_version, data.draw(counts)), "default"),
    )
    blob = writer.snapshot()[0].to_bytes()

    def reader() -> Service:
        return service_of(
            (kv(3, data.draw(KV_STATES[3])), "a"),
            (kv(3, data.draw(KV_STATES[3])), "b"),
            (counters(2, data.draw(counts)), "default"),
        )

    service = reader()
    first = service.restore(blob)
    once = exports(service)
    second = service.restore(blob)
    assert not first.skipped
    assert second.skipped is True
    assert second.components == ()
    assert second.snapshot_id == first.snapshot_id
    assert exports(service) == once
    forced = service.restore(blob, force=True)
    assert forced.skipped is False
    assert len(forced.components) == 3
    assert exports(service) == once
    other = reader()
    other.restore(blob)
    assert exports(other) == once


# --- D2: path independence ----------------------------------------------------------


@given(source=st.sampled_from([1, 2, 3]), target=st.sampled_from([1, 2, 3]), data=st.data())
def test_restore_equals_the_planned_migration_and_every_path(
    source: int, target: int, data: st.DataObject
) -> None:
    """Property (D2): a snapshot written at version ``source`` and restored into code at
    ``target`` exports what the planner's steps give, and what every other direct path
    of single steps gives, each step applied alone."""
    state = data.draw(KV_STATES[source])
    values = data.draw(counts)
    writer = service_of((kv(source, state), "default"), (counters(1, values), "default"))
    blob = writer.snapshot()[0].to_bytes()
    reader = service_of((kv(target), "default"), (counters(2, {}), "default"))
    report = reader.restore(blob, allow_lossy=True)

    expected = migrate(REGISTRY, COMPONENT, source, target, state)
    steps = REGISTRY.steps(COMPONENT)
    paths = list(direct_paths(steps, source, target))
    # 1 <-> 3 has the one-pass step and the two single steps; neighbours have one path.
    assert len(paths) == {0: 1, 1: 1, 2: 2}[abs(target - source)]
    for path in paths:
        result = copy_plain(state)
        for step in path:
            result = step.apply(result)
        assert canonical(result) == expected, [str(s) for s in path]
    live = exports(reader)
    assert live["kvcache/default"] == expected
    assert live["counters/default"] == canonical(counter_state(2, values))
    plan = REGISTRY.plan(COMPONENT, source, target, allow_lossy=True)
    by_key = {f"{c.component}/{c.instance}": c for c in report.components}
    assert by_key["kvcache/default"].steps == tuple(str(s) for s in plan.steps)
    assert by_key["counters/default"].steps == ("counters 1 -> 2 (add_total)",)


@given(source=st.sampled_from([1, 2]), data=st.data())
def test_up_then_down_through_two_services_gives_the_original(
    source: int, data: st.DataObject
) -> None:
    """Property: upgrades are lossless, so restoring into newer code and snapshotting
    back down for the old code (a rollback) gives the original state exactly."""
    state = data.draw(KV_STATES[source])
    newer = data.draw(st.sampled_from([v for v in (2, 3) if v > source]))
    values = data.draw(counts)
    old = service_of((kv(source, state), "default"), (counters(1, values), "default"))
    new = service_of((kv(newer), "default"), (counters(2, {}), "default"))
    new.restore(old.snapshot()[0].to_bytes())
    down, report = new.snapshot(targets={COMPONENT: source, "counters": 1}, allow_lossy=True)
    assert [s.version for s in report.sections] == [source, 1]
    back = service_of((kv(source), "default"), (counters(1, {}), "default"))
    back.restore(down.to_bytes())
    assert exports(back) == exports(old)


def test_a_lossy_restore_is_refused_unless_allowed() -> None:
    """Code at v1 reading a v3 snapshot needs a lossy step: refused, state unchanged."""
    state = {"entries": {"k": {"data": "v", "expires_at": 5.0, "hits": 2}}}
    writer = service_of((kv(3, state), "default"))
    blob = writer.snapshot()[0].to_bytes()
    reader = service_of((kv(1, {"entries": {"old": "x"}}), "default"))
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "migrate"
    assert caught.value.component == "kvcache/default"
    assert isinstance(caught.value.__cause__, LossyMigrationError)
    assert exports(reader) == before
    reader.restore(blob, allow_lossy=True)
    assert exports(reader)["kvcache/default"] == canonical({"entries": {"k": "v"}})


# --- D3: a failure at every point rolls every component back -------------------------

# The snapshot of the failpoint loop is written by release 1 of every component; the
# reader runs kvcache 3 (two instances), counters 2 and tags 2, each holding a state
# that differs from the snapshot's, so any partially applied component shows.
RELEASE_1_STATES: dict[str, dict[str, Any]] = {
    "kvcache/a": {"entries": {"x": "1", "y": "2"}},
    "kvcache/b": {"entries": {"z": "3"}},
    "counters/default": {"counts": {"hits": 4, "misses": 1}},
    "tags/default": {"tags": ["red", "blue"]},
}
LIVE_STATES: dict[str, dict[str, Any]] = {
    "kvcache/a": {"entries": {"old": {"data": "o", "expires_at": 9.5, "hits": 7}}},
    "kvcache/b": {"entries": {"w": {"data": "w", "expires_at": None, "hits": 0}}},
    "counters/default": {"counts": {"live": 2}, "total": 2},
    "tags/default": {"tags": ["live"], "owner": "ops"},
}
COMPONENT_KEYS = tuple(LIVE_STATES)
PHASES: dict[Site, str] = {"step": "migrate", "validate": "validate", "import": "apply"}
FAULTS: tuple[type[BaseException], ...] = (ValueError, MemoryError, KeyboardInterrupt)
VALIDATE_FAULTS: tuple[type[BaseException], ...] = (InjectedFault, MemoryError, KeyboardInterrupt)


def _release_1_snapshot() -> bytes:
    registry = build_registry(direct=False)
    writer = Service("restore-test", code_version="release-1", registry=registry)
    for key, obj in zip(
        COMPONENT_KEYS, (KVCacheV1(), KVCacheV1(), CountersRelease1(), TagsRelease1()), strict=True
    ):
        set_state(obj, registry, RELEASE_1_STATES[key])
        writer.register(obj, instance=key.split("/")[1])
    return writer.snapshot()[0].to_bytes()


RELEASE_1 = _release_1_snapshot()


def failpoint_reader(fail: Failpoints | None) -> tuple[Service, Registry]:
    """The release 2/3 service of the failpoint loop, in its pre-restore state."""
    registry = build_registry(fail, direct=False)
    service = Service("restore-test", code_version="release-3", registry=registry)
    objects = (FailingKV(fail=fail), FailingKV(fail=fail), Counters(fail=fail), Tags(fail=fail))
    for key, obj in zip(COMPONENT_KEYS, objects, strict=True):
        set_state(obj, registry, LIVE_STATES[key])
        service.register(obj, instance=key.split("/")[1])
    return service, registry


def step_sequence() -> list[tuple[str, str]]:
    """``(component/instance, step)`` for every step call a restore of RELEASE_1 makes."""
    _, registry = failpoint_reader(None)
    live = {"kvcache": 3, "counters": 2, "tags": 2}
    sequence = []
    for key in COMPONENT_KEYS:
        component = key.split("/")[0]
        for step in registry.plan(component, 1, live[component]).steps:
            sequence.append((key, str(step)))
    return sequence


@dataclass(frozen=True)
class Point:
    """One failpoint: where, what, and what the restore must report."""

    site: Site
    index: int
    exc: type[BaseException]
    when: When
    persistent: bool
    component: str
    step: str | None

    def __str__(self) -> str:
        mode = "persistent" if self.persistent else "once"
        return (
            f"{self.site}#{self.index} {self.exc.__name__} {self.when} {mode}"
            f" ({self.component} {self.step or ''})"
        )


def all_points() -> list[Point]:
    """Every (site, position, fault, timing, persistence) combination of the loop."""
    points = []
    # A failed validation names the step whose output it was: each component's last.
    last_step = dict(step_sequence())
    for persistent in (False, True):
        for index, (component, step) in enumerate(step_sequence()):
            for exc in FAULTS:
                points.append(Point("step", index, exc, "before", persistent, component, step))
        for index, component in enumerate(COMPONENT_KEYS):
            for exc in VALIDATE_FAULTS:
                points.append(
                    Point("validate", index, exc, "before", persistent, component,
                          last_step.get(component))
                )
            for exc in FAULTS:
                for when in ("before", "after"):
                    points.append(Point("import", index, exc, when, persistent, component, None))
    return points


def expected_after_clean_restore() -> dict[str, bytes]:
    service, _ = failpoint_reader(None)
    service.restore(RELEASE_1)
    return exports(service)


@dataclass
class Outcome:
    """What one failpoint did to the live state and what the restore reported."""

    point: Point
    changed: list[str]
    problems: list[str]


def run_point(point: Point, monkeypatch: pytest.MonkeyPatch, clean: dict[str, bytes]) -> Outcome:
    """Fail a restore at ``point``; compare every component with its export before it."""
    fail = Failpoints()
    service, _ = failpoint_reader(fail)
    before = exports(service)
    problems: list[str] = []
    fail.arm(point.site, point.index, Fault(point.exc, point.when), persistent=point.persistent)
    with validation_failpoint(monkeypatch, fail):
        outcome: BaseException | None = None
        try:
            service.restore(RELEASE_1)
        except BaseException as exc:  # KeyboardInterrupt is one of the expected outcomes
            outcome = exc
        after = exports(service)
        changed = [key for key in COMPONENT_KEYS if after[key] != before[key]]
        if not fail.raised and point.exc is not InjectedFault:
            problems.append("the failpoint was never reached")
        problems += _check_outcome(point, outcome, fail)
        if not gc.isenabled():
            problems.append("the garbage collector was left disabled")
            gc.enable()
        # The failed attempt must not count as restored: the same bytes apply cleanly.
        fail.disarm()
        try:
            report = service.restore(RELEASE_1)
        except BaseException as exc:
            problems.append(f"clean retry failed: {exc!r}")
        else:
            if report.skipped or exports(service) != clean:
                problems.append("clean retry did not give the clean result")
    return Outcome(point, changed, problems)


def _check_outcome(point: Point, outcome: BaseException | None, fail: Failpoints) -> list[str]:
    # A persistent fault can fire again while the library undoes a half-done import,
    # so the exception that comes out may be a later injected one.
    injected = any(outcome is raised for raised in fail.raised)
    if outcome is None:
        return ["the restore succeeded"]
    if point.exc is KeyboardInterrupt:
        if type(outcome) is not KeyboardInterrupt or not injected:
            return [f"expected the injected KeyboardInterrupt, got {outcome!r}"]
        noted = any("rollback failed" in note for note in getattr(outcome, "__notes__", ()))
        if noted != (point.site == "import" and point.persistent):
            return [f"rollback failure noted wrongly: {getattr(outcome, '__notes__', None)}"]
        return []
    if not isinstance(outcome, RestoreError):
        return [f"expected RestoreError, got {outcome!r}"]
    problems = []
    facts = (outcome.phase, outcome.component, outcome.step)
    wanted = (PHASES[point.site], point.component, point.step)
    if facts != wanted:
        problems.append(f"reported {facts}, expected {wanted}")
    cause = outcome.__cause__
    if point.exc is InjectedFault:
        if not isinstance(cause, ValidationError):
            problems.append(f"cause {cause!r} is not a ValidationError")
    elif not any(cause is raised for raised in fail.raised):
        problems.append(f"cause {cause!r} is not an injected fault")
    # A component whose import keeps failing cannot be re-imported either, and the
    # error must say so; no other rollback may fail.
    expected_failed = (point.component,) if point.site == "import" and point.persistent else ()
    if outcome.rollback_failed != expected_failed:
        problems.append(f"rollback_failed {outcome.rollback_failed}, expected {expected_failed}")
    return problems


CLEAN = expected_after_clean_restore()


def run_all_points(
    monkeypatch: pytest.MonkeyPatch, clean: dict[str, bytes] = CLEAN
) -> list[Outcome]:
    return [run_point(point, monkeypatch, clean) for point in all_points()]


def test_the_failpoint_loop_reaches_every_step_of_every_component() -> None:
    """The points enumerate every step call a restore makes, each reached exactly once."""
    fail = Failpoints()
    service, _ = failpoint_reader(fail)
    fail.reset()  # setting the live states up imported them once
    service.restore(RELEASE_1)
    sequence = step_sequence()
    assert fail.hits["step"] == len(sequence) == 6
    assert fail.hits["import"] == len(COMPONENT_KEYS) == 4
    assert [step for _, step in sequence] == [
        "kvcache 1 -> 2 (add_ttl)", "kvcache 2 -> 3 (add_hits)",
        "kvcache 1 -> 2 (add_ttl)", "kvcache 2 -> 3 (add_hits)",
        "counters 1 -> 2 (add_total)", "tags 1 -> 2 (add_owner)",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_failure_at_every_point_leaves_every_component_exactly_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D3: for every failpoint (each step of each component, its validation and its
    import; ValueError, MemoryError, KeyboardInterrupt or invalid data; once and
    persistently), every component's export is byte-equal to its export before the
    restore, the error names phase, component and step with the cause chained, and a
    clean retry of the same snapshot then succeeds."""
    outcomes = run_all_points(monkeypatch)
    # steps: 6 calls x 3 faults; validate: 4 components x 3; import: 4 x 3 x before/after;
    # all of it once and persistently.
    assert len(outcomes) == (6 * 3 + 4 * 3 + 4 * 3 * 2) * 2 == 108
    partial = [f"{o.point}: {o.changed}" for o in outcomes if o.changed]
    wrong = [f"{o.point}: {p}" for o in outcomes for p in o.problems]
    assert partial == [], "\n".join(partial)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
def test_negative_control_rollback_that_does_nothing_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restore whose rollback does nothing fails the D3 check, at exactly the import
    points where some component had already been applied."""
    monkeypatch.setattr(restore_module, "_roll_back", lambda staged, before: ([], None))
    outcomes = run_all_points(monkeypatch)
    import_points = [o for o in outcomes if o.point.site == "import" and not o.point.persistent]
    caught = [o for o in import_points if o.changed]
    # Failing "before" at component i leaves components 0..i-1 applied (3 of 4 positions);
    # failing "after" leaves component i applied too (4 of 4) except that the default
    # import of tags undoes its own fields. Three faults each.
    assert len(caught) == (3 + 4) * 3
    assert sum(len(o.changed) for o in caught) == ((0 + 1 + 2 + 3) + (1 + 2 + 3 + 3)) * 3
    assert all(not o.changed for o in outcomes if o.point.site != "import")


@pytest.mark.slow
def test_negative_control_applying_before_validating_everything_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restore that applies each component as soon as it is validated (instead of
    after all are) fails the D3 check at every step and validation point that comes
    after the first component."""

    def eager(snapshot: Any, entries: Any, **kw: Any) -> Any:
        staged, _, _ = restore_module._match(snapshot, entries)
        for item in staged:
            restore_module._decode(snapshot, item, allow_lossy=kw["allow_lossy"])
            restore_module._migrate(snapshot, item, allow_lossy=kw["allow_lossy"])  # validates
            import_component(item.entry.obj, item.data, registry=item.entry.registry)
        return RestoreReport(snapshot.header.snapshot_id, snapshot.header.generation, False)

    monkeypatch.setattr(history_module, "run_restore", eager)
    outcomes = run_all_points(monkeypatch)
    caught = [o for o in outcomes if o.changed and o.point.site in ("step", "validate")]
    # step calls 2..5 come after kvcache/a was applied (kvcache/a has calls 0 and 1);
    # validation of components 1..3 likewise; 3 faults each, once and persistently.
    assert len(caught) == (4 * 3 + 3 * 3) * 2


# --- D4: validation failures and bad bytes --------------------------------------------


def _snapshot_with(sections: list[SectionInput], **kw: Any) -> bytes:
    return encode_snapshot(sections, producer=Producer.current("restore-test"), **kw).to_bytes()


def _fingerprint(component: str, version: int) -> str:
    return REGISTRY.schema_for(component, version).fingerprint


GOOD_KV = {"entries": {"k": {"data": "v", "expires_at": None, "hits": 1}}}
INVALID_KV = [
    {"entries": {"k": {"data": "v", "expires_at": None, "hits": -1}}},
    {"entries": {"k": {"data": "v", "expires_at": float("inf"), "hits": 0}}},
    {"entries": {"k": {"data": 5, "expires_at": None, "hits": 0}}},
    {"entries": {"k": {"expires_at": None, "hits": 0}}},
    {"entries": ["k"]},
    {},
]


@pytest.mark.parametrize("invalid", INVALID_KV, ids=range(len(INVALID_KV)))
def test_well_formed_but_invalid_data_fails_validation_and_changes_nothing(
    invalid: dict[str, Any],
) -> None:
    """D4: sound bytes whose data does not fit the schema: RestoreError(phase="validate")
    naming the component, nothing applied (not even the valid sections before it)."""
    blob = _snapshot_with(
        [
            SectionInput("kvcache", "a", 3, _fingerprint("kvcache", 3), GOOD_KV),
            SectionInput("counters", "default", 2, _fingerprint("counters", 2),
                         {"counts": {"a": 1}, "total": 1}),
            SectionInput("kvcache", "b", 3, _fingerprint("kvcache", 3), invalid),
        ]
    )  # fmt: skip
    reader = service_of(
        (kv(3, LIVE_STATES["kvcache/a"]), "a"),
        (counters(2, {"z": 9}), "default"),
        (kv(3, LIVE_STATES["kvcache/b"]), "b"),
    )
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert (caught.value.phase, caught.value.component) == ("validate", "kvcache/b")
    assert isinstance(caught.value.__cause__, ValidationError)
    assert exports(reader) == before


def test_a_semantic_check_of_the_schema_fails_validation() -> None:
    """A counters total that is not the sum of the counts is refused by the model's
    own validator, during validation."""
    blob = _snapshot_with(
        [SectionInput("counters", "default", 2, _fingerprint("counters", 2),
                      {"counts": {"a": 1}, "total": 2})]
    )  # fmt: skip
    reader = service_of((counters(2, {"z": 9}), "default"))
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "validate"
    assert "not the sum" in str(caught.value)
    assert exports(reader) == before


def test_a_section_that_does_not_decode_fails_in_decode_and_changes_nothing() -> None:
    """Checksums fine, payload not plain data (an extension type): phase ``decode``."""
    blob = _snapshot_with(
        [
            SectionInput("kvcache", "a", 3, _fingerprint("kvcache", 3), GOOD_KV),
            SectionInput("kvcache", "b", 3, _fingerprint("kvcache", 3), {"entries": object()}),
        ],
        default=lambda value: msgpack.ExtType(5, b"x"),
    )
    reader = service_of((kv(3, LIVE_STATES["kvcache/a"]), "a"), (kv(3), "b"))
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert (caught.value.phase, caught.value.component) == ("decode", "kvcache/b")
    assert isinstance(caught.value.__cause__, SnapshotError)
    assert caught.value.__cause__.kind == "invalid_data"
    assert exports(reader) == before


def _small_service(**kw: Any) -> Service:
    return service_of(
        (kv(3, GOOD_KV), "default"),
        (counters(2, {"a": 1, "b": 2}), "default"),
        (Tags(["t"], owner="me"), "default"),
        **kw,
    )


SMALL = _small_service().snapshot()[0].to_bytes()


def _bad_bytes_reader(**kw: Any) -> Service:
    return service_of(
        (kv(3, LIVE_STATES["kvcache/a"]), "default"),
        (counters(2, {"z": 9}), "default"),
        (Tags(["live"], owner="ops"), "default"),
        **kw,
    )


def _refused(reader: Service, blob: bytes | bytearray, before: dict[str, bytes]) -> str | None:
    """None if restoring ``blob`` is refused in verify and changes nothing, else why not."""
    try:
        reader.restore(blob)
    except RestoreError as exc:
        if exc.phase != "verify" or not isinstance(exc.__cause__, SnapshotError):
            return f"{exc.phase}: {exc!r}"
    else:
        return "accepted"
    if exports(reader) != before:
        return "state changed"
    return None


@pytest.mark.parametrize("key", [None, KEY], ids=["xxh3", "hmac"])
def test_every_truncation_is_refused_before_anything_changes(key: bytes | None) -> None:
    """D4: every proper prefix of a small snapshot, and the snapshot with one byte more,
    is refused in ``verify`` with a SnapshotError cause; no component changes."""
    blob = _small_service(key=key).snapshot()[0].to_bytes()
    reader = _bad_bytes_reader(key=key)
    before = exports(reader)
    failures = {n: _refused(reader, blob[:n], before) for n in range(len(blob))}
    failures[len(blob) + 1] = _refused(reader, blob + b"\0", before)
    assert {n: why for n, why in failures.items() if why} == {}
    assert len(failures) == len(blob) + 1
    reader.restore(blob)  # the whole snapshot is fine
    assert exports(reader) != before


@pytest.mark.parametrize("key", [None, KEY], ids=["xxh3", "hmac"])
def test_a_bit_flip_in_any_byte_is_refused_before_anything_changes(key: bytes | None) -> None:
    """D4: flipping one bit (a different bit per byte position) anywhere in the
    snapshot is refused in ``verify``; no component changes."""
    blob = _small_service(key=key).snapshot()[0].to_bytes()
    reader = _bad_bytes_reader(key=key)
    before = exports(reader)
    failures = {}
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << (position % 8)
        failures[position] = _refused(reader, damaged, before)
    assert {n: why for n, why in failures.items() if why} == {}
    assert len(failures) == len(blob)


@given(position=st.data(), garbage=st.binary(max_size=64))
def test_random_damage_is_refused_before_anything_changes(
    position: st.DataObject, garbage: bytes
) -> None:
    """Property: any bit flip at a random position, or foreign bytes spliced in, is
    refused in ``verify`` and changes nothing."""
    blob = SMALL
    reader = _bad_bytes_reader()
    before = exports(reader)
    at = position.draw(st.integers(0, len(blob) - 1))
    bit = position.draw(st.integers(0, 7))
    damaged = bytearray(blob)
    damaged[at] ^= 1 << bit
    assert _refused(reader, damaged, before) is None
    end = position.draw(st.integers(at, len(blob)))
    spliced = blob[:at] + garbage + blob[end:]
    if spliced != blob:
        assert _refused(reader, spliced, before) is None
    assert _refused(reader, garbage, before) is None


def test_exports_used_for_comparison_are_canonical() -> None:
    """The canonical export does not depend on the order keys were inserted in."""
    one = kv(3, {"entries": {"a": GOOD_KV["entries"]["k"], "b": GOOD_KV["entries"]["k"]}})
    two = kv(3, {"entries": {"b": GOOD_KV["entries"]["k"], "a": GOOD_KV["entries"]["k"]}})
    assert list(export_component(one, registry=REGISTRY)["entries"]) == ["a", "b"]
    assert list(export_component(two, registry=REGISTRY)["entries"]) == ["b", "a"]
    assert exports(service_of((one, "default"))) == exports(service_of((two, "default")))
    three = kv(3, {"entries": {"a": {"data": "v", "expires_at": None, "hits": 2}}})
    assert exports(service_of((one, "default"))) != exports(service_of((three, "default")))


def test_a_step_that_returns_none_fails_in_migrate_named() -> None:
    """A step that changes its input but forgets to return it is named in ``migrate``."""
    registry = build_registry()
    registry.add_migration("tags", 2, 3, lambda data: None, name="forgot_return")
    registry.add_schema("tags", 3, dict[str, Any])

    @migratable("tags", version=3)
    class TagsV3:
        def __init__(self) -> None:
            self.state: dict[str, Any] = {"kept": True}

        def export_state(self) -> dict[str, Any]:
            return self.state

        def import_state(self, state: dict[str, Any]) -> None:
            self.state = state

    blob = service_of((Tags(["t"]), "default"), registry=registry).snapshot()[0].to_bytes()
    reader = service_of((TagsV3(), "default"), registry=registry)
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert (caught.value.phase, caught.value.step) == ("migrate", "tags 2 -> 3 (forgot_return)")
    assert isinstance(caught.value.__cause__, TypeError)
    assert exports(reader) == before


def test_an_export_that_fails_while_taking_the_current_state_changes_nothing() -> None:
    """If a component cannot export its current state, nothing can be rolled back to:
    the restore stops in ``apply`` before importing anything."""

    class Broken(Counters):
        armed = False

        def export_state(self) -> Any:
            if self.armed:
                raise OSError("cannot read the live state")
            return super().export_state()

    blob = _small_service().snapshot()[0].to_bytes()
    broken = Broken()
    reader = service_of(
        (kv(3, LIVE_STATES["kvcache/a"]), "default"),
        (broken, "default"),
        (Tags(["live"], owner="ops"), "default"),
    )
    before = exports(reader)
    broken.armed = True
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    broken.armed = False
    assert (caught.value.phase, caught.value.component) == ("apply", "counters/default")
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.detail == (
        "cannot read the current state, which a rollback would need:"
        " OSError: cannot read the live state"
    )
    assert exports(reader) == before


# --- D6: replaying an older generation ----------------------------------------------


def test_an_older_generation_is_refused_after_a_newer_one_unless_allowed() -> None:
    """D6: once generation 2 is restored, generation 1 (an authentic replay) is refused
    in ``verify`` and changes nothing, unless ``allow_older=True``."""
    old_state = {"entries": {"k": {"data": "old", "expires_at": None, "hits": 0}}}
    cache = kv(3, old_state)
    writer = service_of((cache, "default"), key=KEY)
    older = writer.snapshot()[0].to_bytes()
    cache.set("k", "new")
    newer = writer.snapshot()[0].to_bytes()
    reader = service_of((kv(3), "default"), key=KEY)
    assert reader.restore(newer).generation == 2
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(older)
    assert caught.value.phase == "verify"
    assert "older" in str(caught.value)
    assert exports(reader) == before
    assert reader.restore(older, allow_older=True).generation == 1
    assert exports(reader)["kvcache/default"] == canonical(old_state)
    # The service's own next snapshot still sorts after everything it has seen.
    assert reader.snapshot()[1].generation == 3


# --- the garbage collector after a restore ---------------------------------------------


def _rows_registry() -> tuple[Registry, type]:
    from typing_extensions import TypedDict

    registry = Registry()

    @registry.schema("rows", version=1)
    class RowsState(TypedDict):
        rows: list[list[int]]

    @registry.migratable("rows", version=1)
    class Rows:
        def __init__(self, rows: list[list[int]] | None = None) -> None:
            self.rows = rows or []

    return registry, Rows


def _young(obj: object) -> bool:
    return any(o is obj for generation in (0, 1) for o in gc.get_objects(generation))


def _restored_rows(monkeypatch: pytest.MonkeyPatch, *, promote: bool) -> bool:
    """Restore a few hundred lists; tell whether the restored ones are still young."""
    registry, rows_class = _rows_registry()
    writer = Service("gc-test", registry=registry)
    writer.register(rows_class([[i, i + 1] for i in range(300)]))
    snapshot, _ = writer.snapshot()
    reader_rows = rows_class()
    reader = Service("gc-test", registry=registry)
    reader.register(reader_rows)
    if not promote:
        monkeypatch.setattr(gcpause_module, "promote_young_objects", lambda: None)
    was_enabled = gc.isenabled()
    gc.disable()  # no collection may move objects between generations meanwhile
    try:
        reader.restore(snapshot.to_bytes())
        assert reader_rows.rows[7] == [7, 8]
        return _young(reader_rows.rows) or _young(reader_rows.rows[7])
    finally:
        if was_enabled:
            gc.enable()


def test_restored_containers_start_in_the_oldest_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Young collections right after a restore must not walk the whole restored state."""
    assert not _restored_rows(monkeypatch, promote=True)


def test_negative_control_without_promotion_restored_containers_are_young(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _restored_rows(monkeypatch, promote=False)


def test_a_restore_leaves_the_applications_frozen_objects_frozen() -> None:
    # A frozen object is in none of the collector's generations: the sentinel must stay
    # out of them. (The freeze count is no measure: other tests' threads may free
    # frozen objects meanwhile.)
    sentinel: list[object] = []
    gc.freeze()
    try:
        assert not any(obj is sentinel for obj in gc.get_objects())
        service = service_of((kv(1, {"entries": {"a": "b"}}), "main"))
        snapshot, _ = service.snapshot()
        service_of((kv(1), "main")).restore(snapshot.to_bytes())
        assert not any(obj is sentinel for obj in gc.get_objects())
    finally:
        gc.unfreeze()
