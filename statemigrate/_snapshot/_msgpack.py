"""Packing plain data as msgpack bytes, and unpacking hostile bytes with hard limits.

This module turns plain data into raw msgpack bytes and back. It knows nothing of
chunks (``_chunks``), of the container layout (``_format``) nor of files. Everything
that reads bytes assumes they may be hostile: msgpack is unpacked with length limits
derived from the payload size, a budget on the number of containers (an empty list
costs one byte on the wire and ~64 bytes in memory; see ``_limits``), rejection of
duplicate keys and ext types, and msgpack's own nesting cap.

Both directions have a fast path and a reference path. msgpack-python is the
reference: it defines what is accepted and how every error is worded. Packing first
tries ormsgpack, told to hand every non-plain value to ``default`` so that it packs
exactly what the reference packs, byte for byte, and falls back on any refusal.
Unpacking first tries msgspec (bounded recursion, lengths checked against the input
before allocating, trailing bytes refused) and accepts its result only when packing it
again gives back the input exactly: a duplicate key, an ext type, a non-str key or a
non-shortest encoding cannot survive that round trip, so anything unusual is decided
by the reference decoder. The fast paths are two to three times faster on large caches
and never change an outcome; tests compare the two paths on arbitrary input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import msgspec
import ormsgpack

from statemigrate._errors import SnapshotError, first_line
from statemigrate._model._plaindata import MAX_NESTING, find_not_plain
from statemigrate._model._shown import shortened
from statemigrate._model._typed import TypedForm
from statemigrate._snapshot._limits import budget_total

__all__ = [
    "NotPlainError",
    "pack_data",
    "reference_pack",
    "reference_unpack",
    "unpack_data",
    "unpack_typed",
]


class NotPlainError(TypeError):
    """The packer was handed something that is not plain data.

    Attributes:
        path: the keys and indexes leading to the value, outermost first.
        detail: what is wrong with it.
        section: the index of the section being encoded, once the encoder knows it.
    """

    def __init__(self, path: list[object], detail: str) -> None:
        super().__init__(detail)
        self.path = path
        self.detail = detail
        self.section: int | None = None

    def __str__(self) -> str:
        where = "".join(f"[{shortened(step)}]" for step in self.path) or "the top level"
        return f"{self.detail} at {where}"


def _plain_leaf(value: object) -> object:
    """Refuse values msgpack cannot hold; exporting them is the schema layer's job."""
    raise TypeError(f"{type(value).__name__} is not plain data (msgpack-able)")


def pack_data(
    data: object,
    *,
    default: Callable[[Any], object] | None = None,
    nesting: int = MAX_NESTING,
) -> bytes:
    """Encode plain data as msgpack bytes.

    Args:
        data: dicts with str keys, lists, str, bytes, int, float, bool and None.
        default: called for any other value; must return plain data. Without it such
            values raise ``TypeError``. It may be called twice for one value (once by
            the fast packer, once by the reference packer), so it should be pure.
        nesting: how many levels of containers ``data`` may take, its own included:
            :data:`MAX_NESTING` less the levels above it in what the reader decodes.

    Raises:
        NotPlainError: without ``default``, a value is not plain data (including a map
            key that is not a str, which the decoder would refuse, and a str with a lone
            surrogate, which UTF-8 cannot encode); with or without it, containers nested
            deeper than ``nesting``, which the reader would refuse. The error gives the
            path.
        TypeError: a value is not plain data and ``default`` could not convert it.
    """
    try:
        return _fast_pack(data, default or _plain_leaf)
    except Exception:
        pass  # the reference packer decides, and words the error if there is one
    return reference_pack(data, default=default, nesting=nesting)


# Every value ormsgpack would convert on its own (datetimes, enums, dataclasses, UUIDs,
# ints past 64 bits, tuples, subclasses of str, int, dict and list) goes to ``default``
# instead, which refuses it as the reference packer does.
_FAST_PACK_OPTIONS = (
    ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_UUID
)


