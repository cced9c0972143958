"""Compare two JSON Schemas of one component, field by field, for migration stubs.

:func:`diff_schemas` walks an old and a new canonical JSON Schema together, through
nested objects, dict values (``*``) and list items (``*``), and lists what changed at
each object: fields added, removed or renamed, and everything it cannot turn into code
(a changed type, a field that became required, a new rule for extra keys) as ``todo``.
A ``todo`` blocks only the steps that need code: widening a ``Literal`` or loosening a
bound needs none in the upgrade, only in the downgrade, which meets values the old
version refuses; ``_schemawords`` says what changed in words.
Renames are never guessed: a field counts as renamed only when the new type declares
its old name (``validation_alias=AliasChoices("new", "old")``, found by
:func:`~statemigrate.evolution._aliashints.alias_hints`) or the caller names it.
Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from statemigrate.evolution._schemawords import (
    BOUNDS,
    allowed_values,
    allows_values,
    bound_changes,
    brief_json,
    describe,
    listed,
    value_changes,
)
from statemigrate.evolution._widening import widening

__all__ = ["Change", "ChangeKind", "FieldPath", "diff_schemas"]

FieldPath = tuple[str, ...]
ChangeKind = Literal["added", "removed", "renamed", "todo", "note"]


@dataclass(frozen=True)
class Change:
    """One difference between the old and the new schema, at one object.

    Attributes:
        kind: ``added``, ``removed``, ``renamed``; ``todo`` for what cannot be
            generated; ``note`` for what needs no code but deserves a look.
        old_parent: path of the containing object in the old data (``*`` = any key or
            list item).
        new_parent: the same object's path in the new data.
        name: the field (its new name for ``renamed``).
        old_name: the field's old name (``renamed``).
        required: the field must be present (in the version that has it).
        default: the field's default when it has one: as the JSON Schema shows it, until
            makemigration puts the plain form read from the type in its place (see
            ``_fielddefaults``).
        has_default: whether ``default`` is meaningful.
        detail: for ``todo`` and ``note``, what changed.
        directions: which steps a ``todo`` blocks.
        lossy: which steps may lose data to a ``todo``: values their target refuses
            (a type changed, a bound tightened, a ``Literal`` narrowed) must be
            converted or dropped.
        default_refused: why the field's default has no plain form that validates back
            to it (``has_default`` is then False): the step that supplies the field needs
            code.
    """

    kind: ChangeKind
    old_parent: FieldPath
    new_parent: FieldPath
    name: str
    old_name: str = ""
    required: bool = False
    default: Any = None
    has_default: bool = False
    detail: str = ""
    directions: frozenset[str] = frozenset({"upgrade", "downgrade"})
    lossy: frozenset[str] = frozenset()
    default_refused: str = ""

    @property
    def where(self) -> str:
        """The dotted path of the field, in the new data (old data for ``removed``)."""
        parent = self.old_parent if self.kind == "removed" else self.new_parent
        return ".".join((*parent, self.name)) if self.name else ".".join(parent) or "(root)"


# --- comparing two JSON Schemas ---------------------------------------------------------


def diff_schemas(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    aliases: Mapping[FieldPath, Iterable[str]] | None = None,
    renames: Mapping[str, str] | None = None,
) -> list[Change]:
    """Compare two canonical JSON Schemas and list the changes, parents before children.

    Args:
        old: the old version's JSON Schema.
        new: the new version's JSON Schema.
        aliases: per field path in the new data, the other names validation accepts
            for it (from ``AliasChoices``); an old field of such a name was renamed.
        renames: ``"old.path.field": "new_name"`` renames declared by hand.
    """
    differ = _Differ(old, new, aliases or {}, renames or {})
    # Definitions are reached through references; the roots are compared without them.
    differ.walk(_rest(dict(old), "$defs"), _rest(dict(new), "$defs"), (), ())
    return differ.changes


class _Differ:
    def __init__(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        aliases: Mapping[FieldPath, Iterable[str]],
        renames: Mapping[str, str],
    ) -> None:
        self.docs = (old, new)
        self.aliases = {path: set(names) for path, names in aliases.items()}
        self.renames = dict(renames)
        self.changes: list[Change] = []

    def resolve(self, side: int, node: Any) -> Any:
        seen = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                break
            seen.add(ref)
            node = self.docs[side].get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
        return node

    def same(self, a: Any, b: Any, assumed: frozenset[tuple[str, str]] = frozenset()) -> bool:
        """Structural equality with references followed (a recursive pair is assumed
        equal while it is being compared)."""
        if isinstance(a, dict) and isinstance(b, dict) and ("$ref" in a or "$ref" in b):
            pair = (str(a.get("$ref")), str(b.get("$ref")))
            if pair in assumed:
                return True
            return self.same(self.resolve(0, a), self.resolve(1, b), assumed | {pair})
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(self.same(a[k], b[k], assumed) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(
                self.same(x, y, assumed) for x, y in zip(a, b, strict=True)
            )
        return bool(a == b and type(a) is type(b))

    def first_difference(
        self,
        a: Any,
        b: Any,
        at: tuple[str, ...] = (),
        assumed: frozenset[tuple[str, str]] = frozenset(),
    ) -> tuple[tuple[str, ...], Any, Any] | None:
        """Where two schema nodes first differ, as :meth:`same` compares them: the JSON
        path inside the nodes (references followed) and the two values found there."""
        if isinstance(a, dict) and isinstance(b, dict) and ("$ref" in a or "$ref" in b):
            pair = (str(a.get("$ref")), str(b.get("$ref")))
            if pair in assumed:
                return None
            return self.first_difference(
                self.resolve(0, a), self.resolve(1, b), at, assumed | {pair}
            )
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys()):
                if key not in a or key not in b:
                    return (*at, key), a.get(key, _ABSENT), b.get(key, _ABSENT)
                found = self.first_difference(a[key], b[key], (*at, key), assumed)
                if found is not None:
                    return found
            return None
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                found = self.first_difference(x, y, (*at, str(index)), assumed)
                if found is not None:
                    return found
            return None
        return None if self.same(a, b, assumed) else (at, a, b)

    def todo(self, old_path: FieldPath, new_path: FieldPath, detail: str, **extra: Any) -> None:
        self.changes.append(Change("todo", old_path, new_path, "", detail=detail, **extra))

    def note(self, old_path: FieldPath, new_path: FieldPath, name: str, detail: str) -> None:
        self.changes.append(Change("note", old_path, new_path, name, detail=detail))

    def member(
        self,
        kind: Literal["added", "removed"],
        old_path: FieldPath,
        new_path: FieldPath,
        name: str,
        prop: dict[str, Any],
        required: bool,
    ) -> None:
        """Record a field that only one side has; ``prop`` is its schema on that side."""
        self.changes.append(
            Change(
                kind,
                old_path,
                new_path,
                name,
                required=required,
                default=prop.get("default"),
                has_default="default" in prop,
            )
        )

    def walk(self, old: Any, new: Any, old_path: FieldPath, new_path: FieldPath) -> None:
        old_r, new_r = self.resolve(0, old), self.resolve(1, new)
        if self.same(old_r, new_r):
            return
        if _is_record(old_r) and _is_record(new_r):
            self.record(old_r, new_r, old_path, new_path)
        elif (
            _is_mapping(old_r)
            and _is_mapping(new_r)
            and self.same(
                _rest(old_r, "additionalProperties"), _rest(new_r, "additionalProperties")
            )
        ):
            self.walk(
                old_r["additionalProperties"],
                new_r["additionalProperties"],
                (*old_path, "*"),
                (*new_path, "*"),
            )
        elif (
            _is_list(old_r)
            and _is_list(new_r)
            and self.same(_rest(old_r, "items"), _rest(new_r, "items"))
        ):
            self.walk(old_r["items"], new_r["items"], (*old_path, "*"), (*new_path, "*"))
        elif _optional(old_r) is not None and _optional(new_r) is not None:
            self.walk(_optional(old_r), _optional(new_r), old_path, new_path)
        elif _optional(new_r) is not None and not _nullable(old_r):
            # Every old value is still valid; only the downgrade meets a None.
            self.todo(
                old_path,
                new_path,
                f"{_dotted(new_path)} became optional (may be None): the downgrade must"
                " replace None with a value the old version accepts",
                directions=_DOWN,
                lossy=_DOWN,
            )
            self.walk(old_r, _optional(new_r), old_path, new_path)
        elif _optional(old_r) is not None and not _nullable(new_r):
            self.todo(
                old_path,
                new_path,
                f"{_dotted(new_path)} is no longer optional: the upgrade must replace None"
                " with a value",
                directions=_UP,
                lossy=_UP,
            )
            self.walk(_optional(old_r), new_r, old_path, new_path)
        elif (
            isinstance(old_r, dict)
            and isinstance(new_r, dict)
            and self.same(_rest(old_r, *BOUNDS), _rest(new_r, *BOUNDS))
        ):
            self.bounds(old_r, new_r, old_path, new_path)
        elif (
            allows_values(old_r)
            and allows_values(new_r)
            and self.same(_rest(old_r, *_VALUES), _rest(new_r, *_VALUES))
        ):
            self.values(old_r, new_r, old_path, new_path)
        elif isinstance(old_r, dict) and isinstance(new_r, dict) and self.widened(
            old_r, new_r, old_path, new_path
        ):
            return
        else:
            describe_old = partial(describe, resolve=partial(self.resolve, 0))
            describe_new = partial(describe, resolve=partial(self.resolve, 1))
            was, now = describe_old(old_r), describe_new(new_r)
            detail = f"{_dotted(new_path)} changed from {was} to {now}"
            found = self.first_difference(old_r, new_r)
            # The descriptions say it all for a changed type; a change deep in a union
            # leaves them alike: then say where it is.
            if found is not None and found[0] and was == now:
                where, before, after = found
                detail += (
                    f"; first at {'/'.join(where)}: {_short(before, describe_old)}"
                    f" became {_short(after, describe_new)}"
                )
            self.todo(old_path, new_path, detail, lossy=_BOTH)

    def widened(
        self, old: dict[str, Any], new: dict[str, Any], old_path: FieldPath, new_path: FieldPath
    ) -> bool:
        """A TODO for the one step that needs code when a union gained or lost members,
        or a plain type became a set of its values or the reverse (see ``_widening``)."""
        words = (
            partial(describe, resolve=partial(self.resolve, 0)),
            partial(describe, resolve=partial(self.resolve, 1)),
        )
        found = widening(old, new, self.same, words)
        if found is None:
            return False
        what, directions = found
        detail = f"{_dotted(new_path)} {what}"
        self.todo(old_path, new_path, detail, directions=directions, lossy=directions)
        return True

    def bounds(
        self, old: dict[str, Any], new: dict[str, Any], old_path: FieldPath, new_path: FieldPath
    ) -> None:
        """A TODO for each changed bound, in the steps whose target refuses data their
        source allowed; a loosened bound needs nothing in the upgrade."""
        for key, what, tightened in bound_changes(old, new):
            fix = "fix" if key == "pattern" else "clamp"
            if tightened == _UP:
                then = (
                    "a tighter bound: values the old version accepted may not validate;"
                    f" the upgrade must {fix} or drop them"
                )
            elif tightened == _DOWN:
                then = (
                    "a looser bound: the downgrade must"
                    f" {fix} or drop the values the old one refuses"
                )
            else:
                then = (
                    "each version may refuse values of the other;"
                    f" both steps must {fix} or drop them"
                )
            detail = f"{_dotted(new_path)}: {what}, {then}"
            self.todo(old_path, new_path, detail, directions=tightened, lossy=tightened)

    def values(
        self, old: dict[str, Any], new: dict[str, Any], old_path: FieldPath, new_path: FieldPath
    ) -> None:
        """A TODO for the steps that meet values their target does not allow: the
        downgrade for a ``Literal`` or enum widened, the upgrade for one narrowed."""
        gone, came = value_changes(old, new)
        where = _dotted(new_path)
        if not gone:
            detail = (
                f"{where} allows new values {listed(came)}: the downgrade must map them to"
                f" one of {listed(allowed_values(old))}"
            )
            directions = _DOWN
        elif not came:
            detail = (
                f"{where} no longer allows {listed(gone)}: the upgrade must map them to one"
                f" of {listed(allowed_values(new))}"
            )
            directions = _UP
        else:
            detail = (
                f"{where} no longer allows {listed(gone)} and allows new values"
                f" {listed(came)}: each step must map the values its target does not allow"
            )
            directions = _BOTH
        self.todo(old_path, new_path, detail, directions=directions, lossy=directions)

    def record(
        self, old: dict[str, Any], new: dict[str, Any], old_path: FieldPath, new_path: FieldPath
    ) -> None:
        extra = ("properties", "required", "$defs", "default")
        if not self.same(_rest(old, *extra), _rest(new, *extra)):
            self.todo(
                old_path,
                new_path,
                f"the object at {_dotted(new_path)} changed its rules for extra keys",
                lossy=_BOTH,
            )
        old_props, new_props = old["properties"], new["properties"]
        old_req, new_req = set(old.get("required", ())), set(new.get("required", ()))
        # Sorted, so the changes (and the generated code) do not depend on key order.
        removed = sorted(name for name in old_props if name not in new_props)
        added = sorted(name for name in new_props if name not in old_props)
        pairs: list[tuple[str, str]] = []
        for name in list(added):
            declared = [
                old_name
                for old_name in removed
                if self.renames.get(".".join((*old_path, old_name))) == name
                or old_name in self.aliases.get((*new_path, name), ())
            ]
            if len(declared) == 1:
                pairs.append((declared[0], name))
                removed.remove(declared[0])
                added.remove(name)
        for old_name, name in pairs:
            self.changes.append(
                Change(
                    "renamed", old_path, new_path, name, old_name=old_name, required=name in new_req
                )
            )
        for name in removed:
            self.member("removed", old_path, new_path, name, old_props[name], name in old_req)
            twin = [a for a in added if self.same(old_props[name], new_props[a])]
            if twin:
                self.note(
                    old_path,
                    new_path,
                    name,
                    f"{name!r} was removed and {twin[0]!r} added with the same schema;"
                    " if it is a rename, declare it: AliasChoices"
                    f"({twin[0]!r}, {name!r}) on the new field, or --rename"
                    f" {_dotted((*old_path, name))}={twin[0]}",
                )
        for name in added:
            self.member("added", old_path, new_path, name, new_props[name], name in new_req)
        for old_name, name in [(n, n) for n in sorted(old_props) if n in new_props] + pairs:
            self.field(
                old_props[old_name],
                new_props[name],
                (old_req, new_req),
                old_path,
                new_path,
                old_name,
                name,
            )

    def field(
        self,
        old: dict[str, Any],
        new: dict[str, Any],
        required: tuple[set[str], set[str]],
        old_path: FieldPath,
        new_path: FieldPath,
        old_name: str,
        name: str,
    ) -> None:
        was, now = old_name in required[0], name in required[1]
        child_old, child_new = (*old_path, old_name), (*new_path, name)
        if was and not now and "default" not in new:
            self.todo(
                child_old,
                child_new,
                f"{_dotted(child_new)} became optional without a default: the downgrade"
                " must supply a value where it is absent",
                directions=frozenset({"downgrade"}),
            )
        if now and not was and "default" not in old:
            self.todo(
                child_old,
                child_new,
                f"{_dotted(child_new)} became required: the upgrade must supply a value"
                " where it is absent",
                directions=frozenset({"upgrade"}),
            )
        if old.get("default") != new.get("default") and ("default" in old or "default" in new):
            self.note(
                old_path,
                new_path,
                name,
                f"the default of {_dotted(child_new)} changed from"
                f" {old.get('default')!r} to {new.get('default')!r}; stored values"
                " are kept as they are",
            )
        strip = ("default",)
        self.walk(_rest(old, *strip), _rest(new, *strip), child_old, child_new)


def _dotted(path: FieldPath) -> str:
    return ".".join(path) or "the top level"


def _rest(node: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {key: value for key, value in node.items() if key not in drop}


def _is_record(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("properties"), dict)


def _is_mapping(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "object"
        and isinstance(node.get("additionalProperties"), dict)
        and "properties" not in node
    )


def _is_list(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "array"
        and isinstance(node.get("items"), dict)
    )


def _optional(node: Any) -> Any:
    """What ``X | None`` allows beside ``None``, or ``None`` when the node is not that."""
    if not isinstance(node, dict) or not isinstance(node.get("anyOf"), list):
        return None
    branches = [b for b in node["anyOf"] if b != _NULL]
    if len(branches) == len(node["anyOf"]) or not branches or not set(node) <= {"anyOf", "default"}:
        return None
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _nullable(node: Any) -> bool:
    """Whether a node allows ``None`` in any way (so "became optional" is not news)."""
    if node == _NULL:
        return True
    branches = node.get("anyOf") if isinstance(node, dict) else None
    return isinstance(branches, list) and _NULL in branches


def _short(value: Any, words: Callable[[Any], str]) -> str:
    """A value found where two schemas differ: a schema node in words, anything else
    as short JSON; an absent key says so."""
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str) and value.startswith("#/$defs/"):  # a tag's definition
        value = {"$ref": value}
    return words(value) if isinstance(value, dict) else brief_json(value, 40)


_NULL = {"type": "null"}
_UP = frozenset({"upgrade"})
_DOWN = frozenset({"downgrade"})
_BOTH = _UP | _DOWN
_VALUES = ("enum", "const", "type")
"""What a ``Literal`` or an enum changes when it allows other values (``type`` too, when
the values no longer share one)."""

_ABSENT = object()
"""A key one side of a schema node lacks, in :meth:`first_difference`'s result."""
