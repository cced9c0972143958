"""makemigration: write the steps between the newest frozen schema and the live one.

The *old* shape is the newest frozen file of the component (``schemas/<c>/v<N>.json``),
what the last release wrote. The *live* shape is found in this order:

1. ``schema=`` (``--schema module:Type``): a type that need not be registered yet; the
   new version is ``version=`` or the newest frozen version + 1;
2. otherwise the newest registered version of the component. When it is newer than
   the newest frozen one it *is* the new version (the usual flow: write the new type,
   register it, run makemigration). When it has the number of the newest frozen file
   but another schema, the type was edited in place: the stub is written for the next
   number, and a note says to register the edited type under it and restore the old.

:func:`~statemigrate.evolution._schemadiff.diff_schemas` lists the changes; this module turns
them into a migrations module with an upgrade and a downgrade step. Fields added with a
default, optional fields, removed fields and declared renames become code, and the
direction that drops a field is declared lossy with the field's path. Anything else
becomes a ``NotImplementedError`` saying what to write, so a stub is never silently
wrong. A stub does not register the new schema: the service's code does
(``@schema(component, version=N)``), and ``statemigrate schemas freeze`` freezes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from statemigrate._errors import RegistrationError
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.evolution._schemadiff import Change, FieldPath, alias_hints, diff_schemas
from statemigrate.evolution._schemalock import frozen_versions, read_frozen, scan_migrations, shown

__all__ = ["MigrationStub", "make_migration", "render_migration"]

_LIMIT = 100  # the line length the project's linter allows in migrations modules too
_MODULE_NUMBER = re.compile(r"_(\d{4})_")


@dataclass(frozen=True)
class MigrationStub:
    """A generated migrations module and what it knows.

    Attributes:
        component: the component.
        source: the old version (the newest frozen one).
        target: the new version.
        path: where the module is (or would be) written.
        code: the module's text.
        changes: the differences found between the two schemas.
        upgrade_lost: fields the upgrade drops (declared lossy).
        downgrade_lost: fields the downgrade drops (declared lossy).
        todos: what the author must still write; the steps raise until it is done.
        notes: remarks for the author.
    """

    component: str
    source: int
    target: int
    path: Path
    code: str
    changes: tuple[Change, ...] = ()
    upgrade_lost: tuple[str, ...] = ()
    downgrade_lost: tuple[str, ...] = ()
    todos: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [f"wrote {shown(self.path)}: {self.component} {self.source} <-> {self.target}"]
        # A change that needs code both ways (a type changed, or the rules for extra
        # keys) converts values: nothing proves that the conversion keeps them all.
        converted = [
            change.detail
            for change in self.changes
            if change.kind == "todo" and change.directions == {"upgrade", "downgrade"}
        ]
        for direction, lost in (("upgrade", self.upgrade_lost), ("downgrade", self.downgrade_lost)):
            if lost:
                text = f"lossy, drops {', '.join(lost)}"
            elif converted:
                text = f"probably lossy: {'; '.join(converted)}"
            else:
                text = "lossless"
            lines.append(f"  {direction}: {text}")
        lines += [f"  TODO: {todo}" for todo in self.todos]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


# --- rendering ---------------------------------------------------------------------------


@dataclass
class _Step:
    """The body of one generated step, built change by change."""

    direction: Literal["upgrade", "downgrade"]
    blocks: list[tuple[FieldPath, list[str]]]
    lost: list[str]
    todos: list[str]
    notes: list[str]

    def add(self, parent: FieldPath, line: str) -> None:
        if self.blocks and self.blocks[-1][0] == parent:
            self.blocks[-1][1].append(line)
        else:
            self.blocks.append((parent, [line]))


def _build(direction: Literal["upgrade", "downgrade"], changes: Sequence[Change]) -> _Step:
    step = _Step(direction, [], [], [], [])
    up = direction == "upgrade"
    for change in changes:
        # Parents are handled before their children, so an object is always reached by
        # the path it has at the moment: the new path going up, the old one going down.
        parent = change.new_parent if up else change.old_parent
        name = _text(change.name)
        if change.kind == "note":
            if up:  # said once, in the upgrade
                step.notes.append(change.detail)
        elif change.kind == "todo":
            if direction in change.directions:
                step.todos.append(change.detail)
        elif change.kind == "renamed":
            old, new = _text(change.old_name), name
            source, target = (old, new) if up else (new, old)
            step.add(parent, f"if {source} in obj:")
            step.add(parent, f"    obj[{target}] = obj.pop({source})")
        elif (change.kind == "added") == up:  # a field this step must supply
            where = change.where
            if change.has_default:
                step.add(parent, f"obj[{name}] = {_literal(change.default)}")
            elif not change.required:
                step.add(parent, f"# {name} is optional and has no default: left absent")
            elif up:
                step.todos.append(f"{where} is new and required, with no default: compute it")
            else:
                step.todos.append(
                    f"{where} was removed but the old version requires it, with no default:"
                    " rebuild it"
                )
        else:  # a field this step drops
            step.add(parent, f"obj.pop({name}, None)")
            step.lost.append(".".join((*parent, change.name)))
    return step


def render_migration(
    component: str,
    source: int,
    target: int,
    changes: Sequence[Change],
    *,
    filename: str = "this file",
) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Write the text of a migrations module for ``changes`` between two versions.

    Returns:
        ``(code, upgrade_lost, downgrade_lost, todos, notes)``.
    """
    up, down = _build("upgrade", changes), _build("downgrade", changes)
    todos = tuple(dict.fromkeys([*up.todos, *down.todos]))
    described = _describe(changes)
    headline = (
        f'"""{component} {source} <-> {target}: {", ".join(described) or "no changes found"}.'
    )
    lines = [headline, ""]
    if len(headline) > _LIMIT:
        lines = [f'"""{component} {source} <-> {target}: {len(described)} changes.', ""]
        lines += [f"- {line}" for item in described for line in _wrap(item, 90)]
        lines.append("")
    lines += [
        f"Written by ``statemigrate makemigration`` from the frozen schema of version {source}",
        f"and the live schema of version {target}. Review it before committing it.",
    ]
    if todos:
        lines += ["", "Not finished: the steps raise NotImplementedError until every TODO is done."]
    lines += ['"""', "", "from __future__ import annotations", "", "from typing import Any", ""]
    lines += ["from statemigrate import migration", "", ""]
    lines += _function(component, source, target, up, filename)
    lines += ["", ""]
    lines += _function(component, target, source, down, filename)
    if any(parent for step in (up, down) for parent, _ in step.blocks):
        lines += ["", ""] + _OBJECTS_HELPER.splitlines()
    code = "\n".join(lines) + "\n"
    return code, tuple(up.lost), tuple(down.lost), todos, tuple(up.notes)


