"""The properties that :mod:`statemigrate.testing._checks` runs, and their helpers.

Each property takes a check and one generated example ``x`` (plain data of the check's
version; for the snapshot check, a validated state) and raises :class:`Broken` when
``x`` breaks it; hypothesis then shrinks ``x`` and the last ``Broken`` raised carries
the smallest counterexample. Steps run through the migration pipeline
(:func:`~statemigrate._model._migrate.run_plan`), as in a restore; it gives every step
call a private copy of its data, since steps may mutate their input.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, Protocol

from statemigrate._errors import ExportError, MigrationStepError, StateMigrateError
from statemigrate._model._migrate import run_plan
from statemigrate._model._paths import located_path
from statemigrate._model._plaindata import copy_plain, same_plain
from statemigrate._model._plan import Plan, Step
from statemigrate._model._registry import Registry
from statemigrate.testing._exact import cut, exact_differences
from statemigrate.testing._surrogates import holds_lone_surrogate
from statemigrate.testing._undeclared import declared_classes, holds_undeclared_model

__all__ = [
    "PROPERTIES",
    "Broken",
    "Nondeterministic",
    "Subject",
    "comparable_pairs",
    "simple_paths",
]

_MISSING = object()


class Subject(Protocol):
    """What a property reads of the check it runs for: a
    :class:`~statemigrate.testing.MigrationCheck` is one, and the properties need no more.
    """

    @property
    def component(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def target(self) -> int | None: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def steps(self) -> tuple[Step, ...]: ...

    @property
    def paths(self) -> tuple[tuple[Step, ...], ...]: ...


class Broken(Exception):
    """Raised inside a property: the example breaks it. Hypothesis shrinks on it.

    Attributes:
        what: the property that broke, one line.
        detail: how (the exception, or where the data differed).
        example: the generated input.
    """

    def __init__(self, what: str, detail: str, example: Any) -> None:
        super().__init__(what)
        self.what = what
        self.detail = detail
        self.example = example


class Nondeterministic(Broken):
    """Broken: a step gave two results for one input (the step is in :attr:`what`)."""


def _apply(registry: Registry, step: Step, data: Any, example: Any, role: str) -> Any:
    """Run ``step`` on a private copy of ``data``, twice, and return its result; any
    exception, or a second result that differs from the first, breaks the property.

    hypothesis seeds ``random`` alike for every call of a test, so a step that draws
    from it gives the same result on every run of an example, and hypothesis' own
    replay cannot tell. The second run starts from another state of ``random``; a step
    that reads the clock differs between the two runs too, now and then. Either way
    the step that differs is the one named, not the check's step around it.
    """
    refused = registry.refuses_none(step)
    result = _run(step, data, example, role, refused)
    state = random.getstate()
    random.seed(_OTHER_SEED)
    try:
        again = _run(step, data, example, role, refused)
    except Broken as exc:
        raise Nondeterministic(
            f"{step.name} is not deterministic: it raised on the same input the second time",
            f"{exc.detail}\n{_DETERMINISTIC}",
            example,
        ) from exc
    finally:
        random.setstate(state)
    if same_plain(result, again):  # at C speed: the common answer
        return result
    changed = _differences(registry, step.component, step.target, result, again)
    if changed:
        raise Nondeterministic(
            f"{step.name} is not deterministic: the same input gave different results",
            f"in step {step}, run twice on the same input:\n"
            + "\n".join(changed)
            + f"\n{_DETERMINISTIC}",
            example,
        )
    return result


_OTHER_SEED = 0x5EED
"""The seed of ``random`` for a step's second run: not hypothesis' (it seeds 0)."""

_DETERMINISTIC = (
    "steps must be deterministic: no clock, randomness, I/O or state kept between calls"
)


def _run(step: Step, data: Any, example: Any, role: str, none_refused: bool) -> Any:
    """Run ``step`` on a private copy of ``data``; any exception breaks the property.
    With ``none_refused``, a record step returning ``None`` for a record raises, as in
    a restore (see ``Plan.none_refused``)."""
    refused = frozenset({(step.source, step.target)}) if none_refused else frozenset()
    plan = Plan(step.component, step.source, step.target, (step,), none_refused=refused)
    try:
        result = run_plan(plan, data, schema=None, copy=True)
    except MigrationStepError as exc:
        if exc.path is not None and exc.__cause__ is None:
            # The pipeline's own rule, as a restore applies it. (A record step that
            # raised has a path too, the record's, and its exception as the cause.)
            raise Broken(
                f"{role} returned data that is not plain",
                f"in step {step}: {exc.detail}",
                example,
            ) from exc
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise Broken(
            f"{role} raised {type(cause).__name__}", f"in step {step}: {exc.detail}", example
        ) from exc
    return result.data


def _normalized(registry: Registry, step: Step, data: Any, version: int, example: Any) -> Any:
    """Validate ``data`` (the private output of a step) at ``version`` and return its
    plain form, or break."""
    schema = registry.schema_for(step.component, version)
    stay = Plan(step.component, version, version)  # no steps: validate and export only
    try:
        return run_plan(stay, data, schema=schema, copy=False).data
    except (StateMigrateError, TypeError) as exc:
        raise Broken(
            f"output of {step} does not fit version {version}",
            f"{exc}\noutput: {cut(data)}",
            example,
        ) from exc


def _step_property(check: Subject, x: Any) -> None:
    (step,) = check.steps
    registry = check.registry
    y = _normalized(registry, step, _apply(registry, step, x, x, "step"), step.target, x)
    if step.records is not None:
        _record_property(registry, step, x, y)
    reverse = _reverse(registry, step)
    if reverse is None:
        return
    back = _apply(registry, reverse, y, x, "reverse step")
    z = _normalized(registry, reverse, back, step.source, x)
    lost = step.lost_fields
    # A lossy step that names nothing it loses leaves nothing to compare.
    if lost or not step.lossy:
        changed = _differences(
            registry, step.component, step.source, _without(x, lost), _without(z, lost)
        )
        if changed:
            _round_trip_broken(registry, step, reverse, x, y, z, changed)
    if step.lossy:
        again = _normalized(registry, step, _apply(registry, step, z, x, "step"), step.target, x)
        changed = _differences(registry, step.component, step.target, y, again)
        if changed:
            raise Broken(
                f"{step.name}({reverse.name}({step.name}(x))) != {step.name}(x)",
                "losing twice lost more than losing once\n" + "\n".join(changed),
                x,
            )


def _round_trip_broken(
    registry: Registry, step: Step, reverse: Step, x: Any, y: Any, z: Any, changed: list[str]
) -> NoReturn:
    """Break on ``reverse(step(x)) == z`` differing from ``x`` (beyond the declared lost
    fields) as ``changed`` says, naming the step at fault when the data tells.

    ``step(z) == step(x)`` means ``step`` maps two values that differ beyond what it
    declares lost to the same data: it loses them, and no reverse could tell them
    apart. Otherwise ``reverse(y)`` is not data that ``step`` takes back to ``y``: the
    reverse does not undo the step, most likely by changing or dropping data itself,
    though a step that changes data the reverse cannot see coming is possible too.
    """
    back = f"{reverse.name}({step.name}(x))"
    lost = step.lost_fields
    if lost:
        went = f"{back} differs from x beyond the declared lost fields {', '.join(lost)}"
    else:
        went = f"{back} != x"
    try:
        again: Any = _apply(registry, step, z, x, "step")
        again = _normalized(registry, step, again, step.target, x)
    except Nondeterministic:
        raise
    except Broken:
        again = _MISSING  # the step refuses what the reverse gave: no telling
    if again is not _MISSING and not exact_differences(y, again):
        what = f"{went}: {step.name} loses data" + (
            " beyond what it declares" if lost else ", but is not declared lossy"
        )
        how = (
            f"x and {back} both go to the same data through {step.name}, so no reverse"
            f" step could tell them apart; declare the lost fields with lossy=(...) on"
            f" {step.name} or keep them"
        )
    elif again is _MISSING:
        what = f"{went}: either step may be at fault"
        how = f"{step.name} raised on or refused what {reverse.name} gave back"
    else:
        what = (
            f"{went}: most likely {reverse.name} changes or drops data"
            f" ({step.name}({reverse.name}(y)) != y too, for y = {step.name}(x))"
        )
        how = (
            f"{reverse.name}(y) is not data that {step.name} takes back to y, so"
            f" {reverse.name} does not undo {step.name}; fix {reverse.name} (or declare"
            f" what it loses with lossy=(...)), unless {step.name} changes data in a way"
            " no reverse step could undo"
        )
    raise Broken(what, f"{how}\n" + "\n".join(changed), x)


def _record_property(registry: Registry, step: Step, x: Any, y: Any) -> None:
    """A record step maps each record on its own: applied to some of the records (what
    a delta carries), it gives those records of its result on all of them."""
    field = step.records
    assert field is not None
    records = x.get(field) if isinstance(x, dict) else None
    if not isinstance(records, dict) or len(records) < 2:
        return
    part = {key: value for index, (key, value) in enumerate(records.items()) if index % 2}
    delta = _normalized(
        registry,
        step,
        _apply(registry, step, {**x, field: part}, x, "record step on some records"),
        step.target,
        x,
    )
    want = {key: y[field][key] for key in part}
    changed = _differences(
        registry, step.component, step.target, {field: want}, {field: delta[field]}
    )
    if changed:
        raise Broken(
            f"{step.name} on some of the records differs from those records of {step.name}(x)",
            "a record step must map each record on its own, since a delta carries only"
            " some of them\n" + "\n".join(changed),
            x,
        )


def _paths_property(check: Subject, x: Any) -> None:
    registry = check.registry
    outcomes: list[tuple[tuple[Step, ...], Any]] = []
    for path in check.paths:
        data = x
        for step in path:
            # Validated after every step, so an invalid intermediate names its step.
            data = _apply(registry, step, data, x, f"path {path_text(check.version, path)}")
            data = _normalized(registry, step, data, step.target, x)
        outcomes.append((path, data))
    for (first, one), (second, other) in _pairs(outcomes):
        lost = _lost(first) + _lost(second)
        changed = _differences(
            registry, check.component, first[-1].target, _without(one, lost), _without(other, lost)
        )
        if changed:
            ignoring = f" (ignoring {', '.join(lost)})" if lost else ""
            raise Broken(
                f"paths disagree: {path_text(check.version, first)} and"
                f" {path_text(check.version, second)}",
                f"the two paths give different data at version {check.target}{ignoring}\n"
                + "\n".join(changed),
                x,
            )


def _snapshot_property(check: Subject, state: Any) -> str | None:
    # The check's own services restore into blank components (whose state has no
    # export, so their rollback cannot be checked) and restore failing examples: what
    # they would log is the check's business, reported in its result.
    with _unlogged():
        return _snapshot_round_trip(check, state)


@contextlib.contextmanager
def _unlogged() -> Iterator[None]:
    """The library's own log lines left out, for the check's services."""
    logger = logging.getLogger("statemigrate")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _snapshot_round_trip(check: Subject, state: Any) -> str | None:
    # Imported here: the service pulls in the codec and the stores, which the step and
    # path checks do not need.
    from statemigrate._runtime._service import Service
    from statemigrate.stores import MemoryStore

    registry, component, version = check.registry, check.component, check.version
    schema = registry.schema_for(component, version)
    name = f"check-{component}"
    holder = _holder_class(registry, component, version)
    writer = Service(name, registry=registry)
    reader_obj = holder(None)
    reader = Service(name, registry=registry)
    reader.register(reader_obj)
    writer.register(holder(state))
    try:
        ref = writer.commit(MemoryStore(name=name))
    except StateMigrateError as exc:
        # A lone surrogate, or an instance of a model subclass the schema does not
        # declare, refuses a state whatever its schema; what a check of the schema's
        # met first is no evidence against the schema.
        if (
            isinstance(exc, ExportError)
            and exc.by_validation
            and not holds_lone_surrogate(state)
            and not holds_undeclared_model(state, declared_classes(schema.adapter.core_schema))
        ):
            # The state was drawn through validation, so validation itself does not
            # give it back: no state of this kind could ever be snapshotted.
            raise Broken(
                f"snapshot refuses a valid state of version {version}: validated back, it"
                " does not come back as it is",
                f"{type(exc).__name__}: {exc}\nthe schema's validation changes or refuses"
                " what it made (a validator that is not idempotent, a union that"
                " resolves to another member, a private attribute or model_post_init);"
                " make validating a valid state give it back unchanged",
                state,
            ) from exc
        # Refusing a state early, with an error that says where, keeps the promise:
        # nothing was committed that could not be restored.
        unclear = _unclear_refusal(str(exc), component, version)
        if unclear:
            raise Broken(
                f"snapshot refused a state of version {version} without saying where",
                f"{type(exc).__name__}: {exc}\n{unclear}",
                state,
            ) from exc
        return str(exc)
    except Exception as exc:
        raise Broken(
            f"snapshot of a valid state of version {version} raised {type(exc).__name__}",
            f"{type(exc).__name__}: {exc}\na state the schema accepts must be committed, or"
            f" refused with a StateMigrateError naming {component!r} and version {version}",
            state,
        ) from exc
    try:
        reader.restore(ref)
    except StateMigrateError as exc:
        raise Broken(
            f"a committed snapshot of version {version} cannot be restored",
            f"{type(exc).__name__}: {exc}",
            state,
        ) from exc
    changed = _differences(registry, component, version, state, reader_obj.state)
    if changed:
        raise Broken(
            f"restore(commit(x)) != x at version {version}",
            "the restored state differs in value or type\n" + "\n".join(changed),
            state,
        )
    latest = registry.latest(component)
    if latest.version == version:
        return None
    x = schema.export(state, walk=True)
    newer_obj = _holder_class(registry, component, latest.version)(None)
    newer = Service(name, registry=registry)
    newer.register(newer_obj)
    plan = registry.plan(component, version, latest.version, allow_lossy=True)
    try:
        newer.restore(ref, allow_lossy=True)
        migrated = latest.export(newer_obj.state, walk=True)
        expected = registry.migrate(component, x, version, latest.version, allow_lossy=True).data
    except Exception as exc:
        raise Broken(
            f"restoring version {version} into code at version {latest.version} failed"
            f" (plan {plan})",
            f"{type(exc).__name__}: {exc}",
            state,
        ) from exc
    changed = _differences(registry, component, latest.version, expected, migrated)
    if changed:
        raise Broken(
            f"restore into version {latest.version} differs from {plan}",
            "\n".join(changed),
            state,
        )
    return None


def _unclear_refusal(message: str, component: str, version: int) -> str:
    """What a refusal's message lacks: one line naming the component and the version."""
    lacking = []
    if "\n" in message.strip():
        lacking.append("it spans several lines")
    if component not in message:
        lacking.append(f"it does not name the component {component!r}")
    if not re.search(rf"\b(?:version\s*[=:]?\s*|v){version}\b", message):
        lacking.append(f"it does not name version {version}")
    return "; ".join(lacking)