def _fast_pack(data: object, default: Callable[[Any], object]) -> bytes:
    """ormsgpack's packing, which refuses (``TypeError``) whatever it would pack
    differently from msgpack-python: keys other than str, nesting past 255 levels,
    strings with lone surrogates, values ``default`` rejects."""
    packed: bytes = ormsgpack.packb(data, default=default, option=_FAST_PACK_OPTIONS)
    return packed


def reference_pack(
    data: object,
    *,
    default: Callable[[Any], object] | None = None,
    nesting: int = MAX_NESTING,
) -> bytes:
    """:func:`pack_data` through msgpack-python alone: slower, and the definition of
    the bytes and errors that :func:`pack_data` produces."""
    # The fast packer takes 255 levels at most, so deeper data always comes here: a
    # snapshot the reader would refuse as too deep is refused before it is written.
    too_deep = _deeper_than(data, nesting)
    if too_deep is not None:
        raise NotPlainError(
            too_deep,
            f"containers nested deeper than {MAX_NESTING} levels, the most a snapshot"
            " reader takes",
        )
    if default is None:
        # msgpack-python would pack int keys the decoder refuses, and tuples or str
        # subclasses that come back as lists and plain str: refused, with their path.
        problem = find_not_plain(data)
        if problem is not None:
            raise NotPlainError(*problem)
    packed: bytes = msgpack.packb(
        data,
        use_bin_type=True,
        datetime=False,
        strict_types=default is not None,
        default=default or _plain_leaf,
    )
    return packed


def _deeper_than(data: object, limit: int) -> list[object] | None:
    """The path to the first map or list of ``data`` nested deeper than ``limit`` levels
    (``data`` itself is level 1), or ``None``. Iterative: data this deep would exhaust
    the interpreter's recursion."""
    if not isinstance(data, dict | list):
        return None
    if limit < 1:
        return []
    path: list[object] = []
    stack: list[Iterator[tuple[object, object]]] = [_steps(data)]
    while stack:
        for step, child in stack[-1]:
            if isinstance(child, dict | list):
                if len(stack) >= limit:
                    return [*path, step]
                path.append(step)
                stack.append(_steps(child))
                break
        else:
            stack.pop()
            if path:
                path.pop()
    return None


def _steps(container: dict[Any, Any] | list[Any]) -> Iterator[tuple[object, object]]:
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def _reject_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack ext type {code} is not allowed in snapshots")


def _budget_hooks(
    containers: int,
) -> tuple[Callable[[list[tuple[Any, Any]]], dict[Any, Any]], Callable[[list[Any]], list[Any]]]:
    """Hooks that count containers as msgpack builds them, and reject duplicate keys.

    Closures over a local counter: these run once per map and list of a snapshot,
    millions of times for a large cache, so they do as little as they can.
    """
    left = containers

    def map_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        nonlocal left
        left -= 1
        if left < 0:
            raise _BudgetExceeded
        result = dict(pairs)
        if len(result) != len(pairs):
            raise _DuplicateKey(_first_duplicate(pairs))
        return result

    def list_hook(items: list[Any]) -> list[Any]:
        nonlocal left
        left -= 1
        if left < 0:
            raise _BudgetExceeded
        return items

    return map_hook, list_hook


class _BudgetExceeded(Exception):
    pass


class _DuplicateKey(Exception):
    def __init__(self, key: object) -> None:
        self.key = key


