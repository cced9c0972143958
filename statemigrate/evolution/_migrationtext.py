"""The text of a migrations module: an upgrade and a downgrade step for a list of changes.

:func:`render_migration` turns the changes that
:func:`~statemigrate.evolution._schemadiff.diff_schemas` lists into code. Fields added
with a default, optional fields, removed fields and declared renames become code, and
the direction that drops a field is declared lossy with the field's path. Anything else
becomes a ``NotImplementedError`` saying what to write (a default with no plain form,
``Change.default_refused``, too), so a stub is never silently wrong. Finding the two
schemas, the plain form of each default (``_fielddefaults``) and writing the file is
``_makemigration``'s job; values are written by ``_literals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from statemigrate.evolution._literals import python_literal
from statemigrate.evolution._schemadiff import Change, FieldPath

__all__ = ["render_migration"]

_LIMIT = 100  # the line length the project's linter allows in migrations modules too


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
    # Whether the step must compute a field no default fills (a new required field, a
    # removed one the old version requires): what it drops may be what it needs.
    computes: bool = False
    guessed: bool = False  # its lossy= is a guess, to review (see _review_guessed_loss)

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
            if change.default_refused:
                step.todos.append(_refused_default(change, up))
            elif change.has_default:
                step.add(parent, _OBJ, f"[{name}] = {python_literal(change.default)}")
            elif not change.required:
                step.add(parent, f"# {name} is optional and has no default: left absent")
            elif up:
                step.todos.append(f"{where} is new and required, with no default: compute it")
                step.computes = True
            else:
                step.todos.append(
                    f"{where} was removed but the old version requires it, with no default:"
                    " rebuild it"
                )
                step.computes = True
        else:  # a field this step drops
            step.add(parent, _OBJ, f".pop({name}, None)")
            step.lost.append(".".join((*parent, change.name)))
    return step


def _refused_default(change: Change, up: bool) -> str:
    """The TODO for a field whose default has no plain form a step could write."""
    whose = "its default" if up else "the old version's default"
    event = "is new" if up else "was removed"
    return (
        f"{change.where} {event}, and {whose} cannot be written as plain data"
        f" ({change.default_refused}): write the value the field should get, or leave it"
        " absent for validation to fill in the default"
    )


def _review_guessed_loss(main: _Step, others: _Step | None) -> None:
    """A TODO to review the ``lossy=`` of a step that drops fields and must compute
    others: the data dropped is often the data moved (a customer taken out of each
    order into a dict keyed by id), and once the step moves it, nothing of it is lost.
    A field declared lost is never compared by the checks, so a declaration left as
    guessed hides every bug of the code written to move it."""
    pieces = [main] if others is None else [main, others]
    lost = [name for piece in pieces for name in piece.lost]
    if not lost or not any(piece.computes for piece in pieces):
        return
    names = ", ".join(lost)
    main.todos.append(
        f"lossy=({names}) is a guess: once this step moves what it drops into the"
        " fields it computes, narrow lossy= to what is really lost or remove it;"
        " statemigrate check never compares a field declared lost, so a guess left in"
        " hides this step's bugs"
    )
    main.guessed = True


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
    for main, others in steps.values():
        _review_guessed_loss(main, others)
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
        lines.append(f"    {_lossy_comment(shape, step)}")
    return lines + _body(shape, step, variable)


def _lossy_comment(shape: _Shape, step: _Step) -> str:
    if step.guessed:
        return "# Declared lossy for now: review lossy= (see the TODO below)."
    return f"# Declared lossy: version {shape.target} has no place for what is dropped."


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
        if change.kind == "todo" and direction not in change.directions:
            continue  # the other step's to write (a widened Literal's downgrade)
        parent = change.new_parent if up else change.old_parent
        if len(parent) != depth or change.kind in ("note", "todo"):
            return None
        if change.kind == "renamed":
            old, new = (change.old_name, change.name) if up else (change.name, change.old_name)
            rename.append(f"{_text(old)}: {_text(new)}")
        elif (change.kind == "added") == up:  # a field this step must supply
            if change.default_refused:
                return None
            if change.has_default:
                add.append(f"{_text(change.name)}: {python_literal(change.default)}")
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
        lines.append(_lossy_comment(shape, step))
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
        lines += [
            f"        {_long(python_literal(part), 8)}"
            for part in _wrap(message, 76, keep_spaces=True)
        ]
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
    return python_literal(value)  # in the house's double quotes, as ASCII


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
