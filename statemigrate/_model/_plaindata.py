"""Plain data: the values a snapshot section can hold, and conversions into them.

*Plain data* is what msgpack can carry without extension types and what the snapshot
decoder accepts: ``dict`` with ``str`` keys, ``list``, ``str``, ``bytes``, ``int`` (in
msgpack's 64-bit range), ``float``, ``bool`` and ``None``, nested to any depth the
decoder allows.

Migration steps see only plain data, so they never depend on the classes of the code
that wrote a snapshot. :func:`to_plain` turns the richer values a schema model holds
(datetimes, UUIDs, enums, sets, nested models, ...) into plain data in the same shapes
pydantic's JSON mode would use, so that validating the result against the same schema
gives the original value back.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from typing import Any

import ormsgpack
import pydantic
import pydantic_core

from statemigrate._model._accel import packs_plain
from statemigrate._model._shown import shortened

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_NESTING",
    "NoPlainForm",
    "copy_plain",
    "find_not_plain",
    "is_plain",
    "not_plain_output",
    "same_plain",
    "strictly_plain",
    "text_problem",
    "to_plain",
]

# msgpack stores integers in at most 64 bits, signed or unsigned.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_INT_MIN = INT_MIN
_INT_MAX = INT_MAX

_SCALARS = (str, bytes, float, bool, type(None))
# ormsgpack options under which it packs plain data only: each type it would convert
# (or pack as its base type) goes to a ``default`` that is not there, so it refuses.
_ONLY_PLAIN = (
    ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_UUID
)


def is_plain(value: object) -> bool:
    """Tell whether ``value`` is plain data, checking every nested value.

    Exact types are required (a ``str`` subclass such as a ``StrEnum`` member is not
    plain): the snapshot encoder and equality of exports both rely on it.
    """
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            assert isinstance(item, dict)
            for key, sub in item.items():
                if type(key) is not str:
                    return False
                stack.append(sub)
        elif kind is list:
            assert isinstance(item, list)
            stack.extend(item)
        elif kind is int:
            assert isinstance(item, int)
            if not _INT_MIN <= item <= _INT_MAX:
                return False
        elif kind not in _SCALARS:
            return False
    return True


MAX_NESTING = 1024
"""The most levels of maps and lists a snapshot holds. The C unpacker refuses nesting
past this depth; the pure-Python fallback stops earlier, near the interpreter's
recursion limit (about 990 levels by default)."""


def find_not_plain(
    value: object, *, buffers: bool = True
) -> tuple[list[object], str] | None:
    """Return the path to the first value that is not plain data, and what is wrong.

    This is what the snapshot encoder accepts: it differs from :func:`is_plain` in
    taking ``bytes`` map keys (the decoder does) and in requiring every ``str`` to be
    encodable as UTF-8 (a lone surrogate, as ``os.fsdecode`` makes of a non-UTF-8 file
    name, is not), since msgpack strings are UTF-8. ``bytearray`` and ``memoryview``
    are written as bytes unless ``buffers`` is False. ``None`` when all of ``value`` is
    plain.
    """
    stack: list[tuple[object, list[object]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if len(path) >= MAX_NESTING and kind in (dict, list):
            # Deeper than any snapshot holds, or a container that holds itself: a walk
            # of it would never end.
            return path, (
                f"containers nested deeper than {MAX_NESTING} levels (or a map or list"
                " that holds itself)"
            )
        # Children go on the stack last first, so that the first bad one in order is
        # the one reported (in a step that broke every record, the first record).
        if kind is dict:
            assert isinstance(item, dict)
            children: list[tuple[object, list[object]]] = []
            for key, sub in item.items():
                if type(key) is bytes:  # the decoder takes bytes keys too
                    children.append((sub, [*path, key]))
                    continue
                if type(key) is not str:
                    return path, f"a map key of type {type(key).__qualname__} ({shortened(key)})"
                problem = text_problem(key)
                if problem:
                    return [*path, key], f"the key {problem}"
                children.append((sub, [*path, key]))
            stack.extend(reversed(children))
        elif kind is list:
            assert isinstance(item, list)
            stack.extend((item[index], [*path, index]) for index in reversed(range(len(item))))
        elif kind is str:
            assert isinstance(item, str)
            problem = text_problem(item)
            if problem:
                return path, f"the string {problem}"
        elif kind is int:
            assert isinstance(item, int)
            if not INT_MIN <= item <= INT_MAX:
                return path, f"the integer {shortened(item)} does not fit in 64 bits"
        elif kind not in _SCALARS and not (buffers and kind in (bytearray, memoryview)):
            return path, f"a {kind.__qualname__} value ({shortened(item)}) is not plain data"
    return None


def not_plain_output(value: object) -> tuple[list[object], str] | None:
    """Where a migration step's output is not plain data, and what is wrong; ``None``
    when all of it is.

    The one rule for a step's output, applied by every caller of steps (a restore, the
    ``migrate`` command, the testing kit's checks): what the snapshot encoder accepts
    (:func:`find_not_plain`), exact types. It runs after every step of every restore,
    so the common answer, "all plain", comes from ormsgpack packing the output with
    every type it would convert passed through to a ``default`` it does not have: a
    refusal in C, about 25 times faster than a walk in Python over a large cache. Only
    a refusal walks, for the path (ormsgpack also refuses ``bytes`` keys and nesting
    past its depth, which the walk then allows).
    """
    if strictly_plain(value):
        return None
    return find_not_plain(value)


def strictly_plain(value: object) -> bool:
    """Whether ``value`` packs as it is, with ``str`` keys only and no type converted.

    ormsgpack packs it with every type it would convert passed through to a
    ``default`` it does not have, so True comes from C. False for anything else: a
    value that is not plain data, and also plain data the snapshot decoder takes but
    ormsgpack does not (``bytes`` keys, nesting past its depth), which
    :func:`find_not_plain` accepts. An export may count on True: such data is written
    byte for byte as it is.
    """
    if packs_plain(value):  # the same answer from C, without writing the bytes
        return True
    try:
        ormsgpack.packb(value, option=_ONLY_PLAIN)
    except TypeError:  # ormsgpack's MsgpackEncodeError is one
        return False
    return True


def same_plain(left: object, right: object) -> bool:
    """Whether two values are the same plain data, exactly: each packs, and to the
    same msgpack bytes.

    A check at C speed that a state comes back unchanged, stricter than any walk in
    Python need be: msgpack keeps every type plain data has apart (``1``, ``1.0`` and
    ``True`` are three values), a float's every bit (``-0.0`` is not ``0.0``) and a
    dict's key order, and the packer refuses anything else (a tuple, a ``str``
    subclass, a key that is no ``str``). So True means that no comparison can find a
    difference; False means only that one may exist, for a slower comparison to find
    or dismiss (a NaN of another payload, the same keys in another order).
    """
    try:
        packed = ormsgpack.packb(left, option=_ONLY_PLAIN)
        return packed == ormsgpack.packb(right, option=_ONLY_PLAIN)
    except TypeError:  # not plain data, or nested past the packer's depth
        return False


def text_problem(text: str) -> str:
    """What keeps ``text`` from being encoded as UTF-8, or ``""`` when nothing does."""
    if text.isascii():
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a lone surrogate {text[exc.start]!r} at index {exc.start},"
            " which UTF-8 cannot encode (store such names as bytes, e.g. os.fsencode)"
        )
    return ""


def copy_plain(value: Any) -> Any:
    """Return a deep copy of plain data (containers copied, immutable leaves shared).

    Migration steps may mutate their input in place; copy first when the input must
    survive, e.g. when it is the live export of a component. Much faster than
    :func:`copy.deepcopy` because it knows the only containers are ``dict`` and ``list``.
    """
    kind = type(value)
    if kind is dict:
        return {key: copy_plain(sub) for key, sub in value.items()}
    if kind is list:
        return [copy_plain(sub) for sub in value]
    return value


def to_plain(value: object) -> Any:
    """Convert ``value`` into new plain data.

    Containers are rebuilt: mappings become ``dict`` with ``str`` keys, lists, tuples,
    sets and other collections become ``list`` (sets sorted when their items allow it,
    so equal sets give equal bytes in every process). Leaves follow pydantic's JSON
    conventions: datetimes, dates and times as ISO 8601 strings, timedeltas as ISO 8601
    durations, UUIDs, decimals and paths as strings, enums as their value, complex
    numbers as text, regular expressions as their pattern (text or bytes). ``bytes``
    and non-finite floats are kept as they are, since msgpack holds them natively.
    Nested pydantic models and dataclasses become dicts of their fields.

    Raises:
        TypeError: a value has no plain form (an arbitrary object, an integer outside
            msgpack's 64-bit range, a mapping key that cannot be a string, two keys that
            become the same string). The message gives the path to the value.
    """
    return _convert(value, ())


def _where(path: tuple[object, ...]) -> str:
    return "".join(f"[{shortened(part)}]" for part in path) or "the top level"


class NoPlainForm(TypeError):
    """A value that :func:`to_plain` cannot convert.

    ``problem`` says what, without where; ``path`` is where, from the value
    :func:`to_plain` was given. A caller that knows where that value sits (the
    exporter, at a field) names the place itself instead of "the top level".
    """

    def __init__(self, problem: str, path: tuple[object, ...]) -> None:
        super().__init__(f"{problem} at {_where(path)}")
        self.problem = problem
        self.path = path


def _convert(value: object, path: tuple[object, ...]) -> Any:
    kind = type(value)
    if kind is str or kind is bytes or kind is float or kind is bool or value is None:
        return value
    if kind is int:
        assert isinstance(value, int)
        if not _INT_MIN <= value <= _INT_MAX:
            raise NoPlainForm(f"integer {shortened(value)} does not fit in 64 bits", path)
        return value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, sub in value.items():
            name = _key(key, path)
            if name in result:
                raise NoPlainForm(f"two keys become {shortened(name)}", path)
            result[name] = _convert(sub, (*path, key))
        return result
    if isinstance(value, list | tuple):
        return [_convert(sub, (*path, index)) for index, sub in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_convert(sub, (*path, "<item>")) for sub in value]
        try:
            items.sort()
        except TypeError:
            pass  # mixed types: keep iteration order, validation still restores the set
        return items
    if isinstance(value, pydantic.BaseModel):
        return _convert(value.model_dump(mode="python"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _convert(fields, path)
    if isinstance(value, enum.Enum):
        return _convert(value.value, path)
    return _leaf(value, path)


def _leaf(value: object, path: tuple[object, ...]) -> Any:
    # Subclasses of the plain scalars (IntFlag members, str subclasses, ...) become
    # the exact base type, which is what msgpack would write anyway.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _convert(int(value), path)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, complex):
        return _complex_text(value)
    if isinstance(value, re.Pattern):
        # Its pattern, text or bytes, which pydantic compiles again (pydantic's JSON
        # text of a bytes pattern is the text of its repr, "b'^GET '").
        return _convert(value.pattern, path)
    try:
        converted = pydantic_core.to_jsonable_python(value)
    except (pydantic_core.PydanticSerializationError, ValueError) as exc:
        raise NoPlainForm(f"{type(value).__qualname__} value has no plain form", path) from exc
    if converted is value:
        raise NoPlainForm(f"{type(value).__qualname__} value has no plain form", path)
    return _convert(converted, path)


def _complex_text(value: complex) -> str:
    """A complex number as the text that lax validation parses back into it: pydantic's
    own (``1+2j``, ``NaN+1j``), except where that leaves out a zero real part with its
    sign (``-0.0 + 1j`` as ``1j``); there Python's, ``(-0+1j)``, which pydantic reads as
    :class:`complex` does. Every other value keeps pydantic's text, as the snapshots
    written before hold it."""
    if value.real == 0 and math.copysign(1.0, value.real) < 0:
        return str(value)
    text: str = pydantic_core.to_jsonable_python(value)
    return text


def _key(key: object, path: tuple[object, ...]) -> str:
    """Turn a mapping key into the string pydantic's lax mode parses back to it."""
    if type(key) is str:
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, enum.Enum):
        return _key(key.value, path)
    if isinstance(key, int | float | str):
        return str(_leaf(key, path))
    plain = _leaf(key, path) if not isinstance(key, Mapping | list | tuple | set) else None
    if isinstance(plain, str):
        return plain
    raise NoPlainForm(f"key {shortened(key)} cannot be a string key", path)
