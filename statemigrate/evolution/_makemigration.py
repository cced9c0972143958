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

:func:`~statemigrate.evolution._schemadiff.diff_schemas` lists the changes,
``_fielddefaults`` puts in each default's plain form, read from the types (the JSON
Schemas show it serialized), and ``_migrationtext`` turns them into a migrations module
with an upgrade and a downgrade step; this module finds the two schemas, checks that a
module may be written, names it and writes it. A stub does not register the new schema:
the service's code does (``@schema(component, version=N)``), and ``statemigrate schemas
freeze`` freezes it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemigrate._errors import RegistrationError
from statemigrate._model._jsonschema import detail_changes, without_details
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.evolution._aliashints import alias_hints
from statemigrate.evolution._fielddefaults import with_plain_defaults
from statemigrate.evolution._migrationtext import render_migration
from statemigrate.evolution._schemadiff import Change, diff_schemas
from statemigrate.evolution._schemalock import (
    frozen_versions,
    names_fields,
    read_frozen_recorded,
    scan_migrations,
    shown,
)

__all__ = ["MigrationStub", "make_migration", "render_migration"]

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
        for direction, lost in (("upgrade", self.upgrade_lost), ("downgrade", self.downgrade_lost)):
            # A step that must convert values its target refuses (a type changed, a
            # bound tightened, a Literal narrowed): nothing proves it keeps them all.
            converted = [
                change.detail
                for change in self.changes
                if change.kind == "todo" and direction in change.lossy
            ]
            if lost:
                text = f"lossy, drops {', '.join(lost)}"
                text += f"; may also lose data: {'; '.join(converted)}" if converted else ""
            elif converted:
                text = f"probably lossy: {'; '.join(converted)}"
            else:
                text = "lossless"
            lines.append(f"  {direction}: {text}")
        lines += [f"  TODO: {todo}" for todo in self.todos]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


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
            ``records`` is not a ``dict`` field of both versions, or ``name`` is not
            letters, digits and underscores.
        UnknownComponentError: no schema is registered and ``schema`` is not given.
    """
    if name is not None and not _PLAIN_NAME.fullmatch(name):
        # It ends the module's file name: a separator or a dot would put the module
        # elsewhere, or make it no module that a migrations directory loads.
        raise RegistrationError(
            f"name {name!r} is not a plain module name: use ASCII letters, digits and"
            " underscores"
        )
    frozen = frozen_versions(schemas_dir, component)
    if not frozen:
        raise RegistrationError(
            f"{component!r} has no frozen schema in {os.fspath(schemas_dir)!r}: run"
            " `statemigrate schemas freeze` on the released code first"
        )
    base = max(frozen)
    live, notes = _live_schema(registry, component, base, schema, version)
    old, recorded = read_frozen_recorded(frozen[base])
    new = live.json_schema()
    if not names_fields(frozen[base]) and _may_have_aliases(registry, component, base, live):
        raise RegistrationError(
            f"{component!r}: `{shown(frozen[base])}` was frozen by an earlier release, which"
            " named fields by their aliases, and the live schema has aliased fields: what"
            f" they were named in version {base} cannot be told from it; run `statemigrate"
            " schemas freeze` on the released code to record the names, then run"
            " makemigration again"
        )
    if old == new:
        raise RegistrationError(
            f"{component!r}: the live schema is the frozen version {base}; nothing to migrate"
        )
    if not recorded:
        new, unrecorded = _without_unrecorded(component, base, frozen[base], old, new)
        notes += unrecorded
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
    # The JSON Schemas show defaults serialized: the steps need their plain forms.
    released = _released_schema(registry, component, base, old, recorded)
    changes, unchecked = with_plain_defaults(changes, new=live, old=released)
    notes += unchecked
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


def _released_schema(
    registry: Registry, component: str, base: int, old: Mapping[str, Any], recorded: bool
) -> SchemaVersion | None:
    """Version ``base`` as registered, when it is the schema frozen as ``old``: what a
    removed field's default is read from. None when it is not registered, or registered
    with another schema (changed in place)."""
    if component not in registry.components() or base not in registry.versions(component):
        return None
    registered = registry.schema_for(component, base)
    schema = registered.json_schema()
    return registered if (schema if recorded else without_details(schema)) == old else None


def _may_have_aliases(
    registry: Registry, component: str, base: int, live: SchemaVersion
) -> bool:
    """Whether version ``base``, frozen in a file that names aliased fields by their
    aliases, may have had any: it did if it is registered with one, and may have if it
    is not registered and the live schema has one."""
    if component in registry.components() and base in registry.versions(component):
        frozen_version = registry.schema_for(component, base)
        return frozen_version.json_schema(by_alias=True) != frozen_version.json_schema()
    return live.json_schema(by_alias=True) != live.json_schema()


def _without_unrecorded(
    component: str, base: int, path: Path, old: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The live schema as it can be compared with a file frozen by a release that did
    not record the Python types pydantic's JSON Schema leaves out (dict key types,
    tuple for list, ...), and a note on what is not compared.

    Such a file holds no type of the kind, whatever the type was: read as JSON Schema's
    own (``str`` keys, a ``list``), it would make every such type of the live schema a
    change. So these types are left out of the comparison, and the note names them.

    Raises:
        RegistrationError: the live schema differs from the frozen one in those types
            alone, which cannot be told from a change.
    """
    unknown = detail_changes(old, new, old_recorded=False)
    compared: dict[str, Any] = without_details(new)
    before = (
        f"`{shown(path)}` was frozen by an earlier release, which did not record the Python"
        " types pydantic's JSON Schema leaves out (dict key types, tuple for list, ...)"
    )
    record = "run `statemigrate schemas freeze` on the released code to record them"
    if compared == old:
        raise RegistrationError(
            f"{component!r}: the live schema differs from the frozen version {base} only in"
            f" such types ({'; '.join(unknown)}): {before}, so whether they changed cannot"
            f" be told from it; {record}, then run makemigration again if anything is left"
            " to migrate"
        )
    if not unknown:
        return compared, []
    return compared, [
        f"{before}: the steps assume that these types did not change since version {base}"
        f" ({'; '.join(unknown)}); if one did, write its conversion, or delete this module,"
        f" {record} and run makemigration again"
    ]


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
