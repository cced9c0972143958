"""The schema lock: frozen JSON Schemas of every released version, and the checks on them.

A released schema version must never change shape: snapshots written with it exist and
must stay readable. The lock makes that visible in review. ``freeze_schemas`` writes the
canonical JSON Schema of every registered version to ``<schemas>/<component>/v<N>.json``;
``check_schemas`` compares the registry with those files and with its own migration
graph, and reports, in a form that fits a pull-request comment:

- a registered version whose schema differs from its frozen file (changed without a
  version bump), with a unified diff;
- a registered version that has no frozen file yet;
- a frozen version that is no longer registered, or that the current (newest) version
  cannot reach by downgrade steps or be reached from by upgrade steps;
- a version that is a dead end of the migration graph, or a step that leads to a
  version without a schema;
- the same step (component, source, target) declared in two places of the migrations
  directory, found by reading the modules' source without running them.

The graph checks are pure functions over steps (:func:`graph_problems`); only freezing,
reading frozen files and scanning the migrations directory touch the file system.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from statemigrate._errors import RegistrationError
from statemigrate._plan import Step, reachable
from statemigrate._registry import Registry
from statemigrate._schema import SchemaVersion, canonical_json_schema, fingerprint_of

__all__ = [
    "DeclaredStep",
    "FreezeResult",
    "LockProblem",
    "LockReport",
    "ProblemKind",
    "check_schemas",
    "duplicate_problems",
    "freeze_schemas",
    "frozen_path",
    "frozen_versions",
    "graph_problems",
    "load_failure_report",
    "read_frozen",
    "scan_migrations",
    "schema_text",
]

ProblemKind = Literal[
    "changed",  # a registered version differs from its frozen file
    "missing_frozen",  # a registered version has no frozen file
    "not_registered",  # a frozen version has no registered schema any more
    "unreachable",  # the current version and a frozen one are not connected both ways
    "dead_end",  # a version that no step leads out of
    "dangling_step",  # a step from or to a version without a schema
    "duplicate_step",  # one step declared twice in the migrations directory
    "unreadable",  # a frozen file that is not JSON
    "load_failed",  # the registry itself could not be built
]

# Headlines, in the order problems are listed for one component.
_HEADLINES: dict[str, str] = {
    "load_failed": "Registry failed to load",
    "duplicate_step": "Duplicate step",
    "changed": "Changed without a version bump",
    "unreadable": "Unreadable frozen file",
    "missing_frozen": "Missing frozen file",
    "not_registered": "Frozen version no longer registered",
    "unreachable": "Unreachable version",
    "dead_end": "Dead end",
    "dangling_step": "Step to an unknown version",
}

_FROZEN_NAME = re.compile(r"v([1-9][0-9]{0,9})\.json")


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
class LockReport:
    """The outcome of :func:`check_schemas`.

    Attributes:
        schemas_dir: the directory of frozen schemas that was checked.
        components: the components checked, sorted.
        versions: how many registered schema versions were compared.
        steps: how many migration steps the graph checks looked at.
        problems: everything found, grouped by component.
    """

    schemas_dir: Path
    components: tuple[str, ...] = ()
    versions: int = 0
    steps: int = 0
    problems: tuple[LockProblem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.problems

    def to_markdown(self) -> str:
        """Render the report as markdown, short enough for a pull-request comment."""
        count = len(self.problems)
        status = "passed" if self.ok else f"{count} problem{'s' if count != 1 else ''}"
        lines = [f"### statemigrate schemas check: {status}", ""]
        names = ", ".join(f"`{name}`" for name in self.components) or "no components"
        lines.append(
            f"Checked {names}: {self.versions} registered version(s) against"
            f" `{_shown(self.schemas_dir)}`, {self.steps} migration step(s)."
        )
        groups: dict[str, list[LockProblem]] = {}
        for problem in self.problems:
            groups.setdefault(problem.component, []).append(problem)
        for component in sorted(groups):
            lines += ["", f"**{component}**" if component else "**registry**", ""]
            for number, problem in enumerate(groups[component], 1):
                where = f" (v{problem.version})" if problem.version is not None else ""
                lines.append(f"{number}. **{_HEADLINES[problem.kind]}**{where}: {problem.message}")
                if problem.diff:
                    lines += ["", "   ```diff"]
                    lines += [f"   {line}".rstrip() for line in problem.diff.splitlines()]
                    lines += ["   ```"]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


@dataclass(frozen=True)
class FreezeResult:
    """What :func:`freeze_schemas` did for one schema version.

    Attributes:
        component: the component.
        version: the schema version.
        path: the frozen file.
        action: ``"written"`` (new file), ``"unchanged"`` (already frozen, same schema)
            or ``"overwritten"`` (differed; only with ``force=True``).
    """

    component: str
    version: int
    path: Path
    action: Literal["written", "unchanged", "overwritten"]


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


# --- frozen files ----------------------------------------------------------------------


def frozen_path(schemas_dir: str | os.PathLike[str], component: str, version: int) -> Path:
    """Return where version ``version`` of ``component`` is frozen."""
    return Path(schemas_dir) / component / f"v{version}.json"


def schema_text(schema: SchemaVersion | dict[str, Any]) -> str:
    """Return the text of a frozen file: canonical JSON Schema, sorted, indented.

    The same schema gives the same text in every process, so frozen files only change
    in a diff when the schema does.
    """
    document = schema.json_schema() if isinstance(schema, SchemaVersion) else schema
    canonical = canonical_json_schema(document)
    return json.dumps(canonical, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def frozen_versions(schemas_dir: str | os.PathLike[str], component: str) -> dict[int, Path]:
    """Return the frozen files of ``component`` by version (empty if there are none)."""
    folder = Path(schemas_dir) / component
    if not folder.is_dir():
        return {}
    found: dict[int, Path] = {}
    for entry in folder.iterdir():
        match = _FROZEN_NAME.fullmatch(entry.name)
        if match and entry.is_file():
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


def read_frozen(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a frozen file and return its canonical JSON Schema.

    Raises:
        RegistrationError: the file cannot be read or is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistrationError(f"frozen schema {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise RegistrationError(f"frozen schema {str(path)!r} is not a JSON object")
    return canonical_json_schema(document)


def _frozen_components(schemas_dir: Path) -> list[str]:
    if not schemas_dir.is_dir():
        return []
    return sorted(entry.name for entry in schemas_dir.iterdir() if entry.is_dir())


def _write_text(path: Path, text: str) -> None:
    # Through a temporary file and a rename, so an interrupted freeze leaves either the
    # old file or the new one, never half a schema that the next check misreads.
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def freeze_schemas(
    registry: Registry,
    schemas_dir: str | os.PathLike[str],
    *,
    components: Iterable[str] | None = None,
    force: bool = False,
) -> list[FreezeResult]:
    """Write the frozen file of every registered schema version that lacks one.

    Files that already hold the same schema are left alone. A file that holds a
    *different* schema is a released version that changed shape: freezing refuses
    (and writes nothing at all) unless ``force`` is given, because overwriting it would
    hide exactly what the lock exists to show.

    Args:
        registry: where the schema versions are registered.
        schemas_dir: the directory of frozen schemas (created if missing).
        components: only these components (default: every one with a schema).
        force: overwrite frozen files whose schema differs.

    Returns:
        One result per registered version, by component then version.

    Raises:
        RegistrationError: a frozen file differs and ``force`` is false, or a frozen
            file cannot be read; a component named in ``components`` has no schema.
        OSError: a file could not be written.
    """
    folder = Path(schemas_dir)
    names = _component_names(registry, components)
    planned: list[tuple[FreezeResult, str]] = []
    conflicts: list[str] = []
    for name in names:
        for version in registry.versions(name):
            schema = registry.schema_for(name, version)
            path = frozen_path(folder, name, version)
            text = schema_text(schema)
            if not path.exists():
                planned.append((FreezeResult(name, version, path, "written"), text))
            elif read_frozen(path) == json.loads(text):
                planned.append((FreezeResult(name, version, path, "unchanged"), text))
            else:
                conflicts.append(f"{name} v{version} ({_shown(path)})")
                planned.append((FreezeResult(name, version, path, "overwritten"), text))
    if conflicts and not force:
        raise RegistrationError(
            f"registered schema differs from its frozen file: {', '.join(conflicts)};"
            " a released version must keep its shape: register the new shape as a new"
            " version (statemigrate makemigration), or pass --force to overwrite"
        )
    for result, text in planned:
        if result.action != "unchanged":
            _write_text(result.path, text)
    return [result for result, _ in planned]


def _component_names(registry: Registry, components: Iterable[str] | None) -> list[str]:
    if components is None:
        return [name for name in registry.components() if registry.versions(name)]
    names = sorted(set(components))
    for name in names:
        registry.latest(name)  # UnknownComponentError when it has no schema
    return names


# --- the migrations directory, read without running it ----------------------------------


def scan_migrations(directory: str | os.PathLike[str]) -> list[DeclaredStep]:
    """Find the steps that the migrations modules in ``directory`` declare.

    Reads the same files :meth:`~statemigrate.Registry.load_migrations` imports (``*.py``
    directly in the directory, not starting with ``_``) and parses them, without running
    anything, for ``@migration(component, source, target)`` decorators (under any
    prefix, e.g. ``sm.migration``) and ``add_migration(component, source, target, ...)``
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
    if (
        isinstance(component, str)
        and type(source) is int
        and type(target) is int
    ):
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
    for step in steps:
        for end, role in ((step.source, "starts at"), (step.target, "leads to")):
            if end not in known:
                problems.append(
                    LockProblem(
                        "dangling_step",
                        component,
                        f"step `{step}` {role} version {end}, which has no registered"
                        " schema",
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


# --- the whole check --------------------------------------------------------------------


def check_schemas(
    registry: Registry,
    schemas_dir: str | os.PathLike[str],
    *,
    components: Iterable[str] | None = None,
    migrations: str | os.PathLike[str] | None = None,
) -> LockReport:
    """Compare the registry with the frozen schemas and check its migration graph.

    Args:
        registry: the registry as the service's code builds it.
        schemas_dir: the directory of frozen schemas.
        components: only these components (default: every registered or frozen one).
        migrations: a migrations directory to scan for steps declared twice.

    Returns:
        A report; ``report.ok`` is true when nothing was found.

    Raises:
        UnknownComponentError: a component named in ``components`` is neither
            registered nor frozen.
    """
    folder = Path(schemas_dir)
    registered = [name for name in registry.components() if registry.versions(name)]
    if components is None:
        names = sorted(set(registered) | set(_frozen_components(folder)))
    else:
        names = sorted(set(components))
        for name in names:
            if name not in registered and not frozen_versions(folder, name):
                registry.versions(name)  # raises UnknownComponentError for a stranger
    problems: list[LockProblem] = []
    if migrations is not None:
        problems += [
            problem
            for problem in duplicate_problems(scan_migrations(migrations))
            if problem.component in names
        ]
    compared = 0
    step_count = 0
    for name in names:
        versions = registry.versions(name) if name in registry.components() else []
        steps = registry.steps(name) if name in registry.components() else []
        step_count += len(steps)
        files = frozen_versions(folder, name)
        for version in versions:
            compared += 1
            problem = _compare(registry.schema_for(name, version), files.get(version), folder)
            if problem is not None:
                problems.append(problem)
        problems += graph_problems(name, versions, steps, frozen=files)
    order = list(_HEADLINES)
    problems.sort(key=lambda p: (p.component, order.index(p.kind), p.version or 0))
    return LockReport(folder, tuple(names), compared, step_count, tuple(problems))


def _compare(schema: SchemaVersion, path: Path | None, folder: Path) -> LockProblem | None:
    name, version = schema.component, schema.version
    if path is None:
        return LockProblem(
            "missing_frozen",
            name,
            f"`{_shown(frozen_path(folder, name, version))}` does not exist; run"
            " `statemigrate schemas freeze` and commit the file",
            version=version,
        )
    try:
        frozen = read_frozen(path)
    except RegistrationError as exc:
        return LockProblem("unreadable", name, str(exc), version=version)
    live = schema.json_schema()
    if frozen == live:
        return None
    frozen_text, live_text = schema_text(frozen), schema_text(live)
    diff = "".join(
        difflib.unified_diff(
            frozen_text.splitlines(keepends=True),
            live_text.splitlines(keepends=True),
            fromfile=f"{_shown(path)} (frozen)",
            tofile=f"{name} v{version} (registered)",
        )
    )
    return LockProblem(
        "changed",
        name,
        f"the registered schema no longer matches `{_shown(path)}` (frozen"
        f" `{fingerprint_of(frozen)[:12]}`, registered `{schema.fingerprint[:12]}`); keep"
        f" version {version} as it was and register the new shape as version"
        f" {version + 1} (`statemigrate makemigration {name}` writes its steps)",
        version=version,
        diff=diff,
    )


def load_failure_report(
    schemas_dir: str | os.PathLike[str],
    error: Exception,
    *,
    migrations: str | os.PathLike[str] | None = None,
) -> LockReport:
    """The report when the registry itself cannot be built (e.g. a step declared twice).

    The migrations directory is still scanned, so a duplicate step is named with both
    of its places rather than only the second one that failed to register.
    """
    problems = list(duplicate_problems(scan_migrations(migrations))) if migrations else []
    problems.append(LockProblem("load_failed", "", str(error)))
    return LockReport(Path(schemas_dir), problems=tuple(problems))


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

