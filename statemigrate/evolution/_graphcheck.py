"""Checks of a component's migration graph, and the steps its migrations directory declares.

Two sources, two questions. :func:`graph_problems` takes the steps a registry holds and
asks whether the current version and every released one are joined both ways, and
whether any version is a dead end; it is a pure function, testable on literal graphs.
:func:`scan_migrations` reads the migrations modules *without running them* and lists the
steps they declare, so :func:`duplicate_problems` can name both places of a step
declared twice, the one mistake that stops a registry from loading at all.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from statemigrate._model._plan import Step, reachable

__all__ = [
    "DeclaredStep",
    "LockProblem",
    "ProblemKind",
    "duplicate_problems",
    "graph_problems",
    "scan_migrations",
]

ProblemKind = Literal[
    "changed",  # a registered version differs from its frozen file
    "unrecorded",  # a file frozen by an earlier release lacks the Python types it did not record
    "missing_frozen",  # a registered version has no frozen file
    "not_registered",  # a frozen version has no registered schema any more
    "unreachable",  # the current version and a frozen one are not connected both ways
    "dead_end",  # a version that no step leads out of
    "dangling_step",  # a step from or to a version without a schema
    "duplicate_step",  # one step declared twice in the migrations directory
    "unreadable",  # a frozen file that is not JSON
    "load_failed",  # the registry itself could not be built
]


@dataclass(frozen=True)
class LockProblem:
    """One thing ``check_schemas`` found wrong.

    Attributes:
        kind: what is wrong, one of :data:`ProblemKind`.
        component: the component concerned (empty when the whole registry is).
        message: one line of markdown saying what and how to fix it.
        version: the schema version concerned, when one is.
        diff: for ``changed``, a unified diff from the frozen to the registered schema.
    """

    kind: ProblemKind
    component: str
    message: str
    version: int | None = None
    diff: str = ""


@dataclass(frozen=True)
class DeclaredStep:
    """A migration step as written in a migrations module, found without running it.

    Attributes:
        component: the component named in the declaration.
        source: the version the step reads.
        target: the version it writes.
        name: the decorated function's name, or the function argument's text.
        file: the module that declares it.
        line: the line of the declaration.
    """

    component: str
    source: int
    target: int
    name: str
    file: Path
    line: int

    def __str__(self) -> str:
        return f"`{self.file.name}` line {self.line} ({self.name})"


# --- the migrations directory, read without running it ----------------------------------


def scan_migrations(directory: str | os.PathLike[str]) -> list[DeclaredStep]:
    """Find the steps that the migrations modules in ``directory`` declare.

    Reads the same files :meth:`~statemigrate.Registry.load_migrations` imports (``*.py``
    directly in the directory, not starting with ``_``) and parses them, without running
    anything, for ``@migration(component, source, target)`` decorators (under any
    prefix, e.g. ``sm.migration``), the same decorator called on a step that is not a
    function (``migration(...)(FieldChanges(...))``) and
    ``add_migration(component, source, target, ...)``
    calls whose first three arguments are literals. Declarations computed at run time
    are not seen. Files that do not parse are skipped: loading them reports the error.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found: list[DeclaredStep] = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".py" or path.name.startswith("_") or not path.is_file():
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        found.extend(_declared_in(tree, path))
    return found


def _declared_in(tree: ast.AST, path: Path) -> Iterable[DeclaredStep]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and _called_name(decorator) == "migration":
                    edge = _literal_edge(decorator)
                    if edge is not None:
                        yield DeclaredStep(*edge, node.name, path, decorator.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Call)
            and _called_name(node.func) == "migration"
        ):  # the decorator called on a step that is not a def: migration(...)(FieldChanges(...))
            edge = _literal_edge(node.func)
            if edge is not None:
                name = ast.unparse(node.args[0]) if node.args else "step"
                yield DeclaredStep(*edge, name, path, node.lineno)
        elif isinstance(node, ast.Call) and _called_name(node) == "add_migration":
            edge = _literal_edge(node)
            if edge is not None:
                func = node.args[3] if len(node.args) > 3 else None
                name = ast.unparse(func) if func is not None else "step"
                yield DeclaredStep(*edge, name, path, node.lineno)


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _literal_edge(call: ast.Call) -> tuple[str, int, int] | None:
    values: list[object] = []
    for arg in call.args[:3]:
        values.append(arg.value if isinstance(arg, ast.Constant) else None)
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
    for index, name in enumerate(("component", "source", "target")):
        if index >= len(values) and name in keywords:
            value = keywords[name]
            values.append(value.value if isinstance(value, ast.Constant) else None)
    if len(values) != 3:
        return None
    component, source, target = values
    if isinstance(component, str) and type(source) is int and type(target) is int:
        return component, source, target
    return None


