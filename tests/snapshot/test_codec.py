"""Payload codec: zstd chunks and limits; msgpack limits (length, depth, budget, keys, ext)."""

from __future__ import annotations

import functools
import json
import os
import random
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import zstandard
from golden import seal_raw

from statemigrate._errors import SnapshotError
from statemigrate._model._plaindata import MAX_NESTING
from statemigrate._snapshot._chunks import (
    MAX_WINDOW_SIZE,
    ChunkCodec,
    check_chunk,
    compress_chunk,
    decompress_chunk,
    zstd_frame_length,
)
from statemigrate._snapshot._format import DecodeLimits, open_snapshot
from statemigrate._snapshot._limits import CONTAINER_ALLOWANCE, section_budget
from statemigrate._snapshot._msgpack import NotPlainError, pack_data, unpack_data

MiB = 1 << 20


def kind_of(action: Callable[[], object]) -> str:
    try:
        action()
    except SnapshotError as exc:
        return exc.kind
    return "accepted"


def decode_chunk(stored: bytes, codec: int, raw_size: int) -> bytes:
    out = bytearray(raw_size)
    decompress_chunk(memoryview(stored), codec, memoryview(out))
    return bytes(out)


def read_sealed(raw: bytes) -> object:
    """Decode ``raw`` as a section payload through the whole reader."""
    return open_snapshot(seal_raw([raw], chunk_size=1 << 16)).read_section(0)


# --- chunks: compression choice ---------------------------------------------------------


def test_compressible_chunks_are_stored_as_zstd_and_round_trip() -> None:
    raw = b"state that repeats itself " * 400
    chunk = compress_chunk(raw, level=1)
    assert chunk.codec is ChunkCodec.ZSTD
    assert len(chunk.data) < len(raw) // 4
    assert decode_chunk(bytes(chunk.data), chunk.codec, len(raw)) == raw


@pytest.mark.parametrize("size", [1, 100, 4096, 200_000])
def test_incompressible_chunks_are_stored_raw(size: int) -> None:
    """Poor compression: random bytes stay raw (codec 0), byte for byte."""
    raw = random.Random(size).randbytes(size)
    chunk = compress_chunk(raw, level=3)
    assert chunk.codec is ChunkCodec.RAW
    assert bytes(chunk.data) == raw
    assert decode_chunk(bytes(chunk.data), chunk.codec, size) == raw


def test_an_empty_chunk_is_raw_and_empty() -> None:
    chunk = compress_chunk(b"", level=1)
    assert (chunk.codec, chunk.raw_size, bytes(chunk.data)) == (ChunkCodec.RAW, 0, b"")


def test_zstd_chunks_carry_content_size_and_checksum_and_no_dictionary() -> None:
    raw = b"abc" * 10_000
    params = zstandard.get_frame_parameters(compress_chunk(raw, level=1).data)
    assert params.content_size == len(raw)
    assert params.has_checksum
    assert params.dict_id == 0


def test_the_highest_levels_still_write_frames_readers_accept() -> None:
    """Level 22 on a 9 MiB chunk would want a 9 MiB+ window; writers cap it at 8 MiB."""
    raw = bytes(9 * MiB)
    chunk = compress_chunk(raw, level=22)
    params = zstandard.get_frame_parameters(chunk.data)
    assert params.window_size <= MAX_WINDOW_SIZE
    assert decode_chunk(bytes(chunk.data), chunk.codec, len(raw)) == raw


# --- chunks: frame structure --------------------------------------------------------------


def _frame(raw: bytes, **options: object) -> bytes:
    settings: dict[str, object] = {"write_content_size": True, "write_checksum": True}
    settings.update(options)
    return zstandard.ZstdCompressor(**settings).compress(raw)  # type: ignore[arg-type]


