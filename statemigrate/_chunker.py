"""Streaming section encoder: pack in batches, cut into chunks, compress in parallel.

Packing a large cache with one ``msgpack.packb`` call holds the GIL for the whole
cache and keeps every raw byte alive until the end. Here the largest container is
packed in batches instead; each full chunk goes to a compression thread while the next
batch is packed (zstd releases the GIL), and raw bytes are dropped as soon as their
chunk is compressed. On two cores this hides most of the compression time and keeps
the extra memory of a save to a few chunks plus the compressed output.

The bytes produced are exactly those ``packb`` of the whole value would produce: a map
or array header followed by the packed items, so readers see ordinary msgpack.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack
import xxhash

from statemigrate._codec import StoredChunk, compress_chunk, pack_data

__all__ = ["EncodedSection", "encode_sections", "iter_packed"]

BATCH = 16_384
"""Items per packed batch of a large map or array: big enough that the per-batch
Python work is noise, small enough that batches interleave with compression."""

_SPINE_LIMIT = 64
"""Containers with at most this many items are searched for a large child to batch."""

Default = Callable[[Any], object] | None


def _header(packer: Any, kind: str, length: int) -> bytes:
    header: bytes = (
        packer.pack_map_header(length) if kind == "map" else packer.pack_array_header(length)
    )
    return header


def iter_packed(data: object, *, default: Default = None) -> Iterator[bytes]:
    """Yield msgpack bytes that together equal ``pack_data(data)``.

    Large maps and arrays (and large ones nested in small ones, such as
    ``{"entries": {...}}``) are packed ``BATCH`` items at a time.
    """
    packer = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)
    if type(data) is dict and len(data) > BATCH:
        yield _header(packer, "map", len(data))
        items = iter(data.items())
        while batch := dict(itertools.islice(items, BATCH)):
            packed = pack_data(batch, default=default)
            yield packed[len(_header(packer, "map", len(batch))) :]
    elif type(data) is list and len(data) > BATCH:
        yield _header(packer, "array", len(data))
        for start in range(0, len(data), BATCH):
            batch_list = data[start : start + BATCH]
            packed = pack_data(batch_list, default=default)
            yield packed[len(_header(packer, "array", len(batch_list))) :]
    elif type(data) is dict and len(data) <= _SPINE_LIMIT and _has_large_child(data.values()):
        yield _header(packer, "map", len(data))
        for key, value in data.items():
            yield pack_data(key, default=default)
            yield from iter_packed(value, default=default)
    elif type(data) is list and len(data) <= _SPINE_LIMIT and _has_large_child(data):
        yield _header(packer, "array", len(data))
        for value in data:
            yield from iter_packed(value, default=default)
    else:
        yield pack_data(data, default=default)


def _has_large_child(values: Any) -> bool:
    return any(type(v) in (dict, list) and len(v) > BATCH for v in values)


@dataclass(slots=True)
class EncodedSection:
    """A section's chunks as stored, with the raw size and the raw bytes' xxh3-64."""

    raw_size: int
    checksum: int
    chunks: list[tuple[StoredChunk, int]]
    """Each stored chunk with the xxh3-64 of its stored bytes."""


def _seal(raw: bytes | memoryview, level: int) -> tuple[StoredChunk, int]:
    chunk = compress_chunk(raw, level=level)
    return chunk, xxhash.xxh3_64_intdigest(chunk.data)


class _Sealer:
    """Compresses chunks inline until there are two, then on a small thread pool."""

    def __init__(self, level: int, workers: int) -> None:
        self.level = level
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[tuple[StoredChunk, int]]] = deque()
        self.first: bytes | memoryview | None = None
        self.done: list[tuple[StoredChunk, int]] = []

    def submit(self, raw: bytes | memoryview) -> None:
        if self.workers <= 1:
            self.done.append(_seal(raw, self.level))
            return
        if self.pool is None:
            if self.first is None:
                self.first = raw  # one chunk alone is not worth starting threads
                return
            self.pool = ThreadPoolExecutor(max_workers=self.workers)
            self.pending.append(self.pool.submit(_seal, self.first, self.level))
            self.first = None
        self.pending.append(self.pool.submit(_seal, raw, self.level))
        # Back-pressure: at most two chunks per worker wait, so memory stays bounded.
        while len(self.pending) > 2 * self.workers:
            self.done.append(self.pending.popleft().result())

    def finish(self) -> list[tuple[StoredChunk, int]]:
        if self.first is not None:
            self.done.append(_seal(self.first, self.level))
            self.first = None
        while self.pending:
            self.done.append(self.pending.popleft().result())
        chunks, self.done = self.done, []
        return chunks

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def encode_sections(
    datas: Sequence[object],
    *,
    level: int,
    chunk_size: int,
    workers: int | None = None,
    default: Default = None,
) -> list[EncodedSection]:
    """Pack, chunk and compress each value of ``datas`` into an :class:`EncodedSection`.

    Raises:
        TypeError: a value is not plain data.
        ValueError: an int out of range or nesting past msgpack's cap.
    """
    sealer = _Sealer(level, workers if workers is not None else min(4, os.cpu_count() or 1))
    sections: list[EncodedSection] = []
    try:
        for data in datas:
            hasher = xxhash.xxh3_64()
            raw_size = 0
            pending: list[memoryview] = []
            pending_size = 0
            for piece in iter_packed(data, default=default):
                view = memoryview(piece)
                hasher.update(view)
                raw_size += len(view)
                while view:
                    take = view[: chunk_size - pending_size]
                    view = view[len(take) :]
                    pending.append(take)
                    pending_size += len(take)
                    if pending_size == chunk_size:
                        sealer.submit(_join(pending))
                        pending, pending_size = [], 0
            if pending_size:
                sealer.submit(_join(pending))
            sections.append(EncodedSection(raw_size, hasher.intdigest(), sealer.finish()))
    finally:
        sealer.close()
    return sections


def _join(pieces: list[memoryview]) -> bytes | memoryview:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