PROPERTIES: dict[str, Callable[[Subject, Any], str | None]] = {
    "step": _step_property,
    "paths": _paths_property,
    "snapshot": _snapshot_property,
}
"""The property of each check kind. One returns a note when the example was refused
early instead of checked (a snapshot that refused the state)."""


class _Holder:
    """A component that holds whatever state it is given (no behaviour of its own)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def export_state(self) -> Any:
        return self.state

    def import_state(self, state: Any) -> None:
        self.state = state


def _holder_class(registry: Registry, component: str, version: int) -> type[_Holder]:
    cls = type(f"Holder{version}", (_Holder,), {"__module__": __name__})
    return registry.migratable(component, version=version)(cls)


# --- helpers -----------------------------------------------------------------------------


def _differences(
    registry: Registry, component: str, version: int, expected: Any, actual: Any
) -> list[str]:
    """:func:`exact_differences` of two values of ``version``, with paths in the form
    error messages use (``entries['k'].hits``): the schema tells a plain dict's fields
    from its keys."""
    core_schema = registry.schema_for(component, version).adapter.core_schema
    return exact_differences(
        expected, actual, path_of=lambda steps: located_path(core_schema, steps, labelled=False)
    )


def _reverse(registry: Registry, step: Step) -> Step | None:
    for other in registry.steps(step.component):
        if other.source == step.target and other.target == step.source:
            return other
    return None


def _lost(path: Sequence[Step]) -> tuple[str, ...]:
    return tuple(name for step in path for name in step.lost_fields)


def _comparable(path: Sequence[Step]) -> bool:
    """A path can be compared when each of its lossy steps names what it loses."""
    return all(step.lost_fields or not step.lossy for step in path)


def comparable_pairs(paths: Sequence[tuple[Step, ...]]) -> bool:
    """Tell whether at least two of ``paths`` can be compared with each other."""
    return len([path for path in paths if _comparable(path)]) > 1


def _pairs(outcomes: list[tuple[tuple[Step, ...], Any]]) -> Iterator[tuple[Any, Any]]:
    usable = [item for item in outcomes if _comparable(item[0])]
    for other in usable[1:]:
        yield usable[0], other


def path_text(source: int, path: Sequence[Step]) -> str:
    """``1 -> 2 -> 3 (add_ttl, add_hits)``."""
    versions = " -> ".join(str(v) for v in (source, *(s.target for s in path)))
    return f"{versions} ({', '.join(step.name for step in path)})"


def simple_paths(
    steps: Iterable[Step], source: int, target: int, *, limit: int
) -> list[tuple[Step, ...]]:
    """Up to ``limit`` paths from ``source`` to ``target`` without repeated versions,
    shortest first (ties in the order of their versions)."""
    graph: dict[int, list[Step]] = {}
    for step in steps:
        graph.setdefault(step.source, []).append(step)
    found: list[tuple[Step, ...]] = []

    def walk(here: int, seen: frozenset[int], path: tuple[Step, ...]) -> None:
        if here == target:
            found.append(path)
            return
        for step in sorted(graph.get(here, ()), key=lambda s: s.target):
            if step.target not in seen:
                walk(step.target, seen | {step.target}, (*path, step))

    walk(source, frozenset({source}), ())
    found.sort(key=lambda path: (len(path), [step.target for step in path]))
    return found[:limit]


def _without(data: Any, paths: Iterable[str]) -> Any:
    """A copy of ``data`` without the fields at ``paths`` (dotted; ``*`` = any key/item).

    A path ending in ``*`` names every entry of the dicts (or item of the lists) it
    reaches, so it empties them: entries the step removed, added or changed are all
    declared lost. Read as a key named ``*``, it would name nothing, and a step that
    declares exactly the entries it drops would fail for losing them.
    """
    result = copy_plain(data)
    for path in paths:
        parts = path.split(".")
        level = [result]
        for part in parts[:-1]:
            level = [child for node in level for child in _children(node, part)]
        for node in level:
            if parts[-1] == "*" and isinstance(node, dict | list):
                node.clear()
            elif isinstance(node, dict):
                node.pop(parts[-1], None)
    return result


def _children(node: Any, part: str) -> list[Any]:
    if part == "*":
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if isinstance(node, dict) and part in node:
        return [node[part]]
    return []
