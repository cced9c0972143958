"""Floats and decimals under ``multiple_of``, drawn as multiples of the step.

Drawing any number and keeping the multiples fails on both counts: hypothesis draws a
multiple of ``0.5`` among arbitrary floats too seldom, and a float it may draw, an
infinity, has no quotient to round (the check stopped with an ``OverflowError`` on
``Annotated[float, Field(multiple_of=0.5)]``). So a whole number ``k`` is drawn, within
the bounds divided by the step, and ``k * step`` is the value. Where a side has no bound,
``k`` stays within :data:`_FLOAT_SPAN` (:data:`_DECIMAL_SPAN`) of zero; the few products a
rounding puts past an exclusive bound are drawn again.
"""

from __future__ import annotations

import decimal
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st

__all__ = ["decimal_multiples", "float_multiples"]

Node = Mapping[str, Any]

_FLOAT_SPAN = 2**53  # multiples either side of zero: k below it is an exact float
_DECIMAL_SPAN = 10**15  # and for decimals: k * step stays within 28 digits for most steps


def float_multiples(node: Node, step: float) -> st.SearchStrategy[float]:
    """Finite multiples of ``step`` (> 0) within the float node's bounds."""
    # A step so large that few multiples are finite floats draws those few.
    room = sys.float_info.max / step
    most = min(_FLOAT_SPAN, math.floor(room)) if math.isfinite(room) else _FLOAT_SPAN
    low, high = _bounds(node)

    def index(bound: float, rounded: Callable[[float], int]) -> int:
        # Clamped before rounding: a bound past the span divides to an infinity.
        return rounded(min(max(bound / step, -most - 1.0), most + 1.0))

    first = -most if low is None else max(-most, index(low, math.ceil))
    last = most if high is None else min(most, index(high, math.floor))
    if first > last:
        return st.nothing()
    within = _within(node, low, high)
    return (
        st.integers(first, last)
        .map(lambda k: float(k * step))
        .filter(lambda x: math.isfinite(x) and within(x))
    )


def decimal_multiples(node: Node, step: object) -> st.SearchStrategy[decimal.Decimal]:
    """Multiples of ``step`` (> 0; a float, as ``Field(multiple_of=0.1)`` gives it, is
    read as its shortest text) within the decimal node's bounds."""
    step = step if isinstance(step, decimal.Decimal) else decimal.Decimal(str(step))
    low, high = _bounds(node)

    def index(bound: Any, rounding: str) -> int:
        quotient = decimal.Decimal(str(bound)) / step
        return int(quotient.to_integral_value(rounding=rounding))

    first = -_DECIMAL_SPAN if low is None else index(low, decimal.ROUND_CEILING)
    last = first + 2 * _DECIMAL_SPAN if high is None else index(high, decimal.ROUND_FLOOR)
    if low is None and high is not None:
        first = last - 2 * _DECIMAL_SPAN
    if first > last:
        return st.nothing()
    return (
        st.integers(first, last)
        .map(lambda k: decimal.Decimal(k) * step)
        .filter(_within(node, low, high))
    )


def _bounds(node: Node) -> tuple[Any, Any]:
    return node.get("ge", node.get("gt")), node.get("le", node.get("lt"))


def _within(node: Node, low: Any, high: Any) -> Callable[[Any], bool]:
    """Whether a value is within the node's bounds, exclusive ones excluded."""

    def within(value: Any) -> bool:
        if low is not None and (value < low or (value == low and "gt" in node)):
            return False
        return high is None or not (value > high or (value == high and "lt" in node))

    return within
