"""Schema shapes for property tests: a strategy that draws them, and the type each names.

A shape is a leaf, or ("list"|"dict"|"optional", inner), or ("record", fields) with
fields as (name, shape, required). What a leaf is (a name, a tuple) is up to the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NotRequired

from hypothesis import strategies as st
from typing_extensions import TypedDict

PLAIN_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "none": type(None),
    "any": Any,
}
"""The type of each plain leaf name."""

_CONTAINERS = frozenset({"list", "dict", "optional", "record"})
_records = itertools.count()


def shapes(leaves: st.SearchStrategy[Any], field_names: st.SearchStrategy[str]) -> Any:
    """Shapes built from ``leaves``, eight at the most, records naming fields from
    ``field_names``."""
    return st.recursive(
        leaves,
        lambda inner: st.tuples(st.just("list"), inner)
        | st.tuples(st.just("dict"), inner)
        | st.tuples(st.just("optional"), inner)
        | st.tuples(
            st.just("record"),
            st.lists(st.tuples(field_names, inner, st.booleans()), min_size=1, max_size=4,
                     unique_by=lambda field: field[0]),
        ),
        max_leaves=8,
    )


def type_of(spec: Any, leaf: Callable[[Any], Any] = PLAIN_TYPES.__getitem__) -> Any:
    """The type ``spec`` names, records as TypedDicts; ``leaf`` gives a leaf's type."""
    if isinstance(spec, str) or spec[0] not in _CONTAINERS:
        return leaf(spec)
    kind, inner = spec
    if kind == "list":
        return list[type_of(inner, leaf)]  # type: ignore[misc]
    if kind == "dict":
        return dict[str, type_of(inner, leaf)]  # type: ignore[misc]
    if kind == "optional":
        return type_of(inner, leaf) | None
    fields = {
        name: type_of(shape, leaf) if required else NotRequired[type_of(shape, leaf)]
        for name, shape, required in inner
    }
    return TypedDict(f"Record{next(_records)}", fields)  # type: ignore[operator]