def test_frame_length_is_found_by_walking_the_blocks() -> None:
    raw = random.Random(2).randbytes(300_000) + bytes(300_000)  # raw, RLE and compressed
    frame = _frame(raw)
    assert zstd_frame_length(memoryview(frame + b"tail")) == len(frame)
    with pytest.raises(ValueError):
        zstd_frame_length(memoryview(frame[:-5]))
    with pytest.raises(ValueError):
        zstd_frame_length(memoryview(b"\x00" + frame[1:]))


def test_a_frame_without_a_content_size_is_corrupt() -> None:
    raw = b"x" * 1000
    frame = _frame(raw, write_content_size=False)
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    with pytest.raises(SnapshotError) as caught:
        decode_chunk(frame, 1, len(raw))
    assert caught.value.kind == "corrupt"
    assert "content size" in caught.value.detail


def test_a_frame_that_needs_a_dictionary_is_corrupt() -> None:
    samples: list[bytes | bytearray | memoryview] = [
        f"record {i} with some shared words".encode() for i in range(200)
    ]
    dictionary = zstandard.train_dictionary(1024, samples)
    raw = b"record 7 with some shared words" * 3
    frame = _frame(raw, dict_data=dictionary, write_dict_id=True)
    assert zstandard.get_frame_parameters(frame).dict_id != 0
    with pytest.raises(SnapshotError) as caught:
        decode_chunk(frame, 1, len(raw))
    assert (caught.value.kind, caught.value.detail) == ("corrupt", "zstd frame needs a dictionary")


@pytest.mark.parametrize("codec", [2, 3, 127, 255])
def test_unknown_chunk_codecs_are_unsupported(codec: int) -> None:
    assert kind_of(lambda: decode_chunk(b"abc", codec, 3)) == "unsupported_version"


def test_a_frame_shorter_or_longer_than_declared_is_corrupt() -> None:
    raw = b"0123456789" * 100
    frame = _frame(raw)
    for declared in (len(raw) - 1, len(raw) + 1, 0):
        assert kind_of(functools.partial(decode_chunk, frame, 1, declared)) == "corrupt"


def _with_content_size(frame: bytes, size: int) -> bytes:
    """The frame with its 4-byte content-size field rewritten."""
    descriptor = frame[4]
    assert descriptor >> 6 == 2 and not descriptor & 0x03  # 4-byte size, no dictionary id
    at = 5 if descriptor & 0x20 else 6  # a window byte follows unless single-segment
    return frame[:at] + struct.pack("<I", size) + frame[at + 4 :]


def test_a_frame_whose_blocks_cannot_produce_its_claim_is_refused_before_allocation() -> None:
    """A claim beyond what the blocks can produce fails check_chunk, which needs no buffer."""
    frame = _frame(bytes(200_000), level=1)  # two RLE blocks: at most 256 KiB of output
    forged = _with_content_size(frame, 64 * MiB)
    with pytest.raises(SnapshotError) as caught:
        check_chunk(memoryview(forged), 1, 64 * MiB)
    assert caught.value.kind == "corrupt"
    assert "too few blocks" in caught.value.detail


# --- B3 window cap ------------------------------------------------------------------------


def _with_window(frame: bytes, window_log: int) -> bytes:
    """The frame re-headed to declare a window of 2**window_log bytes."""
    descriptor = frame[4]
    assert descriptor & 0x20  # single segment: no window byte yet; content size 2 bytes
    assert descriptor >> 6 == 1
    window_byte = bytes([(window_log - 10) << 3])
    return frame[:4] + bytes([descriptor & ~0x20]) + window_byte + frame[5:]


def test_a_frame_needing_a_128_mib_window_is_too_large() -> None:
    raw = b"window " * 100
    frame = _with_window(_frame(raw), 27)
    params = zstandard.get_frame_parameters(frame)
    assert params.window_size == 128 * MiB and params.content_size == len(raw)
    # The frame itself is sound: a decoder allowing the window reads it back.
    lenient = zstandard.ZstdDecompressor(max_window_size=256 * MiB).decompressobj()
    assert lenient.decompress(frame) == raw
    with pytest.raises(SnapshotError) as caught:
        decode_chunk(frame, 1, len(raw))
    assert caught.value.kind == "too_large"
    assert caught.value.expected == MAX_WINDOW_SIZE


