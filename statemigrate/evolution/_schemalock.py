"""The schema lock: frozen JSON Schemas of every released version, and the checks on them.

A released schema version must never change shape: snapshots written with it exist and
must stay readable. The lock makes that visible in review. ``freeze_schemas`` writes the
canonical JSON Schema of every registered version to ``<schemas>/<component>/v<N>.json``;
``check_schemas`` compares the registry with those files and with its own migration
graph, and reports, in a form that fits a pull-request comment:

- a registered version whose schema differs from its frozen file (changed without a
  version bump), with a unified diff;
- a frozen file written by an earlier release, which did not record the Python types
  pydantic's JSON Schema leaves out (dict key types, ...), of a schema that is otherwise
  unchanged: ``freeze_schemas`` records them without ``force``;
- a registered version that has no frozen file yet;
- a frozen version that is no longer registered, or that the current (newest) version
  cannot reach by downgrade steps or be reached from by upgrade steps;
- a version that is a dead end of the migration graph, or a step that leads to a
  version without a schema;
- the same step (component, source, target) declared in two places of the migrations
  directory, found by reading the modules' source without running them.

The graph rules and the reading of the migrations directory live in
:mod:`statemigrate.evolution._graphcheck`; this module owns the frozen files and the report.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from statemigrate._errors import RegistrationError
from statemigrate._model._fingerprint import canonical_json_schema, fingerprint_of
from statemigrate._model._jsonschema import DETAIL_KEYWORDS, detail_changes, unrecorded_details
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.evolution._graphcheck import (
    DeclaredStep,
    LockProblem,
    ProblemKind,
    duplicate_problems,
    graph_problems,
    scan_migrations,
)

__all__ = [
    "LOCK_FORMAT",
    "DeclaredStep",
    "FreezeResult",
    "LockProblem",
    "LockReport",
    "ProblemKind",
    "check_schemas",
    "duplicate_problems",
    "freeze_schemas",
    "frozen_path",
    "frozen_text",
    "frozen_versions",
    "graph_problems",
    "load_failure_report",
    "names_fields",
    "read_frozen",
    "read_frozen_recorded",
    "records_details",
    "scan_migrations",
    "schema_text",
    "shown",
]

# Headlines, in the order problems are listed for one component.
_HEADLINES: dict[str, str] = {
    "load_failed": "Registry failed to load",
    "duplicate_step": "Duplicate step",
    "changed": "Changed without a version bump",
    "unrecorded": "Frozen by an earlier release",
    "unreadable": "Unreadable frozen file",
    "missing_frozen": "Missing frozen file",
    "not_registered": "Frozen version no longer registered",
    "unreachable": "Unreachable version",
    "dead_end": "Dead end",
    "dangling_step": "Step to an unknown version",
}

_FROZEN_NAME = re.compile(r"v([1-9][0-9]{0,9})\.json")

LOCK_FORMAT = "x-statemigrate-lock"
"""The key, at the root of a frozen file, of the lock's format: 2 for files that record
the Python types pydantic's JSON Schema leaves out (dict key types, ...); 3 for files
that name fields by their Python names where they have aliases (earlier formats hold
the aliases). A file without it was frozen by a release that did not record those
types, or holds none of them (JSON Schema's own types only); no file frozen since this
key exists lacks it."""
_LOCK_FORMAT_VERSION = 3
_NAMES_FORMAT = 3
"""The first lock format whose files name fields by their Python names."""
_ALIASES_NOTE = (
    "field names in place of their aliases (a field renamed under the same alias"
    " cannot be told from the old file: check that none was)"
)


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
            f" `{shown(self.schemas_dir)}`, {self.steps} migration step(s)."
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
        action: ``"written"`` (new file), ``"unchanged"`` (already frozen, same schema),
            ``"recorded"`` (frozen by an earlier release, the same schema but for the
            Python types that release did not record: written again with them and the
            lock's format) or ``"overwritten"`` (differed; only with ``force=True``).
        recorded: for ``"recorded"``, what was added, one line per place
            (``field `by_id`: dict keys int``).
    """

    component: str
    version: int
    path: Path
    action: Literal["written", "unchanged", "recorded", "overwritten"]
    recorded: tuple[str, ...] = ()


# --- frozen files ----------------------------------------------------------------------


def frozen_path(schemas_dir: str | os.PathLike[str], component: str, version: int) -> Path:
    """Return where version ``version`` of ``component`` is frozen."""
    return Path(schemas_dir) / component / f"v{version}.json"


def schema_text(schema: SchemaVersion | dict[str, Any]) -> str:
    """Return the text of a schema as a frozen file shows it: canonical JSON Schema,
    sorted, indented (without :data:`LOCK_FORMAT`, which :func:`freeze_schemas` adds).

    The same schema gives the same text in every process, so frozen files only change
    in a diff when the schema does.
    """
    document = schema.json_schema() if isinstance(schema, SchemaVersion) else schema
    canonical = canonical_json_schema(document)
    return json.dumps(canonical, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def frozen_text(schema: SchemaVersion) -> str:
    """Return the text of a frozen file, as :func:`freeze_schemas` writes it: the
    :func:`schema_text` of ``schema``, with :data:`LOCK_FORMAT` at its root."""
    document = {**canonical_json_schema(schema.json_schema()), LOCK_FORMAT: _LOCK_FORMAT_VERSION}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


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
    """Read a frozen file and return its canonical JSON Schema (without
    :data:`LOCK_FORMAT`).

    Raises:
        RegistrationError: the file cannot be read or is not a JSON object.
    """
    return _read_frozen_file(path)[0]


def read_frozen_recorded(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bool]:
    """:func:`read_frozen`, and whether the file records the Python types pydantic's
    JSON Schema leaves out (dict key types, ...): False for a file frozen by a release
    that did not, where a type it lacks may have been anything.

    Raises:
        RegistrationError: the file cannot be read or is not a JSON object.
    """
    schema, lock_format = _read_frozen_file(path)
    return schema, lock_format > 1


def names_fields(path: str | os.PathLike[str]) -> bool:
    """Whether the frozen file at ``path`` names fields by their Python names (lock
    format 3 on); earlier files name those that have aliases by their aliases.

    Raises:
        RegistrationError: the file cannot be read or is not a JSON object.
    """
    _, lock_format = _read_frozen_file(path)
    return lock_format >= _NAMES_FORMAT


def _frozen_with_aliases(
    schema: SchemaVersion, frozen: dict[str, Any], lock_format: int
) -> bool:
    """Whether ``frozen``, of a lock format before field names, is ``schema`` as such a
    release wrote it: with its fields' aliases (and, in format 1, perhaps without the
    Python types later formats record)."""
    if lock_format >= _NAMES_FORMAT:
        return False
    aliased = schema.json_schema(by_alias=True)
    if aliased == schema.json_schema():
        return False  # no alias: the names are what it holds
    return frozen == aliased or (
        lock_format == 1 and unrecorded_details(frozen, aliased) is not None
    )


def _read_frozen_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """A frozen file's canonical JSON Schema, and the lock format it was written in (see
    :data:`LOCK_FORMAT`): 1 for a release that recorded none of the Python types
    pydantic's JSON Schema leaves out."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistrationError(f"frozen schema {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise RegistrationError(f"frozen schema {str(path)!r} is not a JSON object")
    lock_format = document.pop(LOCK_FORMAT, 1)
    if not isinstance(lock_format, int) or isinstance(lock_format, bool) or lock_format < 1:
        raise RegistrationError(
            f"frozen schema {str(path)!r}: {LOCK_FORMAT} is {json.dumps(lock_format)},"
            " not a lock format"
        )
    schema = canonical_json_schema(document)
    if lock_format == 1 and records_details(schema):
        # Frozen between the release that began to record these types and the one
        # that began to mark its files: it records them all.
        lock_format = 2
    return schema, lock_format


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

    Files that already hold the same schema are left alone. A file frozen by an earlier
    release, which did not record the Python types pydantic's JSON Schema leaves out
    (dict key types, tuple for list, ...), of the same schema otherwise is rewritten
    with them: nothing changed but the record. A file that holds a *different* schema
    is a released version that changed shape: freezing refuses (and writes nothing at
    all) unless ``force`` is given, because overwriting it would hide exactly what the
    lock exists to show.

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
            text = frozen_text(schema)
            if not path.exists():
                planned.append((FreezeResult(name, version, path, "written"), text))
                continue
            frozen, lock_format = _read_frozen_file(path)
            live = schema.json_schema()
            lacks = unrecorded_details(frozen, live) if lock_format == 1 else None
            if lacks is None and _frozen_with_aliases(schema, frozen, lock_format):
                lacks = [_ALIASES_NOTE]
            if frozen == live and lock_format >= _NAMES_FORMAT:
                planned.append((FreezeResult(name, version, path, "unchanged"), text))
            elif frozen == live or lacks is not None:
                # Frozen by an earlier release: the same schema, recorded anew (with the
                # lock's format, so a later change of these types is told from this, and
                # makemigration knows the file names fields by their names).
                result = FreezeResult(name, version, path, "recorded", tuple(lacks or ()))
                planned.append((result, text))
            else:
                conflicts.append(f"{name} v{version} ({shown(path)})")
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


def records_details(schema: Any) -> bool:
    """Whether a JSON Schema holds any of the keywords that record Python types."""
    if isinstance(schema, dict):
        return any(k in DETAIL_KEYWORDS or records_details(v) for k, v in schema.items())
    if isinstance(schema, list):
        return any(records_details(item) for item in schema)
    return False


def _component_names(registry: Registry, components: Iterable[str] | None) -> list[str]:
    if components is None:
        return [name for name in registry.components() if registry.versions(name)]
    names = sorted(set(components))
    for name in names:
        registry.latest(name)  # UnknownComponentError when it has no schema
    return names


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
        # A component known by its steps alone (a misspelt name in a migrations
        # module) is checked too: its steps dangle, which is the finding.
        names = sorted(set(registry.components()) | set(_frozen_components(folder)))
    else:
        names = sorted(set(components))
        for name in names:
            if name not in registered and not frozen_versions(folder, name):
                registry.versions(name)  # raises UnknownComponentError for a stranger
        # Steps under a component with no schema at all (a misspelt name) belong to no
        # component one could ask for: they are checked whichever were asked for.
        strays = [n for n in registry.components() if n not in registered]
        names = sorted(set(names) | {n for n in strays if not frozen_versions(folder, n)})
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
        next_free = max([*versions, *files, 0]) + 1
        for version in versions:
            compared += 1
            problem = _compare(
                registry.schema_for(name, version), files.get(version), folder, next_free
            )
            if problem is not None:
                problems.append(problem)
        problems += graph_problems(name, versions, steps, frozen=files)
    order = list(_HEADLINES)
    problems.sort(key=lambda p: (p.component, order.index(p.kind), p.version or 0))
    return LockReport(folder, tuple(names), compared, step_count, tuple(problems))


def _compare(
    schema: SchemaVersion, path: Path | None, folder: Path, next_free: int
) -> LockProblem | None:
    name, version = schema.component, schema.version
    if path is None:
        return LockProblem(
            "missing_frozen",
            name,
            f"`{shown(frozen_path(folder, name, version))}` does not exist; run"
            " `statemigrate schemas freeze` and commit the file",
            version=version,
        )
    try:
        frozen, lock_format = _read_frozen_file(path)
    except RegistrationError as exc:
        return LockProblem("unreadable", name, str(exc), version=version)
    live = schema.json_schema()
    if frozen == live:
        return None
    if _frozen_with_aliases(schema, frozen, lock_format):
        return LockProblem(
            "unrecorded",
            name,
            f"`{shown(path)}` was frozen by an earlier release, which named fields by"
            " their aliases; the schema is unchanged as far as that file tells, but a"
            " field renamed under the same alias would not show: check that none was,"
            " then run `statemigrate schemas freeze` to record the names",
            version=version,
        )
    recording = lock_format > 1
    recorded = None if recording else unrecorded_details(frozen, live)
    if recorded:
        return LockProblem(
            "unrecorded",
            name,
            f"`{shown(path)}` was frozen by an earlier release, which did not record the"
            f" Python types pydantic's JSON Schema leaves out ({'; '.join(recorded)});"
            " the schema itself is unchanged: run `statemigrate schemas freeze` to record"
            " them",
            version=version,
        )
    frozen_text, live_text = schema_text(frozen), schema_text(live)
    diff = "".join(
        difflib.unified_diff(
            frozen_text.splitlines(keepends=True),
            live_text.splitlines(keepends=True),
            fromfile=f"{shown(path)} (frozen)",
            tofile=f"{name} v{version} (registered)",
        )
    )
    # makemigration starts from the newest frozen version: it finds an edit of that
    # version by itself, and needs the new type named for an edit of an older one.
    command = (
        f"statemigrate makemigration {name}" if version == next_free - 1
        else f"statemigrate makemigration {name} --schema MODULE:NEW_TYPE"
    )
    return LockProblem(
        "changed",
        name,
        f"the registered schema no longer matches `{shown(path)}` (frozen"
        f" `{fingerprint_of(frozen)[:12]}`, registered `{schema.fingerprint[:12]}`)"
        f"{_python_types(frozen, live, recording)}; keep"
        f" version {version} as it was and register the new shape as version"
        f" {next_free}, the next free one (`{command}` writes its steps)",
        version=version,
        diff=diff,
    )


def _python_types(frozen: dict[str, Any], live: dict[str, Any], recording: bool) -> str:
    """The changes of Python types that JSON Schema alone does not show (dict key types,
    tuple for list, ...), field by field, for the message; empty when there are none.

    In a file frozen by a release that did not record them (not ``recording``), a type
    it lacks is "unrecorded" rather than JSON Schema's own."""
    lines = detail_changes(frozen, live, old_recorded=recording)
    return f": {'; '.join(lines)}" if lines else ""


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


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