def _first_duplicate(pairs: list[tuple[Any, Any]]) -> object:
    seen: set[object] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def unpack_data(
    raw: bytes | bytearray | memoryview,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> object:
    """Decode msgpack bytes written by :func:`pack_data`, refusing hostile input.

    Args:
        raw: exactly one msgpack object, nothing after it.
        section: named in errors.
        container_budget: how many maps and lists may be built; by default one per
            two input bytes plus
            :data:`~statemigrate._snapshot._limits.CONTAINER_ALLOWANCE`. Only floods of
            empty lists and maps (one byte on the wire, ~60 in memory) come near it.

    Raises:
        SnapshotError: kind ``too_deep`` past the nesting cap, ``too_large`` when the
            container budget runs out, ``invalid_data`` for anything else (bad UTF-8,
            duplicate keys, keys that are neither str nor bytes, ext types, trailing
            bytes, truncation).
    """
    budget = budget_total(len(raw), container_budget)
    if _container_headers_at_most(raw, budget):
        value = _fast_unpack(raw)
        if value is not _REFUSED:
            return value
    return reference_unpack(raw, section=section, container_budget=container_budget)


def unpack_typed(
    raw: bytes | bytearray | memoryview,
    form: TypedForm,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> tuple[object, bool]:
    """Decode msgpack bytes straight into a schema's typed form when that is exact.

    msgspec decodes ``raw`` with the form's type, with the limits of
    :func:`unpack_data`. The value is kept when it is what :func:`unpack_data`
    returns and every record in it holds its keys in declaration order: it is then
    what validating the plain data against the form's schema returns (see
    ``statemigrate._model._typed``). Otherwise the bytes are decoded again by
    :func:`unpack_data`, and the caller validates as usual.

    Two proofs that the value is what :func:`unpack_data` returns:

    - for collections of flat records, read in C (:attr:`TypedForm.layout`): the
      bytes hold each record's fields in order and nothing else, each value in its
      declared msgpack type, no ext and no map that could repeat a key but the
      collections, whose sizes must equal those of the dicts msgspec built. That
      also shows the keys in order, and costs a pass over bytes, not over objects;
    - for any other form or bytes, the value packs back to ``raw`` byte for byte, and
      then :meth:`TypedForm.in_order` checks the order.

    Returns:
        ``(value, True)`` for a value that needs no further validation, and
        ``(plain data, False)`` for one that does.

    Raises:
        SnapshotError: as :func:`unpack_data`.
    """
    budget = budget_total(len(raw), container_budget)
    layout = form.layout
    if layout is not None and (sizes := layout.read(raw, budget)) is not None:
        value = _decoded(raw, form.decoder)
        if value is not _REFUSED and layout.sizes(value) == sizes:
            return value, True
        value = None  # freed before the bytes are decoded again
    elif _container_headers_at_most(raw, budget):
        value = _fast_unpack(raw, form.decoder)
        if value is not _REFUSED and form.in_order(value):
            return value, True
        value = None
    return unpack_data(raw, section=section, container_budget=container_budget), False


_REFUSED = object()

_FAST_DECODER = msgspec.msgpack.Decoder()

# Every byte value except the type bytes that open a map or an array (fixmap, fixarray,
# array 16/32, map 16/32): deleting these leaves one byte per possible container.
_NOT_CONTAINER_BYTES = bytes(
    byte for byte in range(256) if not (0x80 <= byte <= 0x9F or 0xDC <= byte <= 0xDF)
)


def _container_headers_at_most(raw: bytes | bytearray | memoryview, budget: int) -> bool:
    """Whether ``raw`` cannot hold more than ``budget`` maps and lists.

    The fast decoder cannot count containers as it builds them, so it runs only when
    the bytes that could open one are few enough: every container starts with such a
    byte, so their count bounds the containers from above without parsing anything.
    Typical data stays far below the budget; a flood of empty containers does not,
    and goes to the reference decoder, which counts exactly.
    """
    if len(raw) <= budget:
        return True
    data = raw.tobytes() if isinstance(raw, memoryview) else raw
    return len(data.translate(None, _NOT_CONTAINER_BYTES)) <= budget


def _fast_unpack(
    raw: bytes | bytearray | memoryview, decoder: msgspec.msgpack.Decoder[Any] | None = None
) -> object:
    """msgspec's decoding of ``raw`` with ``decoder`` (typed or not), or ``_REFUSED``
    unless the reference decoder would give the same value.

    Packing the value again must give ``raw`` back byte for byte. Every input the
    reference decoder treats specially fails that: duplicate keys shrink a map, an ext
    decodes to an object ormsgpack will not pack, keys other than str are refused by
    the packer, and lengths or numbers not in their shortest form come back shorter.
    A typed decoder adds its own ways to differ, which fail it too: an int turned into
    a float packs as a float, and a key the type does not know is skipped.
    """
    value = _decoded(raw, decoder or _FAST_DECODER)
    if value is _REFUSED:
        return value
    try:
        same = _fast_pack(value, _plain_leaf) == raw
    except Exception:
        return _REFUSED  # the packer refused the value: not plain data, so not raw's
    return value if same else _REFUSED


def _decoded(raw: bytes | bytearray | memoryview, decoder: msgspec.msgpack.Decoder[Any]) -> object:
    """msgspec's decoding of ``raw``, or ``_REFUSED`` for any failure at all."""
    try:
        return decoder.decode(raw)
    except Exception:
        # Truncation, bad UTF-8, recursion past msgspec's limit, anything at all: the
        # reference decoder will say exactly what is wrong.
        return _REFUSED


_MSGPACK_TERMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(\d+) exceeds max_ext_len\(\d+\)"),
     "an extension (ext) value, which snapshot data never holds"),
    (re.compile(r"(\d+) exceeds max_array_len\((\d+)\)"),
     r"a list declares \1 items, more than \2 bytes of data can hold"),
    (re.compile(r"(\d+) exceeds max_map_len\((\d+)\)"),
     r"a map declares \1 entries, more than its bytes of data can hold"),
    (re.compile(r"(\d+) exceeds max_(?:str|bin)_len\((\d+)\)"),
     r"a string or bytes value declares \1 bytes, more than the \2 of the data"),
    (re.compile(r"Unpack failed: incomplete input"), "the data ends inside a value"),
    (re.compile(r"(\w+) is not allowed for map key when strict_map_key=True"),
     r"a map key of type \1; keys are text or bytes"),
)
"""msgpack's messages, and the same said in the snapshot's terms."""


