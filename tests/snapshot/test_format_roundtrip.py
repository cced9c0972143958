"""Round trips through the container: decode(encode(x)) == x, chunking, codecs, determinism."""

from __future__ import annotations

import random
from typing import Any

import pytest
from golden import PRODUCER, split
from hypothesis import given
from hypothesis import strategies as st
from plain_helpers import plain, same_plain

from statemigrate._errors import SnapshotError
from statemigrate._snapshot._chunks import ChunkCodec
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import Snapshot, open_snapshot
from statemigrate._snapshot._msgpack import pack_data

KEY = b"round-trip test key, 32 bytes.."

names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)
section_lists = st.lists(
    st.tuples(names, names, st.integers(1, 2**31), plain),
    max_size=4,
    unique_by=lambda section: (section[0], section[1]),
)


def read_all(snapshot: Snapshot) -> list[object]:
    return [snapshot.read_section(i) for i in range(len(snapshot.header.sections))]


@given(
    sections=section_lists,
    chunk_size=st.integers(64, 4096),
    level=st.sampled_from([1, 3]),
    keyed=st.booleans(),
    generation=st.integers(0, 2**63 - 1),
)
def test_decode_of_encode_is_the_identity(
    sections: list[tuple[str, str, int, Any]],
    chunk_size: int,
    level: int,
    keyed: bool,
    generation: int,
) -> None:
    """For plain data in any sections, at any chunk size and level, with or without a key,
    the decoded sections equal the encoded ones (floats compared bit for bit)."""
    key = KEY if keyed else None
    inputs = [SectionInput(c, i, v, f"fp-{n}", data) for n, (c, i, v, data) in
              enumerate(sections)]
    encoded = encode_snapshot(
        inputs, producer=PRODUCER, key=key, chunk_size=chunk_size, level=level,
        generation=generation, meta={"k": "v"},
    )
    blob = encoded.to_bytes()
    assert len(blob) == encoded.size
    snapshot = open_snapshot(blob, key=key)
    assert snapshot.header == encoded.header
    assert snapshot.authenticated is keyed
    assert snapshot.header.generation == generation
    decoded = read_all(snapshot)
    for section_input, got in zip(inputs, decoded, strict=True):
        assert same_plain(got, section_input.data)
        assert pack_data(got) == pack_data(section_input.data)
    for info in snapshot.header.sections:
        assert len(info.chunks) == max(0, -(-info.raw_size // chunk_size))
        assert all(chunk.raw_size <= chunk_size for chunk in info.chunks)


@pytest.mark.slow
@given(sections=section_lists, chunk_size=st.integers(64, 4096), level=st.sampled_from([1, 3]))
def test_encoding_is_deterministic_apart_from_identity_fields(
    sections: list[tuple[str, str, int, Any]], chunk_size: int, level: int
) -> None:
    """The same sections encode to the same chunks and checksums; only the header's
    snapshot id and creation time differ between two encodings."""
    inputs = [SectionInput(c, i, v, "", data) for c, i, v, data in sections]
    first, second = (
        encode_snapshot(inputs, producer=PRODUCER, chunk_size=chunk_size, level=level)
        for _ in range(2)
    )
    header_a, chunks_a = split(first.to_bytes())
    header_b, chunks_b = split(second.to_bytes())
    assert chunks_a == chunks_b
    assert header_a["sections"] == header_b["sections"]
    assert header_a["snapshot_id"] != header_b["snapshot_id"]


def test_a_large_section_is_cut_into_many_chunks_of_mixed_codecs() -> None:
    """Incompressible pieces are stored raw (codec 0), compressible ones as zstd."""
    rng = random.Random(7)
    pieces = [rng.randbytes(4096) if n % 2 else b"compress me " * 341 for n in range(8)]
    raw = b"".join(pieces)
    encoded = encode_snapshot(
        [SectionInput("mixed", "main", 1, "", raw)], producer=PRODUCER, chunk_size=4096
    )
    info = encoded.header.sections[0]
    # msgpack's 5-byte bin32 prefix shifts each piece; chunk n still holds mostly piece n.
    codecs = [ChunkCodec(c.codec) for c in info.chunks]
    assert codecs[:8] == [ChunkCodec.ZSTD, ChunkCodec.RAW] * 4
    assert info.stored_size < info.raw_size
    assert open_snapshot(encoded.to_bytes()).read_section(0) == raw


def test_damage_in_one_section_is_reported_with_that_sections_name() -> None:
    inputs = [SectionInput("a", str(n), 1, "", {"n": n, "pad": "x" * 500}) for n in range(3)]
    blob = bytearray(encode_snapshot(inputs, producer=PRODUCER, chunk_size=256).to_bytes())
    snapshot = open_snapshot(bytes(blob))
    offset = snapshot.section_offsets(1)[0]
    blob[offset] ^= 0xFF
    # The digest catches it at open; past the digest, the chunk checksum names the section.
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(blob)
    assert caught.value.section == "a/1"


def test_encoding_refuses_bad_arguments_and_non_plain_data() -> None:
    section = SectionInput("c", "i", 1, "", {"x": 1})
    with pytest.raises(ValueError, match="chunk_size"):
        encode_snapshot([section], producer=PRODUCER, chunk_size=0)
    with pytest.raises(ValueError, match="16 bytes"):
        encode_snapshot([section], producer=PRODUCER, key=b"short")
    with pytest.raises(ValueError, match="twice"):
        encode_snapshot([section, section], producer=PRODUCER)
    with pytest.raises(TypeError):
        encode_snapshot([SectionInput("c", "i", 1, "", {"x": object()})], producer=PRODUCER)


def test_negative_control_the_comparison_flags_a_lossy_float_codec() -> None:
    """A writer that stored floats as float32 would pass ==-free checks; this one fails."""
    import msgpack

    value = {"x": 0.1}
    lossy = msgpack.unpackb(msgpack.packb(value, use_single_float=True))
    assert not same_plain(lossy, value)
    assert pack_data(lossy) != pack_data(value)
    assert same_plain(float("nan"), float("nan")) and not same_plain(0.0, -0.0)
    assert not same_plain(1, 1.0)
