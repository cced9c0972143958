"""The checks of a restore's data that run in C, when the extension was built.

``_cchecks.c`` holds two loops, each standing in for work in Python that does more
than its answer needs:

- ``records_fit`` runs the loop of ``_inplace._required_record_fits`` over a dict's
  values or a list's items, for records whose fields are scalars, optional scalars,
  lists of scalars or ``Any``: the records a cache is made of. Asked to, it also
  requires plain data, so that a restore checks a step's output for both in one walk
  (``SchemaVersion.in_place_plain``);
- ``packs_plain`` answers ``strictly_plain`` without packing the value to bytes;
- ``records_bytes_fit`` reads the msgpack bytes of such a collection of records and
  says whether msgspec's typed decoding of them is exact, which packing the decoded
  value again would otherwise have to show (``_snapshot._msgpack.unpack_typed``).

On W1's million records the one walk takes 0.1–0.2 s, where the Python loop took
0.85 s and the plain-data check (ormsgpack packing the output) 0.21 s more
(``benchmarks/bench_restore.py``). The wheel carries the
extension when a C compiler was there to build it (``hatch_build.py``); without it,
every check runs as before, with the same results.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACCELERATED",
    "BytesCheck",
    "Fields",
    "RecordsCheck",
    "built",
    "packs_plain",
    "records_bytes_check",
    "records_check",
]

try:
    from statemigrate._model import _cchecks
except ImportError:  # built without a C compiler, or for another interpreter
    _c: Any = None
else:
    _c = _cchecks

# STATEMIGRATE_PURE_PYTHON=1 runs the Python loops alone, to compare the two. A value
# that reads as "no" (0, false, no, off) leaves the C checks on, as it would seem to.
_PURE_PYTHON = os.environ.get("STATEMIGRATE_PURE_PYTHON", "").strip().lower()
ACCELERATED = _c is not None and _PURE_PYTHON in ("", "0", "false", "no", "off")
"""Whether the checks run in C."""


def built() -> bool:
    """Whether the extension was built and loads, whether or not it is in use."""
    return _c is not None


Fields = tuple[tuple[str, type, str], ...]
"""Each field of a record as ``_cchecks.c`` reads it: name, type, kind letter."""

RecordsCheck = Callable[[Any], bool]
"""Whether every record in a dict's values (and every key) or a list's items fits."""


def records_check(
    fields: Fields, key_type: type | None, *, plain: bool = False
) -> RecordsCheck | None:
    """The C check of records with ``fields`` (name, type, kind letter, as
    ``_cchecks.c`` reads them) under keys of exactly ``key_type`` (None: any key),
    or None when the extension is not in use. With ``plain`` it also requires every
    value (and key) to pack as it is, as ``packs_plain`` does; keys must be ``str``."""
    if not ACCELERATED:
        return None
    check: Callable[..., bool] = _c.records_fit
    names = tuple(name for name, _, _ in fields)
    types = tuple(kind for _, kind, _ in fields)
    kinds = _kinds(fields)

    def all_fit(container: Any) -> bool:
        return check(container, names, types, kinds, key_type, plain)

    return all_fit


def packs_plain(value: object) -> bool:
    """True only when ormsgpack packs ``value`` under ``strictly_plain``'s options;
    False also when it cannot tell (the extension is not in use, or the value holds
    what only ormsgpack judges: an int past 64 signed bits, nesting past 128 levels)."""
    return ACCELERATED and bool(_c.packs_plain(value))


BytesCheck = Callable[["bytes | bytearray | memoryview", int], "tuple[int, ...] | None"]
"""How many records each collection in msgpack bytes holds when the bytes are laid out
exactly as declared (with at most the given number of maps and lists), or None."""

# The msgpack types each field's type is read from; "*" is Any, and a collection's
# field (typed object, as Any is).
_CLASSES: dict[type, bytes] = {
    int: b"i", float: b"f", str: b"s", bool: b"b", bytes: b"y", type(None): b"n", object: b"*",
}


def records_bytes_check(
    root: Fields | None, collections: tuple[tuple[bool, Fields], ...]
) -> BytesCheck | None:
    """The C reading of the bytes of records: ``collections`` (each ``dict[str,
    record]`` when its flag is set, else ``list[record]``, with its records' fields
    as :func:`records_check` takes them), at the root when ``root`` is None, else
    each in a field of kind ``c`` of a root record with fields ``root``. None when the
    extension is not in use or a field's type is not one msgpack has."""
    every_field = [*(root or ()), *(field for _, fields in collections for field in fields)]
    if not ACCELERATED or any(kind not in _CLASSES for _, kind, _ in every_field):
        return None
    check: Callable[..., tuple[int, ...] | None] = _c.records_bytes_fit
    root_spec = None if root is None else _spec(root)
    specs = tuple((is_map, _spec(fields)) for is_map, fields in collections)

    def records_in(raw: bytes | bytearray | memoryview, budget: int) -> tuple[int, ...] | None:
        return check(raw, root_spec, specs, budget)

    return records_in


def _kinds(fields: Fields) -> bytes:
    return "".join(letter for _, _, letter in fields).encode("ascii")


def _spec(fields: Fields) -> tuple[tuple[bytes, ...], bytes, bytes]:
    names = tuple(name.encode("utf-8", "surrogatepass") for name, _, _ in fields)
    return names, _kinds(fields), b"".join(_CLASSES[kind] for _, kind, _ in fields)
