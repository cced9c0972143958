"""Container integrity: truncation, trailing data, bit flips, random damage, zeroed checks."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import zstandard
from golden import (
    GOLDEN_KEY,
    PRODUCER,
    golden_key,
    load_golden,
    redigest,
    reseal,
    rewrite_footer,
    rewrite_preamble,
    split,
)

from statemigrate._errors import SnapshotError
from statemigrate._snapshot import _chunks, _format, _msgpack
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import PREAMBLE_SIZE, Snapshot, assemble, open_snapshot

Opener = Callable[..., Snapshot]


def _read_all(snapshot: Snapshot) -> list[object]:
    return [snapshot.read_section(i) for i in range(len(snapshot.header.sections))]


def _medium_snapshot(size: int, *, seed: int) -> bytes:
    """A sound snapshot of roughly ``size`` bytes: cache-like records, several chunks."""
    rng = random.Random(seed)
    data: dict[str, object] = {}
    while len(_msgpack.pack_data(data)) < size * 2:
        data[f"k{len(data):05d}"] = {
            "v": rng.random(),
            "n": rng.randrange(1 << 40),
            "s": rng.choice(["alpha", "beta", "gamma"]) * rng.randrange(4),
        }
    sections = [
        SectionInput("cache", "main", 1, "fp", data),
        SectionInput("blobs", "raw", 1, "", rng.randbytes(size // 8)),
    ]
    return encode_snapshot(sections, producer=PRODUCER, chunk_size=2048).to_bytes()


@pytest.fixture(scope="module")
def medium() -> bytes:
    """About 8 KiB: small enough that every one of its bits can be flipped in CI."""
    return _medium_snapshot(8 << 10, seed=3)


# --- A1 truncation ------------------------------------------------------------------


def truncation_kinds(blob: bytes, *, key: bytes | None = None, opener: Opener = open_snapshot
                     ) -> Counter[str]:
    """Outcome of opening every proper prefix: an error kind, or ``accepted``."""
    view = memoryview(blob)
    kinds: Counter[str] = Counter()
    for length in range(len(blob)):
        try:
            opener(view[:length], key=key)
        except SnapshotError as exc:
            kinds[exc.kind] += 1
        else:
            kinds["accepted"] += 1
    return kinds


@pytest.mark.parametrize("name", ["v1-empty", "v1-small", "v1-mac", "v2-empty", "v2-small",
                                  "v2-mac"])
def test_every_truncation_of_a_golden_snapshot_is_reported_as_truncated(name: str) -> None:
    blob, expected = load_golden(name)
    assert truncation_kinds(blob, key=golden_key(expected)) == {"truncated": len(blob)}


@pytest.mark.parametrize("name", ["v1-small", "v2-small", "v2-mac", "v3-small", "v3-mac"])
def test_every_truncation_error_says_what_was_expected(name: str) -> None:
    blob, expected = load_golden(name)
    view = memoryview(blob)
    for length in range(len(blob)):
        with pytest.raises(SnapshotError) as caught:
            open_snapshot(view[:length], key=golden_key(expected))
        assert "None" not in str(caught.value), length


def test_a_cut_after_the_preamble_expects_more_bytes_than_it_has() -> None:
    blob, expected = load_golden("v3-small")
    cut = PREAMBLE_SIZE + 10
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(blob[:cut], key=golden_key(expected))
    assert str(caught.value) == (
        "truncated: snapshot is cut short: it does not end with its footer, the only place"
        f" its size is declared: has {cut} bytes (at offset {cut})"
    )
    assert (caught.value.expected, caught.value.actual) == (None, cut)


SOAK = bool(os.environ.get("STATEMIGRATE_SOAK"))


@pytest.mark.slow
def test_every_truncation_of_a_large_snapshot_is_reported_as_truncated() -> None:
    """256 KiB by default (about a second); 1 MiB under STATEMIGRATE_SOAK=1."""
    size = (1 << 20) if SOAK else (256 << 10)
    rng = random.Random(1)
    blob = encode_snapshot(
        [SectionInput("blobs", "main", 1, "", rng.randbytes(size))], producer=PRODUCER
    ).to_bytes()
    assert len(blob) > size
    assert truncation_kinds(blob) == {"truncated": len(blob)}


def test_negative_control_truncation_checker_flags_a_reader_that_trusts_the_length() -> None:
    """A reader that takes the buffer's length as the snapshot's misreports every cut."""

    def trusting(data: memoryview, *, key: bytes | None) -> Snapshot:
        if len(data) >= PREAMBLE_SIZE:
            data = memoryview(rewrite_preamble(bytes(data), total=len(data)))
        return open_snapshot(data, key=key)

    blob, _ = load_golden("v1-small")
    kinds = truncation_kinds(blob, opener=trusting)
    assert kinds != {"truncated": len(blob)}
    assert kinds["truncated"] == PREAMBLE_SIZE  # only the cuts inside the preamble


# --- A2 trailing data and extra frames ----------------------------------------------------


@pytest.mark.parametrize("extra", [1, 2, 16, 4096])
@pytest.mark.parametrize("name", ["v1-empty", "v1-small", "v1-mac", "v2-empty", "v2-small",
                                  "v2-mac"])
def test_appended_bytes_are_trailing_data(name: str, extra: int) -> None:
    blob, expected = load_golden(name)
    for filler in (b"\x00", b"\xff", blob[:1]):
        with pytest.raises(SnapshotError) as caught:
            open_snapshot(blob + filler * extra, key=golden_key(expected))
        assert caught.value.kind == "trailing_data"
        assert caught.value.offset == len(blob)


def _skippable(payload: bytes, *, nibble: int = 0) -> bytes:
    magic = (0x184D2A50 + nibble).to_bytes(4, "little")
    return magic + len(payload).to_bytes(4, "little") + payload


def _first_chunk_with_codec(
    header: dict[str, Any], codec: int
) -> tuple[int, int]:
    """(index among all chunks, section index) of the first chunk stored with ``codec``."""
    flat = [
        (section_index, entry[0])
        for section_index, section in enumerate(header["sections"])
        for entry in section["chunks"]
    ]
    position = [c for _, c in flat].index(codec)
    return position, flat[position][0]


def _chunk_variants(frame: bytes) -> dict[str, bytes]:
    second = zstandard.ZstdCompressor(write_content_size=True).compress(b"more")
    empty = zstandard.ZstdCompressor(write_content_size=True).compress(b"")
    return {
        "second frame": frame + second,
        "second empty frame": frame + empty,
        "the same frame twice": frame + frame,
        "skippable frame after": frame + _skippable(b"hidden"),
        "empty skippable frame after": frame + _skippable(b""),
        "skippable frame before": _skippable(b"hidden", nibble=15) + frame,
        "one trailing zero byte": frame + b"\x00",
        "trailing garbage": frame + b"garbage!",
        "a skippable frame alone": _skippable(frame),
    }


def extra_frame_outcomes() -> dict[str, str]:
    """Kind raised (or ``accepted``) when each variant replaces a zstd chunk, resealed."""
    blob, _ = load_golden("v1-small")
    header, chunks = split(blob)
    position, section = _first_chunk_with_codec(header, 1)
    outcomes: dict[str, str] = {}
    for name, stored in _chunk_variants(chunks[position]).items():
        forged = reseal(header, [*chunks[:position], stored, *chunks[position + 1 :]])
        snapshot = open_snapshot(forged)  # every checksum is valid
        try:
            snapshot.read_section(section)
        except SnapshotError as exc:
            outcomes[name] = exc.kind
        else:
            outcomes[name] = "accepted"
    return outcomes


def test_extra_frames_and_bytes_inside_a_chunk_are_corrupt() -> None:
    outcomes = extra_frame_outcomes()
    assert outcomes == {name: "corrupt" for name in outcomes}
    assert len(outcomes) == 9


def test_negative_control_extra_frame_check_flags_a_decoder_that_stops_at_the_first_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the frame walk, frames that add no output slip through (finding 9).

    The streaming decoder reads on into a second frame that has data, so those are
    still caught; an empty frame or a skippable frame after the first is not.
    """
    monkeypatch.setattr(_chunks, "_walk_frame", lambda frame: (len(frame), 1 << 62))
    outcomes = extra_frame_outcomes()
    assert outcomes["second empty frame"] == "accepted"
    assert outcomes["skippable frame after"] == "accepted"
    assert outcomes["empty skippable frame after"] == "accepted"


