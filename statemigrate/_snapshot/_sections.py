"""A verified snapshot's sections: where their chunks lie, and decoding them.

:func:`~statemigrate._snapshot._format.open_snapshot` verifies the container and hands
the trusted header to :class:`Snapshot`; from there on, reading a section needs no
knowledge of the layout: each chunk is checked (xxh3-64 of its stored bytes, then what
its frame can produce) before the section's buffer is allocated, so a single section
can be read without trusting the others.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash

from statemigrate._errors import ConfigurationError, SnapshotError
from statemigrate._snapshot._chunks import check_chunk, decompress_chunk
from statemigrate._snapshot._header import SectionInfo, SnapshotHeader
from statemigrate._snapshot._limits import DecodeLimits, section_budget
from statemigrate._snapshot._msgpack import unpack_data, unpack_typed

if TYPE_CHECKING:
    from statemigrate._model._typed import TypedForm

__all__ = ["SealedSection", "Snapshot", "chunk_offsets"]


@dataclass(frozen=True, slots=True)
class SealedSection:
    """One section of a verified snapshot, kept as it is stored: its header entry and
    its chunks' stored bytes, to be written into another snapshot unchanged.

    A section that no component of the reading code claims is kept this way, never
    decoded into a schema, so that a release that has its component restores it from
    a later snapshot exactly as if it came from the first (see
    :meth:`Snapshot.sealed_section`).
    """

    info: SectionInfo
    stored: tuple[bytes, ...]
    """Each chunk's stored bytes, in order (``info.chunks`` describes them)."""

    @property
    def component(self) -> str:
        return self.info.component

    @property
    def instance(self) -> str:
        return self.info.instance

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def fingerprint(self) -> str:
        return self.info.fingerprint

    @property
    def key(self) -> str:
        """``component/instance``, the name used in messages."""
        return self.info.key


