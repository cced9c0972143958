"""Golden snapshot files, and helpers that craft snapshots (sound or hostile) for tests.

The golden files in ``tests/data`` were written once by ``tests/make_golden.py`` and
are never edited: each ``<name>.smsnap`` sits next to ``<name>.expected.json``, which
holds its SHA-256, its header and every section's decoded data. JSON has no bytes, so
bytes are written as ``{"$bytes": "<hex>"}``; everything else is plain JSON.

The crafting helpers build snapshots whose checksums are all valid around whatever
bytes a test wants to put inside, through :func:`statemigrate._snapshot._format.assemble`. That
is how tests reach the decoders that sit behind the checksums.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import xxhash

from statemigrate._snapshot._chunks import compress_chunk, iter_slices
from statemigrate._snapshot._format import (
    HMAC_DIGEST_SIZE,
    PREAMBLE_SIZE,
    XXH3_DIGEST_SIZE,
    _digest,
    assemble,
    open_snapshot,
)
from statemigrate._snapshot._header import Producer

DATA = Path(__file__).parent / "data"
SUFFIX = ".smsnap"

GOLDEN_KEY = b"statemigrate golden key, public"
"""The HMAC key of the authenticated golden file; it is public on purpose (tests only)."""

PRODUCER = Producer(
    service="golden",
    code_version="1.0.0",
    python="3.11",
    host="golden-host",
    pid=4242,
    library="statemigrate 0.1.0",
)

_PREAMBLE_HEAD = struct.Struct("<8sHHIQ")  # the 24 bytes the preamble check covers


# --- JSON form of plain data ---------------------------------------------------------


def to_json(value: object) -> object:
    """Plain data as JSON-able data, bytes tagged as ``{"$bytes": hex}``."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, dict):
        if "$bytes" in value:
            raise ValueError("'$bytes' is reserved as a key in expected files")
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: object) -> object:
    """The inverse of :func:`to_json`."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


# --- golden files --------------------------------------------------------------------


def golden_names() -> list[str]:
    """Names of every golden snapshot in ``tests/data``, sorted."""
    return sorted(path.name.removesuffix(SUFFIX) for path in DATA.glob(f"*{SUFFIX}"))


def load_golden(name: str) -> tuple[bytes, dict[str, Any]]:
    """A golden snapshot's bytes and its expected-values record."""
    blob = (DATA / f"{name}{SUFFIX}").read_bytes()
    expected = json.loads((DATA / f"{name}.expected.json").read_text(encoding="utf-8"))
    return blob, expected


def golden_key(expected: dict[str, Any]) -> bytes | None:
    """The key a golden file needs, from its expected record."""
    key = expected["key"]
    return None if key is None else bytes.fromhex(key)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# --- crafting ------------------------------------------------------------------------


def split(blob: bytes, *, key: bytes | None = None) -> tuple[dict[str, Any], list[bytes]]:
    """A sound snapshot taken apart: its header as plain data and its stored chunks."""
    snapshot = open_snapshot(blob, key=key)
    header = snapshot.header.to_plain()
    chunks = []
    for index, section in enumerate(snapshot.header.sections):
        for chunk, offset in zip(section.chunks, snapshot.section_offsets(index), strict=True):
            chunks.append(blob[offset : offset + chunk.stored_size])
    return header, chunks


def reseal(
    header: dict[str, Any], chunks: Sequence[bytes], *, key: bytes | None = None
) -> bytes:
    """Assemble a snapshot after updating the header's stored sizes and chunk checksums.

    ``chunks`` are all sections' stored chunks in order; raw sizes and section
    checksums are left as the header says, so a test decides whether they still hold.
    """
    # Copy only what changes (a deep copy would dominate the fuzz loops' time).
    header = {
        **header,
        "sections": [
            {**section, "chunks": [list(entry) for entry in section["chunks"]]}
            for section in header["sections"]
        ],
    }
    remaining = list(chunks)
    for section in header["sections"]:
        stored_total = 0
        for entry in section["chunks"]:
            data = remaining.pop(0)
            entry[2] = len(data)
            entry[3] = xxhash.xxh3_64_intdigest(data)
            stored_total += len(data)
        section["stored_size"] = stored_total
    if remaining:
        raise ValueError(f"{len(remaining)} chunks more than the header lists")
    return b"".join(assemble(header, chunks, key=key))


