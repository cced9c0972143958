"""The snapshot container: byte layout, assembly and verified decoding.

This is the one module that knows the layout (``docs/format.md`` specifies it). Version
3, which writers write, has the layout of version 2 and adds deltas: its header may
name a ``base``, the snapshot whose state the delta's sections change (see
``_header``). Versions 2 and 3 put the header after the chunks, so that a writer can
stream each chunk out as soon as it is sealed::

    preamble   32 bytes   magic, format version, flags, two zero fields, xxh3-64 of the
                          preceding 24 bytes
    chunks     ...        every section's chunks, in header order
    header     H bytes    msgpack map (see ``_header``)
    header_chk 8 bytes    xxh3-64 of the header bytes
    footer     32 bytes   header length, total length, xxh3-64 of those 16 bytes, end
                          marker
    digest     16 | 32    xxh3-128, or HMAC-SHA256 when the snapshot is authenticated,
                          of every byte before the digest

Version 1, still read, had the header first and the lengths in the preamble::

    preamble   32 bytes   magic, format version, flags, header length, total length,
                          xxh3-64 of the preceding 24 bytes
    header     H bytes    msgpack map
    header_chk 8 bytes    xxh3-64 of the header bytes
    chunks     ...        every section's chunks, in header order
    footer     16 bytes   total length again, end marker
    digest     16 | 32    as in version 2

All integers are little-endian. Readers check, in order: magic, preamble checksum,
format version and flags, the lengths against the bytes at hand, the digest over
everything, the header checksum and the header's own consistency. Only then is any
chunk looked at; chunks are verified again (xxh3-64 of the stored bytes) before they
are decompressed, so a single section can be read without trusting the others.

Producing the chunks (packing, cutting, compressing) is ``_encode``'s job; it hands
them to :func:`write_container`, which lays them out here as they come. Reading the
sections of a verified snapshot is ``_sections``' job, the reader's bounds are in
``_limits``.

:func:`check_layout` runs the same checks but the digest's on a snapshot's ends alone
(its preamble, and its last 16 KiB with the footer and, usually, the header), for a
listing that must not read every byte of many large snapshots.
"""

from __future__ import annotations

import hmac
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import xxhash

from statemigrate._errors import SnapshotError, SourceTypeError
from statemigrate._snapshot._header import SnapshotHeader, parse_header
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE, DecodeLimits, check_limits
from statemigrate._snapshot._msgpack import pack_data, unpack_data
from statemigrate._snapshot._sections import Snapshot, chunk_offsets

__all__ = [
    "DEFAULT_MAX_SNAPSHOT_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "DecodeLimits",
    "Snapshot",
    "byte_view",
    "check_ends",
    "check_layout",
    "last_header",
    "open_snapshot",
    "snapshot_length",
    "write_container",
]

MAGIC = b"\x89SMSNAP\n"
"""Eight bytes: a high bit (catches 7-bit transfers), the name, a newline (catches
newline translation), as PNG does."""

FORMAT_VERSION = 3
SUPPORTED_VERSIONS = frozenset({1, 2, 3})

FLAG_AUTHENTICATED = 0x0001
_KNOWN_FLAGS = FLAG_AUTHENTICATED

END_MARKER = b"SMSEND\r\n"

_PREAMBLE = struct.Struct("<8sHHIQQ")  # magic, version, flags, header_len, total_len, check
_CHECK = struct.Struct("<Q")
_FOOTER_V1 = struct.Struct("<Q8s")  # total_len, end marker
_FOOTER = struct.Struct("<QQQ8s")  # header_len, total_len, footer check, end marker
PREAMBLE_SIZE = _PREAMBLE.size
FOOTER_SIZE = _FOOTER.size
XXH3_DIGEST_SIZE = 16
HMAC_DIGEST_SIZE = 32

MAX_HEADER_SIZE = 16 << 20

Buffer = bytes | bytearray | memoryview


