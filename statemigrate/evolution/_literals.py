"""Python source for plain data, as a generated migrations module writes its values.

A generated module must load, and give back exactly the values it was written from:
``json.dumps`` does neither for every value. It writes infinities and NaN as ``Infinity``
and ``NaN`` (names Python does not know), a character outside the Basic Multilingual
Plane as a surrogate pair (``"\\ud83d\\ude00"``, two lone surrogates in Python, which no
snapshot can hold), and bytes not at all. :func:`python_literal` writes each type of
plain data as Python reads it back: ``str`` and ``bytes`` escaped to ASCII, so that a
line is as long as it looks and no character can pass for another, in double quotes
where that needs no escaping (the house style); infinities and NaN as ``float("inf")``
and the like. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["python_literal"]


def python_literal(value: Any) -> str:
    """Python source that evaluates to ``value``, a piece of plain data.

    ``eval(python_literal(v))`` is ``v``: the same types (``True`` stays a ``bool``, ``1.0``
    a ``float``), ``-0.0`` with its sign, a NaN a NaN of the same sign, dict keys in
    their order. A NaN's other payload bits are not written: ``float("nan")`` has its own.

    Raises:
        TypeError: ``value`` holds something other than ``None``, ``bool``, ``int``,
            ``float``, ``str``, ``bytes``, ``list`` and ``dict``.
    """
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return repr(value)
    if kind is float:
        return _float(value)
    if kind is str or kind is bytes:
        return _text(value)
    if kind is list:
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if kind is dict:
        items = (f"{python_literal(key)}: {python_literal(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no literal for a {kind.__qualname__} value: it is not plain data")


def _float(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # repr reads back as the same float, -0.0 included
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    return f'float("{sign}{"nan" if math.isnan(value) else "inf"}")'


def _text(value: str | bytes) -> str:
    # ascii() escapes every character outside ASCII (a character outside the BMP as
    # one \U escape) and picks single quotes; double quotes do as well when the text
    # holds none, and then it holds no single quote either (ascii() would have picked
    # double quotes), so nothing inside needs another escape.
    literal = ascii(value)
    if isinstance(value, bytes):
        prefix, has_double = "b", b'"' in value
    else:
        prefix, has_double = "", '"' in value
    if literal.startswith(prefix + "'") and not has_double:
        return f'{prefix}"{literal[len(prefix) + 1 : -1]}"'
    return literal
