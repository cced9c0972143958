"""Packing one large value as a series of msgpack pieces, a batch of items at a time.

Packing a large cache with one ``msgpack.packb`` call holds the GIL for the whole
cache and keeps every raw byte alive until the end. :func:`iter_packed` packs the
largest container in batches instead, so that the writer (``_encode``) can hand each
full chunk to a compression thread while the next batch is packed. The pieces together
are exactly the bytes ``packb`` of the whole value would produce: a map or array header
followed by the packed items, so readers see ordinary msgpack.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

from statemigrate._model._plaindata import MAX_NESTING
from statemigrate._snapshot._msgpack import NotPlainError, pack_data

__all__ = ["BATCH", "LARGE_BYTES", "Default", "iter_packed"]

BATCH = 16_384
"""Items per packed batch of a large map or array: big enough that the per-batch
Python work is noise, small enough that batches interleave with compression."""

_SPINE_LIMIT = 4096
"""Containers with at most this many items are searched for a large child to batch."""

LARGE_BYTES = 64 << 10
"""A bytes value this large is written from the object itself (header, then its
buffer), never copied into a packed buffer first."""

Default = Callable[[Any], object] | None


def _header(packer: Any, kind: str, length: int) -> bytes:
    header: bytes = (
        packer.pack_map_header(length) if kind == "map" else packer.pack_array_header(length)
    )
    return header


def iter_packed(
    data: object, *, default: Default = None, nesting: int = MAX_NESTING
) -> Iterator[bytes | memoryview]:
    """Yield msgpack bytes that together equal ``pack_data(data)``.

    Large maps and arrays (and large ones nested in small ones, such as
    ``{"entries": {...}}``) are packed ``BATCH`` items at a time. ``nesting`` is that
    of :func:`pack_data`: the levels ``data`` may take, a batch standing at the level of
    the container it is cut from.
    """
    packer = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)
    if type(data) is dict and len(data) > BATCH:
        yield _header(packer, "map", len(data))
        items = iter(data.items())
        while batch := dict(itertools.islice(items, BATCH)):
            packed = pack_data(batch, default=default, nesting=nesting)
            yield memoryview(packed)[len(_header(packer, "map", len(batch))) :]
    elif type(data) is list and len(data) > BATCH:
        yield _header(packer, "array", len(data))
        for start in range(0, len(data), BATCH):
            batch_list = data[start : start + BATCH]
            packed = pack_data(batch_list, default=default, nesting=nesting)
            yield memoryview(packed)[len(_header(packer, "array", len(batch_list))) :]
    elif type(data) is dict and len(data) <= _SPINE_LIMIT and _has_large_child(data.values()):
        yield _header(packer, "map", len(data))
        for key, value in data.items():
            with _located(key):
                yield pack_data(key, default=default)
                yield from iter_packed(value, default=default, nesting=nesting - 1)
    elif type(data) is list and len(data) <= _SPINE_LIMIT and _has_large_child(data):
        yield _header(packer, "array", len(data))
        for index, value in enumerate(data):
            with _located(index):
                yield from iter_packed(value, default=default, nesting=nesting - 1)
    elif type(data) is bytes and LARGE_BYTES <= len(data) < 1 << 32:
        yield b"\xc6" + len(data).to_bytes(4, "big")  # msgpack bin 32 header
        yield data
    else:
        yield pack_data(data, default=default, nesting=nesting)


@contextmanager
def _located(step: object) -> Iterator[None]:
    """Prefix the path of a :class:`NotPlainError` raised inside with ``step``."""
    try:
        yield
    except NotPlainError as exc:
        exc.path.insert(0, step)
        raise


def _has_large_child(values: Any, depth: int = 3) -> bool:
    """Whether some value is a large container or large bytes, looking a few levels down
    through small containers (``{"entries": {"k": <1 MiB bytes>, ...}}``)."""
    for value in values:
        kind = type(value)
        if kind is bytes and len(value) >= LARGE_BYTES:
            return True
        if kind is dict or kind is list:
            if len(value) > BATCH:
                return True
            children = value.values() if kind is dict else value
            if depth > 1 and len(value) <= _SPINE_LIMIT and _has_large_child(children, depth - 1):
                return True
    return False
