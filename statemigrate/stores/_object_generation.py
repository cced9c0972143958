"""One generation object: writing it, and reading it back checked against its record.

A commit writes the snapshot to a fresh generation object (:func:`upload_generation`):
create-only in one request, or, for a snapshot larger than a part, a streamed multipart
upload whose memory a :class:`~statemigrate.stores._object_parts.Pacer` bounds. A read
(:func:`read_generation`) fetches the object in ranges into one buffer and checks its
size, etag and xxh3-128 digest against the pointer's record; a read of a part of it
(:func:`read_generation_range`), its size and etag alone. Which generation to write
or read, and the pointer, are ``_object``'s business.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import xxhash

from statemigrate._errors import StoreError
from statemigrate.stores._base import Buffer, chunks, too_large
from statemigrate.stores._object_backend import Backend, EtagChanged, Refused
from statemigrate.stores._object_parts import Pacer
from statemigrate.stores._object_pointer import Entry

__all__ = ["Target", "read_generation", "read_generation_range", "upload_generation"]

_log = logging.getLogger("statemigrate.stores")


class Target(NamedTuple):
    """Where a generation's bytes are, and what to check them against."""

    generation: int
    object: str
    size: int
    etag: str | None
    xxh3_128: str | None  # None: a generation the pointer does not record

    @classmethod
    def of(cls, entry: Entry) -> Target:
        return cls(entry.generation, entry.object, entry.size, entry.etag, entry.xxh3_128)


def upload_generation(
    backend: Backend,
    name: str,
    generation: int,
    data: Buffer | Iterable[Buffer],
    *,
    max_size: int,
    part_size: int,
    max_concurrency: int,
) -> Entry:
    """Write ``data`` to the new object ``name`` and describe it.

    A snapshot of up to ``part_size`` bytes is written create-only in one request; a
    larger one is streamed as a multipart upload of ``part_size`` parts, at most
    ``max_concurrency`` in flight.

    Raises:
        StoreError: the snapshot exceeds ``max_size``, the name is taken, or a request
            failed.
    """
    where = backend.where(name)
    digest = xxhash.xxh3_128()
    size = 0

    def counted() -> Iterator[memoryview]:
        nonlocal size
        for view in chunks(data):
            size += view.nbytes
            if size > max_size:
                raise StoreError(
                    "write",
                    where,
                    f"snapshot exceeds max_size {max_size} (at least {size} bytes)",
                )
            digest.update(view)
            yield view

    parts = counted()
    head: deque[memoryview] = deque()
    buffered = 0
    for view in parts:
        head.append(view)
        buffered += view.nbytes
        if buffered > part_size:
            del view  # the head is handed over, and let go of, one view at a time
            # Buffers the caller holds anyway (one buffer, or a list of them: an
            # encoded snapshot) cost nothing more while obstore holds them.
            pacer = _pacer(
                backend,
                part_size,
                max_concurrency,
                held=isinstance(data, bytes | bytearray | memoryview | list | tuple),
            )
            version = backend.put_parts(
                name,
                pacer.paced(_drained(head, parts)),
                part_size=part_size,
                max_concurrency=max_concurrency,
            )
            break
    else:
        try:
            version = backend.put_create(name, head)
        except Refused as exc:  # 128 random bits collided: something planted it
            raise StoreError("write", where, "a fresh object name is taken") from exc
    return Entry(
        generation=generation,
        object=name,
        size=size,
        xxh3_128=digest.hexdigest(),
        etag=version[0],
    )


def _pacer(backend: Backend, part_size: int, max_concurrency: int, *, held: bool) -> Pacer:
    """The pacer of a multipart upload: how much of the snapshot it may hold
    (``held``: the caller holds all of it, so there is nothing to limit).

    Two parts from the start, one in flight while the next is filled, so that
    encoding and upload overlap; a quarter of the bytes streamed once that is
    more, so that a snapshot of a few parts never holds more than a fraction of
    itself in upload buffers; at most ``max_concurrency + 1`` parts, reached once
    four times that was streamed, so that a large snapshot soon has every request
    in flight (see ``_object_parts``). Pieces of half a part leave the part being
    filled room for the pieces straddling its ends, however slow the server.
    """
    part = part_size
    if held or not backend.drops_sent_parts:
        return Pacer(piece=part // 2, floor=2 * part, ceiling=None)
    return Pacer(piece=part // 2, floor=2 * part, ceiling=(max_concurrency + 1) * part)


def _drained(head: deque[memoryview], rest: Iterator[memoryview]) -> Iterator[memoryview]:
    """The views of ``head``, each let go of once taken, then those of ``rest``."""
    while head:
        yield head.popleft()
    yield from rest


def read_generation(
    backend: Backend, target: Target, *, max_size: int, part_size: int
) -> memoryview:
    """Read the generation object ``target`` names, in ranges of ``part_size`` bytes,
    and check it against what the pointer recorded at its commit.

    Raises:
        StoreError: the object is larger than ``max_size``, was replaced or is corrupt
            (its etag and digest differ from the record), or a request failed.
    """
    where = backend.where(target.object)
    if target.size > max_size:
        raise too_large("open", where, target.size, max_size)
    try:
        view = backend.read_into(
            target.object, target.size, target.etag, window=part_size
        )
    except EtagChanged as exc:
        if target.xxh3_128 is None:
            raise
        # Copying a prefix to another bucket (boto3's managed copy, for one) re-parts
        # multipart objects, which changes their etags, not their bytes: the digest
        # recorded at commit says whether they are still the bytes committed.
        view = backend.read_into(
            target.object,
            target.size,
            backend.etag_of(target.object),
            window=part_size,
        )
        actual = xxhash.xxh3_128(view).hexdigest()
        if actual != target.xxh3_128:
            raise StoreError(
                "open",
                where,
                "was replaced after it was committed (etag and xxh3-128 digest differ)",
            ) from exc
        _log.info("%s has another etag than at its commit (copied?); its digest matches", where)
        return view
    if target.xxh3_128 is None:
        return view
    actual = xxhash.xxh3_128(view).hexdigest()
    if actual != target.xxh3_128:
        raise StoreError(
            "open",
            where,
            f"is corrupt: xxh3-128 0x{actual}, committed 0x{target.xxh3_128}",
        )
    return view


def read_generation_range(
    backend: Backend, target: Target, offset: int, length: int
) -> memoryview:
    """``length`` bytes at ``offset`` of the generation object ``target`` names, in one
    request, checked against the size and etag recorded (or listed): to look at a part
    of a snapshot without reading it whole. The digest is not checked: it takes every
    byte.

    Raises:
        ValueError: the range does not lie within the object.
        EtagChanged: the object's etag is not the one recorded: it was replaced, or
            copied (copying a prefix re-parts multipart objects); only
            :func:`read_generation`'s digest check can tell which.
        StoreError: the object is missing, of another size, or the request failed.
    """
    if offset < 0 or length < 0 or offset + length > target.size:
        raise ValueError(f"bytes {offset}-{offset + length} of {target.size}")
    if not length:
        return memoryview(b"")  # no request: servers refuse an empty range
    return backend.read_range(
        target.object, offset, offset + length, size=target.size, etag=target.etag
    )
