"""What ``statemigrate list --kinds`` says a generation holds, from a few small reads.

A listing may cover many generations of gigabytes each, so a generation is not read
whole: its first bytes tell a snapshot from a checkpoint chain, and then the layout
of each snapshot is checked from its ends alone
(:func:`~statemigrate._snapshot._format.check_layout`: preamble, length, footer,
header), that of a chain from its frame and each piece's ends, with the links between
the pieces. That finds a generation cut short, grown, or with a damaged preamble,
footer, header or frame, as ``damaged``; a damaged chunk inside is found only by
reading every byte, which ``statemigrate inspect --verify`` does.

An object store's generation is read in ranges conditional on the etag its commit
recorded (or the listing gave). One whose etag changed was copied with its prefix
(which re-parts multipart objects) or replaced: only its digest can tell, so it alone
is read whole, as ``inspect`` reads it, and judged from its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from statemigrate._errors import SnapshotError, StoreError
from statemigrate._runtime._chain import CHAIN_MAGIC, frame_size, piece_lengths
from statemigrate._runtime._chainread import chain_break, piece_error
from statemigrate._snapshot._format import MAGIC, check_layout
from statemigrate._snapshot._header import SnapshotHeader
from statemigrate.stores import Buffer, ObjectRef
from statemigrate.stores._object_backend import EtagChanged
from statemigrate.stores._tmpfs_listing import TmpfsFile

__all__ = ["Ranges", "kind_of", "kind_of_file", "kind_of_generation"]

_CHAIN_HEAD = 16
"""The bytes of a chain's frame that say how long the frame is (:func:`frame_size`)."""


class Ranges(Protocol):
    """A generation read in parts: an object store's generation (``ObjectRef``), or a
    TmpfsStore's file once opened (``OpenedFile``)."""

    @property
    def size(self) -> int: ...

    def read_range(self, offset: int, length: int) -> Buffer: ...


def kind_of(source: Ranges) -> dict[str, Any]:
    """What a generation holds: ``kind`` is ``snapshot``, ``chain`` (with its number
    of ``pieces``), ``unknown`` (neither magic, nor the start of one), ``damaged`` (a
    snapshot or chain whose layout is broken: ``damage`` is the error's kind, such as
    ``truncated``, and ``error`` its message) or ``unreadable`` (the read failed:
    ``error`` says why).

    Every failure is a kind: nothing is raised.
    """
    try:
        return _judged(source)
    except SnapshotError as exc:
        return damaged(exc)
    except StoreError as exc:
        return unreadable(exc)


def kind_of_generation(ref: ObjectRef) -> dict[str, Any]:
    """:func:`kind_of` an object store's generation; one whose etag is not the one
    recorded (or listed) is read whole, its digest checked as ``open()`` checks it."""
    try:
        return _judged(ref)
    except EtagChanged:
        pass  # copied or replaced: its digest says which
    except SnapshotError as exc:
        return damaged(exc)
    except StoreError as exc:
        return unreadable(exc)
    try:
        data = ref.open()
    except StoreError as exc:
        return unreadable(exc)
    return kind_of(_Held(data))


def kind_of_file(entry: TmpfsFile) -> dict[str, Any]:
    """:func:`kind_of` a TmpfsStore's file, every part read from the one file opened."""
    try:
        with entry.opened() as file:
            return kind_of(file)
    except StoreError as exc:
        return unreadable(exc)


def unreadable(exc: StoreError) -> dict[str, Any]:
    """The kind of a generation that could not be read."""
    return {"kind": "unreadable", "pieces": None, "error": str(exc)}


def damaged(exc: SnapshotError) -> dict[str, Any]:
    """The kind of a generation whose layout is broken."""
    return {"kind": "damaged", "pieces": None, "damage": exc.kind, "error": str(exc)}


def _judged(source: Ranges) -> dict[str, Any]:
    """What :func:`kind_of` says of a sound generation.

    Raises:
        SnapshotError: it begins as a snapshot or a chain, and its layout is broken.
        StoreError: a read failed.
    """
    size = source.size
    head = bytes(source.read_range(0, min(size, len(MAGIC))))
    # A generation cut inside its magic (or empty) counts as what it began as.
    if MAGIC.startswith(head):
        check_layout(source.read_range, size)
        return {"kind": "snapshot", "pieces": None}
    if CHAIN_MAGIC.startswith(head):
        return {"kind": "chain", "pieces": _chain_pieces(source)}
    return {"kind": "unknown", "pieces": None}


def _chain_pieces(source: Ranges) -> int:
    """The number of pieces of the chain ``source`` holds, once its frame, the layout
    of each piece and the links between them are checked.

    Raises:
        SnapshotError: the frame is damaged or the pieces do not fill the object, a
            piece's layout is broken (naming the piece, offsets from the chain's
            start), or a piece does not follow the one before it.
        StoreError: a read failed.
    """
    size = source.size
    needed = frame_size(source.read_range(0, min(size, _CHAIN_HEAD)), size)
    at = needed
    headers: list[SnapshotHeader] = []
    for index, length in enumerate(piece_lengths(source.read_range(0, needed), size)):
        try:
            headers.append(check_layout(partial(_read_at, source, at), length))
        except SnapshotError as exc:
            raise piece_error(exc, index, at) from exc
        at += length
    reason = chain_break(headers)
    if reason is not None:
        raise SnapshotError("corrupt", reason)
    return len(headers)


def _read_at(source: Ranges, start: int, offset: int, length: int) -> Buffer:
    return source.read_range(start + offset, length)


@dataclass(frozen=True, slots=True)
class _Held:
    """A generation read whole, as :class:`Ranges`."""

    data: Buffer

    @property
    def size(self) -> int:
        return memoryview(self.data).nbytes

    def read_range(self, offset: int, length: int) -> Buffer:
        return memoryview(self.data)[offset : offset + length]
