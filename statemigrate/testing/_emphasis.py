"""Values the strategies draw more often than hypothesis would on its own.

Hypothesis spreads its draws evenly over a type's values, but a migration step breaks
on a few of them far more often than on the rest, and the checks run about a hundred
examples: a value drawn once in two hundred floats slips through most runs. So:

- a float is one of its *specials* about once in :data:`SPECIAL` draws: ``-0.0`` (which
  ``x + 0.0``, ``abs`` and a round trip through ``int`` or text turn into ``0.0``) and,
  where the schema allows them, the infinities;
- a decimal is one of its specials as often: ``Decimal("-0")``, and where
  ``allow_inf_nan=True`` allows them, ``Infinity``, ``-Infinity`` and ``NaN``;
- about one string in four has whitespace at an end, or is whitespace only, half the
  strings of one state in two (see :mod:`statemigrate.testing._spaced`): what steps
  that split and join text lose;
- a collection of records (a list, set or dict of models, dataclasses or
  ``TypedDict``s) holds at least one record in all but about one draw in
  :data:`EMPTY`, and a record's optional field holding one is present as often: the
  records are where the state is, and an empty collection checks none of the step's
  code for them. Not where the record holds itself, directly or further down (a tree
  whose nodes keep a list of nodes): a tree whose every node has children never ends.

A float or a decimal shrinks towards hypothesis' own draw. A collection of records
shrinks towards one record, not none: a counterexample holds a record even where the
failure does not need one (hypothesis draws its shrink target far more often than its
odds say, so a collection that shrank to empty came out empty in a third of the
states or more).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import Any

from statemigrate._model._coreschema import schema_nodes

__all__ = ["EMPTY", "SPECIAL", "RecordCollections", "decimal_specials", "float_specials"]

Node = Mapping[str, Any]

SPECIAL = 4  # about one float or decimal in this many is one of its specials
EMPTY = 8  # about one collection of records in this many may be empty (or absent)

# Kinds of node that hold items or values, and the key of their items' schema.
_COLLECTIONS = {
    "list": "items_schema",
    "set": "items_schema",
    "frozenset": "items_schema",
    "deque": "items_schema",
    "dict": "values_schema",
    "ordered-dict": "values_schema",
}
_RECORDS = frozenset({"model", "typed-dict", "dataclass"})
# Wrappers whose inner schema is what the value is, as far as holding records goes.
_WRAPPERS = frozenset(
    {"default", "nullable", "function-after", "function-before", "function-wrap", "custom-error"}
)


def float_specials(node: Node, *, allow_infinity: bool) -> list[float]:
    """The special floats a float node of a core schema accepts."""
    specials = []
    if _takes_zero(node) and _is_multiple(node, 0.0):
        specials.append(-0.0)
    if allow_infinity:
        specials += [math.inf, -math.inf]
    return specials


def decimal_specials(node: Node) -> list[decimal.Decimal]:
    """The special decimals a decimal node of a core schema accepts: non-finite ones
    only where it allows them and sets no bound (pydantic refuses them past one)."""
    specials = [decimal.Decimal("-0")] if _takes_zero(node) else []
    unbounded = all(node.get(key) is None for key in ("ge", "gt", "le", "lt", "multiple_of"))
    if node.get("allow_inf_nan") and unbounded and node.get("max_digits") is None:
        specials += [decimal.Decimal(text) for text in ("Infinity", "-Infinity", "NaN")]
    return specials


def _takes_zero(node: Node) -> bool:
    low, high = node.get("ge", node.get("gt")), node.get("le", node.get("lt"))
    if low is not None and (low > 0 or (low == 0 and "gt" in node)):
        return False
    return not (high is not None and (high < 0 or (high == 0 and "lt" in node)))


def _is_multiple(node: Node, value: float) -> bool:
    step = node.get("multiple_of")
    return not step or value % step == 0


class RecordCollections:
    """Which nodes of one core schema are collections of records that may be drawn
    non-empty: not where a record holds itself (see the module's documentation).

    ``refs`` maps every ``ref`` of the schema to its node.
    """

    def __init__(self, refs: Mapping[str, Node]) -> None:
        self.refs = refs
        self._cyclic = self._cyclic_refs()

    def holds_records(self, node: Node) -> bool:
        """Whether ``node`` (a list, set, deque or dict node, or a field wrapping one)
        is a collection of records none of which holds itself."""
        node = self._unwrapped(node)
        items = node.get(_COLLECTIONS.get(str(node.get("type")), ""))
        if not isinstance(items, Mapping) or not self._is_record(items):
            return False
        return not (_refs_in(items, self.refs) & self._cyclic)

    def _unwrapped(self, node: Node) -> Node:
        seen = 0
        while seen < 64:  # a chain of wrappers and references, never a cycle of them
            kind = node.get("type")
            if kind in _WRAPPERS or kind == "definitions":
                node = node["schema"]
            elif kind == "definition-ref" and node.get("schema_ref") in self.refs:
                node = self.refs[node["schema_ref"]]
            else:
                break
            seen += 1
        return node

    def _is_record(self, node: Node) -> bool:
        node = self._unwrapped(node)
        kind = node.get("type")
        if kind in _RECORDS:
            return True
        if kind == "tagged-union":
            return all(self._is_record(choice) for choice in node["choices"].values())
        if kind == "union":
            choices = [c[0] if isinstance(c, tuple) else c for c in node["choices"]]
            return all(self._is_record(choice) for choice in choices)
        return False

    def _cyclic_refs(self) -> set[str]:
        """The refs from which the same ref is reached again."""
        below = {ref: _refs_in(node, {}) for ref, node in self.refs.items()}
        cyclic = set()
        for start in below:
            todo, seen = list(below[start]), set()
            while todo:
                ref = todo.pop()
                if ref == start:
                    cyclic.add(start)
                    break
                if ref not in seen:
                    seen.add(ref)
                    todo += below.get(ref, ())
        return cyclic


def _refs_in(node: object, refs: Mapping[str, Node]) -> set[str]:
    """The refs ``node`` names, and (with ``refs``) those their nodes name in turn."""
    found: set[str] = set()
    todo: list[object] = [node]
    while todo:
        for item in schema_nodes(todo.pop()):
            ref = item.get("schema_ref")
            if item.get("type") == "definition-ref" and isinstance(ref, str) and ref not in found:
                found.add(ref)
                if ref in refs:
                    todo.append(refs[ref])
    return found