def header_for(sections: Sequence[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A complete header dict around section entries, with neutral identity fields."""
    header: dict[str, Any] = {
        "snapshot_id": "00" * 16,
        "created_ns": 0,
        "generation": 0,
        "producer": {
            "service": PRODUCER.service,
            "code_version": PRODUCER.code_version,
            "python": PRODUCER.python,
            "host": PRODUCER.host,
            "pid": PRODUCER.pid,
            "library": PRODUCER.library,
        },
        "meta": {},
        "sections": list(sections),
    }
    header.update(fields)
    return header


def seal_raw(
    raws: Sequence[bytes],
    *,
    chunk_size: int = 4096,
    level: int = 1,
    key: bytes | None = None,
    compress: Callable[[bytes], tuple[int, bytes]] | None = None,
) -> bytes:
    """A snapshot with valid checksums around arbitrary raw section payloads.

    Each payload becomes section ``c<i>/main``; it need not be valid msgpack, which is
    the point: this reaches the payload decoder with every integrity check passing.
    ``compress`` may replace the writer's chunk compression (returns codec, stored).
    """
    sections = []
    chunks: list[bytes] = []
    for number, raw in enumerate(raws):
        entries = []
        for start, end in iter_slices(len(raw), chunk_size):
            piece = raw[start:end]
            if compress is None:
                stored_chunk = compress_chunk(piece, level=level)
                codec, stored = int(stored_chunk.codec), bytes(stored_chunk.data)
            else:
                codec, stored = compress(piece)
            entries.append([codec, len(piece), len(stored), xxhash.xxh3_64_intdigest(stored)])
            chunks.append(stored)
        sections.append(
            {
                "component": f"c{number}",
                "instance": "main",
                "version": 1,
                "fingerprint": "",
                "raw_size": len(raw),
                "stored_size": sum(e[2] for e in entries),
                "checksum": xxhash.xxh3_64_intdigest(raw),
                "chunks": entries,
            }
        )
    return b"".join(assemble(header_for(sections), chunks, key=key))


def digest_size(key: bytes | None) -> int:
    return XXH3_DIGEST_SIZE if key is None else HMAC_DIGEST_SIZE


def redigest(blob: bytes | bytearray, *, key: bytes | None = None) -> bytes:
    """The snapshot with its trailing digest recomputed over everything before it."""
    body = bytes(blob[: len(blob) - digest_size(key)])
    return body + _digest([body], key)


def rewrite_preamble(
    blob: bytes | bytearray,
    *,
    version: int | None = None,
    flags: int | None = None,
    header_len: int | None = None,
    total: int | None = None,
) -> bytes:
    """The snapshot with preamble fields replaced and the preamble check recomputed.

    The digest is left alone; call :func:`redigest` to make it match as well.
    """
    magic, old_version, old_flags, old_header_len, old_total = _PREAMBLE_HEAD.unpack_from(blob)
    head = _PREAMBLE_HEAD.pack(
        magic,
        old_version if version is None else version,
        old_flags if flags is None else flags,
        old_header_len if header_len is None else header_len,
        old_total if total is None else total,
    )
    check = struct.pack("<Q", xxhash.xxh3_64_intdigest(head))
    return head + check + bytes(blob[PREAMBLE_SIZE:])


_FOOTER_LENGTHS = struct.Struct("<QQ")  # the 16 bytes the version 2 footer check covers


def rewrite_footer(
    blob: bytes | bytearray,
    *,
    key: bytes | None = None,
    header_len: int | None = None,
    total: int | None = None,
) -> bytes:
    """A version 2 snapshot with footer fields replaced and the footer check recomputed.

    The digest is left alone; call :func:`redigest` to make it match as well.
    """
    footer_at = len(blob) - digest_size(key) - 32
    old_header_len, old_total = _FOOTER_LENGTHS.unpack_from(blob, footer_at)
    lengths = _FOOTER_LENGTHS.pack(
        old_header_len if header_len is None else header_len,
        old_total if total is None else total,
    )
    check = struct.pack("<Q", xxhash.xxh3_64_intdigest(lengths))
    return bytes(blob[:footer_at]) + lengths + check + bytes(blob[footer_at + 24 :])
