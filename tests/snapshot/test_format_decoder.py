"""Decoders behind the checksums: hostile input with valid checksums raises only SnapshotError."""

from __future__ import annotations

import functools
import os
import random
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import xxhash
import zstandard
from golden import (
    GOLDEN_KEY,
    PRODUCER,
    golden_key,
    golden_names,
    header_for,
    load_golden,
    redigest,
    reseal,
    rewrite_footer,
    rewrite_preamble,
    seal_raw,
    split,
)
from hypothesis import given
from hypothesis import strategies as st

from statemigrate._errors import SnapshotError
from statemigrate._snapshot import _sections
from statemigrate._snapshot._chunks import decompress_chunk
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import MAGIC, Snapshot, assemble, open_snapshot
from statemigrate._snapshot._msgpack import pack_data, unpack_data

SOAK = bool(os.environ.get("STATEMIGRATE_SOAK"))


def outcome(action: Callable[[], object]) -> str:
    """``ok``, ``SnapshotError:<kind>``, or ``FOREIGN:<type>`` for anything else."""
    try:
        action()
    except SnapshotError as exc:
        return f"SnapshotError:{exc.kind}"
    except Exception as exc:  # the point: record what escapes instead of crashing
        return f"FOREIGN:{type(exc).__name__}: {exc}"
    return "ok"


def foreign(outcomes: Counter[str]) -> list[str]:
    return [name for name in outcomes if name.startswith("FOREIGN")]


def open_and_read(blob: bytes | bytearray, *, key: bytes | None = None) -> list[object]:
    snapshot = open_snapshot(blob, key=key)
    return [snapshot.read_section(i) for i in range(len(snapshot.header.sections))]


