"""Field names a step declares, checked against the shape of a schema version.

A step names fields of its data in two places: ``records="entries"`` (the top-level
``dict`` field a record step maps) and ``lossy=("entries.*.hits",)`` (the fields it
loses, dotted paths at its source version, ``*`` for any key or item). A typo in
either is otherwise found late or never: a record step over a field that holds no dict
fails at restore time, and a lost field that names nothing makes the property checks
ignore nothing, so they blame a loss the step did declare.

The walk reads the pydantic core schema, where fields go by their Python names (the
keys of the plain form, whatever their aliases). It refuses only what certainly names
nothing: below a node whose shape it does not know (``Any``, a custom validator, a
record that keeps extra fields) every path is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from statemigrate._model._coreschema import schema_refs

__all__ = ["lost_path_problem", "records_problem", "records_refuse_none"]

Node = Mapping[str, Any]

# Nodes that validate what their "schema" validates, as far as field names go.
_WRAPPERS = frozenset(
    {"nullable", "default", "function-before", "function-after", "function-wrap"}
)
_SEQUENCES = frozenset({"list", "set", "frozenset", "tuple", "generator", "deque"})
# Wrappers that take ``None`` only where what they wrap does: looked into when asking
# whether ``None`` fits (a nullable or a validator that may take it answers at once).
_NONE_KEEPING_WRAPPERS = frozenset({"default", "function-after"})


@dataclass
class _Shapes:
    """What the data at one path can be: records, dicts, sequences, leaves, or unknown."""

    fields: dict[str, list[Node]] = field(default_factory=dict)
    values: list[Node] = field(default_factory=list)  # of dicts: any key holds one
    items: list[Node] = field(default_factory=list)  # of lists, sets, tuples
    leaves: list[str] = field(default_factory=list)  # kinds, for messages
    dicts: bool = False
    sequences: bool = False
    open: bool = False  # anything may be there


def records_problem(core_schema: Node, name: str, *, where: str) -> str | None:
    """Why top-level field ``name`` cannot hold a record step's records, or None.

    None also when the schema leaves it open (a field typed ``Any``, a ``dict | None``).
    ``where`` names the schema in the message (``version 4``).
    """
    walk = _Walk(core_schema)
    top = walk.shapes([core_schema])
    if top.open:
        return None
    # A dict at the top (a RootModel of one, a bare dict schema) may hold the name as
    # a key: its values are what the records would be.
    found = [*top.fields.get(name, ()), *top.values]
    if not found:
        return f"names no field of {where} ({_listed(top)})"
    below = walk.shapes(found)
    if below.open or below.dicts:
        return None
    if name not in top.fields:
        return f"names a key of {where}, a dict of {_kind_names(below)} values, not of dicts"
    return f"names {_kinds(below)} field of {where}, not a dict"


def records_refuse_none(core_schema: Node, name: str) -> bool:
    """Whether the records under top-level field ``name`` certainly cannot be ``None``.

    A record step whose function returns ``None`` for a record then forgot its
    ``return``. False wherever ``None`` may fit: a value typed ``X | None`` or ``Any``,
    a custom validator, a field whose shape the walk does not know.
    """
    if _runs_own_validator(core_schema):
        # A validator that sees the input before the schema does (on the component,
        # the field, or the record: a model_validator in "before" mode sits inside the
        # model's node) may drop a None record or make one of it: let validation say.
        return False
    walk = _Walk(core_schema)
    top = walk.shapes([core_schema])
    if top.open or name not in top.fields:
        return False
    below = walk.shapes(top.fields[name])
    if below.open or not below.values:
        return False
    return not walk.admits_none(below.values)


def _runs_own_validator(core_schema: Node) -> bool:
    """Whether any node of ``core_schema`` (definitions included) is a before, wrap or
    plain validator."""
    todo: list[Any] = [core_schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            # Not every dict met is a node: a record's "fields" maps names to fields,
            # and a field may be named "type".
            kind = node.get("type")
            if isinstance(kind, str) and kind in _VALIDATORS:
                return True
            todo.extend(node.values())
        elif isinstance(node, list | tuple):
            todo.extend(node)
    return False


def lost_path_problem(core_schema: Node, path: str) -> str | None:
    """Why dotted ``path`` names no field of the data, or None when it may name one."""
    walk = _Walk(core_schema)
    parts = path.split(".")
    nodes: list[Node] = [core_schema]
    for index, part in enumerate(parts):
        here = walk.shapes(nodes)
        if here.open:
            return None
        last = index == len(parts) - 1
        found: list[Node] = []
        if part == "*":
            found = [*(n for ns in here.fields.values() for n in ns), *here.values, *here.items]
            matched = bool(here.fields) or here.dicts or here.sequences
        else:
            found = [*here.fields.get(part, ()), *here.values]
            matched = part in here.fields or here.dicts
        if not matched:
            where = f" under {'.'.join(parts[:index])!r}" if index else ""
            if part == "*":
                return f"{where.strip() or 'the data'} is {_kinds(here)}, with no keys or items"
            return f"{part!r} is not a field{where} ({_listed(here)})"
        if last:
            return None
        nodes = found
    return None


def _listed(shapes: _Shapes) -> str:
    if shapes.fields:
        return "fields: " + ", ".join(sorted(shapes.fields))
    return f"it is {_kinds(shapes)}"


def _kinds(shapes: _Shapes) -> str:
    text = _kind_names(shapes)
    if text == "nothing":
        return text
    return ("an " if text[0] in "aeiou" else "a ") + text


def _kind_names(shapes: _Shapes) -> str:
    kinds = list(dict.fromkeys(shapes.leaves))
    if shapes.sequences:
        kinds.append("list")
    if shapes.fields:
        kinds.append("record")
    return " or ".join(kinds) or "nothing"


class _Walk:
    """Resolves core schema nodes (references, wrappers, unions) to their shapes."""

    def __init__(self, root: Node) -> None:
        self.refs: dict[str, Node] = dict(schema_refs(root))

    def shapes(self, nodes: list[Node]) -> _Shapes:
        result = _Shapes()
        for node in self._concrete(nodes):
            self._add(result, node)
        return result

    def _concrete(self, nodes: list[Node]) -> Iterator[Node]:
        return self._resolved(nodes, _WRAPPERS)

    def _resolved(self, nodes: list[Node], through: frozenset[str]) -> Iterator[Node]:
        """The nodes ``nodes`` stand for, each once: definitions, references, unions,
        lax-or-strict and json-or-python choices followed, and the wrappers of the kinds
        in ``through`` (and root models) looked into. A reference to no definition
        stands for ``any``."""
        todo = list(nodes)
        seen: set[int] = set()
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            kind = node.get("type")
            if kind == "definitions":
                todo.append(node["schema"])
            elif kind == "definition-ref":
                target = self.refs.get(node.get("schema_ref", ""))
                todo.append(target if target is not None else {"type": "any"})
            elif kind in through or (kind == "model" and node.get("root_model")):
                todo.append(node["schema"])
            elif kind == "lax-or-strict":
                todo += [node["lax_schema"], node["strict_schema"]]
            elif kind == "json-or-python":
                todo.append(node["python_schema"])
            elif kind == "union":
                todo += [c[0] if isinstance(c, tuple) else c for c in node["choices"]]
            elif kind == "tagged-union":
                todo += list(node["choices"].values())
            else:
                yield node

    def admits_none(self, nodes: list[Node]) -> bool:
        """Whether ``None`` may validate against any of ``nodes``: False only where
        each is certainly a record, a container or a leaf other than ``None``."""
        for node in self._resolved(nodes, _NONE_KEEPING_WRAPPERS):
            kind = node.get("type")
            if kind in ("nullable", "none", "any") or kind in _VALIDATORS:
                return True
            if kind == "literal" and None in node.get("expected", ()):
                return True
            if kind == "enum" and any(m.value is None for m in node.get("members", ())):
                return True
            if kind not in _NOT_NONE:
                return True  # a shape the walk does not know
        return False

    def _add(self, result: _Shapes, node: Node) -> None:
        kind = node.get("type")
        if kind == "model":
            # A model_validator sits between the model and its fields (a before, after
            # or wrap validator around them); a plain one replaces them: shape unknown.
            inner = node["schema"]
            while inner.get("type") in _WRAPPERS - {"nullable", "default"}:
                inner = inner["schema"]
            if inner.get("type") == "model-fields":
                self._record(result, inner, node.get("config") or {})
            else:
                result.open = True
        elif kind in ("model-fields", "typed-dict"):
            self._record(result, node, node.get("config") or {})
        elif kind == "dataclass":
            args = node["schema"]
            for spec in args.get("fields", ()):
                result.fields.setdefault(spec["name"], []).append(spec["schema"])
        elif kind == "dict":
            result.dicts = True
            values = node.get("values_schema")
            if values is None:
                result.open = True
            else:
                result.values.append(values)
        elif kind in _SEQUENCES:
            result.sequences = True
            items = node.get("items_schema")
            if items is None:
                result.open = True
            elif isinstance(items, list):
                result.items.extend(items)
            else:
                result.items.append(items)
        elif kind in _LEAVES:
            result.leaves.append("None" if kind == "none" else str(kind))
        else:  # Any, a plain validator, an instance check: unknown shape
            result.open = True

    def _record(self, result: _Shapes, node: Node, config: Mapping[str, Any]) -> None:
        extra = node.get("extra_behavior", config.get("extra_fields_behavior"))
        if extra == "allow":
            result.open = True
        for name, spec in node.get("fields", {}).items():
            result.fields.setdefault(name, []).append(spec["schema"])


_LEAVES = frozenset(
    {
        "none", "bool", "int", "float", "decimal", "complex", "str", "bytes", "date",
        "time", "datetime", "timedelta", "uuid", "url", "multi-host-url", "literal",
        "enum", "is-subclass", "callable",
    }
)

# Validators that may take input their inner schema would refuse: ``None`` among it.
_VALIDATORS = frozenset({"function-before", "function-wrap", "function-plain"})

# Nodes that never validate ``None`` (a root model does, when its root takes it).
_NOT_NONE = (_LEAVES - {"none"}) | _SEQUENCES | {
    "model", "model-fields", "typed-dict", "dataclass", "dict",
}
