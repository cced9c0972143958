"""Typed decoding (unpack_typed) against the reference path, msgpack-python's decoding
then pydantic's validation: the same value, types and key order, or the same error,
for any schema msgspec can state and any bytes; and the decoder's limits all hold."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NotRequired

import msgpack
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from plain_helpers import same_plain
from schema_specs import shapes, type_of
from typing_extensions import TypedDict

from statemigrate._errors import SnapshotError, ValidationError
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._typed import TypedForm
from statemigrate._snapshot import _msgpack
from statemigrate._snapshot._msgpack import pack_data, reference_unpack, unpack_data, unpack_typed


class Entry(TypedDict):
    id: int
    name: str
    score: float
    tags: list[str]
    note: NotRequired[str | None]


class State(TypedDict):
    entries: dict[str, Entry]
    served: int


def schema_of(type_: object) -> SchemaVersion:
    return SchemaVersion.create("c", 1, type_)


def form_of(schema: SchemaVersion) -> TypedForm:
    assert schema.typed is not None
    return schema.typed


def reference(schema: SchemaVersion, raw: bytes) -> tuple[str, object]:
    """What a restore made of ``raw`` before typed decoding: decode, then validate."""
    try:
        plain = reference_unpack(raw)
    except SnapshotError as exc:
        return ("snapshot-error", (exc.kind, str(exc)))
    try:
        return ("value", schema.validate(plain))
    except ValidationError as exc:
        return ("invalid", str(exc))


def typed(schema: SchemaVersion, raw: bytes) -> tuple[str, object]:
    """What a restore makes of ``raw`` now: typed decoding, validation only when needed."""
    try:
        value, validated = unpack_typed(raw, form_of(schema))
    except SnapshotError as exc:
        return ("snapshot-error", (exc.kind, str(exc)))
    if validated:
        return ("value", value)
    try:
        return ("value", schema.validate(value))
    except ValidationError as exc:
        return ("invalid", str(exc))


def agree(schema: SchemaVersion, raw: bytes) -> bool:
    a, b = typed(schema, raw), reference(schema, raw)
    return a[0] == b[0] and (same_plain(a[1], b[1]) if a[0] == "value" else a[1] == b[1])


def state(**changes: Any) -> dict[str, Any]:
    entry = {"id": 1, "name": "a", "score": 1.5, "tags": ["x", "y"]}
    entry.update(changes)
    return {"entries": {"k1": entry, "k2": {"id": 2, "name": "b", "score": 0.0, "tags": []}},
            "served": 3}


# --- what is decoded straight into the schema ----------------------------------------


def test_well_formed_data_is_validated_while_decoding() -> None:
    schema = schema_of(State)
    raw = pack_data(state(note=None))
    value, validated = unpack_typed(raw, form_of(schema))
    assert validated
    assert same_plain(value, schema.validate(reference_unpack(raw)))


@dataclass(frozen=True)
class Pairs:
    """A msgpack map written pair by pair, so that a key may repeat."""

    items: tuple[tuple[object, object], ...]


def encode(node: object) -> bytes:
    """msgpack bytes of plain data where maps may be :class:`Pairs`."""
    if isinstance(node, Pairs):
        count = len(node.items)
        head = bytes([0x80 | count]) if count < 16 else b"\xde" + struct.pack(">H", count)
        return head + b"".join(encode(key) + encode(value) for key, value in node.items)
    if isinstance(node, dict):
        return encode(Pairs(tuple(node.items())))
    if isinstance(node, list):
        count = len(node)
        head = bytes([0x90 | count]) if count < 16 else b"\xdc" + struct.pack(">H", count)
        return head + b"".join(encode(item) for item in node)
    packed: bytes = msgpack.packb(node, use_bin_type=True)
    return packed


def _with_entry(entry: Pairs) -> bytes:
    return encode({"entries": Pairs((("k", entry),)), "served": 1})


ENTRY = (("id", 1), ("name", "a"), ("score", 1.5), ("tags", ["x"]))

# Bytes whose typed decoding would differ from the reference path's result: each one
# must be decoded again and validated (or refused) as before.
DIFFERENT: dict[str, bytes] = {
    "int for float": pack_data(state(score=1)),
    "extra key": pack_data(state(extra=1)),
    "keys out of order": _with_entry(Pairs(tuple(reversed(ENTRY)))),
    "duplicate field": _with_entry(Pairs((*ENTRY, ("name", "b")))),
    "duplicate optional field": _with_entry(Pairs((*ENTRY, ("note", "n"), ("note", None)))),
    "duplicate dict key": encode(
        {"entries": Pairs((("k", dict(ENTRY)), ("k", dict(ENTRY)))), "served": 1}
    ),
    "bytes key": encode({"entries": Pairs(((b"k", dict(ENTRY)),)), "served": 1}),
    "bytes for str": pack_data(state(name=b"a")),
    "missing field": _with_entry(Pairs(ENTRY[1:])),
    "bool for int": pack_data(state(id=True)),
    "ext": pack_data(state()).replace(b"\xa1a", b"\xd4\x05\x01", 1),
    "float32": pack_data(state()).replace(b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
                                          b"\xca\x3f\xc0\x00\x00", 1),
    "int in a longer form": pack_data(state()).replace(b"\xa2id\x01", b"\xa2id\xcd\x00\x01", 1),
    "bad utf-8": pack_data(state()).replace(b"\xa1a", b"\xa1\xff", 1),
    "truncated": pack_data(state())[:-1],
    "trailing byte": pack_data(state()) + b"\x00",
}


@pytest.mark.parametrize("name", DIFFERENT)
def test_bytes_typed_decoding_would_read_differently_take_the_reference_path(name: str) -> None:
    schema = schema_of(State)
    raw = DIFFERENT[name]
    try:
        _, validated = unpack_typed(raw, form_of(schema))
    except SnapshotError:
        validated = False
    assert not validated
    assert agree(schema, raw)


def test_negative_control_without_the_order_check_keys_out_of_order_diverge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = schema_of(State)
    raw = DIFFERENT["keys out of order"]
    monkeypatch.setattr(TypedForm, "in_order", lambda self, value: True)
    assert not agree(schema, raw)


def test_negative_control_without_the_round_trip_check_a_duplicate_diverges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = schema_of(State)
    raw = DIFFERENT["duplicate dict key"]
    form = form_of(schema)
    monkeypatch.setattr(
        _msgpack, "_fast_unpack", lambda data, decoder=None: form.decoder.decode(data)
    )
    assert not agree(schema, raw)


# --- the decoder's limits ----------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"


LIMITS: dict[str, tuple[object, bytes, str]] = {
    "nesting past the cap": (Any, _nested(2000), "too_deep"),
    "nesting past the cap in a list": (list[Any], _nested(2000), "too_deep"),
    "container flood": (
        list[list[int]], b"\xdd" + struct.pack(">I", 100_000) + b"\x90" * 100_000, "too_large"
    ),
    "duplicate key": (dict[str, int], b"\x82\xa1a\x01\xa1a\x02", "invalid_data"),
    "ext type": (Any, b"\xd4\x05\x01", "invalid_data"),
    "timestamp ext": (Any, b"\xd6\xff\x00\x00\x00\x01", "invalid_data"),
    "int key": (dict[str, int], b"\x81\x01\x02", "invalid_data"),
    "bad utf-8": (str, b"\xa1\xff", "invalid_data"),
    "huge length prefix": (list[int], b"\xdd\xff\xff\xff\xff", "invalid_data"),
    "trailing byte": (int, b"\x01\x02", "invalid_data"),
}


@pytest.mark.parametrize("name", LIMITS)
def test_every_limit_holds_with_the_same_error(name: str) -> None:
    type_, raw, kind = LIMITS[name]
    with pytest.raises(SnapshotError) as caught:
        unpack_typed(raw, form_of(schema_of(type_)))
    with pytest.raises(SnapshotError) as expected:
        unpack_data(raw)
    assert caught.value.kind == kind
    assert str(caught.value) == str(expected.value)


def test_a_container_flood_never_reaches_the_typed_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    fast_unpack = _msgpack._fast_unpack

    def spy(raw: bytes, decoder: Any = None) -> object:
        calls.append(raw)
        return fast_unpack(raw, decoder)

    monkeypatch.setattr(_msgpack, "_fast_unpack", spy)
    _, raw, _ = LIMITS["container flood"]
    with pytest.raises(SnapshotError):
        unpack_typed(raw, form_of(schema_of(list[list[int]])))
    assert calls == []


# --- any schema, any data -----------------------------------------------------------

LEAVES = ("int", "float", "str", "bool", "bytes", "none", "any")
specs = shapes(st.sampled_from(LEAVES), st.sampled_from(["a", "b", "c", "tags", "ü", "x y"]))


LEAF_VALUES: dict[str, st.SearchStrategy[object]] = {
    "int": st.integers(-(2**63), 2**64 - 1) | st.booleans(),
    "float": st.floats() | st.integers(-5, 5),
    "str": st.text(max_size=4) | st.binary(max_size=2),
    "bool": st.booleans() | st.integers(0, 1),
    "bytes": st.binary(max_size=4) | st.text(max_size=2),
    "none": st.none(),
}
odd_values: st.SearchStrategy[object] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=3) | st.binary(max_size=2),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=2) | st.binary(max_size=1), inner, max_size=3),
    max_leaves=6,
)


def describe(data: st.DataObject, spec: Any) -> object:
    """Data for ``spec`` as :func:`encode` takes it; one node in ten is something else."""
    if data.draw(st.integers(0, 9)) == 0:
        return data.draw(odd_values)
    if spec == "any":
        return data.draw(odd_values)
    if isinstance(spec, str):
        return data.draw(LEAF_VALUES[spec])
    kind, inner = spec
    if kind == "list":
        return [describe(data, inner) for _ in range(data.draw(st.integers(0, 3)))]
    if kind == "optional":
        return None if data.draw(st.booleans()) else describe(data, inner)
    if kind == "dict":
        keys = data.draw(st.lists(st.text(max_size=3), max_size=3))  # repeats allowed
        return Pairs(tuple((key, describe(data, inner)) for key in keys))
    fields = [
        (name, describe(data, shape))
        for name, shape, required in inner
        if required or data.draw(st.booleans())
    ]
    twist = data.draw(st.integers(0, 9))
    if twist == 0 and fields:
        fields.pop(data.draw(st.integers(0, len(fields) - 1)))  # a field missing
    elif twist == 1:
        fields.append(("extra", 1))
    elif twist == 2:
        fields.reverse()
    elif twist == 3 and fields:
        fields.append(fields[0])  # a field twice
    return Pairs(tuple(fields))


@given(specs, st.data())
def test_typed_decoding_gives_what_decoding_then_validating_gives(
    spec: Any, data: st.DataObject
) -> None:
    """For any schema with a typed form and any bytes, mostly well formed: the same
    value, with the same types and key order, or the same error."""
    schema = schema_of(type_of(spec))
    if schema.typed is None:
        event("no typed form")
        return
    raw = bytearray(encode(describe(data, spec)))
    if raw and data.draw(st.integers(0, 9)) == 0:
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        event(f"validated while decoding: {unpack_typed(bytes(raw), schema.typed)[1]}")
    except SnapshotError:
        event("refused")
    assert agree(schema, bytes(raw))


