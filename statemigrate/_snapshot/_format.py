"""The snapshot container: byte layout, assembly and verified decoding.

This is the one module that knows the layout (``docs/format.md`` specifies it)::

    preamble   32 bytes   magic, format version, flags, header length, total length,
                          xxh3-64 of the preceding 24 bytes
    header     H bytes    msgpack map (see ``_header``)
    header_chk 8 bytes    xxh3-64 of the header bytes
    chunks     ...        every section's chunks, in header order
    footer     16 bytes   total length again, end marker
    digest     16 | 32    xxh3-128, or HMAC-SHA256 when the snapshot is authenticated,
                          of every byte before the digest

All integers are little-endian. Readers check, in order: magic, preamble checksum,
format version and flags, total length against the bytes at hand, the digest over
everything, the header checksum and the header's own consistency. Only then is any
chunk looked at; chunks are verified again (xxh3-64 of the stored bytes) before they
are decompressed, so a single section can be read without trusting the others.

Producing the chunks (packing, cutting, compressing) is ``_encode``'s job; it hands
them to :func:`assemble`, which lays them out here.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash

from statemigrate._errors import SnapshotError
from statemigrate._snapshot._codec import (
    check_chunk,
    decompress_chunk,
    pack_data,
    unpack_data,
)
from statemigrate._snapshot._header import (
    SnapshotHeader,
    parse_header,
)
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE

__all__ = [
    "DEFAULT_MAX_SNAPSHOT_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "DecodeLimits",
    "Snapshot",
    "open_snapshot",
]

MAGIC = b"\x89SMSNAP\n"
"""Eight bytes: a high bit (catches 7-bit transfers), the name, a newline (catches
newline translation), as PNG does."""

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

FLAG_AUTHENTICATED = 0x0001
_KNOWN_FLAGS = FLAG_AUTHENTICATED

END_MARKER = b"SMSEND\r\n"

_PREAMBLE = struct.Struct("<8sHHIQQ")  # magic, version, flags, header_len, total_len, check
_CHECK = struct.Struct("<Q")
_FOOTER = struct.Struct("<Q8s")  # total_len, end marker
PREAMBLE_SIZE = _PREAMBLE.size
XXH3_DIGEST_SIZE = 16
HMAC_DIGEST_SIZE = 32

MAX_HEADER_SIZE = 16 << 20

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds a reader enforces whatever the snapshot claims.

    Decoded objects can take up to ~42 bytes of memory per raw byte (a flood of small
    integers), so the default raw limit is the machine's memory divided by 48: a
    hostile snapshot cannot make a restore exhaust memory, while real state (a
    million-entry cache is ~60 MiB raw) stays far below it. Raise it for larger state.

    Attributes:
        max_snapshot_size: largest snapshot accepted, in bytes (default
            :data:`DEFAULT_MAX_SNAPSHOT_SIZE`, the limit stores and the handoff share).
        max_section_size: largest raw (decompressed) section accepted, in bytes.
        max_total_size: largest sum of raw section sizes accepted, in bytes.
        max_sections: most sections accepted.
    """

    max_snapshot_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
    max_section_size: int = field(default_factory=lambda: _memory_share())
    max_total_size: int = field(default_factory=lambda: _memory_share())
    max_sections: int = 100_000


