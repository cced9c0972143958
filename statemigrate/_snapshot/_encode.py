"""Encoding a snapshot: pack sections in batches, cut them into chunks, compress in
parallel, and stream the result out through ``_format.write_container``.

Packing a large cache with one ``msgpack.packb`` call holds the GIL for the whole
cache and keeps every raw byte alive until the end. Here the largest container is
packed in batches instead (``_packbatches``); each full chunk goes to a compression
thread while the next batch is packed (``_sealer``; zstd releases the GIL), and raw
bytes are dropped as soon as their chunk is compressed. On two cores this hides most
of the compression time. Every section is held to the limits of the reader that will
restore it as it is packed (``_readercheck``). Each sealed chunk is passed on at once,
as the compressor's output pieces, never joined (the container keeps the header,
which lists the chunks, for the end). So the extra memory
of a save is a few chunks, whatever the size of the snapshot: the raw chunk being
filled, one raw chunk per compression thread (one on two cores), and the packed batch
at each end of them.

The bytes produced are exactly those ``packb`` of the whole value would produce: a map
or array header followed by the packed items, so readers see ordinary msgpack.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash

from statemigrate._errors import ExportError
from statemigrate._snapshot._chunks import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from statemigrate._snapshot._format import Buffer, DecodeLimits, write_container
from statemigrate._snapshot._header import (
    ChunkInfo,
    DeltaBase,
    Producer,
    SectionInfo,
    SnapshotHeader,
    parse_header,
)
from statemigrate._snapshot._msgpack import NotPlainError
from statemigrate._snapshot._packbatches import Default, iter_packed
from statemigrate._snapshot._readercheck import BeyondReader, ReaderCheck
from statemigrate._snapshot._sealer import SealedChunk, Sealer, compression_workers
from statemigrate._snapshot._sections import SealedSection

__all__ = [
    "EncodedSnapshot",
    "SectionInput",
    "SnapshotStream",
    "encode_snapshot",
    "new_snapshot_id",
]

@dataclass(slots=True)
class _SectionDone:
    """What the header says of a section once its last chunk is sealed."""

    raw_size: int
    checksum: int
    chunks: list[ChunkInfo]


def _iter_chunks(
    datas: Sequence[object],
    sections_done: list[_SectionDone],
    *,
    level: int,
    chunk_size: int,
    workers: int,
    default: Default,
    reader: ReaderCheck | None = None,
) -> Iterator[Buffer]:
    """Pack, chunk and compress each value of ``datas``; yield the stored chunks' bytes
    in order, and append each section's summary to ``sections_done`` after its last
    chunk. A :class:`SealedSection` among them is written as it is stored.

    Raises:
        NotPlainError: a value is not plain data, or is nested deeper than a reader
            takes; its ``section`` is the index in ``datas``.
        TypeError: a value is not plain data and ``default`` could not convert it.
        BeyondReader: with ``reader``, a section that reader would refuse.
    """
    sealer = Sealer(level, workers)
    try:
        for index, data in enumerate(datas):
            if isinstance(data, SealedSection):
                yield from _sealed(index, data, sections_done, reader)
                continue
            hasher = xxhash.xxh3_64()
            raw_size = 0
            infos: list[ChunkInfo] = []
            pending: list[memoryview] = []
            pending_size = 0
            try:
                for piece in iter_packed(data, default=default):
                    view = memoryview(piece)
                    hasher.update(view)
                    raw_size += len(view)
                    if reader is not None:
                        reader.add(index, len(view), raw_size)
                    while view:
                        take = view[: chunk_size - pending_size]
                        view = view[len(take) :]
                        pending.append(take)
                        pending_size += len(take)
                        if pending_size == chunk_size:
                            sealer.submit(pending)
                            pending, pending_size = [], 0
                            yield from _passed_on(sealer.ready(), infos)
            except NotPlainError as exc:
                exc.section = index
                raise
            if reader is not None:
                reader.section_done(index, raw_size, data)
            if pending_size:
                sealer.submit(pending)
                pending = []
            yield from _passed_on(sealer.finish(), infos)
            sections_done.append(_SectionDone(raw_size, hasher.intdigest(), infos))
    finally:
        sealer.close()


def _sealed(
    index: int,
    section: SealedSection,
    sections_done: list[_SectionDone],
    reader: ReaderCheck | None,
) -> Iterator[Buffer]:
    """The stored chunks of ``section``, unchanged, its header entry's sizes, checksum
    and chunks recorded as they were read.

    Its shape was checked against the same reader's limits when it was read (see
    :meth:`~statemigrate._snapshot._sections.Snapshot.sealed_section`), so only its
    size counts here, towards the snapshot's total.
    """
    info = section.info
    if reader is not None:
        reader.add(index, info.raw_size, info.raw_size)
    yield from section.stored
    sections_done.append(_SectionDone(info.raw_size, info.checksum, list(info.chunks)))


def _passed_on(chunks: Iterator[SealedChunk], infos: list[ChunkInfo]) -> Iterator[Buffer]:
    """The bytes of ``chunks``, their header entries recorded in ``infos``.

    No reference to a chunk is kept once its bytes are handed over: the reader writes
    them and drops them, and the snapshot is never held whole.
    """
    for chunk in chunks:
        infos.append(chunk.info())
        parts: tuple[Buffer, ...] = chunk.parts
        del chunk
        yield from parts
        del parts


def new_snapshot_id() -> str:
    """A fresh snapshot id: 32 random hex digits."""
    return os.urandom(16).hex()


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


class SnapshotStream:
    """A snapshot encoded while it is read: an iterable of buffers, taken once.

    Each chunk is passed on as soon as it is sealed, so a store writing the stream
    holds only the chunks in flight, never the whole snapshot. The header comes last
    (format version 2 keeps it after the chunks); :attr:`header`, :attr:`size` and
    :attr:`timings` are set once the stream is exhausted.

    Errors of the data (``NotPlainError``, ``TypeError``, ``ValueError``, and with
    ``limits`` an ``ExportError`` for a section the reader would refuse; see
    :func:`encode_snapshot`) surface while the stream is read, that is inside the
    store's commit, which then commits nothing.
    Call :meth:`close` when a reader stops early, to stop the compression threads.

    Raises:
        ValueError: a bad argument (chunk size, workers, key, a header that would be
            refused), at construction, before anything is encoded.
    """

    def __init__(
        self,
        sections: Sequence[SectionInput | SealedSection],
        *,
        producer: Producer,
        key: bytes | None = None,
        generation: int = 0,
        meta: dict[str, str] | None = None,
        level: int = 1,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        workers: int | None = None,
        default: Callable[[Any], object] | None = None,
        snapshot_id: str | None = None,
        base: DeltaBase | None = None,
        limits: DecodeLimits | None = None,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
        if key is not None and len(key) < 16:
            raise ValueError("an authentication key needs at least 16 bytes")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        self.header: SnapshotHeader | None = None
        self.size = 0
        self.timings: dict[str, float] = {}
        self._sections = list(sections)
        self._identity = SnapshotHeader(
            snapshot_id=snapshot_id or new_snapshot_id(),
            created_ns=time.time_ns(),
            generation=generation,
            producer=producer,
            meta=dict(meta or {}),
            sections=(),
            base=base,
        )
        # Refuse now what the header would refuse at the end (names, duplicates), before
        # a store has started writing.
        self._header([_SectionDone(0, 0, []) for _ in self._sections])
        self._reader = None if limits is None else ReaderCheck(limits)
        if limits is not None and len(self._sections) > limits.max_sections:
            first = self._sections[limits.max_sections]
            raise ExportError(
                first.component, first.version, "(root)",
                f"the snapshot would hold {len(self._sections)} sections, more than the"
                f" {limits.max_sections} a restore here reads (DecodeLimits.max_sections"
                " of the service's limits)",
                instance=first.instance,
            )
        self._parts = self._run(key, level, chunk_size, compression_workers(workers), default)

    def __iter__(self) -> Iterator[Buffer]:
        return self._parts

    def close(self) -> None:
        """Stop encoding (a no-op once the stream is exhausted)."""
        self._parts.close()

    def _header(self, done: Sequence[_SectionDone]) -> SnapshotHeader:
        infos = tuple(
            SectionInfo(
                component=section.component,
                instance=section.instance,
                version=section.version,
                fingerprint=section.fingerprint,
                raw_size=result.raw_size,
                stored_size=sum(c.stored_size for c in result.chunks),
                checksum=result.checksum,
                chunks=tuple(result.chunks),
            )
            for section, result in zip(self._sections, done, strict=True)
        )
        header = dataclasses.replace(self._identity, sections=infos)
        try:
            parse_header(header.to_plain())  # what we write must be what we would accept
        except ValueError as exc:
            raise ValueError(f"cannot encode snapshot: {exc}") from exc
        return header

    def _checked(self, chunk_data: Iterator[Buffer]) -> Iterator[Buffer]:
        """``chunk_data``, with a section beyond the reader's limits named as the
        component whose state it holds."""
        try:
            yield from chunk_data
        except BeyondReader as exc:
            raise self._blamed(exc) from None

    def _blamed(self, exc: BeyondReader) -> ExportError:
        section = self._sections[exc.index]
        return ExportError(
            section.component, section.version, "(root)", exc.detail, instance=section.instance
        )

    def _run(
        self, key: bytes | None, level: int, chunk_size: int, workers: int, default: Default
    ) -> Generator[Buffer, None, None]:
        done: list[_SectionDone] = []
        header: list[SnapshotHeader] = []

        chunk_data = self._checked(_iter_chunks(
            [
                section if isinstance(section, SealedSection) else section.data
                for section in self._sections
            ],
            done,
            level=level, chunk_size=chunk_size, workers=workers, default=default,
            reader=self._reader,
        ))

        def header_plain() -> dict[str, Any]:
            header.append(self._header(done))
            return header[0].to_plain()

        busy = 0.0
        size = 0
        resumed = time.perf_counter()
        for part in write_container(chunk_data, header_plain, key=key):
            size += memoryview(part).nbytes
            if self._reader is not None:
                try:
                    self._reader.written(size)
                except BeyondReader as exc:
                    raise self._blamed(exc) from None
            busy += time.perf_counter() - resumed
            yield part
            del part  # held by the reader as long as it needs it, not longer
            resumed = time.perf_counter()
        busy += time.perf_counter() - resumed
        self.header, self.size = header[0], size
        # Packing and compression overlap, so they are timed together; the time the
        # reader spends between buffers is not counted.
        self.timings = {"encode": busy}


def encode_snapshot(
    sections: Sequence[SectionInput | SealedSection],
    *,
    producer: Producer,
    key: bytes | None = None,
    generation: int = 0,
    meta: dict[str, str] | None = None,
    level: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
    default: Callable[[Any], object] | None = None,
    snapshot_id: str | None = None,
    base: DeltaBase | None = None,
    limits: DecodeLimits | None = None,
) -> EncodedSnapshot:
    """Encode sections of plain data into a snapshot, held in memory.

    :class:`SnapshotStream` takes the same arguments and streams the bytes instead.

    Args:
        sections: one per component instance; ``data`` must be plain msgpack-able data
            (``default`` may convert other leaves). A :class:`SealedSection` (a section
            of another snapshot, kept as it was stored) is written unchanged.
        producer: who writes the snapshot.
        key: with a key, the digest is an HMAC-SHA256 and readers must hold the key.
        generation: a number that grows with every snapshot of a service.
        meta: free-form string annotations stored in the header.
        level: zstd level (1 is fast; higher levels trade time for size).
        chunk_size: raw bytes per chunk, at most ``MAX_CHUNK_SIZE``.
        workers: threads compressing chunks while the calling thread packs the next
            one (zstd releases the GIL); 0 compresses on the calling thread. Each holds
            a raw chunk, so the default is one per core but the one packing, at most 3.
        default: converts values msgpack cannot hold.
        snapshot_id: the snapshot's id, when the caller reserved one
            (:func:`new_snapshot_id`); a new one by default.
        base: for a delta, the snapshot its sections change.
        limits: the limits of the reader that will restore the snapshot: a section it
            would refuse (too large, or too many empty lists and dicts for its size)
            is refused here instead, as an ``ExportError``. None checks nothing.

    Raises:
        ExportError: with ``limits``, a section that reader would refuse.
        TypeError: a value is not plain data.
        ValueError: a bad argument (chunk size, workers, key, duplicate section).
    """
    stream = SnapshotStream(
        sections, producer=producer, key=key, generation=generation, meta=meta,
        level=level, chunk_size=chunk_size, workers=workers, default=default,
        snapshot_id=snapshot_id, base=base, limits=limits,
    )
    parts = list(stream)
    assert stream.header is not None
    return EncodedSnapshot(
        parts=parts, header=stream.header, size=stream.size, timings=stream.timings
    )
