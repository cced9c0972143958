"""The properties that :mod:`statemigrate.testing._checks` runs, and their helpers.

Each property takes a check and one generated example ``x`` (plain data of the check's
version) and raises :class:`Broken` when ``x`` breaks it; hypothesis then shrinks ``x``
and the last ``Broken`` raised carries the smallest counterexample. Steps may mutate
their input, so every step call gets a private copy of its data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from statemigrate._errors import StateMigrateError
from statemigrate._plaindata import copy_plain, is_plain, to_plain
from statemigrate._plan import Step
from statemigrate._registry import Registry

if TYPE_CHECKING:
    from statemigrate.testing._checks import MigrationCheck

__all__ = ["PROPERTIES", "Broken", "comparable_pairs", "simple_paths"]


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


def _apply(step: Step, data: Any, example: Any, role: str) -> Any:
    """Run ``step`` on a private copy of ``data``; any exception breaks the property."""
    try:
        result = step.apply(copy_plain(data))
    except Exception as exc:
        raise Broken(
            f"{role} raised {type(exc).__name__}",
            f"in step {step}: {type(exc).__name__}: {exc}",
            example,
        ) from exc
    if not is_plain(result):
        raise Broken(
            f"{role} returned data that is not plain",
            f"step {step} must return dicts with str keys, lists, str, bytes, 64-bit"
            f" ints, floats, bools and None; got {_cut(result)}",
            example,
        )
    return result


def _normalized(registry: Registry, step: Step, data: Any, version: int, example: Any) -> Any:
    """Validate ``data`` at ``version`` and return its plain form, or break."""
    schema = registry.schema_for(step.component, version)
    try:
        return to_plain(schema.export(schema.validate(data)))
    except (StateMigrateError, TypeError) as exc:
        raise Broken(
            f"output of {step} does not fit version {version}",
            f"{exc}\noutput: {_cut(data)}",
            example,
        ) from exc


def _step_property(check: MigrationCheck, x: Any) -> None:
    (step,) = check.steps
    registry = check.registry
    y = _normalized(registry, step, _apply(step, x, x, "step"), step.target, x)
    reverse = _reverse(registry, step)
    if reverse is None:
        return
    z = _normalized(registry, reverse, _apply(reverse, y, x, "reverse step"), step.source, x)
    if not step.lossy:
        if z != x:
            raise Broken(
                f"{reverse.name}({step.name}(x)) != x, but {step.name} is not declared lossy",
                "going there and back changed the data; declare the lost fields with"
                " lossy=(...) or keep them\n" + _diff(x, z),
                x,
            )
    elif step.lost_fields and _without(z, step.lost_fields) != _without(x, step.lost_fields):
        raise Broken(
            f"{reverse.name}({step.name}(x)) differs from x beyond the declared lost"
            f" fields {', '.join(step.lost_fields)}",
            "the step loses more than it declares\n"
            + _diff(_without(x, step.lost_fields), _without(z, step.lost_fields)),
            x,
        )
    if step.lossy:
        again = _normalized(registry, step, _apply(step, z, x, "step"), step.target, x)
        if again != y:
            raise Broken(
                f"{step.name}({reverse.name}({step.name}(x))) != {step.name}(x)",
                "losing twice lost more than losing once\n" + _diff(y, again),
                x,
            )


def _paths_property(check: MigrationCheck, x: Any) -> None:
    registry = check.registry
    outcomes: list[tuple[tuple[Step, ...], Any]] = []
    for path in check.paths:
        data = x
        for step in path:
            # Validated after every step, so an invalid intermediate names its step.
            data = _apply(step, data, x, f"path {path_text(check.version, path)}")
            data = _normalized(registry, step, data, step.target, x)
        outcomes.append((path, data))
    for (first, one), (second, other) in _pairs(outcomes):
        lost = _lost(first) + _lost(second)
        if _without(one, lost) != _without(other, lost):
            ignoring = f" (ignoring {', '.join(lost)})" if lost else ""
            raise Broken(
                f"paths disagree: {path_text(check.version, first)} and"
                f" {path_text(check.version, second)}",
                f"the two paths give different data at version {check.target}{ignoring}\n"
                + _diff(_without(one, lost), _without(other, lost)),
                x,
            )


def _snapshot_property(check: MigrationCheck, x: Any) -> None:
    # Imported here: the service pulls in the codec and the stores, which the step and
    # path checks do not need.
    from statemigrate._service import Service
    from statemigrate.stores import MemoryStore

    registry, component, version = check.registry, check.component, check.version
    schema = registry.schema_for(component, version)
    name = f"check-{component}"
    holder = _holder_class(registry, component, version)
    writer = Service(name, registry=registry)
    reader_obj = holder(None)
    reader = Service(name, registry=registry)
    reader.register(reader_obj)
    try:
        # A schema whose export its own validation refuses (an alias without
        # populate_by_name, say) fails here: such a state could never be restored.
        writer.register(holder(schema.validate(copy_plain(x))))
        ref = writer.commit(MemoryStore(name=name))
        reader.restore(ref)
        restored = to_plain(schema.export(reader_obj.state))
    except (StateMigrateError, TypeError) as exc:
        raise Broken(
            f"a snapshot of version {version} did not round trip",
            f"{type(exc).__name__}: {exc}",
            x,
        ) from exc
    if restored != x:
        raise Broken(f"restore(commit(x)) != x at version {version}", _diff(x, restored), x)
    latest = registry.latest(component)
    if latest.version == version:
        return
    newer_obj = _holder_class(registry, component, latest.version)(None)
    newer = Service(name, registry=registry)
    newer.register(newer_obj)
    plan = registry.plan(component, version, latest.version, allow_lossy=True)
    try:
        newer.restore(ref, allow_lossy=True)
        migrated = to_plain(latest.export(newer_obj.state))
        expected = to_plain(latest.export(latest.validate(plan.apply(copy_plain(x)))))
    except Exception as exc:
        raise Broken(
            f"restoring version {version} into code at version {latest.version} failed"
            f" (plan {plan})",
            f"{type(exc).__name__}: {exc}",
            x,
        ) from exc
    if migrated != expected:
        raise Broken(
            f"restore into version {latest.version} differs from {plan}",
            _diff(expected, migrated),
            x,
        )


PROPERTIES: dict[str, Callable[[MigrationCheck, Any], None]] = {
    "step": _step_property,
    "paths": _paths_property,
    "snapshot": _snapshot_property,
}
"""The property of each check kind."""


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
    """A copy of ``data`` without the fields at ``paths`` (dotted; ``*`` = any key/item)."""
    result = copy_plain(data)
    for path in paths:
        parts = path.split(".")
        level = [result]
        for part in parts[:-1]:
            level = [child for node in level for child in _children(node, part)]
        for node in level:
            if isinstance(node, dict):
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


def _diff(expected: Any, actual: Any, *, limit: int = 5) -> str:
    """Name the first places where two plain values differ."""
    found: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys(), key=repr):
                here = f"{where}[{key!r}]"
                if key not in b:
                    found.append(f"{here}: expected {_cut(a[key])}, missing")
                elif key not in a:
                    found.append(f"{here}: unexpected {_cut(b[key])}")
                else:
                    walk(a[key], b[key], here)
            return
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (left, right) in enumerate(zip(a, b, strict=True)):
                walk(left, right, f"{where}[{index}]")
            return
        found.append(f"{where or '(top level)'}: expected {_cut(a)}, got {_cut(b)}")

    walk(expected, actual, "")
    return "\n".join(found)


def _cut(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."
