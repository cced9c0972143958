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
from dataclasses import dataclass, replace
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


_OBJ = object()
"""Where the variable holding the object a line changes goes, in a :data:`_Line`."""

_Line = tuple[object, ...]
"""One line of a step's body: text pieces, and :data:`_OBJ` for the object's variable,
which depends on where the line lands (the data, one record, or an object found below)."""


def _render_line(line: _Line, variable: str) -> str:
    return "".join(variable if piece is _OBJ else str(piece) for piece in line)


@dataclass
class _Step:
    """The body of one generated step, built change by change."""

    direction: Literal["upgrade", "downgrade"]
    blocks: list[tuple[FieldPath, list[_Line]]]
    lost: list[str]
    todos: list[str]
    notes: list[str]

    def add(self, parent: FieldPath, *pieces: object) -> None:
        if self.blocks and self.blocks[-1][0] == parent:
            self.blocks[-1][1].append(pieces)
        else:
            self.blocks.append((parent, [pieces]))


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
            step.add(parent, "if ", source, " in ", _OBJ, ":")
            step.add(parent, "    ", _OBJ, f"[{target}] = ", _OBJ, f".pop({source})")
        elif (change.kind == "added") == up:  # a field this step must supply
            where = change.where
            if change.has_default:
                step.add(parent, _OBJ, f"[{name}] = {_literal(change.default)}")
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
            step.add(parent, _OBJ, f".pop({name}, None)")
            step.lost.append(".".join((*parent, change.name)))
    return step


def render_migration(
    component: str,
    source: int,
    target: int,
    changes: Sequence[Change],
    *,
    filename: str = "this file",
    records: str | None = None,
) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Write the text of a migrations module for ``changes`` between two versions.

    With ``records`` (a top-level ``dict`` field), the steps are record steps of that
    field: the changes inside its records make the function that migrates one record,
    the changes elsewhere an ``other_fields`` function for the other fields. The caller
    checks that the field holds a ``dict`` in both versions, so no change is to it.

    Returns:
        ``(code, upgrade_lost, downgrade_lost, todos, notes)``.
    """
    inside = [c for c in changes if records is None or _in_records(c, records)]
    beside = [c for c in changes if records is not None and not _in_records(c, records)]
    steps = {
        direction: (_build(direction, inside), _build(direction, beside) if beside else None)
        for direction in ("upgrade", "downgrade")
    }
    parts = [step for pair in steps.values() for step in pair if step is not None]
    up = [step for step in steps["upgrade"] if step is not None]
    down = [step for step in steps["downgrade"] if step is not None]
    todos = tuple(dict.fromkeys(todo for step in parts for todo in step.todos))
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
    if records is not None:
        lines += [
            "",
            f"Record steps of {_text(records)}: they migrate one record at a time, so they also",
            "migrate the deltas of a pre-copy hand-over.",
        ]
    if todos:
        lines += ["", "Not finished: the steps raise NotImplementedError until every TODO is done."]
    declared = {
        direction: _field_changes(direction, inside, records)
        for direction in ("upgrade", "downgrade")
    }
    lines += ['"""', "", "from __future__ import annotations", ""]
    if beside or not all(declared.values()):  # a step written as a function
        lines += ["from typing import Any", ""]
    imported = "FieldChanges, migration" if any(declared.values()) else "migration"
    lines += [f"from statemigrate import {imported}", ""]
    if not (declared["upgrade"] is not None and not beside):
        lines.append("")  # two blank lines before a def, one before an assignment
    for ends, direction in (((source, target), "upgrade"), ((target, source), "downgrade")):
        main, others = steps[direction]
        if ends[0] != source:
            lines += ["", ""]
        shape = _Shape(component, *ends, filename, records)
        if others is not None:
            lines += _others_function(shape, others) + ["", ""]
        field_changes = declared[direction]
        if field_changes is not None:
            lines += _field_changes_step(shape, field_changes, main, others)
        else:
            lines += _step_function(shape, main, others)
    if any("_objects(" in line for line in lines):  # a step reaches objects below its argument
        lines += ["", ""] + _OBJECTS_HELPER.splitlines()
    code = "\n".join(lines) + "\n"
    lost_up = tuple(name for step in up for name in step.lost)
    lost_down = tuple(name for step in down for name in step.lost)
    notes = tuple(note for step in up for note in step.notes)
    return code, lost_up, lost_down, todos, notes


def _in_records(change: Change, field: str) -> bool:
    parent = change.old_parent if change.kind == "removed" else change.new_parent
    return parent[:2] == (field, "*")


@dataclass(frozen=True)
class _Shape:
    """What one generated step is: its ends, and whether it is a record step."""

    component: str
    source: int
    target: int
    filename: str
    records: str | None

    @property
    def skip(self) -> int:
        """How much of a change's path the step's argument already stands for."""
        return 0 if self.records is None else 2

    @property
    def name(self) -> str:
        verb = "upgrade" if self.source < self.target else "downgrade"
        return f"{verb}_{self.source}_to_{self.target}"

    @property
    def verb(self) -> str:
        return self.name.split("_", 1)[0].capitalize()