class Snapshot:
    """A verified snapshot: its header is trusted, its sections can be decoded.

    Obtain one with :func:`~statemigrate._snapshot._format.open_snapshot`; the buffer
    must not change afterwards (stores hand out private copies or sealed memory for that
    reason).
    """

    def __init__(
        self,
        buffer: memoryview,
        header: SnapshotHeader,
        *,
        format_version: int,
        authenticated: bool,
        chunk_offsets: tuple[tuple[int, ...], ...],
        max_section_size: int,
    ) -> None:
        self._buffer = buffer
        self.header = header
        self.format_version = format_version
        self.authenticated = authenticated
        self._chunk_offsets = chunk_offsets
        self._max_section_size = max_section_size

    @property
    def size(self) -> int:
        """Length of the snapshot in bytes."""
        return len(self._buffer)

    def section_offsets(self, index: int) -> tuple[int, ...]:
        """Byte offset of each chunk of section ``index``.

        Raises:
            ConfigurationError: ``index`` is no index of a section.
        """
        return self._chunk_offsets[self._index(index)]

    def verify_section(self, index: int) -> None:
        """Check every chunk's checksum in section ``index``.

        Raises:
            SnapshotError: kind ``corrupt`` naming the section, chunk and offset.
            ConfigurationError: ``index`` is no index of a section.
        """
        index = self._index(index)
        section = self.header.sections[index]
        for number, (chunk, offset) in enumerate(
            zip(section.chunks, self._chunk_offsets[index], strict=True)
        ):
            stored = self._buffer[offset : offset + chunk.stored_size]
            actual = xxhash.xxh3_64_intdigest(stored)
            if actual != chunk.checksum:
                raise SnapshotError(
                    "corrupt",
                    "chunk checksum mismatch",
                    section=section.key,
                    chunk=number,
                    offset=offset,
                    expected=f"0x{chunk.checksum:016x}",
                    actual=f"0x{actual:016x}",
                )

    def read_raw(self, index: int) -> bytearray:
        """Verify and decompress section ``index`` into its raw msgpack bytes.

        Raises:
            SnapshotError: a chunk fails its checksum or does not decode to exactly its
                declared size, or the raw bytes fail the section checksum. Every chunk
                is checked for what it can produce before any memory is allocated.
            ConfigurationError: ``index`` is no index of a section.
        """
        index = self._index(index)
        self.verify_section(index)
        section = self.header.sections[index]
        # Every chunk must be able to produce its declared size before the section's
        # buffer is allocated: the sizes are the writer's claims, and a forged claim of
        # gigabytes in a few hundred bytes must cost nothing.
        for number, (chunk, offset) in enumerate(
            zip(section.chunks, self._chunk_offsets[index], strict=True)
        ):
            check_chunk(
                self._buffer[offset : offset + chunk.stored_size],
                chunk.codec,
                chunk.raw_size,
                section=section.key,
                chunk=number,
                offset=offset,
            )
        raw = bytearray(section.raw_size)
        view = memoryview(raw)
        position = 0
        for number, (chunk, offset) in enumerate(
            zip(section.chunks, self._chunk_offsets[index], strict=True)
        ):
            decompress_chunk(
                self._buffer[offset : offset + chunk.stored_size],
                chunk.codec,
                view[position : position + chunk.raw_size],
                section=section.key,
                chunk=number,
                offset=offset,
            )
            position += chunk.raw_size
        actual = xxhash.xxh3_64_intdigest(raw)
        if actual != section.checksum:
            raise SnapshotError(
                "corrupt",
                "section checksum mismatch after decompression",
                section=section.key,
                expected=f"0x{section.checksum:016x}",
                actual=f"0x{actual:016x}",
            )
        return raw

    def read_section(self, index: int) -> object:
        """Decode section ``index`` into plain data.

        Raises:
            SnapshotError: see :meth:`read_raw` and
                :func:`statemigrate._snapshot._msgpack.unpack_data`.
            ConfigurationError: ``index`` is no index of a section.
        """
        index = self._index(index)
        section = self.header.sections[index]
        return unpack_data(
            self.read_raw(index), section=section.key, container_budget=self._budget(index)
        )

    def read_typed(self, index: int, form: TypedForm) -> tuple[object, bool]:
        """Decode section ``index`` straight into ``form`` when that is exact (see
        :func:`statemigrate._snapshot._msgpack.unpack_typed`), else into plain data.

        Returns:
            ``(value, True)`` for a value that needs no further validation, and
            ``(plain data, False)`` for one that does.

        Raises:
            SnapshotError, ConfigurationError: as :meth:`read_section`.
        """
        index = self._index(index)
        section = self.header.sections[index]
        return unpack_typed(
            self.read_raw(index), form, section=section.key, container_budget=self._budget(index)
        )

    def sealed_section(self, index: int) -> SealedSection:
        """Section ``index`` as it is stored, checked as a restore would read it.

        Every check a reader makes of the section (its chunks, its decompressed
        checksum, its msgpack within this reader's limits) runs first, so what is
        written elsewhere unchanged restores wherever this snapshot would; the decoded
        data is dropped. The stored bytes are copied: the snapshot's buffer may be a
        store's, valid only while the restore runs.

        Raises:
            SnapshotError: as :meth:`read_section`.
            ConfigurationError: ``index`` is no index of a section.
        """
        index = self._index(index)
        self.read_section(index)
        section = self.header.sections[index]
        stored = tuple(
            bytes(self._buffer[offset : offset + chunk.stored_size])
            for chunk, offset in zip(section.chunks, self._chunk_offsets[index], strict=True)
        )
        return SealedSection(section, stored)

    def _index(self, index: object) -> int:
        """``index`` as the index of one of the sections, counted from the end when
        negative, as a tuple's.

        Raises:
            ConfigurationError: ``index`` is not an int (a bool is not one: ``True``
                read section 1), or no section has it.
        """
        count = len(self.header.sections)
        try:
            number = None if isinstance(index, bool) else operator.index(index)  # type: ignore[arg-type]
        except TypeError:
            number = None
        if number is None or not -count <= number < count:
            shown = f"{index!r:.60}"
            if not count:
                raise ConfigurationError("index", f"the snapshot has no sections (got {shown})")
            held = f"{count} section{'s' if count > 1 else ''}"
            raise ConfigurationError(
                "index",
                f"must be an int from {-count} to {count - 1} (the snapshot has {held}),"
                f" not {shown}",
            )
        return number % count

    def _budget(self, index: int) -> int:
        return section_budget(self.header.sections[index].raw_size, self._max_section_size)


def chunk_offsets(
    header: SnapshotHeader, start: int, end: int, limits: DecodeLimits
) -> tuple[tuple[int, ...], ...]:
    """Chunk offsets, checking that the chunks exactly fill the space between."""
    if len(header.sections) > limits.max_sections:
        raise SnapshotError(
            "too_large", "too many sections",
            expected=limits.max_sections, actual=len(header.sections),
        )
    total_raw = sum(s.raw_size for s in header.sections)
    if total_raw > limits.max_total_size:
        raise SnapshotError(
            "too_large", "sections decompress to more than the reader allows",
            expected=limits.max_total_size, actual=total_raw,
        )
    offsets: list[tuple[int, ...]] = []
    position = start
    for section in header.sections:
        if section.raw_size > limits.max_section_size:
            raise SnapshotError(
                "too_large", "section decompresses to more than the reader allows",
                section=section.key, expected=limits.max_section_size,
                actual=section.raw_size,
            )
        section_offsets = []
        for chunk in section.chunks:
            section_offsets.append(position)
            position += chunk.stored_size
        offsets.append(tuple(section_offsets))
    if position != end:
        raise SnapshotError(
            "invalid_header", "chunk sizes do not add up to the snapshot's length",
            expected=end - start, actual=position - start, offset=start,
        )
    return tuple(offsets)