def duplicate_problems(declared: Sequence[DeclaredStep]) -> list[LockProblem]:
    """Report every (component, source, target) declared more than once."""
    by_edge: dict[tuple[str, int, int], list[DeclaredStep]] = {}
    for step in declared:
        by_edge.setdefault((step.component, step.source, step.target), []).append(step)
    problems = []
    for (component, source, target), places in sorted(by_edge.items()):
        if len(places) > 1:
            where = " and ".join(str(place) for place in places)
            problems.append(
                LockProblem(
                    "duplicate_step",
                    component,
                    f"step {source} -> {target} is declared in {where}; keep one (two"
                    " branches that each added a migration from the same version must"
                    " be merged into one chain)",
                )
            )
    return problems


# --- the graph, as a pure function -------------------------------------------------------


def graph_problems(
    component: str,
    versions: Iterable[int],
    steps: Iterable[Step],
    *,
    frozen: Iterable[int] = (),
) -> list[LockProblem]:
    """Check the migration graph of one component against its versions.

    The *current* version is the highest registered one. Reported:

    - steps from or to a version without a schema;
    - dead ends: versions (or step targets) that no step leads out of, when the
      component has more than one version;
    - every registered or frozen version that the current one cannot reach through
      downgrade steps, or that cannot reach the current one through upgrade steps
      (any chain of steps counts, lossy ones included);
    - frozen versions that are no longer registered.

    Pure: no registry and no I/O, so literal graphs can be tested directly.
    """
    registered = sorted(set(versions))
    frozen_set = set(frozen)
    steps = [step for step in steps if step.component == component]
    problems: list[LockProblem] = []
    known = set(registered)
    # No schema at all under the steps' component: most often a misspelt name in a
    # migrations module, which the message suggests.
    why = (
        "which has no registered schema"
        if registered or frozen_set
        else f"and no schema of {component!r} is registered at all (a misspelt component?)"
    )
    for step in steps:
        for end, role in ((step.source, "starts at"), (step.target, "leads to")):
            if end not in known:
                problems.append(
                    LockProblem(
                        "dangling_step", component, f"step `{step}` {role} version {end}, {why}",
                        version=end,
                    )
                )
    nodes = known | {step.target for step in steps}
    leaving = {step.source for step in steps}
    if len(nodes) > 1:
        for node in sorted(nodes - leaving):
            entering = sorted(step.source for step in steps if step.target == node)
            how = (
                f"steps lead into it (from {', '.join(map(str, entering))}) but none leads out"
                if entering
                else "no step leads into it or out of it"
            )
            problems.append(
                LockProblem(
                    "dead_end",
                    component,
                    f"{how}; add a step from version {node} to a neighbour",
                    version=node,
                )
            )
    if not registered:
        for version in sorted(frozen_set):
            problems.append(_not_registered(component, version))
        return problems
    current = registered[-1]
    down = reachable(steps, current)
    for version in sorted(known | frozen_set):
        if version == current:
            continue
        if version not in known:
            problems.append(_not_registered(component, version))
            continue
        if current not in reachable(steps, version):
            problems.append(
                LockProblem(
                    "unreachable",
                    component,
                    f"no chain of steps upgrades version {version} to the current"
                    f" version {current}; add an upgrade step",
                    version=version,
                )
            )
        if version not in down:
            problems.append(
                LockProblem(
                    "unreachable",
                    component,
                    f"no chain of steps downgrades the current version {current} to"
                    f" version {version}, so a rollback to it would fail; add a downgrade"
                    " step",
                    version=version,
                )
            )
    return problems


def _not_registered(component: str, version: int) -> LockProblem:
    return LockProblem(
        "not_registered",
        component,
        f"version {version} is frozen but has no registered schema, so snapshots written"
        " with it can no longer be restored; register it again (a released version"
        " stays registered)",
        version=version,
    )
