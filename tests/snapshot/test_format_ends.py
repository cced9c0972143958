"""check_ends: the checks open_snapshot makes before the digest (preamble, length from
the preamble or the footer), from a snapshot's preamble and last 16 KiB, with the same
errors; what it lets pass is left to the digest."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from golden import GOLDEN_KEY, PRODUCER, golden_key, golden_names, load_golden
from hypothesis import given
from hypothesis import strategies as st

from statemigrate._errors import SnapshotError
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits, check_ends, open_snapshot


def _reader(blob: bytes, log: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        assert 0 <= offset and offset + length <= len(blob), (offset, length)
        log.append((offset, length))
        return blob[offset : offset + length]

    return read


def _same_refusal(blob: bytes, key: bytes | None = None) -> None:
    """check_ends raises what open_snapshot raises, or passes what open_snapshot
    refuses only for what lies between the ends."""
    try:
        check_ends(_reader(blob, []), len(blob), key=key)
    except SnapshotError as ends:
        with pytest.raises(SnapshotError) as whole:
            open_snapshot(blob, key=key)
        assert str(ends) == str(whole.value)


@pytest.mark.parametrize("name", golden_names())
def test_every_golden_snapshot_passes_and_each_cut_or_extension_is_refused_as_whole(
    name: str,
) -> None:
    blob, expected = load_golden(name)
    key = golden_key(expected)
    check_ends(_reader(blob, []), len(blob), key=key)
    for length in range(0, len(blob), 7):
        with pytest.raises(SnapshotError):
            check_ends(_reader(blob[:length], []), length, key=key)
        _same_refusal(blob[:length], key)
    _same_refusal(blob + b"\0" * 100, key)
    _same_refusal(blob, None if key else GOLDEN_KEY)  # the key's checks, as open's


def test_a_large_snapshot_is_judged_from_its_preamble_and_last_16_kib() -> None:
    rng = random.Random(3)
    sections = [SectionInput("blobs", "main", 1, "", rng.randbytes(1 << 20))]
    blob = encode_snapshot(sections, producer=PRODUCER, chunk_size=64 << 10).to_bytes()
    log: list[tuple[int, int]] = []
    with pytest.raises(SnapshotError, match="bytes follow the end of the snapshot"):
        check_ends(_reader(blob + b"x" * 100, log), len(blob) + 100)
    assert sum(length for _, length in log) <= 32 + (16 << 10) + 32
    with pytest.raises(SnapshotError, match="larger than the reader allows"):
        check_ends(
            _reader(blob, log := []), len(blob), limits=DecodeLimits(max_snapshot_size=1 << 20)
        )
    assert log == [(0, 32)]


@given(st.binary(max_size=300), st.integers(0, 1 << 16))
def test_arbitrary_ends_are_refused_as_open_snapshot_refuses_them(
    noise: bytes, position: int
) -> None:
    """Property: for any bytes written into a sound snapshot, check_ends's refusal (if
    any) is open_snapshot's."""
    sections = [SectionInput("cache", "main", 1, "fp", {"k": "v" * 50})]
    blob = bytearray(encode_snapshot(sections, producer=PRODUCER).to_bytes())
    at = position % (len(blob) + 1)
    blob[at : at + len(noise)] = noise
    _same_refusal(bytes(blob))