def _function(component: str, source: int, target: int, step: _Step, filename: str) -> list[str]:
    head = f"@migration({_text(component)}, {source}, {target}"
    lost = ", ".join(_text(name) for name in step.lost)
    lossy = f", lossy=({lost},))" if len(step.lost) == 1 else f", lossy=({lost}))"
    decorator = head + (lossy if step.lost else ")")
    if len(decorator) > _LIMIT:
        decorator = "\n".join(
            [f"@migration({_text(component)}, {source}, {target}, lossy=("]
            + [f"    {_text(name)}," for name in step.lost]
            + ["))"]
        )
    verb = "upgrade" if step.direction == "upgrade" else "downgrade"
    lines = [
        decorator,
        f"def {verb}_{source}_to_{target}(data: Any) -> Any:",
        f'    """{verb.capitalize()} {component} data from version {source} to {target},'
        ' in place."""',
    ]
    if step.lost:
        lines.append(f"    # Declared lossy: version {target} has no place for what is dropped.")
    for note in step.notes:
        lines += _comment("Note", note)
    if step.todos:
        for todo in step.todos:
            lines += _comment("TODO", todo)
        message = f"{component} {source} -> {target} is not finished: " + "; ".join(step.todos)
        message += f"; write the missing code in {filename}"
        lines.append("    # Delete this raise once every TODO above is done.")
        lines.append("    raise NotImplementedError(")
        lines += [f"        {json.dumps(part)}" for part in _wrap(message, 76, keep_spaces=True)]
        lines.append("    )")
    for parent, body in step.blocks:
        if parent:
            lines.append(f"    for obj in _objects(data, {_path_literal(parent)}):")
            lines += [f"        {_long(line, 8)}" for line in body]
        else:
            lines += [f"    {_long(line, 4).replace('obj', 'data')}" for line in body]
    lines.append("    return data")
    return lines


