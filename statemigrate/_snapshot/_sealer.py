"""Sealing chunks: compressing and checksumming them, in worker threads, in order.

The writer (``_encode``) cuts the packed sections into raw chunks and hands each to a
:class:`Sealer`, which seals it on a compression thread while the next chunk is packed
(zstd releases the GIL), and gives the sealed chunks back in order. On two cores this
hides most of the compression time. Raw bytes are dropped as soon as their chunk is
sealed, and the queue is bounded by the number of threads, so the memory a save takes
is a few chunks whatever the size of the snapshot.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import xxhash

from statemigrate._snapshot._chunks import ChunkCodec, compress_chunk, compress_pieces
from statemigrate._snapshot._format import Buffer
from statemigrate._snapshot._header import ChunkInfo

__all__ = ["SealedChunk", "Sealer", "compression_workers"]


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

    def info(self) -> ChunkInfo:
        """The chunk's entry in the header."""
        return ChunkInfo(int(self.codec), self.raw_size, self.stored_size, self.checksum)


def _seal(pieces: list[memoryview], level: int) -> SealedChunk:
    size = sum(len(piece) for piece in pieces)
    if len(pieces) == 1:
        chunk = compress_chunk(pieces[0], level=level)
        return SealedChunk(chunk.codec, size, (chunk.data,), xxhash.xxh3_64_intdigest(chunk.data))
    stored = compress_pieces(pieces, level=level)
    if stored is None:
        hasher = xxhash.xxh3_64()
        for piece in pieces:
            hasher.update(piece)
        return SealedChunk(ChunkCodec.RAW, size, tuple(pieces), hasher.intdigest())
    hasher = xxhash.xxh3_64()
    for part in stored:
        hasher.update(part)
    parts = tuple(part for part in stored if part)
    return SealedChunk(ChunkCodec.ZSTD, size, parts, hasher.intdigest())


class Sealer:
    """Seals chunks, in order: on the calling thread with no workers, else on
    ``workers`` threads while the caller packs the next chunk.

    Memory is what bounds the queue: every chunk handed over keeps its raw bytes alive
    until it is sealed, so at most ``workers`` chunks wait or are being sealed once
    :meth:`ready` returns, beside the one the caller is filling.
    """

    def __init__(self, level: int, workers: int) -> None:
        self.level = level
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[SealedChunk]] = deque()
        self.done: deque[SealedChunk] = deque()
        self.first: list[memoryview] | None = None

    def submit(self, raw: list[memoryview]) -> None:
        """Queue ``raw`` for sealing."""
        if self.workers < 1:
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

    def ready(self) -> Iterator[SealedChunk]:
        """Take the chunks sealed so far, in order, waiting for the oldest ones while
        more than ``workers`` are queued."""
        while self.done:
            yield self.done.popleft()
        while self.pending and (len(self.pending) > self.workers or self.pending[0].done()):
            yield self.pending.popleft().result()

    def finish(self) -> Iterator[SealedChunk]:
        """Take every chunk still queued, in order."""
        if self.first is not None:
            first, self.first = self.first, None
            self.done.append(_seal(first, self.level))
        while self.done:
            yield self.done.popleft()
        while self.pending:
            yield self.pending.popleft().result()

    def close(self) -> None:
        self.first = None
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.pending.clear()
        self.done.clear()


def compression_workers(workers: int | None) -> int:
    """Compression threads: by default one per core but the one packing, up to three.

    Packing holds the GIL and compressing a chunk takes about as long as packing it, so
    more threads than cores left would buy no time, only raw chunks held waiting.
    """
    if workers is None:
        return min(3, (os.cpu_count() or 1) - 1)
    return workers