def _memory_share() -> int:
    """A 48th of physical memory, at least 64 MiB (1 GiB where memory is unknown)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 30
    return max(64 << 20, physical // 48)


def _digest(parts: Sequence[Buffer], key: bytes | None) -> bytes:
    if key is None:
        hasher: Any = xxhash.xxh3_128()
    else:
        hasher = hmac.new(key, digestmod="sha256")
    for part in parts:
        hasher.update(part)
    return bytes(hasher.digest())


def assemble(
    header_plain: dict[str, Any], chunk_data: Sequence[Buffer], *, key: bytes | None = None
) -> list[Buffer]:
    """Lay out a header and stored chunks as a snapshot, with every checksum.

    This is the lowest encoding layer: it trusts its inputs to agree with each other,
    which is why tests use it to build hostile snapshots with valid checksums.
    """
    header_bytes = pack_data(header_plain)
    digest_size = HMAC_DIGEST_SIZE if key is not None else XXH3_DIGEST_SIZE
    total = (
        PREAMBLE_SIZE
        + len(header_bytes)
        + _CHECK.size
        + sum(len(c) for c in chunk_data)
        + _FOOTER.size
        + digest_size
    )
    flags = FLAG_AUTHENTICATED if key is not None else 0
    head = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, flags, len(header_bytes), total, 0)[:-8]
    preamble = head + _CHECK.pack(xxhash.xxh3_64_intdigest(head))
    parts: list[Buffer] = [
        preamble,
        header_bytes,
        _CHECK.pack(xxhash.xxh3_64_intdigest(header_bytes)),
        *chunk_data,
        _FOOTER.pack(total, END_MARKER),
    ]
    parts.append(_digest(parts, key))
    return parts


class Snapshot:
    """A verified snapshot: its header is trusted, its sections can be decoded.

    Obtain one with :func:`open_snapshot`; the buffer must not change afterwards (stores
    hand out private copies or sealed memory for that reason).
    """

    def __init__(
        self,
        buffer: memoryview,
        header: SnapshotHeader,
        *,
        format_version: int,
        authenticated: bool,
        chunk_offsets: tuple[tuple[int, ...], ...],
    ) -> None:
        self._buffer = buffer
        self.header = header
        self.format_version = format_version
        self.authenticated = authenticated
        self._chunk_offsets = chunk_offsets

    @property
    def size(self) -> int:
        """Length of the snapshot in bytes."""
        return len(self._buffer)

    def section_offsets(self, index: int) -> tuple[int, ...]:
        """Byte offset of each chunk of section ``index``."""
        return self._chunk_offsets[index]

    def verify_section(self, index: int) -> None:
        """Check every chunk's checksum in section ``index``.

        Raises:
            SnapshotError: kind ``corrupt`` naming the section, chunk and offset.
        """
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
        """
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
                :func:`statemigrate._snapshot._codec.unpack_data`.
        """
        key = self.header.sections[index].key
        return unpack_data(self.read_raw(index), section=key)


def check_length(size: int, total: int) -> None:
    """Refuse ``size`` bytes of a snapshot whose preamble declares ``total``.

    Raises:
        SnapshotError: ``truncated`` when shorter, ``trailing_data`` when longer, with
            the declared length as ``expected``.
    """
    if size < total:
        raise SnapshotError(
            "truncated", "snapshot is shorter than it declares",
            expected=total, actual=size, offset=size,
        )
    if size > total:
        raise SnapshotError(
            "trailing_data", "bytes follow the end of the snapshot",
            expected=total, actual=size, offset=total,
        )


def open_snapshot(
    data: Buffer, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> Snapshot:
    """Verify a snapshot's bytes and parse its header; no section is decoded yet.

    Args:
        data: the snapshot bytes; must not change while the result is in use.
        key: the authentication key, if snapshots are authenticated. A reader holding a
            key refuses unauthenticated snapshots, so a forger cannot just drop the MAC.
        limits: bounds on sizes; defaults are generous but finite.

    Raises:
        SnapshotError: with ``kind`` naming what is wrong and the offset where known.
    """
    limits = limits or DecodeLimits()
    buf = memoryview(data).cast("B")
    size = len(buf)
    if size < len(MAGIC):
        if MAGIC.startswith(bytes(buf)):
            raise SnapshotError("truncated", "snapshot ends inside the magic", offset=size)
        raise SnapshotError("not_snapshot", "not a statemigrate snapshot (bad magic)", offset=0)
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        raise SnapshotError("not_snapshot", "not a statemigrate snapshot (bad magic)", offset=0)
    if size < PREAMBLE_SIZE:
        raise SnapshotError("truncated", "snapshot ends inside the preamble", offset=size)
    _, version, flags, header_len, total, check = _PREAMBLE.unpack_from(buf)
    actual_check = xxhash.xxh3_64_intdigest(buf[: PREAMBLE_SIZE - 8])
    if actual_check != check:
        raise SnapshotError(
            "corrupt", "preamble checksum mismatch", offset=0,
            expected=f"0x{check:016x}", actual=f"0x{actual_check:016x}",
        )
    if version not in SUPPORTED_VERSIONS:
        raise SnapshotError(
            "unsupported_version",
            f"container format version {version} is not supported by this reader"
            f" (supports {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})",
            offset=8,
        )
    if flags & ~_KNOWN_FLAGS:
        raise SnapshotError(
            "unsupported_version", f"unknown flags 0x{flags & ~_KNOWN_FLAGS:04x}", offset=10
        )
    authenticated = bool(flags & FLAG_AUTHENTICATED)
    if authenticated and key is None:
        raise SnapshotError("auth", "snapshot is authenticated but no key was given")
    if key is not None and not authenticated:
        raise SnapshotError("auth", "a key was given but the snapshot is not authenticated")
    if total > limits.max_snapshot_size:
        raise SnapshotError(
            "too_large", "snapshot is larger than the reader allows",
            expected=limits.max_snapshot_size, actual=total, offset=16,
        )
    check_length(size, total)
    digest_size = HMAC_DIGEST_SIZE if authenticated else XXH3_DIGEST_SIZE
    body_end = total - digest_size
    footer_at = body_end - _FOOTER.size
    header_end = PREAMBLE_SIZE + header_len
    if header_len > MAX_HEADER_SIZE or header_end + _CHECK.size > footer_at:
        raise SnapshotError(
            "corrupt", "header length does not fit the snapshot", offset=12, actual=header_len
        )
    try:
        _verify_digest(buf, body_end, key)
    except SnapshotError as digest_error:
        if key is not None:
            raise
        # The digest only says that something changed; the per-part checksums say where.
        raise _locate_damage(buf, header_end, footer_at, limits) or digest_error from None
    return _parse_verified(buf, version, authenticated, header_end, footer_at, total, limits)


def _parse_verified(
    buf: memoryview,
    version: int,
    authenticated: bool,
    header_end: int,
    footer_at: int,
    total: int,
    limits: DecodeLimits,
) -> Snapshot:
    footer_total, marker = _FOOTER.unpack_from(buf, footer_at)
    if footer_total != total or marker != END_MARKER:
        raise SnapshotError("corrupt", "footer does not match the preamble", offset=footer_at)
    (header_check,) = _CHECK.unpack_from(buf, header_end)
    header_bytes = buf[PREAMBLE_SIZE:header_end]
    actual_check = xxhash.xxh3_64_intdigest(header_bytes)
    if actual_check != header_check:
        raise SnapshotError(
            "corrupt", "header checksum mismatch", offset=PREAMBLE_SIZE,
            expected=f"0x{header_check:016x}", actual=f"0x{actual_check:016x}",
        )
    try:
        header = parse_header(unpack_data(header_bytes, section="header"))
    except SnapshotError as exc:
        raise SnapshotError(
            "invalid_header", exc.detail, offset=PREAMBLE_SIZE
        ) from exc
    except ValueError as exc:
        raise SnapshotError("invalid_header", str(exc), offset=PREAMBLE_SIZE) from exc
    offsets = _layout(header, header_end + _CHECK.size, footer_at, limits)
    return Snapshot(
        buf, header, format_version=version, authenticated=authenticated,
        chunk_offsets=offsets,
    )


def _locate_damage(
    buf: memoryview, header_end: int, footer_at: int, limits: DecodeLimits
) -> SnapshotError | None:
    """The first part whose own checksum fails, as an error naming it; else ``None``."""
    total = len(buf)
    try:
        snapshot = _parse_verified(
            buf, FORMAT_VERSION, False, header_end, footer_at, total, limits
        )
    except SnapshotError as exc:
        return exc
    for index in range(len(snapshot.header.sections)):
        try:
            snapshot.verify_section(index)
        except SnapshotError as exc:
            return exc
    return None


def _verify_digest(buf: memoryview, body_end: int, key: bytes | None) -> None:
    expected = bytes(buf[body_end:])
    actual = _digest([buf[:body_end]], key)
    if key is not None:
        if not hmac.compare_digest(expected, actual):
            raise SnapshotError("auth", "authentication code mismatch", offset=body_end)
        return
    if expected != actual:
        raise SnapshotError(
            "corrupt", "snapshot digest mismatch", offset=body_end,
            expected=expected, actual=actual,
        )


def _layout(
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