def _registration(shape: _Shape, step: _Step, others: _Step | None) -> tuple[list[str], list[str]]:
    """What a step is registered with: the fields it loses, and the other keywords."""
    lost = [*step.lost, *(others.lost if others is not None else ())]
    keywords = []
    if shape.records is not None:
        keywords.append(f"records={_text(shape.records)}")
    if others is not None:
        keywords.append(f"other_fields=_{shape.name}_other_fields")
    return lost, keywords


def _step_function(shape: _Shape, step: _Step, others: _Step | None) -> list[str]:
    lost, keywords = _registration(shape, step, others)
    lines = [_decorator(shape, lost, keywords)]
    if shape.records is None:
        lines += [
            f"def {shape.name}(data: Any) -> Any:",
            f'    """{shape.verb} {shape.component} data from version {shape.source} to'
            f' {shape.target}, in place."""',
        ]
        variable = "data"
    else:
        lines += [
            f"def {shape.name}(key: str, value: Any) -> Any:",
            f'    """{shape.verb} one record of {shape.component}\'s {_text(shape.records)}'
            f' from version {shape.source} to {shape.target}, in place."""',
        ]
        variable = "value"
    if lost:
        lines.append(
            f"    # Declared lossy: version {shape.target} has no place for what is dropped."
        )
    return lines + _body(shape, step, variable)


def _field_changes(
    direction: Literal["upgrade", "downgrade"], changes: Sequence[Change], records: str | None
) -> tuple[str, list[str]] | None:
    """The ``FieldChanges(...)`` that makes ``changes`` in one step, with comments on
    what it leaves alone; None when one of them needs code (a field with nothing to fill
    it, a change below the step's own record, a note or a TODO)."""
    up = direction == "upgrade"
    depth = 0 if records is None else 2  # the parent path the step's argument stands for
    add: list[str] = []
    rename: list[str] = []
    drop: list[str] = []
    comments: list[str] = []
    for change in changes:
        parent = change.new_parent if up else change.old_parent
        if len(parent) != depth or change.kind == "note":
            return None
        if change.kind == "todo":
            if direction in change.directions:
                return None
        elif change.kind == "renamed":
            old, new = (change.old_name, change.name) if up else (change.name, change.old_name)
            rename.append(f"{_text(old)}: {_text(new)}")
        elif (change.kind == "added") == up:  # a field this step must supply
            if change.has_default:
                add.append(f"{_text(change.name)}: {_literal(change.default)}")
            elif change.required:
                return None
            else:
                left = "is optional and has no default: left absent"
                comments.append(f"# {_text(change.name)} {left}")
        else:
            drop.append(_text(change.name))
    parts = []
    if rename:
        parts.append("rename={" + ", ".join(rename) + "}")
    if drop:
        parts.append("drop=[" + ", ".join(drop) + "]")
    if add:
        parts.append("add={" + ", ".join(add) + "}")
    return (f"FieldChanges({', '.join(parts)})", comments) if parts else None


def _field_changes_step(
    shape: _Shape, declared: tuple[str, list[str]], step: _Step, others: _Step | None
) -> list[str]:
    """A step written as field changes: registered by calling the decorator on them."""
    lost, keywords = _registration(shape, step, others)
    where = f"each record of {_text(shape.records)}" if shape.records is not None else "the data"
    expression, comments = declared
    lines = [f"# {shape.verb} {where} from version {shape.source} to {shape.target}.", *comments]
    if lost:
        lines.append(f"# Declared lossy: version {shape.target} has no place for what is dropped.")
    call = _decorator(shape, lost, keywords, prefix=f"{shape.name} = ", then="(")
    return lines + [call, f"    {_long(expression, 4)}", ")"]


def _others_function(shape: _Shape, step: _Step) -> list[str]:
    lines = [
        f"def _{shape.name}_other_fields(data: Any) -> Any:",
        f'    """{shape.verb} the fields of {shape.component} beside {_text(str(shape.records))}'
        f' from version {shape.source} to {shape.target}, in place."""',
    ]
    return lines + _body(replace(shape, records=None), step, "data")


def _decorator(
    shape: _Shape, lost: list[str], keywords: list[str], prefix: str = "@", then: str = ""
) -> str:
    """``@migration(...)``, on several lines when long; ``prefix`` starts the first line
    and ``then`` follows the last."""
    head = f"{prefix}migration({_text(shape.component)}, {shape.source}, {shape.target}"
    names = ", ".join(_text(name) for name in lost)
    lossy = [f"lossy=({names},)" if len(lost) == 1 else f"lossy=({names})"] if lost else []
    decorator = ", ".join([head, *lossy, *keywords]) + ")" + then
    if len(decorator) <= _LIMIT:
        return decorator
    lines = [f"{head},"]
    if lost:
        lines += ["    lossy=("] + [f"        {_text(name)}," for name in lost] + ["    ),"]
    lines += [f"    {keyword}," for keyword in keywords]
    return "\n".join([*lines, ")" + then])


