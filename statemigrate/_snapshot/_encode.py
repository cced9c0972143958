"""Encoding a snapshot: pack sections in batches, cut them into chunks, compress in
parallel, and lay the result out with ``_format.assemble``.

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
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import xxhash

from statemigrate._snapshot._codec import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    ChunkCodec,
    NotPlainError,
    compress_chunk,
    pack_data,
)
from statemigrate._snapshot._format import Buffer, assemble
from statemigrate._snapshot._header import (
    ChunkInfo,
    Producer,
    SectionInfo,
    SnapshotHeader,
    parse_header,
)

__all__ = [
    "EncodedSection",
    "EncodedSnapshot",
    "SealedChunk",
    "SectionInput",
    "encode_sections",
    "encode_snapshot",
    "iter_packed",
]

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
            with _located(key):
                yield pack_data(key, default=default)
                yield from iter_packed(value, default=default)
    elif type(data) is list and len(data) <= _SPINE_LIMIT and _has_large_child(data):
        yield _header(packer, "array", len(data))
        for index, value in enumerate(data):
            with _located(index):
                yield from iter_packed(value, default=default)
    elif type(data) is bytes and LARGE_BYTES <= len(data) < 1 << 32:
        yield b"\xc6" + len(data).to_bytes(4, "big")  # msgpack bin 32 header
        yield data
    else:
        yield pack_data(data, default=default)


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


_SAMPLE = 64 << 10


@dataclass(frozen=True, slots=True)
class SealedChunk:
    """A chunk as it will be written: codec, sizes, xxh3-64 of the stored bytes.

    ``parts`` are the stored bytes, possibly several buffers: a chunk kept raw is
    written straight from the pieces it was cut from (often the state's own bytes
    objects), never joined into a copy.
    """

    codec: ChunkCodec
    raw_size: int
    parts: tuple[Buffer, ...]
    checksum: int

    @property
    def stored_size(self) -> int:
        """Bytes the chunk takes in the snapshot."""
        return sum(len(part) for part in self.parts)


@dataclass(slots=True)
class EncodedSection:
    """A section's sealed chunks, with the raw size and the raw bytes' xxh3-64."""

    raw_size: int
    checksum: int
    chunks: list[SealedChunk]


def _seal(pieces: list[memoryview], level: int) -> SealedChunk:
    size = sum(len(piece) for piece in pieces)
    if len(pieces) > 1 and size > 2 * _SAMPLE:
        head = b"".join(_head(pieces, _SAMPLE))
        if compress_chunk(head, level=level).codec == ChunkCodec.RAW:
            hasher = xxhash.xxh3_64()
            for piece in pieces:
                hasher.update(piece)
            return SealedChunk(ChunkCodec.RAW, size, tuple(pieces), hasher.intdigest())
    chunk = compress_chunk(pieces[0] if len(pieces) == 1 else b"".join(pieces), level=level)
    return SealedChunk(chunk.codec, size, (chunk.data,), xxhash.xxh3_64_intdigest(chunk.data))


def _head(pieces: list[memoryview], size: int) -> Iterator[memoryview]:
    """The first ``size`` bytes of ``pieces``, as slices."""
    for piece in pieces:
        if size <= 0:
            return
        yield piece[:size]
        size -= len(piece)


class _Sealer:
    """Compresses chunks inline until there are two, then on a small thread pool."""

    def __init__(self, level: int, workers: int) -> None:
        self.level = level
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[SealedChunk]] = deque()
        self.first: list[memoryview] | None = None
        self.done: list[SealedChunk] = []

    def submit(self, raw: list[memoryview]) -> None:
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

    def finish(self) -> list[SealedChunk]:
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
        NotPlainError: a value is not plain data; its ``section`` is the index in
            ``datas``.
        TypeError: a value is not plain data and ``default`` could not convert it.
        ValueError: nesting past msgpack's cap.
    """
    sealer = _Sealer(level, workers if workers is not None else min(4, os.cpu_count() or 1))
    sections: list[EncodedSection] = []
    try:
        for index, data in enumerate(datas):
            hasher = xxhash.xxh3_64()
            raw_size = 0
            pending: list[memoryview] = []
            pending_size = 0
            try:
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
                            sealer.submit(pending)
                            pending, pending_size = [], 0
            except NotPlainError as exc:
                exc.section = index
                raise
            if pending_size:
                sealer.submit(pending)
            sections.append(EncodedSection(raw_size, hasher.intdigest(), sealer.finish()))
    finally:
        sealer.close()
    return sections


