"""The JSON ``statemigrate inspect --dump`` prints: decoded section data, written
without recursion.

A snapshot's data nests up to 1,024 levels (``MAX_NESTING``), deeper than Python's
``json`` follows under the default recursion limit; so the dump writes it with a stack
of its own, and takes whatever the reader takes. The text is what ``json.dumps(...,
indent=2, allow_nan=False)`` gives for the data in its JSON forms (see
:func:`dump_json`), each map's keys in their stored order.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["dump_json"]

_INDENT = "  "
_END = object()


def dump_json(value: object, *, section: str) -> str:
    """``value`` (decoded section data) as indented JSON text, with a final newline,
    each map's keys in their stored order (a dict's insertion order, an LRU's say,
    which sorting would hide).

    Bytes become ``{"$base64": "..."}``; bytes map keys, which JSON cannot hold, become
    the string ``"$base64:..."``. A float JSON has no number for becomes
    ``{"$float": "nan"}``, ``{"$float": "inf"}`` or ``{"$float": "-inf"}``, text that
    ``float()`` reads back. A map's own key that starts with ``$`` is shown with one more
    ``$`` in front (``"$base64"`` as ``"$$base64"``), so that no map of the data looks
    like one of those forms: a key with a single ``$`` in front is always one of them.
    Everything else that snapshots hold (dicts with str keys, lists, str, int, finite
    floats, bool, None) is already JSON's and shown as it is.

    The whole text is built before it is returned, so a failure part-way leaves no
    half document on stdout. ``section`` names the section, for callers' errors.
    """
    del section  # every value a snapshot holds has a JSON form, at any depth
    # One growing text, not a list of pieces: a flood of small values costs a few
    # bytes of text each, not an object each.
    out = io.StringIO()
    # One entry per open container: its items still to write, whether it is a map,
    # and the depth of its items.
    stack: list[tuple[Iterator[Any], bool, int]] = []
    _open(value, 0, out, stack)
    first = True  # the next item is its container's first
    while stack:
        items, is_map, depth = stack[-1]
        item: Any = next(items, _END)
        if item is _END:
            stack.pop()
            out.write(f"\n{_INDENT * (depth - 1)}{'}' if is_map else ']'}")
            first = False
            continue
        out.write(f"{'' if first else ','}\n{_INDENT * depth}")
        if is_map:
            key, item = item
            out.write(f"{encode_basestring_ascii(_key(key))}: ")
        first = _open(item, depth, out, stack)
    out.write("\n")
    return out.getvalue()


def _open(value: object, depth: int, out: io.StringIO, stack: list[Any]) -> bool:
    """Write ``value`` if it is a scalar, or open it and push its items; whether a
    container was opened (its first item comes next)."""
    if isinstance(value, bytes | bytearray | memoryview):
        out.write(_form("$base64", base64.b64encode(value).decode("ascii"), depth))
        return False
    if isinstance(value, float) and not math.isfinite(value):
        out.write(_form("$float", repr(value), depth))  # 'nan', 'inf' or '-inf'
        return False
    if isinstance(value, dict):
        if not value:
            out.write("{}")
            return False
        out.write("{")
        stack.append((iter(value.items()), True, depth + 1))
        return True
    if isinstance(value, list | tuple):
        if not value:
            out.write("[]")
            return False
        out.write("[")
        stack.append((iter(value), False, depth + 1))
        return True
    out.write(_scalar(value))
    return False


def _form(name: str, text: str, depth: int) -> str:
    """A one-key map of the dump's own (its key not escaped as the data's are)."""
    return f'{{\n{_INDENT * (depth + 1)}"{name}": "{text}"\n{_INDENT * depth}}}'


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    raise TypeError(f"{type(value).__name__} is not plain data")


def _key(key: object) -> str:
    if isinstance(key, bytes | bytearray):
        return "$base64:" + base64.b64encode(key).decode("ascii")
    if isinstance(key, str):
        return "$" + key if key.startswith("$") else key  # a single $ marks a form
    raise TypeError(f"a map key of type {type(key).__name__} is not plain data")