def _body(shape: _Shape, step: _Step, variable: str) -> list[str]:
    """The lines of a step function after its docstring, ending with its return."""
    lines: list[str] = []
    for note in step.notes:
        lines += _comment("Note", note)
    if step.todos:
        for todo in step.todos:
            lines += _comment("TODO", todo)
        message = (
            f"{shape.component} {shape.source} -> {shape.target} is not finished: "
            + "; ".join(step.todos)
            + f"; write the missing code in {shape.filename}"
        )
        lines.append("    # Delete this raise once every TODO above is done.")
        lines.append("    raise NotImplementedError(")
        lines += [f"        {json.dumps(part)}" for part in _wrap(message, 76, keep_spaces=True)]
        lines.append("    )")
    for parent, body in step.blocks:
        below = parent[shape.skip :]
        if below:
            lines.append(f"    for obj in _objects({variable}, {_path_literal(below)}):")
            lines += [f"        {_long(_render_line(line, 'obj'), 8)}" for line in body]
        else:
            lines += [f"    {_long(_render_line(line, variable), 4)}" for line in body]
    lines.append(f"    return {variable}")
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
    records: str | None = None,
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
        records: write record steps of this top-level ``dict`` field (see
            :func:`render_migration`), a field of both versions.
        write: write the file (``False`` only renders it).

    Raises:
        RegistrationError: nothing is frozen for the component, nothing changed, steps
            between the versions exist, the version is inconsistent, the file exists,
            or ``records`` is not a ``dict`` field of both versions.
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
    _check_renames_used(renames or {}, changes)
    if records is not None:
        _check_record_steps(records, {base: old, live.version: new})
    else:
        notes += _record_step_hint(old, new, changes)
    number = _next_number(folder, component)
    slug = name or _slug(changes, base, live.version)
    path = folder / f"{_module_stem(component)}_{number:04d}_{slug}.py"
    if path.exists():
        raise RegistrationError(f"{path} exists already")
    code, up_lost, down_lost, todos, found = render_migration(
        component, base, live.version, changes, filename=path.name, records=records
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


def _dict_field(schema: Mapping[str, Any], name: str) -> bool:
    """Whether ``name`` is a top-level field of ``schema`` holding a ``dict``."""
    node = schema.get("properties", {}).get(name)
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = schema.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1])
    return (
        isinstance(node, dict)
        and node.get("type") == "object"
        and isinstance(node.get("additionalProperties"), dict)
        and "properties" not in node
    )


def _check_record_steps(records: str, schemas: Mapping[int, Mapping[str, Any]]) -> None:
    # With the field a dict on both sides, every change is inside its records or beside it.
    for version, schema in schemas.items():
        if not _dict_field(schema, records):
            raise RegistrationError(
                f"record steps of {records!r}: version {version} has no top-level dict"
                f" field {records!r}"
            )


def _record_step_hint(
    old: Mapping[str, Any], new: Mapping[str, Any], changes: Sequence[Change]
) -> list[str]:
    """A note when every change lies inside the records of one dict field."""
    parents = {
        change.old_parent if change.kind == "removed" else change.new_parent
        for change in changes
        if change.kind != "note"
    }
    fields = {parent[0] for parent in parents if parent[1:2] == ("*",)}
    if len(fields) != 1 or any(parent[1:2] != ("*",) for parent in parents):
        return []
    (field,) = fields
    if not (_dict_field(old, field) and _dict_field(new, field)):
        return []
    return [
        f"every change is inside the records of {field!r}: record steps (`--records"
        f" {field}`) would also migrate the deltas of a pre-copy hand-over"
    ]


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


def _check_renames_used(renames: Mapping[str, str], changes: Sequence[Change]) -> None:
    """Refuse a declared rename that renamed nothing: a typo in the old path, or a new
    name that is no new field beside it, would otherwise become a removal and an
    addition without a word."""
    done = {
        (".".join((*change.old_parent, change.old_name or "")), change.name)
        for change in changes
        if change.kind == "renamed"
    }
    for old, new in renames.items():
        if (old, new) not in done:
            removed = [c.where for c in changes if c.kind == "removed"]
            raise RegistrationError(
                f"--rename {old}={new} renames nothing: {old} is no field removed with a"
                f" new field {new!r} beside it (removed: {', '.join(removed) or 'none'})"
            )


def _next_number(folder: Path, component: str) -> int:
    stem = _module_stem(component)
    numbers = [0]
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _MODULE_NUMBER.match(entry.name[len(stem) :])
            if entry.name.startswith(stem + "_") and entry.suffix == ".py" and match:
                numbers.append(int(match.group(1)))
    return max(numbers) + 1
