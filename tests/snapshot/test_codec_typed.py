"""Typed decoding (unpack_typed) against the reference path, msgpack-python's decoding
then pydantic's validation: the same value, types and key order, or the same error,
for any schema msgspec can state and any bytes; and the decoder's limits all hold."""

from __future__ import annotations

import struct
import types
from dataclasses import dataclass
from typing import Any, NotRequired

import msgpack
import pytest
from cbuild_helpers import broken_builds, needs_compiler
from hypothesis import event, given
from hypothesis import strategies as st
from plain_helpers import same_plain
from schema_specs import shapes, type_of
from typing_extensions import TypedDict

from statemigrate._errors import SnapshotError, ValidationError
from statemigrate._model import _accel
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


def exact_as_plain(schema: SchemaVersion, raw: bytes) -> bool:
    """Whether a value typed decoding calls exact is also what plain decoding gives,
    types and order included: a restore hands it to migration steps as such."""
    try:
        value, exact = unpack_typed(raw, form_of(schema))
    except SnapshotError:
        return True
    return not exact or same_plain(value, reference_unpack(raw))


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
    assert exact_as_plain(schema, bytes(raw))




# --- collections of flat records, read in C ------------------------------------------
#
# For these the typed decoding is shown exact by reading the bytes (records_bytes_fit
# in _cchecks.c), not by packing the value again: the same agreement must hold.


class FlatEntry(TypedDict):
    id: int
    name: str
    score: float
    tags: list[str]
    note: str | None
    extra: Any


class FlatState(TypedDict):
    entries: dict[str, FlatEntry]
    served: int


class Nested(TypedDict):
    inner: FlatState


def flat_state(**changes: Any) -> dict[str, Any]:
    entry = {"id": 1, "name": "a", "score": 1.5, "tags": ["x", "y"], "note": None,
             "extra": [1, {"k": None}]}
    entry.update(changes)
    second = {"id": 2, "name": "b", "score": 0.0, "tags": [], "note": "n", "extra": None}
    return {"entries": {"k1": entry, "k2": second}, "served": 3}


FLAT_ENTRY = (("id", 1), ("name", "a"), ("score", 1.5), ("tags", ["x"]), ("note", None),
              ("extra", None))


def _with_flat_entry(entry: Pairs) -> bytes:
    return encode({"entries": Pairs((("k", entry),)), "served": 1})


FLAT_DIFFERENT: dict[str, bytes] = {
    "int for float": pack_data(flat_state(score=1)),
    "extra key": pack_data(flat_state(more=1)),
    "missing field": _with_flat_entry(Pairs(FLAT_ENTRY[1:])),
    "keys out of order": _with_flat_entry(Pairs(tuple(reversed(FLAT_ENTRY)))),
    "two names swapped": _with_flat_entry(
        Pairs((("id", 1), ("note", "n"), ("score", 1.5), ("tags", []), ("name", "a"),
               ("extra", None)))
    ),
    "duplicate field": _with_flat_entry(Pairs((*FLAT_ENTRY[:-1], ("name", "b")))),
    "duplicate dict key": encode(
        {"entries": Pairs((("k", dict(FLAT_ENTRY)), ("k", dict(FLAT_ENTRY)))), "served": 1}
    ),
    "duplicate key under Any": _with_flat_entry(
        Pairs((*FLAT_ENTRY[:-1], ("extra", Pairs((("a", 1), ("a", 2))))))
    ),
    "int key under Any": pack_data(flat_state()).replace(b"\x81\xa1k\xc0", b"\x81\x01\xc0", 1),
    "bytes key": encode({"entries": Pairs(((b"k", dict(FLAT_ENTRY)),)), "served": 1}),
    "bytes for str": pack_data(flat_state(name=b"a")),
    "bool for int": pack_data(flat_state(id=True)),
    "ext": pack_data(flat_state()).replace(b"\xa1a", b"\xd4\x05\x01", 1),
    "ext under Any": pack_data(flat_state()).replace(b"\x81\xa1k\xc0", b"\xd4\x05\x01", 1),
    "bad utf-8": pack_data(flat_state()).replace(b"\xa1a", b"\xa1\xff", 1),
    "truncated": pack_data(flat_state())[:-1],
    "trailing byte": pack_data(flat_state()) + b"\x00",
}