def _sample_data(seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    return {
        f"entry-{n}": {
            "value": rng.choice([rng.random(), rng.randrange(-(1 << 62), 1 << 62), None]),
            "label": rng.choice(["a", "bb", "ccc", "ünï"]) * rng.randrange(5),
            "blob": rng.randbytes(rng.randrange(6)),
            "list": [rng.randrange(300) for _ in range(rng.randrange(4))],
            "flag": rng.random() < 0.5,
        }
        for n in range(120)
    }


SAMPLE = _sample_data(11)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random edit: flips, overwrites, insertions, deletions, cuts or repeats."""
    buf = bytearray(data)
    if not buf:
        return bytes([rng.randrange(256)])
    choice = rng.randrange(7)
    at = rng.randrange(len(buf))
    if choice == 0:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif choice == 1:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif choice == 2:
        buf[at:at] = rng.randbytes(rng.randint(1, 8))
    elif choice == 3:
        del buf[at : at + rng.randint(1, 8)]
    elif choice == 4:
        del buf[at:]
    elif choice == 5:
        end = min(len(buf), at + rng.randint(1, 32))
        buf[at:at] = buf[at:end]
    else:
        buf[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0xC1, 0xDD, 0xDF, 0xDB, 0xC9])
    return bytes(buf)


# --- A5 compressed-stage mutations behind valid checksums ---------------------------------


@pytest.fixture(scope="module")
def compressed_base() -> bytes:
    sections = [SectionInput("cache", "main", 1, "", SAMPLE)]
    return encode_snapshot(sections, producer=PRODUCER, chunk_size=1024).to_bytes()


def compressed_stage_outcomes(base: bytes, *, cases: int, seed: int) -> Counter[str]:
    """Mutate one zstd chunk, reseal every checksum, open and decode.

    Outcomes: an error kind, ``identical`` (the edit did not change what decodes), or
    ``different`` (a different object came out: a failure of the format).
    """
    header, chunks = split(base)
    zstd_positions = [
        i for i, entry in enumerate(header["sections"][0]["chunks"]) if entry[0] == 1
    ]
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for _ in range(cases):
        position = rng.choice(zstd_positions)
        forged = list(chunks)
        forged[position] = mutate(chunks[position], rng)
        blob = reseal(header, forged)

        def decode(blob: bytes = blob) -> None:
            got = open_and_read(blob)
            outcomes["identical" if got == [SAMPLE] else "different"] += 1

        result = outcome(decode)
        if result != "ok":
            outcomes[result] += 1
    return outcomes


def compressed_stage_violations(outcomes: Counter[str]) -> list[str]:
    """Outcomes that break the property: anything but an error or the same object."""
    allowed = {"identical", "SnapshotError:corrupt", "SnapshotError:too_large"}
    return sorted(name for name in outcomes if name not in allowed)


@pytest.mark.slow
def test_compressed_stage_mutations_raise_snapshot_errors_or_decode_identically(
    compressed_base: bytes,
) -> None:
    """20k resealed zstd-chunk mutations (200k under STATEMIGRATE_SOAK=1)."""
    cases = 200_000 if SOAK else 20_000
    outcomes = compressed_stage_outcomes(compressed_base, cases=cases, seed=21)
    print(dict(outcomes))
    assert sum(outcomes.values()) == cases
    assert compressed_stage_violations(outcomes) == []
    assert outcomes["SnapshotError:corrupt"] > cases // 2


def test_negative_control_compressed_stage_checker_flags_a_reader_without_section_checks(
    compressed_base: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that skips the section checksum lets mutated frames decode to other data."""

    def read_raw_unchecked(self: Snapshot, index: int) -> bytearray:
        section = self.header.sections[index]
        raw = bytearray(section.raw_size)
        view = memoryview(raw)
        position = 0
        for chunk, offset in zip(section.chunks, self.section_offsets(index), strict=True):
            stored = self._buffer[offset : offset + chunk.stored_size]
            decompress_chunk(stored, chunk.codec, view[position : position + chunk.raw_size])
            position += chunk.raw_size
        return raw

    def without_frame_checksum(piece: bytes) -> tuple[int, bytes]:
        compressor = zstandard.ZstdCompressor(write_checksum=False, write_content_size=True)
        return 1, compressor.compress(piece)

    # zstd's own frame checksum would catch most edits, so the broken variant's writer
    # leaves it out: only the section checksum then stands between an edit and the caller.
    base = seal_raw([pack_data(SAMPLE)], chunk_size=1024, compress=without_frame_checksum)
    assert compressed_stage_violations(compressed_stage_outcomes(base, cases=500, seed=3)) == []
    monkeypatch.setattr(Snapshot, "read_raw", read_raw_unchecked)
    outcomes = compressed_stage_outcomes(base, cases=500, seed=3)
    assert compressed_stage_violations(outcomes) != []


# --- A6 msgpack-stage mutations behind valid checksums --------------------------------------


def payload_stage_outcomes(raw: bytes, *, cases: int, seed: int) -> Counter[str]:
    """Mutate the raw msgpack, recompress and reseal; decode through the whole reader."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for _ in range(cases):
        blob = seal_raw([mutate(raw, rng)], chunk_size=4096)

        def decode(blob: bytes = blob) -> None:
            got = open_and_read(blob)
            outcomes["identical" if got == [SAMPLE] else "decoded other data"] += 1

        result = outcome(decode)
        if result != "ok":
            outcomes[result] += 1
    return outcomes


@pytest.mark.slow
def test_payload_stage_mutations_raise_snapshot_errors_or_decode_plain_data() -> None:
    """3k cases (100k under STATEMIGRATE_SOAK=1). Decoding other data is expected here:
    an unkeyed checksum is not validation, which is why schema validation follows."""
    cases = 100_000 if SOAK else 3_000
    outcomes = payload_stage_outcomes(pack_data(SAMPLE), cases=cases, seed=22)
    print(dict(outcomes))
    assert sum(outcomes.values()) == cases
    assert foreign(outcomes) == []
    errors = {k for k in outcomes if k.startswith("SnapshotError")}
    assert errors <= {
        "SnapshotError:invalid_data",
        "SnapshotError:too_large",
        "SnapshotError:too_deep",
    }


def test_negative_control_payload_checker_flags_an_untranslated_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader that calls msgpack directly lets msgpack's own errors escape."""
    monkeypatch.setattr(
        _sections, "unpack_data", lambda raw, section=None: msgpack.unpackb(raw, raw=False)
    )
    outcomes = payload_stage_outcomes(pack_data(SAMPLE), cases=300, seed=22)
    assert foreign(outcomes) != []


# --- A7 error taxonomy over arbitrary inputs ------------------------------------------------

GOLDENS = {name: load_golden(name) for name in golden_names()}


def _assert_only_snapshot_errors(action: Callable[[], object]) -> None:
    result = outcome(action)
    assert not result.startswith("FOREIGN"), result


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_snapshot_errors(blob: bytes) -> None:
    """For any bytes: opening (and reading) raises SnapshotError or succeeds."""
    _assert_only_snapshot_errors(lambda: open_and_read(blob))
    _assert_only_snapshot_errors(lambda: open_and_read(MAGIC + blob))


@given(
    version=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF),
    header_len=st.integers(0, (1 << 32) - 1),
    rest=st.binary(max_size=2048),
    exact_total=st.booleans(),
    total=st.integers(0, (1 << 64) - 1),
)
def test_arbitrary_bytes_behind_a_valid_preamble_raise_only_snapshot_errors(
    version: int, flags: int, header_len: int, rest: bytes, exact_total: bool, total: int
) -> None:
    """Past the preamble check, any field values and any body raise only SnapshotError."""
    body = MAGIC + bytes(24) + rest
    blob = rewrite_preamble(
        body,
        version=version,
        flags=flags,
        header_len=header_len,
        total=len(body) if exact_total else total,
    )
    _assert_only_snapshot_errors(lambda: open_and_read(blob))
    _assert_only_snapshot_errors(lambda: open_and_read(blob, key=GOLDEN_KEY))


@given(
    name=st.sampled_from(sorted(GOLDENS)),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 64),
    fix_digest=st.booleans(),
)
def test_edited_golden_snapshots_raise_only_snapshot_errors(
    name: str, edits: list[tuple[int, int]], cut: int, fix_digest: bool
) -> None:
    """Golden snapshots with bytes replaced, cut short, and optionally re-digested."""
    blob, expected = GOLDENS[name]
    key = golden_key(expected)
    data = bytearray(blob)
    for position, value in edits:
        data[position % len(data)] = value
    if cut:
        del data[-cut:]
    if fix_digest and len(data) > 64:
        data = bytearray(redigest(data, key=key))
    _assert_only_snapshot_errors(lambda: open_and_read(data, key=key))


