"""Changes that widen or narrow what a field allows without changing the type of any
value it already held: a union that gains or loses members, a ``str`` field that became
an enum of strs (or the reverse).

Such a change needs code in one step only, the one whose target refuses values its
source allowed, as a widened ``Literal`` does: a union that gains ``Voucher`` takes
every old payment as it was, so the upgrade has nothing to do and only the downgrade
must convert or drop vouchers; a ``str`` field that became ``Status`` (values ``"a"``,
``"b"``) needs its upgrade to map the other strings, while the downgrade writes each
member's value, a str, as it is. :func:`widening` says which step that is, and what
changed in words. Pure functions over JSON Schema nodes, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from statemigrate._model._jsonschema import UNION_MODE
from statemigrate.evolution._schemawords import allowed_values, allows_values, listed

__all__ = ["Widening", "widening"]

Widening = tuple[str, frozenset[str]]
"""What changed, in words after the field's path, and the steps that need code."""

Same = Callable[[Any, Any], bool]
"""Structural equality of two schema nodes, the old one's first, references followed."""

Words = Callable[[Any], str]
"""A schema node in words (of the old or of the new schema)."""

_UP = frozenset({"upgrade"})
_DOWN = frozenset({"downgrade"})

# What a JSON type holds of the values an enum or a Literal allows.
_HOLDS: Mapping[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: type(value) is int,
    "boolean": lambda value: type(value) is bool,
}


def widening(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    same: Same,
    words: tuple[Words, Words],
) -> Widening | None:
    """The change from ``old`` to ``new`` when one side allows all the other does and
    more, without changing any value's type; None for any other change."""
    return _union_change(old, new, same, words) or _enum_change(old, new)


# --- unions ---------------------------------------------------------------------------


def _union_change(
    old: Mapping[str, Any], new: Mapping[str, Any], same: Same, words: tuple[Words, Words]
) -> Widening | None:
    old_members, new_members = _members(old), _members(new)
    if len(old_members) < 2 and len(new_members) < 2:
        return None  # no union on either side
    if not _same_rules(old, new, len(old_members), len(new_members)):
        return None
    gone = [m for m in old_members if not any(same(m, n) for n in new_members)]
    came = [n for n in new_members if not any(same(m, n) for m in old_members)]
    if (gone and came) or not (gone or came):
        return None  # a member changed (or was swapped): the values may change type
    if not _tags_kept(old, new, same):
        return None
    if _left_to_right(old) or _left_to_right(new):
        # The first member that takes a value gets it: only members added after every
        # old one (or removed from the end) leave the old values where they were.
        kept = old_members if came else new_members
        pairs = zip(old_members[: len(kept)], new_members[: len(kept)], strict=True)
        if not all(same(a, b) for a, b in pairs):
            return None
    old_words, new_words = words
    if came:
        what = listed(_shown_members(new, came, new_words))
        was = " or ".join(_shown_members(old, old_members, old_words))
        return (
            f"allows new members {what}: the downgrade must convert them to {was},"
            " or drop them",
            _DOWN,
        )
    what = listed(_shown_members(old, gone, old_words))
    now = " or ".join(_shown_members(new, new_members, new_words))
    return (
        f"no longer allows the members {what}: the upgrade must convert them to {now},"
        " or drop them",
        _UP,
    )


def _members(node: Mapping[str, Any]) -> list[Any]:
    """A union's members; a node that is no union is its own one member."""
    for key in ("oneOf", "anyOf"):
        if isinstance(node.get(key), list):
            return list(node[key])
    return [node]


def _same_rules(old: Mapping[str, Any], new: Mapping[str, Any], before: int, after: int) -> bool:
    """Whether the two sides differ in their members alone: the same kind of union (or
    a single type on one side), nothing else beside them but the tag."""
    rest = ("oneOf", "anyOf", "discriminator", "default")
    if before > 1 and after > 1:
        if ("oneOf" in old) != ("oneOf" in new):
            return False
        return {k: v for k, v in old.items() if k not in rest} == {
            k: v for k, v in new.items() if k not in rest
        }
    union = old if before > 1 else new
    return "discriminator" not in union and set(union) <= {"anyOf", UNION_MODE, "default"}


def _tags_kept(old: Mapping[str, Any], new: Mapping[str, Any], same: Same) -> bool:
    """Whether a tagged union keeps its tag field, and every tag that both sides have
    names the same member on both."""
    was, now = old.get("discriminator"), new.get("discriminator")
    if was is None and now is None:
        return True
    if not (isinstance(was, dict) and isinstance(now, dict)):
        return False
    if was.get("propertyName") != now.get("propertyName"):
        return False
    before, after = was.get("mapping", {}), now.get("mapping", {})
    return all(
        same({"$ref": before[tag]}, {"$ref": after[tag]}) for tag in before.keys() & after.keys()
    )


def _left_to_right(node: Mapping[str, Any]) -> bool:
    return node.get(UNION_MODE) == "left_to_right"


def _shown_members(union: Mapping[str, Any], members: list[Any], words: Words) -> list[str]:
    """Members in words: by their tags in a tagged union (``kind="voucher"``), else by
    their types (``bytes``)."""
    tag = union.get("discriminator")
    if isinstance(tag, dict) and isinstance(tag.get("mapping"), dict):
        targets = {ref: name for name, ref in tag["mapping"].items()}
        names = [targets.get(m.get("$ref")) if isinstance(m, dict) else None for m in members]
        if all(names):
            field = tag.get("propertyName")
            return [f"{field}={json.dumps(name)}" for name in names]
    return [words(member) for member in members]


# --- a str field and an enum of strs ---------------------------------------------------


def _enum_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> Widening | None:
    """A plain type that became a set of values of that type, or the reverse: only the
    step into the set of values needs code."""
    if allows_values(new) and _holds_all(old, new):
        return (
            f"changed from {_plain(old)} to one of {listed(allowed_values(new))}: the upgrade"
            f" must map every other {_plain(old)} to one of them",
            _UP,
        )
    if allows_values(old) and _holds_all(new, old):
        return (
            f"changed from one of {listed(allowed_values(old))} to {_plain(new)}: the"
            f" downgrade must map every other {_plain(new)} to one of them",
            _DOWN,
        )
    return None


def _holds_all(plain: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether ``plain`` is a bare JSON type (no bound, no format) that holds every
    value ``values`` allows."""
    holds = _HOLDS.get(str(plain.get("type")))
    if holds is None or set(plain) != {"type"}:
        return False
    allowed = values["enum"] if isinstance(values.get("enum"), list) else [values.get("const")]
    return all(holds(value) for value in allowed)


def _plain(node: Mapping[str, Any]) -> str:
    return {"string": "str", "integer": "int", "boolean": "bool"}[str(node["type"])]