# Bytes the reading takes although packing the value again would not give them back:
# each decodes exactly as the reference decoder reads them.
FLAT_EXACT: dict[str, bytes] = {
    "float32": pack_data(flat_state()).replace(b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
                                               b"\xca\x3f\xc0\x00\x00", 1),
    "int in a longer form": pack_data(flat_state()).replace(b"\xa2id\x01", b"\xa2id\xcd\x00\x01"),
    "str in a longer form": pack_data(flat_state()).replace(b"\xa1a", b"\xd9\x01a", 1),
    "list in a longer form": pack_data(flat_state()).replace(b"\x92\xa1x", b"\xdc\x00\x02\xa1x"),
}


def flat_form() -> TypedForm:
    form = form_of(schema_of(FlatState))
    assert form.layout is not None, "the C checks are not in use (see test_cchecks.py)"
    return form


def test_collections_of_flat_records_get_a_layout_and_others_none() -> None:
    flat_form()
    for root in (list[FlatEntry], dict[str, FlatEntry]):
        assert form_of(schema_of(root)).layout is not None
    for other in (State, Entry, dict[str, Entry], Nested, dict[str, list[FlatEntry]]):
        assert form_of(schema_of(other)).layout is None


@pytest.mark.parametrize("name", FLAT_DIFFERENT)
def test_flat_bytes_that_would_read_differently_are_not_taken_by_the_c_reading(
    name: str,
) -> None:
    raw = FLAT_DIFFERENT[name]
    form = flat_form()
    assert form.layout is not None
    # A repeated collection key shows in the size of the dict msgspec builds, and bad
    # UTF-8 in msgspec's refusal; the reading refuses everything else itself.
    assert (form.layout.read(raw, 10**6) is None) == (name not in ("duplicate dict key",
                                                                    "bad utf-8"))
    try:
        _, validated = unpack_typed(raw, form)
    except SnapshotError:
        validated = False
    assert not validated
    assert agree(schema_of(FlatState), raw)
    assert exact_as_plain(schema_of(FlatState), raw)


@pytest.mark.parametrize("name", FLAT_EXACT)
def test_flat_bytes_in_longer_forms_are_read_exactly(name: str) -> None:
    raw = FLAT_EXACT[name]
    schema = schema_of(FlatState)
    value, validated = unpack_typed(raw, form_of(schema))
    assert validated
    assert same_plain(value, schema.validate(reference_unpack(raw)))
    assert isinstance(value, dict)
    assert list(value["entries"]["k1"]) == list(FlatEntry.__annotations__)


def test_the_c_reading_counts_containers_against_the_budget() -> None:
    form = flat_form()
    assert form.layout is not None
    raw = pack_data(flat_state())  # 1 + 1 + 2 records x (2 maps and lists) + 2 in extra
    assert form.layout.read(raw, 8) == (2,)
    assert form.layout.read(raw, 7) is None


SCALAR_LEAVES = ("int", "float", "str", "bool", "bytes", "none")
field_names = st.sampled_from(["a", "b", "c", "tags", "ü", "x y"])
flat_fields = (
    st.sampled_from([*SCALAR_LEAVES, "any"])
    | st.tuples(st.just("optional"), st.sampled_from(SCALAR_LEAVES))
    | st.tuples(st.just("list"), st.sampled_from(SCALAR_LEAVES))
    | st.tuples(st.just("list"), st.tuples(st.just("optional"), st.sampled_from(SCALAR_LEAVES)))
)
flat_records = st.tuples(
    st.just("record"),
    st.lists(st.tuples(field_names, flat_fields, st.just(True)), max_size=4,
             unique_by=lambda field: field[0]),
)
collections_of_records = st.tuples(st.sampled_from(["list", "dict"]), flat_records)
layouts = collections_of_records | st.tuples(
    st.just("record"),
    st.lists(st.tuples(field_names, collections_of_records | flat_fields, st.just(True)),
             min_size=1, max_size=4, unique_by=lambda field: field[0]),
)


def _int_forms(value: int) -> list[bytes]:
    forms = [msgpack.packb(value)] if -(2**63) <= value < 2**64 else []
    for code, fmt, low, high in (
        (0xCC, ">B", 0, 2**8), (0xCD, ">H", 0, 2**16), (0xCE, ">I", 0, 2**32),
        (0xCF, ">Q", 0, 2**64), (0xD0, ">b", -(2**7), 2**7), (0xD1, ">h", -(2**15), 2**15),
        (0xD2, ">i", -(2**31), 2**31), (0xD3, ">q", -(2**63), 2**63),
    ):
        if low <= value < high:
            forms.append(bytes([code]) + struct.pack(fmt, value))
    return forms