def _read_in_pieces(frame: bytes, max_window_size: int) -> int:
    decompressor = zstandard.ZstdDecompressor(max_window_size=max_window_size)
    with decompressor.stream_reader(frame, read_across_frames=False, closefd=False) as reader:
        return len(reader.read(100))


def test_the_decoders_window_cap_is_in_bytes() -> None:
    """zstandard's docstring says KiB; 0.25.0 (pinned) takes bytes.

    libzstd only checks the window when it streams through a window buffer; decoding
    a whole frame into a large enough output (single-pass) needs no window at all.
    Reading in small pieces forces the streaming path.
    """
    raw = b"w" * 1000
    assert _read_in_pieces(_with_window(_frame(raw), 23), MAX_WINDOW_SIZE) == 100
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        _read_in_pieces(_with_window(_frame(raw), 24), MAX_WINDOW_SIZE)
    # Were the unit KiB, 8 MiB "KiB" would admit this 16 MiB window.
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        _read_in_pieces(_with_window(_frame(raw), 24), MAX_WINDOW_SIZE // 1024 * 1024)
    assert zstandard.__version__ == "0.25.0"


# --- msgpack: B4 huge length prefixes -----------------------------------------------------

HUGE_PREFIXES = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01",
    "array16": b"\xdc\xff\xff",
    "map16": b"\xde\xff\xff",
    "str16": b"\xda\xff\xff",
    "bin16": b"\xc5\xff\xff",
    "ext16": b"\xc8\xff\xff\x01",
}


@pytest.mark.parametrize("name", sorted(HUGE_PREFIXES))
def test_huge_length_prefixes_are_rejected_without_allocating(name: str) -> None:
    raw = HUGE_PREFIXES[name]
    assert len(raw) <= 6
    tracemalloc.start()
    try:
        kind = kind_of(lambda: unpack_data(raw))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kind == "invalid_data"
    assert peak < MiB
    assert kind_of(lambda: read_sealed(raw)) == "invalid_data"


# --- msgpack: B5 nesting -------------------------------------------------------------------


def nested_arrays(depth: int, *, padded: bool = False) -> bytes:
    """``depth`` nested arrays; padded levels carry 8 more bytes each (to fit the budget)."""
    if padded:
        return b"\x92\xa7padding" * (depth - 1) + b"\x90"
    return b"\x91" * (depth - 1) + b"\x90"


def test_msgpack_nesting_limit_is_1024_containers() -> None:
    """The C unpacker takes 1,024 nested containers and refuses 1,025 (MAX_NESTING)."""
    assert MAX_NESTING == 1024
    assert msgpack.Unpacker.__module__ == "msgpack._cmsgpack"
    budget = 10 * MAX_NESTING
    value = unpack_data(nested_arrays(1024), container_budget=budget)
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == 1024
    assert kind_of(lambda: unpack_data(nested_arrays(1025), container_budget=budget)) == "too_deep"
    maps = b"\x81\xa1k" * 1024 + b"\x80"
    assert kind_of(lambda: unpack_data(maps, container_budget=budget)) == "too_deep"


@pytest.mark.parametrize("depth", [1025, 2000, 100_000])
def test_deep_nesting_is_too_deep_through_the_whole_reader(depth: int) -> None:
    assert kind_of(lambda: read_sealed(nested_arrays(depth, padded=True))) == "too_deep"
    assert kind_of(lambda: unpack_data(nested_arrays(depth))) == "too_deep"


def test_1024_levels_decode_through_the_whole_reader() -> None:
    assert kind_of(lambda: read_sealed(nested_arrays(1024, padded=True))) == "accepted"
    assert kind_of(lambda: read_sealed(nested_arrays(1024))) == "accepted"