_OBJECTS_HELPER = '''def _objects(data: Any, path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The dicts found at ``path`` in ``data``; ``*`` is every dict value or list item."""
    level = [data]
    for part in path:
        found = []
        for node in level:
            if part == "*" and isinstance(node, dict):
                found.extend(node.values())
            elif part == "*" and isinstance(node, list):
                found.extend(node)
            elif isinstance(node, dict) and part in node:
                found.append(node[part])
        level = found
    return [node for node in level if isinstance(node, dict)]'''


def _comment(label: str, text: str) -> list[str]:
    first, *rest = _wrap(text, 80)
    return [f"    # {label}: {first}", *(f"    #   {line}" for line in rest)]


def _text(value: str) -> str:
    return json.dumps(value)  # a valid Python string literal, in the house's double quotes


def _literal(value: Any) -> str:
    """Python source for a JSON value (a schema default)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_text(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, str):
        return _text(value)
    return repr(value)  # None, bool, int, float


def _path_literal(path: FieldPath) -> str:
    inner = ", ".join(_text(part) for part in path)
    return f"({inner},)" if len(path) == 1 else f"({inner})"


def _long(line: str, indent: int) -> str:
    # A long default stays on one line, marked, rather than being reformatted wrongly.
    return line + "  # noqa: E501" if indent + len(line) > _LIMIT else line


def _wrap(text: str, width: int, *, keep_spaces: bool = False) -> list[str]:
    """Split ``text`` into pieces of at most about ``width`` characters at spaces; with
    ``keep_spaces`` the pieces join back to exactly ``text``."""
    words = text.split(" ")
    parts: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) > width:
            parts.append(current + (" " if keep_spaces else ""))
            current = word
        else:
            current = candidate
    parts.append(current)
    return parts


def _describe(changes: Sequence[Change]) -> list[str]:
    parts = []
    for change in changes:
        if change.kind == "added":
            parts.append(f"add {change.where}")
        elif change.kind == "removed":
            parts.append(f"remove {change.where}")
        elif change.kind == "renamed":
            parts.append(
                f"rename {'.'.join((*change.old_parent, change.old_name))} to {change.name}"
            )
        elif change.kind == "todo":
            parts.append("change " + change.where.split(" ")[0])
    return list(dict.fromkeys(parts))


def _slug(changes: Sequence[Change], source: int, target: int) -> str:
    code = [c for c in changes if c.kind != "note"]
    if len(code) == 1 and code[0].kind in ("added", "removed", "renamed"):
        change = code[0]
        verb = {"added": "add", "removed": "drop", "renamed": "rename"}[change.kind]
        name = f"{change.old_name}_to_{change.name}" if change.kind == "renamed" else change.name
        slug = f"{verb}_{name}"
    else:
        slug = f"v{source}_to_v{target}"
    return re.sub(r"[^a-z0-9_]+", "_", slug.lower()).strip("_")[:60] or "change"


# --- from a registry to a file -----------------------------------------------------------


def make_migration(
    registry: Registry,
    component: str,
    *,
    schemas_dir: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    schema: object | None = None,
    version: int | None = None,
    name: str | None = None,
    renames: Mapping[str, str] | None = None,
    write: bool = True,
) -> MigrationStub:
    """Write a migrations module from the newest frozen version to the live schema.

    See the module documentation for how the live schema and the new version are found.

    Args:
        registry: the service's registry (its steps must not join the two versions yet).
        component: the component.
        schemas_dir: the directory of frozen schemas.
        migrations_dir: where to write the module.
        schema: the new schema type, when it is not (yet) the newest registered one.
        version: the new version number (only with ``schema``).
        name: the module's descriptive suffix (default: derived from the changes).
        renames: ``{"old.dotted.path": "new_name"}`` for renames the new type does not
            declare with ``AliasChoices``.
        write: write the file (``False`` only renders it).

    Raises:
        RegistrationError: nothing is frozen for the component, nothing changed, steps
            between the versions exist, the version is inconsistent, or the file exists.
        UnknownComponentError: no schema is registered and ``schema`` is not given.
    """
    frozen = frozen_versions(schemas_dir, component)
    if not frozen:
        raise RegistrationError(
            f"{component!r} has no frozen schema in {os.fspath(schemas_dir)!r}: run"
            " `statemigrate schemas freeze` on the released code first"
        )
    base = max(frozen)
    live, notes = _live_schema(registry, component, base, schema, version)
    old, new = read_frozen(frozen[base]), live.json_schema()
    if old == new:
        raise RegistrationError(
            f"{component!r}: the live schema is the frozen version {base}; nothing to migrate"
        )
    joined = [
        str(step)
        for step in (registry.steps(component) if component in registry.components() else [])
        if {step.source, step.target} == {base, live.version}
    ]
    folder = Path(migrations_dir)
    # Also read the directory itself: the registry at hand may not have loaded it, and a
    # second stub for the same versions would only fail later, as a duplicate step.
    joined += [
        f"{step.component} {step.source} -> {step.target} ({step.file.name})"
        for step in scan_migrations(folder)
        if step.component == component and {step.source, step.target} == {base, live.version}
    ]
    if joined:
        raise RegistrationError(
            f"steps between {base} and {live.version} exist: {', '.join(joined)}"
        )
    changes = diff_schemas(old, new, aliases=alias_hints(live), renames=renames)
    number = _next_number(folder, component)
    slug = name or _slug(changes, base, live.version)
    path = folder / f"{_module_stem(component)}_{number:04d}_{slug}.py"
    if path.exists():
        raise RegistrationError(f"{path} exists already")
    code, up_lost, down_lost, todos, found = render_migration(
        component, base, live.version, changes, filename=path.name
    )
    stub = MigrationStub(
        component,
        base,
        live.version,
        path,
        code,
        tuple(changes),
        up_lost,
        down_lost,
        todos,
        (*notes, *found),
    )
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:  # never overwrite a module
            handle.write(code)
    return stub


def _live_schema(
    registry: Registry, component: str, base: int, schema: object | None, version: int | None
) -> tuple[SchemaVersion, list[str]]:
    if schema is not None:
        target = version if version is not None else base + 1
        if target <= base:
            raise RegistrationError(f"version {target} is not newer than the frozen version {base}")
        live = SchemaVersion.create(component, target, schema)
        if component in registry.components() and target in registry.versions(component):
            registered = registry.schema_for(component, target)
            if registered.fingerprint != live.fingerprint:
                raise RegistrationError(
                    f"{component!r} version {target} is registered with another schema"
                    f" ({registered.type!r})"
                )
        return live, []
    if version is not None:
        raise RegistrationError("a version number can only be given with the new schema type")
    latest = registry.latest(component)
    if latest.version > base:
        return latest, []
    if latest.version < base:
        raise RegistrationError(
            f"{component!r}: the newest registered version {latest.version} is older than the"
            f" newest frozen version {base}"
        )
    live = SchemaVersion.create(component, base + 1, latest.type)
    note = (
        f"version {base} was changed in place: register the edited type as version"
        f" {base + 1}, and register the type that matches the frozen file as version {base}"
        " again (snapshots written with it must stay readable)"
    )
    return live, [note]


def _module_stem(component: str) -> str:
    return re.sub(r"\W", "_", component)


def _next_number(folder: Path, component: str) -> int:
    stem = _module_stem(component)
    numbers = [0]
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _MODULE_NUMBER.match(entry.name[len(stem) :])
            if entry.name.startswith(stem + "_") and entry.suffix == ".py" and match:
                numbers.append(int(match.group(1)))
    return max(numbers) + 1