def _hasher(key: bytes | None) -> Any:
    """The digest's running hash: xxh3-128, or HMAC-SHA256 with a key."""
    if key is None:
        return xxhash.xxh3_128()
    return hmac.new(key, digestmod="sha256")


def _digest(parts: Sequence[Buffer], key: bytes | None) -> bytes:
    hasher = _hasher(key)
    for part in parts:
        hasher.update(part)
    return bytes(hasher.digest())


def _preamble(version: int, flags: int, header_len: int, total: int) -> bytes:
    head = _PREAMBLE.pack(MAGIC, version, flags, header_len, total, 0)[:-8]
    return head + _CHECK.pack(xxhash.xxh3_64_intdigest(head))


def _footer(header_len: int, total: int) -> bytes:
    lengths = _FOOTER.pack(header_len, total, 0, END_MARKER)[:16]
    return lengths + _CHECK.pack(xxhash.xxh3_64_intdigest(lengths)) + END_MARKER


def write_container(
    chunk_data: Iterable[Buffer],
    header: Callable[[], dict[str, Any]],
    *,
    key: bytes | None = None,
    version: int = FORMAT_VERSION,
) -> Iterator[Buffer]:
    """Lay out stored chunks and their header as a snapshot, yielding it in order.

    The preamble comes first; each buffer of ``chunk_data`` is passed on as soon as it
    is taken, and ``header`` is called once the chunks are exhausted, since the header
    lists them. The digest is computed as the bytes go by, so nothing is held back.

    This is the lowest encoding layer: it trusts its inputs to agree with each other,
    which is why tests use it (through :func:`assemble`) to build hostile snapshots
    with valid checksums.
    """
    flags = FLAG_AUTHENTICATED if key is not None else 0
    hasher = _hasher(key)
    preamble = _preamble(version, flags, 0, 0)
    hasher.update(preamble)
    yield preamble
    position = len(preamble)
    for part in chunk_data:
        hasher.update(part)
        position += memoryview(part).nbytes
        yield part
        del part  # a chunk is not kept once passed on
    header_bytes = pack_data(header())
    digest_size = HMAC_DIGEST_SIZE if key is not None else XXH3_DIGEST_SIZE
    total = position + len(header_bytes) + _CHECK.size + _FOOTER.size + digest_size
    tail = (
        header_bytes
        + _CHECK.pack(xxhash.xxh3_64_intdigest(header_bytes))
        + _footer(len(header_bytes), total)
    )
    hasher.update(tail)
    yield tail
    yield bytes(hasher.digest())


def assemble(
    header_plain: dict[str, Any],
    chunk_data: Sequence[Buffer],
    *,
    key: bytes | None = None,
    version: int = FORMAT_VERSION,
) -> list[Buffer]:
    """A header and stored chunks laid out as a snapshot of format ``version``.

    Writers write only the current version; versions 1 and 2 are laid out here so that
    tests can craft snapshots of the older versions, which readers still read.
    """
    if version in (2, FORMAT_VERSION):
        return list(write_container(chunk_data, lambda: header_plain, key=key, version=version))
    if version != 1:
        raise ValueError(f"cannot lay out format version {version}")
    header_bytes = pack_data(header_plain)
    digest_size = HMAC_DIGEST_SIZE if key is not None else XXH3_DIGEST_SIZE
    total = (
        PREAMBLE_SIZE
        + len(header_bytes)
        + _CHECK.size
        + sum(len(c) for c in chunk_data)
        + _FOOTER_V1.size
        + digest_size
    )
    flags = FLAG_AUTHENTICATED if key is not None else 0
    parts: list[Buffer] = [
        _preamble(1, flags, len(header_bytes), total),
        header_bytes,
        _CHECK.pack(xxhash.xxh3_64_intdigest(header_bytes)),
        *chunk_data,
        _FOOTER_V1.pack(total, END_MARKER),
    ]
    parts.append(_digest(parts, key))
    return parts


