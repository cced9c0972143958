"""check_layout: a snapshot judged from its ends alone finds what open_snapshot finds
before the digest (cuts, appended bytes, a damaged preamble, footer or header), reading a
few KiB however large the snapshot; a damaged chunk is what it leaves to the digest."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from golden import GOLDEN_KEY, PRODUCER, golden_key, golden_names, load_golden
from hypothesis import given
from hypothesis import strategies as st

from statemigrate._errors import SnapshotError
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import (
    MAGIC,
    PREAMBLE_SIZE,
    Buffer,
    check_layout,
    open_snapshot,
)
from statemigrate._snapshot._header import SnapshotHeader

Checker = Callable[[Callable[[int, int], Buffer], int], object]


class Reads:
    """A snapshot's bytes, read in ranges, each read logged."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.log: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        assert 0 <= offset and offset + length <= len(self.blob), (offset, length)
        self.log.append((offset, length))
        return self.blob[offset : offset + length]

    @property
    def bytes_read(self) -> int:
        return sum(length for _, length in self.log)


def layout_of(blob: bytes, checker: Checker = check_layout) -> str:
    """What the check says of ``blob``: an error kind, or ``accepted``."""
    try:
        checker(Reads(blob), len(blob))
    except SnapshotError as exc:
        return exc.kind
    return "accepted"


def large_snapshot(size: int, *, key: bytes | None = None) -> bytes:
    rng = random.Random(7)
    sections = [
        SectionInput("blobs", "main", 1, "", rng.randbytes(size)),
        SectionInput("cache", "main", 1, "fp", {f"k{i}": i for i in range(2_000)}),
    ]
    return encode_snapshot(sections, producer=PRODUCER, key=key, chunk_size=64 << 10).to_bytes()


@pytest.mark.parametrize("name", golden_names())
def test_a_sound_snapshot_of_every_format_version_passes_with_its_header(name: str) -> None:
    """Without the key of an authenticated one: the layout needs none."""
    blob, expected = load_golden(name)
    header = check_layout(Reads(blob), len(blob))
    assert isinstance(header, SnapshotHeader)
    assert header == open_snapshot(blob, key=golden_key(expected)).header


@pytest.mark.parametrize("name", golden_names())
def test_every_cut_is_truncated_and_every_extension_trailing_data(name: str) -> None:
    """As open_snapshot reports them: from the lengths, before any digest."""
    blob, _ = load_golden(name)
    assert Counter(layout_of(blob[:length]) for length in range(len(blob))) == {
        "truncated": len(blob)
    }
    for extra in (1, 16, 4096):
        assert layout_of(blob + bytes(extra)) == "trailing_data", extra


def test_a_large_snapshot_costs_a_few_small_reads() -> None:
    """A 4 MiB snapshot: its preamble, then its last 16 KiB (footer and header)."""
    blob = large_snapshot(4 << 20)
    reads = Reads(blob)
    check_layout(reads, len(blob))
    assert len(reads.log) == 2 and reads.bytes_read < 17 << 10
    assert reads.log[0] == (0, PREAMBLE_SIZE)


def test_cuts_of_a_large_snapshot_are_truncated() -> None:
    blob = large_snapshot(1 << 20)
    rng = random.Random(3)
    cuts = [1, PREAMBLE_SIZE, len(blob) // 2, len(blob) - 1, len(blob) - 40]
    cuts += rng.sample(range(len(blob)), 40)
    assert {layout_of(blob[:cut]) for cut in cuts} == {"truncated"}


def test_a_header_larger_than_the_window_is_read_apart() -> None:
    """So many chunks that the header outgrows the last 16 KiB: a third read."""
    rng = random.Random(5)
    sections = [SectionInput("blobs", "main", 1, "", rng.randbytes(2 << 20))]
    blob = encode_snapshot(sections, producer=PRODUCER, chunk_size=1024).to_bytes()
    reads = Reads(blob)
    header = check_layout(reads, len(blob))
    assert len(reads.log) == 3
    assert header == open_snapshot(blob).header


def flipped(blob: bytes, at: int) -> bytes:
    damaged = bytearray(blob)
    damaged[at] ^= 0x10
    return bytes(damaged)


@pytest.mark.parametrize("key", [None, GOLDEN_KEY])
def test_damage_to_the_preamble_footer_or_header_is_found(key: bytes | None) -> None:
    blob = large_snapshot(256 << 10, key=key)
    footer_at = len(blob) - (16 if key is None else 32) - 32
    header_len = int.from_bytes(blob[footer_at : footer_at + 8], "little")
    header_at = footer_at - 8 - header_len
    # The preamble's version, its checksum, the header's first and last bytes, its
    # checksum, the footer's lengths and its end marker.
    for at in (9, 20, header_at, footer_at - 9, footer_at - 1, footer_at + 3, footer_at + 30):
        assert layout_of(flipped(blob, at)) in {"corrupt", "unsupported_version"}, at
    assert layout_of(b"\x00" * len(blob)) == "not_snapshot"
    assert layout_of(MAGIC[:5]) == "truncated"


def test_a_damaged_chunk_is_left_to_the_digest() -> None:
    """What the check does not read it cannot judge: open_snapshot refuses the flip in
    a chunk's bytes, check_layout passes it."""
    blob = large_snapshot(256 << 10)
    damaged = flipped(blob, len(blob) // 2)
    assert layout_of(damaged) == "accepted"
    with pytest.raises(SnapshotError, match="corrupt"):
        open_snapshot(damaged)


def test_negative_control_the_magic_alone_takes_cuts_for_snapshots() -> None:
    """What ``list --kinds`` judged by before: the first bytes. Every cut past the
    magic passes it; the check above refuses them all."""

    def magic_only(read: Callable[[int, int], Buffer], size: int) -> None:
        if bytes(read(0, min(size, len(MAGIC)))) != MAGIC:
            raise SnapshotError("not_snapshot", "bad magic")

    blob, _ = load_golden("v3-small")
    kinds = Counter(layout_of(blob[:length], magic_only) for length in range(len(blob)))
    assert kinds["accepted"] == len(blob) - len(MAGIC)


@given(
    prefix=st.sampled_from([b"", MAGIC, MAGIC + bytes(24)]),
    data=st.binary(max_size=2048),
    cut=st.integers(min_value=0, max_value=4096),
)
def test_arbitrary_bytes_raise_only_snapshot_errors(prefix: bytes, data: bytes, cut: int) -> None:
    """Property: whatever the bytes (and a sound snapshot cut anywhere with them after
    it), the check accepts or raises a SnapshotError, nothing foreign."""
    blob, _ = load_golden("v3-small")
    for candidate in (prefix + data, blob[:cut] + data):
        assert isinstance(layout_of(candidate), str)