def _described(exc: Exception) -> str:
    """What msgpack refused in ``exc``, in the terms of a snapshot's data, not of the
    decoder's options."""
    if isinstance(exc, msgpack.exceptions.FormatError):
        # Raised for the one type byte msgpack reserves, and says nothing itself.
        return "a byte that starts no msgpack value (0xc1, which msgpack reserves)"
    if isinstance(exc, UnicodeDecodeError):
        # Python names where the bad sequence starts, which may be a valid lead byte.
        where = f"in the sequence at byte {exc.start} of it"
        return f"a string that is not UTF-8 ({exc.reason} {where})"
    text = first_line(exc)
    for pattern, words in _MSGPACK_TERMS:
        if pattern.fullmatch(text):
            return pattern.sub(words, text)
    return text


def reference_unpack(
    raw: bytes | bytearray | memoryview,
    *,
    section: str | None = None,
    container_budget: int | None = None,
) -> object:
    """:func:`unpack_data` through msgpack-python alone: slower, and the definition
    of what :func:`unpack_data` accepts and of every error it raises."""
    size = len(raw)
    map_hook, list_hook = _budget_hooks(budget_total(size, container_budget))
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_ext_len=0,
            ext_hook=_reject_ext,
            object_pairs_hook=map_hook,
            list_hook=list_hook,
            # Length caps from the payload size bound what a forged length prefix can
            # ask for; msgpack derives the same from len(raw), set here to be explicit.
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
        )
    except msgpack.exceptions.StackError as exc:
        raise SnapshotError(
            "too_deep", f"data nested deeper than {MAX_NESTING} levels", section=section
        ) from exc
    except _BudgetExceeded as exc:
        raise SnapshotError(
            "too_large",
            f"more than {budget_total(size, container_budget)} maps and lists in"
            f" {size} bytes of data",
            section=section,
        ) from exc
    except _DuplicateKey as exc:
        raise SnapshotError(
            "invalid_data", f"duplicate map key {exc.key!r}", section=section
        ) from exc
    except msgpack.exceptions.ExtraData as exc:
        raise SnapshotError(
            "invalid_data", "bytes left over after the data", section=section
        ) from exc
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        # msgpack reports truncation, bad UTF-8, non-str keys, ext types and bad
        # type bytes with these, in its own terms.
        raise SnapshotError("invalid_data", _described(exc), section=section) from exc
    except (MemoryError, RecursionError) as exc:
        raise SnapshotError(
            "too_large", f"decoding ran out of resources: {type(exc).__name__}",
            section=section,
        ) from exc