def test_a_raw_chunk_longer_than_declared_is_corrupt() -> None:
    blob, _ = load_golden("v1-small")
    header, chunks = split(blob)
    position, _ = _first_chunk_with_codec(header, 0)
    forged = reseal(header, [*chunks[:position], chunks[position] + b"\x00",
                             *chunks[position + 1 :]])
    snapshot = open_snapshot(forged)
    with pytest.raises(SnapshotError) as caught:
        _read_all(snapshot)
    assert caught.value.kind == "corrupt"
    assert caught.value.section == "blobs/main"


# --- A3 every single-bit flip ---------------------------------------------------------------


def flip_outcomes(blob: bytes, *, key: bytes | None = None,
                  positions: Iterable[int] | None = None) -> tuple[int, Counter[str], list[int]]:
    """Flip every bit (of ``positions``), one at a time, and open the result.

    Returns the number of flips, the error kinds seen, and the byte positions of the
    flips that were *not* rejected when opening.
    """
    data = bytearray(blob)
    kinds: Counter[str] = Counter()
    undetected = []
    flips = 0
    for position in range(len(data)) if positions is None else positions:
        for bit in range(8):
            data[position] ^= 1 << bit
            flips += 1
            try:
                open_snapshot(data, key=key)
            except SnapshotError as exc:
                kinds[exc.kind] += 1
            else:
                undetected.append(position)
            data[position] ^= 1 << bit
    return flips, kinds, undetected