_PURE_CHILD = r"""
import json, sys
import msgpack
from statemigrate._snapshot._msgpack import unpack_data
from statemigrate._errors import SnapshotError

def nested(depth):
    return b"\x91" * (depth - 1) + b"\x90"

def kind(raw):
    try:
        unpack_data(raw, container_budget=10**6)
    except SnapshotError as exc:
        return exc.kind
    return "accepted"

deepest = max(d for d in range(1, 1100, 1) if kind(nested(d)) == "accepted")
print(json.dumps({
    "module": msgpack.Unpacker.__module__,
    "deepest": deepest,
    "1025": kind(nested(1025)),
    "100000": kind(nested(100000)),
    "limit": sys.getrecursionlimit(),
}))
"""


@pytest.mark.slow
def test_pure_python_msgpack_refuses_deep_nesting_with_the_same_kind() -> None:
    """MSGPACK_PUREPYTHON=1: the fallback stops earlier (near the recursion limit) and
    never lets RecursionError out."""
    env = {**os.environ, "MSGPACK_PUREPYTHON": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PURE_CHILD],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    print(report)
    assert report["module"] == "msgpack.fallback"
    assert report["1025"] == report["100000"] == "too_deep"
    assert 500 < report["deepest"] < MAX_NESTING


# --- msgpack: B6 amplification ---------------------------------------------------------------


def traced_peak(raw: bytes, **options: Any) -> tuple[str, int]:
    """Decode ``raw`` under tracemalloc: the outcome and the peak of traced memory."""
    tracemalloc.start()
    try:
        kind = kind_of(lambda: unpack_data(raw, **options))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kind, peak


def _array(count: int, item: bytes) -> bytes:
    return b"\xdd" + struct.pack(">I", count) + item * count


def _map_of_empty_maps(count: int) -> bytes:
    entries = b"".join(bytes([0xA0 | len(k)]) + k + b"\x80"
                       for k in (str(i).encode() for i in range(count)))
    return b"\xdf" + struct.pack(">I", count) + entries


AMPLIFIERS = {
    "1 MB of empty arrays": (_array(1_000_000, b"\x90"), "too_large"),
    "map of 130k empty maps": (_map_of_empty_maps(130_000), "accepted"),
    "array of 1M nil": (_array(1_000_000, b"\xc0"), "accepted"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(AMPLIFIERS))
def test_amplifying_payloads_stay_within_8x_plus_32_mib(name: str) -> None:
    raw, want = AMPLIFIERS[name]
    kind, peak = traced_peak(raw)
    print(f"{name}: {kind}, peak {peak / len(raw):.1f}x of {len(raw)} bytes")
    assert kind == want
    assert peak < 8 * len(raw) + 32 * MiB


@pytest.mark.slow
def test_worst_case_scalar_amplification_is_bounded_by_48x() -> None:
    """No container budget applies to scalars: 1M small negative ints (one byte each,
    none of them cached by CPython) cost ~41 bytes apiece. docs/format.md states the
    bound; readers size DecodeLimits from it."""
    raw = _array(1_000_000, b"\xe0")
    kind, peak = traced_peak(raw)
    assert kind == "accepted"
    assert 8 * len(raw) < peak < 48 * len(raw)


REALISTIC_SHAPES: dict[str, object] = {
    "record with an empty map": {"a": {}},
    "singleton lists": [[i % 100] for i in range(100_000)],
    "coordinate pairs": [[i % 100, 1] for i in range(100_000)],
    "small records": {f"s{i}": {"u": i % 100} for i in range(50_000)},
    "adjacency lists, mostly empty": [[] if i % 4 else [i % 100] for i in range(20_000)],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REALISTIC_SHAPES))
def test_the_container_budget_admits_what_the_writer_packs(name: str) -> None:
    """Dense but real shapes (two or more bytes per container) decode in full."""
    value = REALISTIC_SHAPES[name]
    assert unpack_data(pack_data(value)) == value


