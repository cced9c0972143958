"""A checkpoint chain: a full snapshot and the deltas that follow it, as one object.

Incremental checkpoints commit a base snapshot and, at each later checkpoint, a delta
of what changed since the one before. The stores keep two objects (``current`` and
``previous``), not a chain of them, so each incremental checkpoint commits the whole
chain again as one object: the base and every delta so far, each a complete,
self-verifying snapshot. The store's atomic commit then covers the chain, and the
object before it stays as ``previous``. Only the delta is taken with the writers
held; the rest is bytes taken earlier, copied by the store's commit.

Layout, little-endian::

    magic      8 bytes     b"\\x89SMCHAIN"
    count      4 bytes     pieces in the chain, at least 1 (the base)
    reserved   4 bytes     zero
    lengths    8 * count   the length of each piece, in order
    check      8 bytes     xxh3-64 of everything above
    pieces     ...         the snapshots, base first, back to back

Each piece is checked by its own digest when it is opened; this frame only says where
the pieces lie. A reader holding only a chain's first bytes (a file not read yet) checks
the frame from them first (:func:`frame_size`, :func:`piece_lengths`), so a damaged one
costs no more than the frame.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import xxhash

from statemigrate._errors import SnapshotError
from statemigrate.stores import Buffer

__all__ = [
    "CHAIN_MAGIC",
    "MAX_PIECES",
    "chain_frame",
    "frame_size",
    "is_chain",
    "piece_lengths",
    "split_chain",
]

CHAIN_MAGIC = b"\x89SMCHAIN"
MAX_PIECES = 1 << 16
"""More pieces than a chain may hold: a count above it is damage, not a chain."""

_HEAD = struct.Struct("<8sII")
_LENGTH = struct.Struct("<Q")
_CHECK = struct.Struct("<Q")


def chain_frame(sizes: Sequence[int]) -> bytes:
    """The frame that goes before pieces of the given sizes, base first."""
    if not 1 <= len(sizes) <= MAX_PIECES:
        raise ValueError(f"a chain holds 1 to {MAX_PIECES} pieces, not {len(sizes)}")
    head = _HEAD.pack(CHAIN_MAGIC, len(sizes), 0) + b"".join(_LENGTH.pack(s) for s in sizes)
    return head + _CHECK.pack(xxhash.xxh3_64_intdigest(head))


def is_chain(data: Buffer) -> bool:
    """Whether ``data`` starts as a chain rather than as one snapshot."""
    return bytes(memoryview(data)[: len(CHAIN_MAGIC)]) == CHAIN_MAGIC


def frame_size(head: Buffer, size: int) -> int:
    """How many bytes the frame of a chain of ``size`` bytes takes, read from ``head``,
    its first bytes (at least 16 of them, or the whole object when it is shorter).

    A reader that holds only the start of a chain (a file it has not read yet) asks
    this first, then reads that many bytes for :func:`piece_lengths`.

    Raises:
        SnapshotError: the head is not a chain's, declares no pieces or more than
            :data:`MAX_PIECES`, its reserved field is not zero, or the object ends
            inside the frame.
    """
    buf = memoryview(head).cast("B")
    if min(len(buf), size) < _HEAD.size:
        raise SnapshotError(
            "truncated", "checkpoint chain ends inside its frame", offset=min(len(buf), size)
        )
    magic, count, reserved = _HEAD.unpack_from(buf)
    count = int(count)
    if magic != CHAIN_MAGIC:
        raise SnapshotError("not_snapshot", "not a checkpoint chain", offset=0)
    if not 1 <= count <= MAX_PIECES:
        raise SnapshotError("corrupt", f"checkpoint chain frame declares {count} pieces", offset=8)
    if reserved != 0:
        raise SnapshotError(
            "corrupt",
            f"checkpoint chain frame's reserved field is {reserved:#010x}, not zero",
            offset=12,
        )
    needed = _HEAD.size + count * _LENGTH.size + _CHECK.size
    if size < needed:
        raise SnapshotError("truncated", "checkpoint chain ends inside its frame", offset=size)
    return needed


def piece_lengths(frame: Buffer, size: int) -> list[int]:
    """The lengths of the pieces, base first, of a chain of ``size`` bytes whose first
    bytes, its frame at least (:func:`frame_size`), are ``frame``.

    Raises:
        SnapshotError: as :func:`frame_size`; the frame's checksum does not match, or
            the pieces do not fill the ``size`` bytes exactly.
    """
    buf = memoryview(frame).cast("B")
    frame_end = frame_size(buf, size) - _CHECK.size
    if len(buf) < frame_end + _CHECK.size:
        raise ValueError(f"piece_lengths needs the frame's {frame_end + _CHECK.size} bytes")
    (check,) = _CHECK.unpack_from(buf, frame_end)
    if xxhash.xxh3_64_intdigest(buf[:frame_end]) != check:
        raise SnapshotError("corrupt", "checkpoint chain frame checksum mismatch", offset=0)
    count = (frame_end - _HEAD.size) // _LENGTH.size
    lengths = []
    at = frame_end + _CHECK.size
    for index in range(count):
        (length,) = _LENGTH.unpack_from(buf, _HEAD.size + index * _LENGTH.size)
        if at + length > size:
            raise SnapshotError(
                "truncated",
                f"checkpoint chain piece {index} ends past the object",
                expected=at + length,
                actual=size,
                offset=at,
            )
        lengths.append(length)
        at += length
    if at != size:
        raise SnapshotError(
            "trailing_data",
            "bytes follow the checkpoint chain's last piece",
            expected=at,
            actual=size,
            offset=at,
        )
    return lengths


def split_chain(data: Buffer) -> list[memoryview]:
    """The pieces of a chain, base first, as views of ``data`` (not verified yet).

    Raises:
        SnapshotError: the frame is damaged or truncated, or the pieces do not fill
            the object exactly.
    """
    buf = memoryview(data).cast("B")
    at = frame_size(buf, len(buf))
    pieces = []
    for length in piece_lengths(buf, len(buf)):
        pieces.append(buf[at : at + length])
        at += length
    return pieces
