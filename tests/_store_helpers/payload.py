"""Self-checking test payloads: each embeds its generation, a tag and a checksum of itself."""

from __future__ import annotations

import random
import struct

import xxhash

MAGIC = b"SMTEST01"
HEADER = struct.Struct("<8sQIQ")  # magic, generation, tag, body length
DIGEST = 8


class Torn(AssertionError):
    """The bytes read are not one complete payload."""


def make_payload(generation: int, size: int, *, tag: int = 0) -> bytes:
    """A payload of about ``size`` bytes (at least the header and digest)."""
    body_len = max(0, size - HEADER.size - DIGEST)
    body = random.Random(generation * 1_000_003 + tag).randbytes(body_len)
    head = HEADER.pack(MAGIC, generation, tag, body_len)
    digest = xxhash.xxh3_64()
    digest.update(head)
    digest.update(body)
    return head + body + digest.digest()


def check_payload(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Return ``(generation, tag)`` of a complete payload.

    Raises:
        Torn: the bytes are truncated, padded, foreign or corrupted.
    """
    view = memoryview(data)
    if view.nbytes < HEADER.size + DIGEST:
        raise Torn(f"only {view.nbytes} bytes: shorter than a header")
    magic, generation, tag, body_len = HEADER.unpack_from(view)
    if magic != MAGIC:
        raise Torn(f"bad magic {bytes(magic)!r}")
    expected = HEADER.size + body_len + DIGEST
    if view.nbytes != expected:
        raise Torn(f"generation {generation}: {view.nbytes} bytes, expected {expected}")
    digest = xxhash.xxh3_64(view[: expected - DIGEST]).digest()
    if digest != bytes(view[expected - DIGEST :]):
        raise Torn(f"generation {generation}: checksum mismatch")
    return generation, tag
