"""A value a validator of the schema refuses, drawn again where the validator sits.

A ``mode="before"`` field validator (``sku`` stripped, upper-cased, matched against a
pattern) or a model's own validator refuses some of the values its inner schema
describes. Refused only when the whole state is validated, one refused ``sku`` threw
away the whole state, so states holding many lines, or payments, or anything beside
the lines, were the ones thrown away most: what was checked collapsed to the smallest
states. Validated here, at the validator's own node (the field's value, the model),
the refused value alone is drawn again, and the rest of the state stays as drawn.

A validator of the state itself (the top level's) is left to the state's validation:
drawn again here, its refusals went uncounted, and the check no longer said that most
drawn states were refused (and that the few it checked lean to the ones accepted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic_core
from hypothesis import reject
from hypothesis import strategies as st

__all__ = ["TRIES", "local_validator", "redrawn"]

TRIES = 3
"""Draws of one value before the whole state is drawn again. Each try spends the
example's entropy again, and a large value tried ten times ran past hypothesis' budget
(its data_too_large health check); three let a validator that takes one value in two
through seven times in eight, and the state-wide retry does the rest."""

Accepts = Callable[[object], bool]


def local_validator(node: Mapping[str, Any], refs: Mapping[str, Any]) -> Accepts | None:
    """Whether a drawn value passes ``node`` on its own, or ``None`` when the node
    cannot be validated apart from its schema (then the whole state's validation
    decides, as before)."""
    try:
        validator = pydantic_core.SchemaValidator(_standalone(node, refs))
    except Exception:  # pydantic_core raises its SchemaError and others for odd schemas
        return None

    def accepts(value: object) -> bool:
        try:
            validator.validate_python(value)
        except pydantic_core.ValidationError:
            return False
        except Exception:
            # A validator reading what only the whole state holds (``info.data`` of
            # other fields): the whole state's validation decides.
            return True
        return True

    return accepts


def _standalone(node: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
    """``node`` with the definitions it may refer to."""
    own = node.get("ref")
    others = [schema for ref, schema in refs.items() if ref != own]
    if not others:
        return dict(node)
    return {"type": "definitions", "schema": dict(node), "definitions": others}


def redrawn(
    inner: st.SearchStrategy[Any],
    accepts: Accepts,
    *,
    mark: Callable[[], int],
    forget: Callable[[int], None],
) -> st.SearchStrategy[Any]:
    """``inner``, drawn again (up to :data:`TRIES` times) while ``accepts`` refuses
    it; past that the example is rejected, and the state is drawn again whole. What a
    refused draw recorded (``mark()`` before it) is forgotten: it is in no state.

    Not ``inner.filter(accepts)``: a filter retries out of sight, so what a refused
    value recorded could not be forgotten."""

    @st.composite
    def validated(draw: st.DrawFn) -> Any:
        for _ in range(TRIES):
            start = mark()
            value = draw(inner)
            if accepts(value):
                return value
            forget(start)
        reject()

    return validated()