@dataclass(frozen=True, slots=True)
class SectionInput:
    """One component instance's exported state, ready to be encoded."""

    component: str
    instance: str
    version: int
    fingerprint: str
    data: object


@dataclass(slots=True)
class EncodedSnapshot:
    """A snapshot as a list of buffers, so committing it need not join them first.

    Attributes:
        parts: the snapshot bytes, in order.
        header: what the header says.
        size: total length in bytes.
        timings: seconds spent packing and compressing.
    """

    parts: list[Buffer]
    header: SnapshotHeader
    size: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The snapshot as one bytes object."""
        return b"".join(self.parts)


def encode_snapshot(
    sections: Sequence[SectionInput],
    *,
    producer: Producer,
    key: bytes | None = None,
    generation: int = 0,
    meta: dict[str, str] | None = None,
    level: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
    default: Callable[[Any], object] | None = None,
) -> EncodedSnapshot:
    """Encode sections of plain data into a snapshot.

    Args:
        sections: one per component instance; ``data`` must be plain msgpack-able data
            (``default`` may convert other leaves).
        producer: who writes the snapshot.
        key: with a key, the digest is an HMAC-SHA256 and readers must hold the key.
        generation: a number that grows with every snapshot of a service.
        meta: free-form string annotations stored in the header.
        level: zstd level (1 is fast; higher levels trade time for size).
        chunk_size: raw bytes per chunk, at most ``MAX_CHUNK_SIZE``.
        workers: threads compressing chunks; zstd releases the GIL, so the default uses
            every core.
        default: converts values msgpack cannot hold.

    Raises:
        TypeError: a value is not plain data.
        ValueError: a bad argument (chunk size, key, duplicate section).
    """
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
    if key is not None and len(key) < 16:
        raise ValueError("an authentication key needs at least 16 bytes")
    started = time.perf_counter()
    encoded = encode_sections(
        [section.data for section in sections],
        level=level,
        chunk_size=chunk_size,
        workers=workers,
        default=default,
    )
    finished = time.perf_counter()
    infos = tuple(
        SectionInfo(
            component=section.component,
            instance=section.instance,
            version=section.version,
            fingerprint=section.fingerprint,
            raw_size=result.raw_size,
            stored_size=sum(c.stored_size for c in result.chunks),
            checksum=result.checksum,
            chunks=tuple(
                ChunkInfo(int(c.codec), c.raw_size, c.stored_size, c.checksum)
                for c in result.chunks
            ),
        )
        for section, result in zip(sections, encoded, strict=True)
    )
    header = SnapshotHeader(
        snapshot_id=os.urandom(16).hex(),
        created_ns=time.time_ns(),
        generation=generation,
        producer=producer,
        meta=dict(meta or {}),
        sections=infos,
    )
    try:
        parse_header(header.to_plain())  # what we write must be what we would accept
    except ValueError as exc:
        raise ValueError(f"cannot encode snapshot: {exc}") from exc
    chunk_data = [part for result in encoded for c in result.chunks for part in c.parts]
    parts = assemble(header.to_plain(), chunk_data, key=key)
    return EncodedSnapshot(
        parts=parts,
        header=header,
        size=sum(len(p) for p in parts),
        # Packing and compression overlap, so they are timed together.
        timings={"encode": finished - started},
    )