@pytest.mark.slow
def test_every_single_bit_flip_of_an_8_kib_snapshot_is_detected(medium: bytes) -> None:
    flips, kinds, undetected = flip_outcomes(medium)
    assert flips == 8 * len(medium) >= 8 * (6 << 10)
    assert undetected == []
    assert set(kinds) <= {"corrupt", "not_snapshot"}
    assert sum(kinds.values()) == flips


@pytest.mark.parametrize("name", ["v1-mac", "v2-mac"])
def test_every_single_bit_flip_of_the_authenticated_golden_is_detected(name: str) -> None:
    blob, _ = load_golden(name)
    flips, kinds, undetected = flip_outcomes(blob, key=GOLDEN_KEY)
    assert (flips, undetected) == (8 * len(blob), [])
    assert set(kinds) <= {"corrupt", "not_snapshot", "auth"}
    assert kinds["auth"] > 0


@pytest.mark.slow
def test_a_flip_inside_a_chunk_names_its_section_and_chunk(medium: bytes) -> None:
    """Guarantee 1: the error says where; every byte of every chunk is tried once."""
    snapshot = open_snapshot(medium)
    data = bytearray(medium)
    tried = 0
    for index, section in enumerate(snapshot.header.sections):
        for number, (chunk, offset) in enumerate(
            zip(section.chunks, snapshot.section_offsets(index), strict=True)
        ):
            for position in range(offset, offset + chunk.stored_size):
                data[position] ^= 0x10
                with pytest.raises(SnapshotError) as caught:
                    open_snapshot(data)
                data[position] ^= 0x10
                error = caught.value
                assert (error.kind, error.section, error.chunk) == ("corrupt", section.key, number)
                assert error.offset == offset
                tried += 1
    assert tried == sum(s.stored_size for s in snapshot.header.sections)


def test_negative_control_bit_flip_checker_flags_a_reader_without_the_digest(
    medium: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_format, "_verify_digest", lambda buf, body_end, key: None)
    snapshot = open_snapshot(medium)
    first_chunk = snapshot.section_offsets(0)[0]
    positions = [*range(first_chunk, first_chunk + 4), *range(len(medium) - 16, len(medium))]
    flips, _, undetected = flip_outcomes(medium, positions=positions)
    assert flips == 8 * len(positions)
    assert undetected  # flips in chunks and in the digest itself now pass the open


# --- A4 random multi-byte corruption ----------------------------------------------------------


def random_corruption_accepted(
    blob: bytes, *, cases: int, seed: int, span: tuple[int, int] | None = None
) -> int:
    """Damage 1-8 random bytes (within ``span``) per case; count cases that open and read.

    A case counts as accepted only if the snapshot opens *and* every section decodes.
    """
    rng = random.Random(seed)
    data = bytearray(blob)
    start, end = span or (0, len(data))
    accepted = 0
    for _ in range(cases):
        positions = rng.sample(range(start, end), rng.randint(1, min(8, end - start)))
        for p in positions:
            data[p] ^= rng.randrange(1, 256)  # never zero: every chosen byte changes
        try:
            _read_all(open_snapshot(data))
        except SnapshotError:
            pass
        else:
            accepted += 1
        for p in positions:
            data[p] = blob[p]
    return accepted