def _head(count: int, fixed: int, wide: int, data: st.DataObject) -> bytes:
    forms = [bytes([wide]) + struct.pack(">H", count), bytes([wide + 1]) + struct.pack(">I", count)]
    if count < 16:
        forms.append(bytes([fixed | count]))
    return data.draw(st.sampled_from(forms))


def encode_varied(node: object, data: st.DataObject) -> bytes:
    """msgpack bytes of ``node`` (as :func:`encode` takes it), each length and number in
    any of its valid forms, not only the shortest."""
    if isinstance(node, dict):
        node = Pairs(tuple(node.items()))
    if isinstance(node, Pairs):
        return _head(len(node.items), 0x80, 0xDE, data) + b"".join(
            encode_varied(key, data) + encode_varied(value, data) for key, value in node.items
        )
    if isinstance(node, list):
        return _head(len(node), 0x90, 0xDC, data) + b"".join(
            encode_varied(item, data) for item in node
        )
    if isinstance(node, int) and not isinstance(node, bool) and _int_forms(node):
        return data.draw(st.sampled_from(_int_forms(node)))
    if isinstance(node, float):
        try:
            single = struct.pack(">f", node)
        except OverflowError:  # past float32's range
            single = b""
        if single and struct.unpack(">f", single)[0] == node and data.draw(st.booleans()):
            return b"\xca" + single
        return b"\xcb" + struct.pack(">d", node)
    if isinstance(node, str):
        text = node.encode("utf-8", "surrogatepass")
        forms = [b"\xd9" + struct.pack(">B", len(text)), b"\xda" + struct.pack(">H", len(text))]
        if len(text) < 32:
            forms.append(bytes([0xA0 | len(text)]))
        return data.draw(st.sampled_from(forms)) + text
    return encode(node)


@given(layouts, st.data())
def test_flat_records_decode_as_decoding_then_validating_does(
    spec: Any, data: st.DataObject
) -> None:
    """Collections of flat records, in any valid encoding, mostly well formed, now and
    then with a byte changed or cut off: the same value, types and order, or the same
    error, as msgpack-python's decoding and pydantic's validation."""
    schema = schema_of(type_of(spec))
    if schema.typed is None or schema.typed.layout is None:
        event("no layout")
        return
    raw = bytearray(encode_varied(describe(data, spec), data))
    twist = data.draw(st.integers(0, 9))
    if raw and twist == 0:
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif raw and twist == 1:
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    event(f"read in C: {schema.typed.layout.read(bytes(raw), 10**6) is not None}")
    assert agree(schema, bytes(raw))
    assert exact_as_plain(schema, bytes(raw))


# --- negative controls: a broken reading is caught -------------------------------------

LAYOUT_BREAKS = {
    "int read as float": (
        "if (type == 0xca) return take(cursor, 4, &bytes);",
        "if (type <= 0x7f) return 1;\n        if (type == 0xca) return take(cursor, 4, &bytes);",
    ),
    "names unchecked": ("|| memcmp(bytes, PyBytes_AS_STRING(name), (size_t)size) != 0) {",
                        ") {"),
    "any map of any size": ("!take_container(cursor, 1, &size) || size > 1",
                            "!take_container(cursor, 1, &size)"),
}


@pytest.fixture(scope="module")
def broken_readings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, types.ModuleType]:
    return broken_builds(tmp_path_factory.mktemp("broken-layout"), LAYOUT_BREAKS)


@needs_compiler
@pytest.mark.parametrize(
    ("name", "case"),
    [("int read as float", "int for float"), ("names unchecked", "two names swapped"),
     ("any map of any size", "duplicate key under Any")],
)
def test_negative_control_a_broken_reading_is_caught(
    name: str, case: str, broken_readings: dict[str, types.ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_accel, "_c", broken_readings[name])
    monkeypatch.setattr(_accel, "ACCELERATED", True)
    broken = schema_of(FlatState)
    raw = FLAT_DIFFERENT[case]
    assert not (agree(broken, raw) and exact_as_plain(broken, raw))