def check_length(size: int, total: int) -> None:
    """Refuse ``size`` bytes of a snapshot whose preamble declares ``total``.

    Raises:
        SnapshotError: ``truncated`` when shorter, ``trailing_data`` when longer, with
            the declared length as ``expected``.
    """
    if size < total:
        raise SnapshotError(
            "truncated", "snapshot is cut short", expected=total, actual=size, offset=size,
        )
    if size > total:
        raise SnapshotError(
            "trailing_data", "bytes follow the end of the snapshot",
            expected=total, actual=size, offset=total,
        )


@dataclass(frozen=True, slots=True)
class _Places:
    """Where the parts of a snapshot lie, from its preamble (v1) or footer (v2)."""

    version: int
    header_at: int
    header_end: int  # the header check follows
    chunks_at: int
    chunks_end: int
    footer_at: int
    body_end: int  # the digest follows


def open_snapshot(
    data: Buffer, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> Snapshot:
    """Verify a snapshot's bytes and parse its header; no section is decoded yet.

    Reads every format version in :data:`SUPPORTED_VERSIONS`.

    Args:
        data: the snapshot bytes; must not change while the result is in use.
        key: the authentication key, if snapshots are authenticated. A reader holding a
            key refuses unauthenticated snapshots, so a forger cannot just drop the MAC.
        limits: bounds on sizes; defaults are generous but finite.

    Raises:
        SnapshotError: with ``kind`` naming what is wrong and the offset where known.
        SourceTypeError: ``data`` is no bytes-like object (a path, ``None``), or one
            whose bytes are not contiguous.
        ConfigurationError: ``limits`` is not a :class:`DecodeLimits`.
    """
    limits = check_limits(limits)
    buf = byte_view(data)
    version, authenticated, header_len, total = _read_preamble(buf, key)
    digest_size = HMAC_DIGEST_SIZE if authenticated else XXH3_DIGEST_SIZE
    if version == 1:
        places = _places_v1(len(buf), header_len, total, digest_size, limits)
    else:
        places = _places_v2(_Ends(buf, len(buf)), version, digest_size, limits)
    try:
        _verify_digest(buf, places.body_end, key)
    except SnapshotError as digest_error:
        if key is not None:
            raise
        # The digest only says that something changed; the per-part checksums say where.
        raise _locate_damage(buf, places, limits) or digest_error from None
    return _parse_verified(buf, places, authenticated, limits)


BYTES_LIKE = "bytes-like (bytes, bytearray, memoryview)"


def byte_view(data: object, *, argument: str = "data", accepted: str = BYTES_LIKE) -> memoryview:
    """``data`` as one flat run of bytes, for a reader to index.

    Raises:
        SourceTypeError: ``data`` is no bytes-like object, or one whose bytes are not
            contiguous (a strided slice such as ``view[::2]``); the error names
            ``argument`` and says it takes ``accepted``.
    """
    try:
        view = memoryview(data)  # type: ignore[arg-type]  # checked right here
    except TypeError:
        raise SourceTypeError(data, accepted, argument=argument) from None
    if not view.c_contiguous:
        raise SourceTypeError(
            data,
            accepted,
            argument=argument,
            given=f"a {type(data).__qualname__} that is not contiguous (bytes() copies it)",
        )
    return view.cast("B")


def snapshot_length(
    head: Buffer, size: int, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> int:
    """The length of the snapshot that starts with ``head`` (its preamble, at least),
    in a file of ``size`` bytes: what a reader of the file must read.

    Version 1 declares its length in the preamble; version 2 only at its end, so its
    length is the file's (:func:`open_snapshot` then checks the footer).

    Raises:
        SnapshotError: the preamble is not sound, or the length is over the limit.
    """
    limits = check_limits(limits)
    version, _, _, total = _read_preamble(memoryview(head).cast("B"), key)
    length = total if version == 1 else size
    if length > limits.max_snapshot_size:
        raise SnapshotError(
            "too_large", "snapshot is larger than the reader allows",
            expected=limits.max_snapshot_size, actual=length, offset=16 if version == 1 else 0,
        )
    return length


def check_ends(
    read: Callable[[int, int], Buffer],
    size: int,
    *,
    key: bytes | None = None,
    limits: DecodeLimits | None = None,
) -> None:
    """Run the checks :func:`open_snapshot` makes before the digest's, on a snapshot of
    ``size`` bytes read from its ends alone, with the same errors.

    They are the preamble's and the length's: a version 1 preamble declares the length,
    a version 2 or 3 footer does. So a file whose size is not its snapshot's (bytes
    appended, a cut) is refused after reading its preamble and its last 16 KiB, before
    a reader spends its size in memory and time to find that out.

    Args:
        read: returns the ``length`` bytes at ``offset`` of the snapshot, called with
            ``offset + length <= size`` only.
        size: the snapshot's length in bytes.
        key: as :func:`open_snapshot` will be given.
        limits: as :func:`open_snapshot` will be given.

    Raises:
        SnapshotError: as :func:`open_snapshot` for the steps it runs.
        ConfigurationError: ``limits`` is no :class:`DecodeLimits`.
    """
    limits = check_limits(limits)
    first = _exactly(read, 0, min(size, PREAMBLE_SIZE))
    version, authenticated, header_len, total = _read_preamble(first, key)
    digest_size = HMAC_DIGEST_SIZE if authenticated else XXH3_DIGEST_SIZE
    if version == 1:
        _places_v1(size, header_len, total, digest_size, limits)
        return
    if size > limits.max_snapshot_size:  # as _places_v2 says, before reading further
        raise SnapshotError(
            "too_large", "snapshot is larger than the reader allows",
            expected=limits.max_snapshot_size, actual=size, offset=0,
        )
    tail = min(size, _ENDS_SIZE)
    _places_v2(_Ends(_exactly(read, size - tail, tail), size), version, digest_size, limits)


def _exactly(read: Callable[[int, int], Buffer], offset: int, length: int) -> memoryview:
    got = memoryview(read(offset, length)).cast("B")
    if len(got) != length:
        raise ValueError(f"read({offset}, {length}) returned {len(got)} bytes")
    return got


_UNBOUNDED = DecodeLimits(
    max_snapshot_size=sys.maxsize,
    max_section_size=sys.maxsize,
    max_total_size=sys.maxsize,
    max_sections=sys.maxsize,
)
"""No size limit: :func:`check_layout` judges the bytes, not whether a reader's limits
admit the snapshot."""


def check_layout(read: Callable[[int, int], Buffer], size: int) -> SnapshotHeader:
    """Check a snapshot of ``size`` bytes from its ends alone, and return its header.

    Every step of the verification order (``docs/format.md``) but the digest's and the
    chunks': the preamble, the length (from the preamble, or from the footer found at
    the end), the footer, the header's checksum and contents, and the chunks filling
    the bytes between. It needs no key and sets no size limit. It reads the preamble,
    the last 16 KiB (the footer and, but for a header larger than that, the header),
    and a larger header apart; a snapshot of up to 16 KiB in one read.

    So it finds a snapshot cut short or with bytes appended, a damaged preamble,
    footer or header, for the price of a few small reads however large the snapshot,
    where :func:`open_snapshot` reads every byte. It does not find a damaged chunk, nor
    a snapshot forged with sound checksums: only the digest (or MAC) and the chunks'
    checksums do.

    Args:
        read: returns the ``length`` bytes at ``offset`` of the snapshot, called with
            ``offset + length <= size`` only.
        size: the snapshot's length in bytes.

    Raises:
        SnapshotError: as :func:`open_snapshot` for the steps it runs.
    """
    def exactly(offset: int, length: int) -> memoryview:
        got = memoryview(read(offset, length)).cast("B")
        if len(got) != length:
            raise ValueError(f"read({offset}, {length}) returned {len(got)} bytes")
        return got

    # Up to 16 KiB, the whole snapshot in one read serves every step.
    whole = size <= _ENDS_SIZE
    first = exactly(0, size if whole else PREAMBLE_SIZE)
    version, authenticated, header_len, total = _read_preamble(first, None, keyed=False)
    digest_size = HMAC_DIGEST_SIZE if authenticated else XXH3_DIGEST_SIZE
    ends = _Ends(first, size)
    if version == 1:
        places = _places_v1(size, header_len, total, digest_size, _UNBOUNDED)
        if not whole:
            ends = _Ends(exactly(places.footer_at, size - places.footer_at), size)
        _check_footer_v1(ends.view(places.footer_at, places.body_end), places, size)
    else:
        if not whole:
            ends = _Ends(exactly(size - _ENDS_SIZE, _ENDS_SIZE), size)
        places = _places_v2(ends, version, digest_size, _UNBOUNDED)
    checked_end = places.header_end + _CHECK.size
    if places.header_at >= ends.start:
        checked = ends.view(places.header_at, checked_end)
    else:
        checked = exactly(places.header_at, checked_end - places.header_at)
    header = _checked_header(checked, places)
    chunk_offsets(header, places.chunks_at, places.chunks_end, _UNBOUNDED)
    return header


def last_header(read: Callable[[int, int], Buffer], size: int) -> SnapshotHeader | None:
    """The header of the snapshot that ends an object of ``size`` bytes (the object
    itself, or the newest piece of a checkpoint chain, which ends where the chain
    does), found from the object's last bytes and checked as :func:`check_layout`
    checks it; ``None`` when the object does not end with a version 2 or 3 snapshot.

    For a store that must learn who committed its latest object, for the price of a
    few small reads, whatever that object is.

    Args:
        read: returns the ``length`` bytes at ``offset`` of the object, called with
            ``offset + length <= size`` only.
        size: the object's length in bytes.

    Raises:
        SnapshotError: the snapshot found there is damaged (see :func:`check_layout`).
    """
    tail_size = min(size, _ENDS_SIZE)
    ends = _Ends(_exactly(read, size - tail_size, tail_size), size)
    for digest_size in (XXH3_DIGEST_SIZE, HMAC_DIGEST_SIZE):
        footer_at = size - digest_size - _FOOTER.size
        if footer_at < max(ends.start, 0):
            continue
        if bytes(ends.view(footer_at + 24, footer_at + 32)) != END_MARKER:
            continue
        _, total = _footer_lengths(ends, footer_at, quiet=True)
        if PREAMBLE_SIZE < total <= size:
            return check_layout(partial(_read_from, read, size - total), total)
    return None


def _read_from(read: Callable[[int, int], Buffer], start: int, offset: int, length: int) -> Buffer:
    return read(start + offset, length)


def _read_preamble(
    buf: memoryview, key: bytes | None, *, keyed: bool = True
) -> tuple[int, bool, int, int]:
    """The format version, whether authenticated, and the header and total lengths
    (zero in version 2) of a sound preamble.

    ``keyed=False`` leaves out the checks of ``key`` against the flags, for a reader
    that checks no digest (:func:`check_layout`).

    Raises:
        SnapshotError: steps 1-7 of the verification order in ``docs/format.md``.
    """
    size = len(buf)
    if size == 0:
        # An empty file, or one cut before its first byte: say which, not "the magic".
        raise SnapshotError("truncated", "empty (0 bytes): no snapshot, or one cut at its start")
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
    if authenticated and key is None and keyed:
        raise SnapshotError("auth", "snapshot is authenticated but no key was given")
    if key is not None and not authenticated:
        raise SnapshotError("auth", "a key was given but the snapshot is not authenticated")
    if version != 1 and (header_len or total):
        raise SnapshotError(
            "corrupt", f"preamble length fields must be zero in format version {version}",
            offset=12, actual=f"{header_len}, {total}",
        )
    return version, authenticated, header_len, total


def _places_v1(
    size: int, header_len: int, total: int, digest_size: int, limits: DecodeLimits
) -> _Places:
    """The parts of a version 1 snapshot, whose preamble declares the lengths."""
    if total > limits.max_snapshot_size:
        raise SnapshotError(
            "too_large", "snapshot is larger than the reader allows",
            expected=limits.max_snapshot_size, actual=total, offset=16,
        )
    check_length(size, total)
    body_end = total - digest_size
    footer_at = body_end - _FOOTER_V1.size
    header_end = PREAMBLE_SIZE + header_len
    if header_len > MAX_HEADER_SIZE or header_end + _CHECK.size > footer_at:
        room = max(0, min(MAX_HEADER_SIZE, footer_at - _CHECK.size - PREAMBLE_SIZE))
        raise SnapshotError(
            "corrupt", "header length does not fit the snapshot", offset=12,
            expected=f"at most {room}", actual=header_len,
        )
    return _Places(1, PREAMBLE_SIZE, header_end, header_end + _CHECK.size, footer_at,
                   footer_at, body_end)


_TRAILING_WINDOW = 16 << 10
"""How far before the end of a version 2 snapshot without its footer the reader looks
for the footer, to tell bytes appended after it from a truncation."""

_ENDS_SIZE = _TRAILING_WINDOW + _FOOTER.size
"""The last bytes of a version 2 snapshot that its footer checks read: the footer,
and a footer starting up to 24 bytes before the window searched for one."""


class _Ends:
    """The last bytes of a snapshot of ``size`` bytes, addressed by their offsets in
    the snapshot: all the footer checks read, so that they run on a whole snapshot or
    on its :data:`_ENDS_SIZE` last bytes alike."""

    __slots__ = ("size", "start", "_tail")

    def __init__(self, tail: memoryview, size: int) -> None:
        self._tail = tail
        self.size = size
        self.start = size - len(tail)

    def view(self, start: int, end: int) -> memoryview:
        if start < self.start:
            raise ValueError(f"bytes {start}-{end} lie before the {len(self._tail)} held")
        return self._tail[start - self.start : end - self.start]


def _places_v2(
    ends: _Ends, version: int, digest_size: int, limits: DecodeLimits
) -> _Places:
    """The parts of a version 2 (or 3) snapshot, whose footer declares the lengths."""
    size = ends.size
    if size > limits.max_snapshot_size:
        raise SnapshotError(
            "too_large", "snapshot is larger than the reader allows",
            expected=limits.max_snapshot_size, actual=size, offset=0,
        )
    footer_at = size - digest_size - _FOOTER.size
    if footer_at < PREAMBLE_SIZE + _CHECK.size:
        raise _unterminated(ends, digest_size)
    if bytes(ends.view(footer_at + 24, footer_at + 32)) != END_MARKER:
        if _footer_lengths(ends, footer_at, quiet=True)[1] == size:
            # A sound footer declaring this very length: the marker itself is damaged.
            raise SnapshotError("corrupt", "end marker mismatch", offset=footer_at + 24)
        raise _unterminated(ends, digest_size)
    header_len, total = _footer_lengths(ends, footer_at)
    check_length(size, total)
    header_end = footer_at - _CHECK.size
    header_at = header_end - header_len
    if header_len > MAX_HEADER_SIZE or header_at < PREAMBLE_SIZE:
        room = max(0, min(MAX_HEADER_SIZE, header_end - PREAMBLE_SIZE))
        raise SnapshotError(
            "corrupt", "header length does not fit the snapshot", offset=footer_at,
            expected=f"at most {room}", actual=header_len,
        )
    return _Places(version, header_at, header_end, PREAMBLE_SIZE, header_at, footer_at,
                   size - digest_size)


def _footer_lengths(
    ends: _Ends, footer_at: int, *, quiet: bool = False
) -> tuple[int, int]:
    """The header and total lengths of the version 2 footer at ``footer_at``, checked.

    With ``quiet``, a footer whose checksum fails gives ``(-1, -1)`` instead.

    Raises:
        SnapshotError: ``corrupt`` when the footer's checksum fails.
    """
    header_len, total, check, _ = _FOOTER.unpack(ends.view(footer_at, footer_at + _FOOTER.size))
    actual = xxhash.xxh3_64_intdigest(ends.view(footer_at, footer_at + 16))
    if actual != check and quiet:
        return -1, -1
    if actual != check:
        raise SnapshotError(
            "corrupt", "footer checksum mismatch", offset=footer_at,
            expected=f"0x{check:016x}", actual=f"0x{actual:016x}",
        )
    return header_len, total


def _unterminated(ends: _Ends, digest_size: int) -> SnapshotError:
    """The error for a version 2 snapshot that does not end with its footer.

    Without a declared length at the start, a cut is told from appended bytes by
    looking for a sound footer shortly before the end: found, the snapshot ends there
    and the rest is ``trailing_data``; not found, it is ``truncated``.
    """
    size = ends.size
    start = max(PREAMBLE_SIZE, size - _TRAILING_WINDOW)
    window = bytes(ends.view(start, size))
    found = window.rfind(END_MARKER)
    while found >= 0:
        footer_at = start + found - 24
        end = start + found + len(END_MARKER) + digest_size
        if footer_at >= PREAMBLE_SIZE + _CHECK.size and end < size:
            _, total = _footer_lengths(ends, footer_at, quiet=True)
            if total == end:
                return SnapshotError(
                    "trailing_data", "bytes follow the end of the snapshot",
                    expected=total, actual=size, offset=total,
                )
        found = window.rfind(END_MARKER, 0, found)
    # No length is declared before the footer: all that is known is that more was
    # written than is here.
    return SnapshotError(
        "truncated",
        "snapshot is cut short: it does not end with its footer, the only place its size"
        " is declared",
        actual=size, offset=size,
    )


def _parse_verified(
    buf: memoryview, places: _Places, authenticated: bool, limits: DecodeLimits
) -> Snapshot:
    """Steps 12 to 15 of the verification order, on the whole snapshot."""
    if places.version == 1:
        _check_footer_v1(
            buf[places.footer_at : places.footer_at + _FOOTER_V1.size], places, len(buf)
        )
    header = _checked_header(buf[places.header_at : places.header_end + _CHECK.size], places)
    offsets = chunk_offsets(header, places.chunks_at, places.chunks_end, limits)
    return Snapshot(
        buf, header, format_version=places.version, authenticated=authenticated,
        chunk_offsets=offsets, max_section_size=limits.max_section_size,
    )


def _check_footer_v1(footer: memoryview, places: _Places, size: int) -> None:
    """Step 12: a version 1 footer repeats the length of the snapshot, ``size``."""
    footer_total, marker = _FOOTER_V1.unpack(footer)
    if footer_total != size or marker != END_MARKER:
        raise SnapshotError(
            "corrupt", "footer does not match the preamble", offset=places.footer_at
        )


def _checked_header(checked: memoryview, places: _Places) -> SnapshotHeader:
    """Steps 13 and 14: the header's bytes (with their check after them), checked and
    parsed."""
    (header_check,) = _CHECK.unpack(checked[-_CHECK.size :])
    header_bytes = checked[: -_CHECK.size]
    actual_check = xxhash.xxh3_64_intdigest(header_bytes)
    if actual_check != header_check:
        raise SnapshotError(
            "corrupt", "header checksum mismatch", offset=places.header_at,
            expected=f"0x{header_check:016x}", actual=f"0x{actual_check:016x}",
        )
    try:
        header = parse_header(
            unpack_data(header_bytes, section="header"), deltas=places.version >= 3
        )
    except SnapshotError as exc:
        raise SnapshotError(
            "invalid_header", exc.detail, offset=places.header_at
        ) from exc
    except ValueError as exc:
        raise SnapshotError("invalid_header", str(exc), offset=places.header_at) from exc
    return header


def _locate_damage(
    buf: memoryview, places: _Places, limits: DecodeLimits
) -> SnapshotError | None:
    """The first part whose own checksum fails, as an error naming it; else ``None``."""
    try:
        snapshot = _parse_verified(buf, places, False, limits)
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