@pytest.mark.slow
def test_one_hundred_thousand_random_corruptions_are_all_rejected(medium: bytes) -> None:
    assert random_corruption_accepted(medium, cases=100_000, seed=4) == 0


def test_negative_control_random_corruption_checker_flags_a_reader_without_the_digest(
    medium: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage confined to the digest is noticed by the digest alone."""
    digest = (len(medium) - 16, len(medium))
    assert random_corruption_accepted(medium, cases=500, seed=5, span=digest) == 0
    monkeypatch.setattr(_format, "_verify_digest", lambda buf, body_end, key: None)
    assert random_corruption_accepted(medium, cases=500, seed=5, span=digest) == 500


# --- A9 no checksum-off path ------------------------------------------------------------------


def zeroed_cases(blob: bytes) -> dict[str, bytes]:
    """The snapshot with one checksum zeroed, everything else (including the digest) valid."""
    snapshot = open_snapshot(blob)
    footer_at = len(blob) - 16 - 32  # version 2
    if snapshot.format_version == 1:
        header_check_at = PREAMBLE_SIZE + int.from_bytes(blob[12:16], "little")
    else:
        header_check_at = footer_at - 8
    plain, chunks = split(blob)
    zero_chunk = {**plain, "sections": [dict(s) for s in plain["sections"]]}
    zero_chunk["sections"][0]["chunks"] = [list(c) for c in plain["sections"][0]["chunks"]]
    zero_chunk["sections"][0]["chunks"][0][3] = 0
    zero_section = {**plain, "sections": [dict(s) for s in plain["sections"]]}
    zero_section["sections"][0]["checksum"] = 0
    assert snapshot.header.sections[0].checksum != 0
    return {
        "digest": blob[:-16] + bytes(16),
        "preamble check": blob[:24] + bytes(8) + blob[32:],
        "header check": redigest(
            blob[:header_check_at] + bytes(8) + blob[header_check_at + 8 :]
        ),
        "chunk checksum": b"".join(assemble(zero_chunk, chunks)),
        "section checksum": b"".join(assemble(zero_section, chunks)),
        # The digest cut off and the declared length shortened to match.
        "no digest at all": (
            rewrite_preamble(blob[:-16], total=len(blob) - 16)
            if snapshot.format_version == 1
            else rewrite_footer(blob, total=len(blob) - 16)[:-16]
        ),
        **(
            {"footer check": blob[: footer_at + 16] + bytes(8) + blob[footer_at + 24 :]}
            if snapshot.format_version == 2
            else {}
        ),
    }


def zeroed_outcomes(blob: bytes) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for name, forged in zeroed_cases(blob).items():
        try:
            _read_all(open_snapshot(forged))
        except SnapshotError as exc:
            outcomes[name] = exc.kind
        else:
            outcomes[name] = "accepted"
    return outcomes


@pytest.mark.parametrize(("name", "cases"), [("v1-small", 6), ("v2-small", 7)])
def test_zeroed_checksums_are_rejected_never_treated_as_absent(name: str, cases: int) -> None:
    blob, _ = load_golden(name)
    outcomes = zeroed_outcomes(blob)
    expected = {case: "corrupt" for case in zeroed_cases(blob)}
    if name.startswith("v2"):
        # Without the digest the footer is not where it belongs: the snapshot was cut.
        expected["no digest at all"] = "truncated"
    assert outcomes == expected
    assert len(outcomes) == cases


def test_a_zeroed_mac_is_an_authentication_failure() -> None:
    blob, _ = load_golden("v1-mac")
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(blob[:-32] + bytes(32), key=GOLDEN_KEY)
    assert caught.value.kind == "auth"


def test_negative_control_zeroed_checksum_checker_flags_a_zero_means_off_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _format._verify_digest

    def zero_means_off(buf: memoryview, body_end: int, key: bytes | None) -> None:
        if any(buf[body_end:]):
            real(buf, body_end, key)

    monkeypatch.setattr(_format, "_verify_digest", zero_means_off)
    blob, _ = load_golden("v1-small")
    assert zeroed_outcomes(blob)["digest"] == "accepted"