def test_a_flood_of_empty_containers_past_the_allowance_is_too_large() -> None:
    count = 2 * CONTAINER_ALLOWANCE + 100
    raw = _array(count, b"\x90")
    assert len(raw) // 2 + CONTAINER_ALLOWANCE < count
    assert kind_of(lambda: unpack_data(raw)) == "too_large"
    fits = _array(CONTAINER_ALLOWANCE, b"\x90")
    assert kind_of(lambda: unpack_data(fits)) == "accepted"


def test_a_snapshot_section_may_hold_one_container_per_byte_up_to_half_the_largest() -> None:
    """Through a snapshot, a section is held to what the reader's largest section may
    hold, not to its own size: dense small sections restore, memory stays bounded."""
    limits = DecodeLimits(max_section_size=8 * CONTAINER_ALLOWANCE)
    half = limits.max_section_size // 2

    def read(count: int) -> str:
        sealed = seal_raw([_array(count, b"\x90")], chunk_size=1 << 16)
        return kind_of(lambda: open_snapshot(sealed, limits=limits).read_section(0))

    assert read(half) == "accepted"  # one per byte, beyond one per two bytes
    assert read(half + CONTAINER_ALLOWANCE - 1) == "accepted"  # with the array around
    assert read(half + CONTAINER_ALLOWANCE) == "too_large"
    assert section_budget(limits.max_section_size, limits.max_section_size) == (
        half + CONTAINER_ALLOWANCE
    )


@pytest.mark.slow
def test_negative_control_amplification_check_flags_a_decoder_without_the_budget() -> None:
    raw, _ = AMPLIFIERS["1 MB of empty arrays"]
    kind, peak = traced_peak(raw, container_budget=10**9)
    assert kind == "accepted"
    assert peak > 8 * len(raw) + 32 * MiB


# --- msgpack's refusals said in the snapshot's terms ------------------------------------------

REFUSALS_IN_OUR_WORDS = {
    "reserved byte": (b"\x91\xc1", "a byte that starts no msgpack value (0xc1, which msgpack"),
    "ext": (b"\xd4\x01\x00", "an extension (ext) value, which snapshot data never holds"),
    "timestamp ext": (b"\xd6\xff\x00\x00\x00\x00", "an extension (ext) value"),
    "cut": (b"\x92\x01", "the data ends inside a value"),
    "int key": (b"\x81\x01\x02", "a map key of type int; keys are text or bytes"),
    "bad UTF-8": (
        b"\xa2\xff\xfe", "a string that is not UTF-8 (invalid start byte in the sequence at byte 0"
    ),
    "huge list": (b"\xdd\xff\xff\xff\xff", "a list declares 4294967295 items, more than 5"),
    "huge map": (b"\xdf\xff\xff\xff\xff", "a map declares 4294967295 entries, more than"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS_IN_OUR_WORDS))
def test_a_refusal_names_the_problem_not_the_decoder_s_options(name: str) -> None:
    """msgpack said `FormatError`, `2 exceeds max_ext_len(0)`, `... when
    strict_map_key=True`: the names of its exceptions and options, not the problem."""
    raw, said = REFUSALS_IN_OUR_WORDS[name]
    for action in (lambda: unpack_data(raw), lambda: read_sealed(raw)):
        with pytest.raises(SnapshotError) as caught:
            action()
        assert caught.value.kind == "invalid_data"
        assert said in caught.value.detail, caught.value.detail
        for internal in ("FormatError", "max_", "strict_map_key", "Unpack failed", "codec"):
            assert internal not in str(caught.value), caught.value


# --- msgpack: B7 keys and ext types ----------------------------------------------------------


def test_duplicate_keys_are_invalid() -> None:
    for raw in (b"\x82\xa1a\x01\xa1a\x02", b"\x83\xa1a\x01\xa1b\x02\xa1a\x01"):
        with pytest.raises(SnapshotError) as caught:
            unpack_data(raw)
        assert caught.value.kind == "invalid_data"
        assert "duplicate map key 'a'" in caught.value.detail


