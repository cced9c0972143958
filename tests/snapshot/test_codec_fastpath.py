"""The codec's fast paths (ormsgpack packing, msgspec decoding) against the reference
(msgpack-python): same bytes, same values, same errors, on any input."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import math
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plain_helpers import plain, same_plain

from statemigrate._errors import SnapshotError
from statemigrate._snapshot import _limits, _msgpack
from statemigrate._snapshot._msgpack import pack_data, reference_pack, reference_unpack, unpack_data


def outcome(func: Callable[[], object]) -> tuple[str, object]:
    """What a call gives: its value, or the kind and wording of its error."""
    try:
        return ("value", func())
    except SnapshotError as exc:
        return ("snapshot-error", (exc.kind, str(exc)))
    except Exception as exc:
        return ("error", (type(exc), str(exc)))


def same_outcome(a: tuple[str, object], b: tuple[str, object]) -> bool:
    return a[0] == b[0] and (same_plain(a[1], b[1]) if a[0] == "value" else a[1] == b[1])


def decoders_agree(raw: bytes | bytearray) -> bool:
    """Whether unpack_data and the reference decoder give the same outcome."""
    return same_outcome(outcome(lambda: unpack_data(raw)), outcome(lambda: reference_unpack(raw)))


# --- packing -----------------------------------------------------------------------


@given(plain)
def test_packing_gives_the_reference_bytes(value: object) -> None:
    assert pack_data(value) == reference_pack(value)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Label(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


UNUSUAL_VALUES: dict[str, object] = {
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "datetime": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    "date": datetime.date(2026, 1, 1),
    "time": datetime.time(1, 2),
    "enum": Colour.RED,
    "int enum (an int to msgpack)": Level.HIGH,
    "str subclass": Label("x"),
    "dataclass": Point(1),
    "uuid": uuid.UUID(int=1),
    "int past 64 bits": 2**64,
    "int below -2**63": -(2**63) - 1,
    "tuple": (1, "a"),
    "bytearray": bytearray(b"ab"),
    "memoryview": memoryview(b"ab"),
    "int keys": {1: "a"},
    "bytes keys": {b"k": 1},
    "tuple keys": {(1, 2): 3},
    "None key": {None: 1},
    "lone surrogate": "\ud800",
    "ordered dict": collections.OrderedDict(a=1),
    "object": object(),
    "nested 300 deep": _nested(300),
    "nested 600 deep": _nested(600),
    "complex": 1j,
}


@pytest.mark.parametrize("name", sorted(UNUSUAL_VALUES))
def test_packing_unusual_values_matches_the_reference(name: str) -> None:
    """Whatever ormsgpack would convert on its own goes to ``default``, like msgpack."""
    value = UNUSUAL_VALUES[name]
    fast, reference = outcome(lambda: pack_data(value)), outcome(lambda: reference_pack(value))
    assert fast[0] == reference[0]
    if fast[0] == "value":
        assert fast[1] == reference[1]
    else:
        assert isinstance(fast[1], tuple) and isinstance(reference[1], tuple)
        assert fast[1][0] is reference[1][0]


def test_default_converts_for_both_packers() -> None:
    value = {"when": datetime.date(2026, 1, 2), "tags": {"a"}}

    def convert(leaf: Any) -> object:
        return leaf.isoformat() if isinstance(leaf, datetime.date) else sorted(leaf)

    packed = pack_data(value, default=convert)
    assert packed == reference_pack(value, default=convert)
    assert unpack_data(packed) == {"when": "2026-01-02", "tags": ["a"]}


# --- unpacking ---------------------------------------------------------------------


def test_the_fast_decoder_takes_ordinary_data() -> None:
    """Not a dead branch: typical cache data is decoded by msgspec."""
    value = {f"user:{i}": {"id": i, "score": i / 3, "tags": ["a", "b"]} for i in range(1000)}
    raw = pack_data(value)
    decoded = _msgpack._fast_unpack(raw)
    assert decoded is not _msgpack._REFUSED
    assert same_plain(decoded, value)


def test_unpack_data_uses_the_fast_decoder_for_a_large_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the allowance, the header-byte bound is computed and lets real data through."""
    value = {f"user:{i}": {"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(5000)}
    raw = pack_data(value)
    assert len(raw) > _limits.budget_total(len(raw), None)  # the bound is really counted
    accepted = []
    fast_unpack = _msgpack._fast_unpack

    def spy(data: bytes) -> object:
        result = fast_unpack(data)
        accepted.append(result is not _msgpack._REFUSED)
        return result

    monkeypatch.setattr(_msgpack, "_fast_unpack", spy)
    assert same_plain(unpack_data(raw), value)
    assert accepted == [True]


SPECIAL_INPUTS = {
    "duplicate key": b"\x82\xa1a\x01\xa1a\x02",
    "duplicate key, same value": b"\x82\xa1a\x01\xa1a\x01",
    "ext type": b"\xd4\x05\x01",
    "timestamp ext": b"\xd6\xff\x00\x00\x00\x01",
    "int key": b"\x81\x01\x02",
    "bytes key": b"\x81\xc4\x01k\x02",
    "array key": b"\x81\x91\x01\x02",
    "int in a longer form": b"\xcd\x00\x01",
    "str in a longer form": b"\xd9\x01a",
    "array in a longer form": b"\xdc\x00\x01\x01",
    "float32": b"\xca\x3f\x80\x00\x00",
    "trailing byte": b"\x01\x02",
    "truncated": b"\x92\x01",
    "bad utf-8": b"\xa1\xff",
    "never used type byte": b"\xc1",
}


@pytest.mark.parametrize("name", sorted(SPECIAL_INPUTS))
def test_the_fast_decoder_leaves_unusual_input_to_the_reference(name: str) -> None:
    raw = SPECIAL_INPUTS[name]
    assert _msgpack._fast_unpack(raw) is _msgpack._REFUSED
    assert decoders_agree(raw)


def test_a_container_flood_never_reaches_the_fast_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast decoder cannot count containers; the header-byte bound keeps floods away
    from it, before anything is allocated."""
    calls = []

    def fast_unpack(raw: bytes) -> object:
        calls.append(raw)
        return _msgpack._REFUSED

    monkeypatch.setattr(_msgpack, "_fast_unpack", fast_unpack)
    count = 100_000
    flood = b"\xdd" + struct.pack(">I", count) + b"\x90" * count
    with pytest.raises(SnapshotError) as caught:
        unpack_data(flood)
    assert caught.value.kind == "too_large"
    assert calls == []


@given(plain)
def test_decoding_packed_data_matches_the_reference(value: object) -> None:
    raw = pack_data(value)
    assert same_plain(unpack_data(raw), reference_unpack(raw))


@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_matches_the_reference(raw: bytes) -> None:
    assert decoders_agree(raw)


@given(plain, st.data())
def test_decoding_mutated_data_matches_the_reference(value: object, data: st.DataObject) -> None:
    raw = bytearray(pack_data(value))
    for _ in range(data.draw(st.integers(1, 3))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    assert decoders_agree(raw)


def test_negative_control_a_fast_decoder_without_the_round_trip_check_diverges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Accepting msgspec's value unchecked lets duplicate keys and ext types through,
    and the comparison above notices."""
    monkeypatch.setattr(_msgpack, "_fast_unpack", _msgpack._FAST_DECODER.decode)
    diverging = [name for name, raw in SPECIAL_INPUTS.items() if not decoders_agree(raw)]
    assert {"duplicate key", "ext type", "timestamp ext", "int key"} <= set(diverging)


def test_nan_payloads_and_signed_zero_survive_the_fast_path() -> None:
    quiet_nan = struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\x00\x01")[0]
    value = [quiet_nan, -0.0, math.inf]
    raw = pack_data(value)
    assert same_plain(unpack_data(raw), value)