@given(stored=st.binary(max_size=512), codec=st.integers(0, 255), raw_size=st.integers(0, 4096))
def test_any_chunk_bytes_behind_valid_checksums_raise_only_snapshot_errors(
    stored: bytes, codec: int, raw_size: int
) -> None:
    """A chunk of any bytes, codec and declared size, with every checksum valid."""
    section = {
        "component": "c", "instance": "i", "version": 1, "fingerprint": "",
        "raw_size": raw_size, "stored_size": len(stored),
        "checksum": xxhash.xxh3_64_intdigest(bytes(raw_size)),
        "chunks": [[codec, raw_size, len(stored), xxhash.xxh3_64_intdigest(stored)]],
    }
    blob = b"".join(assemble(header_for([section]), [stored]))
    _assert_only_snapshot_errors(lambda: open_and_read(blob))
    out = bytearray(raw_size)
    _assert_only_snapshot_errors(
        lambda: decompress_chunk(memoryview(stored), codec, memoryview(out))
    )


@given(st.binary(max_size=2048))
def test_any_payload_bytes_raise_only_snapshot_errors(raw: bytes) -> None:
    """Arbitrary raw msgpack payloads, directly and sealed in a valid snapshot."""
    _assert_only_snapshot_errors(lambda: unpack_data(raw))
    _assert_only_snapshot_errors(lambda: open_and_read(seal_raw([raw], chunk_size=256)))


_header_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@given(
    field=st.sampled_from(["snapshot_id", "created_ns", "generation", "producer", "meta",
                           "sections", "extra"]),
    value=_header_values,
    drop=st.booleans(),
)
def test_hostile_headers_with_valid_checksums_raise_only_snapshot_errors(
    field: str, value: object, drop: bool
) -> None:
    """A sound header with one field replaced or removed, every checksum recomputed."""
    blob, _ = GOLDENS["v1-small"]
    header, chunks = split(blob)
    if drop:
        header.pop(field, None)
    else:
        header[field] = value
    forged = b"".join(assemble(header, chunks))
    result = outcome(lambda: open_and_read(forged))
    assert result == "ok" or result.startswith("SnapshotError:invalid_header"), result


@given(
    section_field=st.sampled_from(["component", "instance", "version", "fingerprint",
                                   "raw_size", "stored_size", "checksum", "chunks"]),
    value=_header_values,
)
def test_hostile_section_entries_with_valid_checksums_raise_only_snapshot_errors(
    section_field: str, value: Any
) -> None:
    blob, _ = GOLDENS["v1-small"]
    header, chunks = split(blob)
    header["sections"][0][section_field] = value
    forged = b"".join(assemble(header, chunks))
    _assert_only_snapshot_errors(lambda: open_and_read(forged))


def test_negative_control_taxonomy_checker_flags_foreign_exceptions() -> None:
    """The harness reports, rather than hides, an exception outside the tree."""
    assert outcome(lambda: msgpack.unpackb(b"\xc1")).startswith("FOREIGN")
    assert outcome(lambda: struct.unpack("<Q", b"")).startswith("FOREIGN")
    assert outcome(lambda: unpack_data(b"\xc1")) == "SnapshotError:invalid_data"
    with pytest.raises(AssertionError):
        _assert_only_snapshot_errors(lambda: dict[str, int]()["missing"])


def test_every_error_kind_the_reader_raises_is_declared() -> None:
    """Kinds seen in this module are members of SnapshotErrorKind (no stray strings)."""
    from typing import get_args

    from statemigrate._errors import SnapshotErrorKind

    declared = set(get_args(SnapshotErrorKind))
    seen = set()
    for blob in (b"", b"x" * 40, MAGIC, GOLDENS["v1-small"][0] + b"!"):
        result = outcome(functools.partial(open_and_read, blob))
        seen.add(result.split(":")[1])
    assert seen <= declared
    assert {"truncated", "not_snapshot", "trailing_data"} <= seen


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("header_len", [17 << 20, 1 << 20])
def test_a_header_length_that_does_not_fit_says_how_much_would(
    version: int, header_len: int
) -> None:
    """The message said `expected None, got 17825792`: now what the length may be."""
    blob = encode_snapshot(
        [SectionInput("c", "main", 1, "", {"k": "v"})], producer=PRODUCER
    ).to_bytes()
    if version == 1:
        blob = b"".join(assemble(*split(blob), version=1))
        forged = rewrite_preamble(blob, header_len=header_len)
    else:
        forged = rewrite_footer(blob, header_len=header_len)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(redigest(forged))
    assert caught.value.detail == "header length does not fit the snapshot"
    assert caught.value.actual == header_len
    assert str(caught.value.expected).startswith("at most ")
    assert "None" not in str(caught.value)