NON_STR_KEYS = {
    "positive int": b"\x01",
    "negative int": b"\xff",
    "uint64": b"\xcf" + b"\xff" * 8,
    "float": b"\xcb" + struct.pack(">d", 1.5),
    "nil": b"\xc0",
    "true": b"\xc3",
    "array": b"\x90",
    "map": b"\x80",
}


@pytest.mark.parametrize("name", sorted(NON_STR_KEYS))
def test_keys_other_than_str_or_bytes_are_invalid(name: str) -> None:
    raw = b"\x81" + NON_STR_KEYS[name] + b"\x01"
    assert kind_of(lambda: unpack_data(raw)) == "invalid_data"
    assert kind_of(lambda: read_sealed(raw)) == "invalid_data"


def test_bytes_keys_are_on_the_allow_list_and_distinct_from_str_keys() -> None:
    """Schemas with dict[bytes, ...] write bytes keys; b"a" and "a" stay two keys."""
    raw = b"\x82\xc4\x01a\x01\xa1a\x02"
    assert unpack_data(raw) == {b"a": 1, "a": 2}
    assert read_sealed(raw) == {b"a": 1, "a": 2}
    assert kind_of(lambda: unpack_data(b"\x82\xc4\x01a\x01\xc4\x01a\x02")) == "invalid_data"


def _ext_forms(code: int) -> list[bytes]:
    t = struct.pack("b", code)
    return [
        b"\xd4" + t + b"\x00",
        b"\xd5" + t + b"\x00" * 2,
        b"\xd6" + t + b"\x00" * 4,
        b"\xd7" + t + b"\x00" * 8,
        b"\xd8" + t + b"\x00" * 16,
        b"\xc7\x00" + t,
        b"\xc7\x0c" + t + b"\x00" * 12,
        b"\xc8\x00\x03" + t + b"abc",
        b"\xc9\x00\x00\x00\x01" + t + b"z",
    ]


def test_every_ext_type_code_is_invalid_in_every_form() -> None:
    """All 256 ext codes (timestamps, -1, included) in all nine encodings: 2,304 payloads."""
    outcomes = {}
    for code in range(-128, 128):
        for number, raw in enumerate(_ext_forms(code)):
            outcomes[(code, number)] = kind_of(functools.partial(unpack_data, raw))
            wrapped = b"\x91" + raw  # inside an array as well as at the top
            assert kind_of(functools.partial(unpack_data, wrapped)) == "invalid_data"
    assert len(outcomes) == 256 * 9
    assert set(outcomes.values()) == {"invalid_data"}


def test_negative_control_ext_check_flags_a_permissive_unpacker() -> None:
    """msgpack's defaults would turn ext -1 into a Timestamp: the check above sees that."""
    timestamp = _ext_forms(-1)[2]
    assert isinstance(msgpack.unpackb(timestamp), msgpack.Timestamp)
    assert kind_of(lambda: unpack_data(timestamp)) == "invalid_data"


# --- msgpack: what the writer refuses -------------------------------------------------------


@pytest.mark.parametrize(
    "value", [2**64, -(2**63) - 1, {1, 2}, object(), 1j, {"k": frozenset()}]
)
def test_pack_data_refuses_values_outside_plain_data(value: object) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError)):
        pack_data(value)


def test_pack_data_converts_leaves_through_default() -> None:
    raw = pack_data({"s": {3, 1, 2}}, default=lambda v: sorted(v))
    assert unpack_data(raw) == {"s": [1, 2, 3]}


def test_tuples_are_refused_with_their_path() -> None:
    """A tuple would come back a list: the packer refuses it, and says where."""
    with pytest.raises(NotPlainError) as caught:
        pack_data({"t": [1, (2, 3)]})
    assert caught.value.path == ["t", 1]


def test_a_refusal_under_a_long_key_shows_the_key_s_start_and_length() -> None:
    """Before, the key was shown whole: a 100,000-character key, a 100 KB message."""
    with pytest.raises(NotPlainError) as caught:
        pack_data({"k" * 100_000: (1,)})
    assert str(caught.value).endswith(f"at [{'k' * 40!r}...(100000 chars)]")
