"""The checks in C (statemigrate/_model/_cchecks.c) answer as the Python they stand in for.

``records_fit`` must keep exactly the records the Python loop of ``_inplace`` keeps, and
``packs_plain`` must never say yes where ormsgpack says no. Random data compares each
with its definition; a broken build of the C source (compiled here, the way the wheel
is) shows that these comparisons catch the mistakes that matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import msgpack
import ormsgpack
import pytest
from cbuild_helpers import broken_builds as build_breaks
from cbuild_helpers import compiler, needs_compiler
from hypothesis import event, given
from hypothesis import strategies as st
from typing_extensions import TypedDict

from statemigrate._model import _accel
from statemigrate._model._plaindata import _ONLY_PLAIN as ONLY_PLAIN
from statemigrate._model._plaindata import strictly_plain
from statemigrate._model._schema import SchemaVersion


def test_the_c_checks_are_in_use_where_a_compiler_built_them() -> None:
    """An install on a machine with a C compiler gets the extension (hatch_build.py);
    a wheel without it would pass every other test, only slower."""
    if compiler() is None:
        pytest.skip("no C compiler: the wheel is pure Python by design")
    assert _accel._c is not None, "the C checks were not built or not loaded"


class Entry(TypedDict):
    id: int
    name: str
    score: float | None
    tags: list[str]
    marks: list[int | None]
    flag: bool
    blob: bytes
    extra: Any


class Entries(TypedDict):
    entries: dict[str, Entry]
    rows: list[Entry]
    by_number: dict[int, Entry]
    by_anything: dict[Any, Entry]


def schema(*, accelerated: bool, type_: object = None) -> SchemaVersion:
    """The schema of ``type_`` (``Entries`` by default), its checkers made with the C
    loop in use or not."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_accel, "ACCELERATED", accelerated)
        made = SchemaVersion.create("c", 1, Entries if type_ is None else type_)
    assert made.in_place is not None
    return made


FIELDS = ("id", "name", "score", "tags", "marks", "flag", "blob", "extra")


class Text(str):
    """A str subclass: pydantic makes a str of it, so the checker declines it."""


SHARED_LIST: list[str] = ["held elsewhere"]

# What each field may hold: values that fit (and are plain data), then values that do
# not fit, or fit but are not plain data (an int past 64 bits, a lone surrogate).
FITTING: dict[str, list[Callable[[], object]]] = {
    "id": [lambda: 1, lambda: -(2**63)],
    "name": [lambda: "n", lambda: "é\U0001f600"],
    "score": [lambda: 1.5, lambda: None],
    "tags": [lambda: ["a", "b"], lambda: []],
    "marks": [lambda: [1, None]],
    "flag": [lambda: True],
    "blob": [lambda: b"x"],
    "extra": [lambda: None, lambda: {"any": [1]}],
}
MISFITS: dict[str, list[Callable[[], object]]] = {
    "id": [lambda: -(2**70), lambda: True, lambda: 1.0, lambda: None],
    "name": [lambda: Text("n"), lambda: b"n", lambda: "a\ud800"],
    "score": [lambda: 1, lambda: "1.5"],
    "tags": [lambda: ("a",), lambda: ["a", 1], lambda: [None], lambda: SHARED_LIST,
             lambda: [Text("a")], lambda: ["\udfff"]],
    "marks": [lambda: [True], lambda: [1.0], lambda: None],
    "flag": [lambda: 1, lambda: None],
    "blob": [lambda: bytearray(b"x"), lambda: "x"],
    "extra": [lambda: SHARED_LIST, lambda: (1,), lambda: {1: "an int key"}, lambda: 2**64,
              lambda: ["\ud800"]],
}


@st.composite
def records(draw: st.DrawFn, *, clean: bool) -> Callable[[], object]:
    """A record to be built fresh. Unless ``clean``: a value that does not fit or is
    not plain now and then, fields shuffled, one missing or one added, keys that are a
    str subclass, or no dict at all."""
    fields = []
    for name in FIELDS:
        misfit = not clean and draw(st.integers(0, 5)) == 0
        fields.append((name, draw(st.sampled_from((MISFITS if misfit else FITTING)[name]))))
    twist = -1 if clean else draw(st.integers(0, 12))
    if twist == 0:
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    elif twist == 1:
        fields.append(("more", lambda: 1))
    elif twist == 2:
        fields.reverse()
    elif twist == 3:
        name, make = fields[0]
        fields[0] = (Text(name), make)
    elif twist == 4:
        return lambda: None
    return lambda: {name: make() for name, make in fields}


@st.composite
def states(draw: st.DrawFn) -> Callable[[], object]:
    """A state built fresh each call, so that each checker gets data only its box holds
    (a record shared between two keys is shared within one build)."""
    clean = draw(st.booleans())  # every record fits: half the cases
    keys = st.sampled_from(["k1", "k2", "k3"] if clean else ["k1", "k2", "k\udc00", 4])
    keyed = draw(st.lists(st.tuples(keys, records(clean=clean)), max_size=4))
    rows = draw(st.lists(records(clean=clean), max_size=3))
    numbers = st.sampled_from([1, 2] if clean else [1, 2, "3", True])
    numbered = draw(st.lists(st.tuples(numbers, records(clean=clean)), max_size=2))
    share = not clean and draw(st.integers(0, 5)) == 0

    def build() -> object:
        entries = {key: make() for key, make in keyed}
        if share and len(entries) >= 1:
            first = next(iter(entries.values()))
            entries["twin"] = first
        return {
            "entries": entries,
            "rows": [make() for make in rows],
            "by_number": {key: make() for key, make in numbered},
            "by_anything": {key: make() for key, make in numbered},
        }

    return build


C_SCHEMA = schema(accelerated=True)
PYTHON_SCHEMA = schema(accelerated=False)


class PlainEntries(TypedDict):
    """Entries without the int-keyed dict, which plain data never fills: the schema a
    proving checker is made for."""

    entries: dict[str, Entry]
    rows: list[Entry]
    by_anything: dict[Any, Entry]


def without_numbers(build: Callable[[], object]) -> Callable[[], object]:
    def built() -> object:
        state = build()
        assert isinstance(state, dict)
        del state["by_number"]
        return state

    return built


def verdicts(build: Callable[[], object], checked: SchemaVersion) -> tuple[bool, bool]:
    """What the checker says of fresh data, with and without the plain-keys promise."""
    assert checked.in_place is not None
    return checked.in_place([build()]), checked.in_place([build()], plain=True)


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
@given(states())
def test_the_c_loop_keeps_exactly_the_records_the_python_loop_keeps(
    build: Callable[[], object],
) -> None:
    python = verdicts(build, PYTHON_SCHEMA)
    event("kept" if python[0] else "declined")
    in_c = verdicts(build, C_SCHEMA)
    if holds_text_keys(build()):
        # The plain-keys promise is broken (the caller vouches for exact str keys): the
        # Python loop takes the caller's word, the C loop tests the keys anyway.
        assert in_c[0] == python[0] and in_c[1] <= python[1]
    else:
        assert in_c == python


def holds_text_keys(value: object) -> bool:
    """Whether a dict anywhere in ``value`` has a key of a str subclass."""
    if isinstance(value, dict):
        return any(isinstance(key, Text) or holds_text_keys(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_text_keys(item) for item in value)
    return False


def test_fitting_records_are_kept_and_each_misfit_is_declined_in_c() -> None:
    """The comparison above is only as good as its cases: these must go both ways."""
    def entry(**changes: object) -> dict[str, object]:
        record = {"id": 1, "name": "n", "score": None, "tags": ["a"], "marks": [None, 2],
                  "flag": False, "blob": b"", "extra": {"x": (1,)}}
        record.update(changes)
        return record

    def kept(**changes: object) -> bool:
        assert C_SCHEMA.in_place is not None
        return C_SCHEMA.in_place(
            [{"entries": {"k": entry(**changes)}, "rows": [entry()], "by_number": {1: entry()},
              "by_anything": {(1,): entry()}}]  # built in the box: it holds the only reference
        )

    assert kept()
    for change in ({"id": True}, {"score": 1}, {"name": Text("n")}, {"tags": ("a",)},
                   {"tags": SHARED_LIST}, {"marks": [1.0]}, {"blob": bytearray()}):
        assert not kept(**change), change


# --- the proof of plain data that fits, in one walk ---------------------------------


def proving_schema() -> SchemaVersion:
    made = schema(accelerated=True, type_=PlainEntries)
    assert made.in_place_plain is not None
    return made


def proof_and_reference(build: Callable[[], object], checked: SchemaVersion) -> tuple[bool, bool]:
    """The proving checker's verdict, and the two checks it stands in for."""
    assert checked.in_place_plain is not None and PLAIN_REFERENCE.in_place is not None
    proof = checked.in_place_plain([build()])
    reference = PLAIN_REFERENCE.in_place([build()]) and strictly_plain(build())
    return proof, reference


if _accel.ACCELERATED:
    PROVING = proving_schema()
PLAIN_REFERENCE = SchemaVersion.create("c", 1, PlainEntries)


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
@given(states())
def test_the_proof_holds_exactly_when_the_data_fits_in_place_and_packs_as_it_is(
    build: Callable[[], object],
) -> None:
    proof, reference = proof_and_reference(without_numbers(build), PROVING)
    event("proven" if proof else "not proven")
    assert proof == reference


def test_schemas_plain_data_cannot_fill_get_no_proving_checker() -> None:
    class Numbered(TypedDict):
        by_number: dict[int, str]

    assert SchemaVersion.create("c", 1, Numbered).in_place_plain is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_accel, "ACCELERATED", False)
        assert SchemaVersion.create("c", 1, PlainEntries).in_place_plain is None


# --- packs_plain -------------------------------------------------------------------


def ormsgpack_packs(value: object) -> bool:
    try:
        ormsgpack.packb(value, option=ONLY_PLAIN)
    except TypeError:
        return False
    return True


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=3)
    | st.text(max_size=3) | st.sampled_from(["\ud800", "a\udfff", Text("t"), (1,), bytearray()])
)
plain_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=2) | st.sampled_from(["\udc00", Text("k"), 1]), inner,
                      max_size=3),
    max_leaves=8,
)


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def within_its_limits(value: object, depth: int = 0) -> bool:
    """Plain data packs_plain judges itself: exact types, ints of 64 signed bits, up
    to 128 levels of containers. ormsgpack takes more (a bytearray, a bigger int)."""
    if type(value) is int:
        return -(2**63) <= value < 2**63
    if isinstance(value, (list, dict)) and type(value) in (list, dict):
        items = list(value.values()) if isinstance(value, dict) else value
        return depth < 128 and all(within_its_limits(item, depth + 1) for item in items)
    return type(value) in (type(None), bool, float, str, bytes)


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
@given(plain_values)
def test_packs_plain_says_yes_only_where_ormsgpack_packs_and_always_within_its_limits(
    value: object,
) -> None:
    packs = ormsgpack_packs(value)
    event("plain" if packs else "not plain")
    assert _accel.packs_plain(value) == (packs and within_its_limits(value))
    assert strictly_plain(value) == packs


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
def test_packs_plain_leaves_deep_nesting_and_big_ints_to_ormsgpack() -> None:
    assert _accel.packs_plain(nested(128)) and not _accel.packs_plain(nested(129))
    assert strictly_plain(nested(129)) and not strictly_plain(nested(300))
    assert not _accel.packs_plain(2**63) and strictly_plain(2**64 - 1)
    assert not strictly_plain(2**64)


# --- negative controls: a broken C build is caught ---------------------------------

BREAKS = {
    "sharing ignored": ("Py_REFCNT(record) != 1", "0"),
    "bool taken for int": (
        "return Py_TYPE(value) == type && (!plain || value_plain(value, 0));",
        "return (Py_TYPE(value) == type || PyBool_Check(value))"
        " && (!plain || value_plain(value, 0));",
    ),
    "records taken as plain": (
        "return Py_TYPE(value) == type && (!plain || value_plain(value, 0));",
        "return Py_TYPE(value) == type;",
    ),
    "surrogates packed": ("return 0;  /* UTF-8 cannot encode it: ormsgpack refuses */", "break;"),
}


@pytest.fixture(scope="module")
def broken_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, types.ModuleType]:
    return build_breaks(tmp_path_factory.mktemp("broken"), BREAKS)


@needs_compiler
@pytest.mark.parametrize("name", ["sharing ignored", "bool taken for int"])
def test_negative_control_a_broken_records_loop_is_caught(
    name: str, broken_builds: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_accel, "_c", broken_builds[name])
    monkeypatch.setattr(_accel, "ACCELERATED", True)
    broken = SchemaVersion.create("c", 1, Entries)

    def shared() -> object:
        record = {"id": 1, "name": "n", "score": None, "tags": [], "marks": [], "flag": True,
                  "blob": b"", "extra": None}
        return {"entries": {"a": record, "b": record}, "rows": [], "by_number": {},
                "by_anything": {}}

    def with_bool() -> object:
        return {"entries": {"a": {"id": True, "name": "n", "score": None, "tags": [],
                                  "marks": [], "flag": True, "blob": b"", "extra": None}},
                "rows": [], "by_number": {}, "by_anything": {}}

    cases = [shared, with_bool]
    assert any(verdicts(case, broken) != verdicts(case, PYTHON_SCHEMA) for case in cases)


@needs_compiler
def test_negative_control_a_records_loop_that_takes_any_text_as_plain_is_caught(
    broken_builds: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_accel, "_c", broken_builds["records taken as plain"])
    broken = proving_schema()

    def surrogate() -> object:
        return {"entries": {"a": {"id": 1, "name": "a\ud800", "score": None, "tags": [],
                                  "marks": [], "flag": True, "blob": b"", "extra": None}},
                "rows": [], "by_anything": {}}

    proof, reference = proof_and_reference(surrogate, broken)
    assert (proof, reference) == (True, False)


@needs_compiler
def test_negative_control_a_broken_plain_check_is_caught(
    broken_builds: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_accel, "_c", broken_builds["surrogates packed"])
    monkeypatch.setattr(_accel, "ACCELERATED", True)
    value = {"name": "a\ud800"}
    assert _accel.packs_plain(value) != (ormsgpack_packs(value) and within_its_limits(value))


# --- records_bytes_fit: its arguments, and bytes of any kind ----------------------------

FLAT_SPEC = ((b"id", b"tags"), b"el", b"is")


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
@pytest.mark.parametrize(
    ("root", "collections"),
    [
        (None, ()),
        (None, ((True, ((b"id",), b"ee", b"i")),)),
        (None, ((True, ((b"id",), b"c", b"*")),)),  # a collection inside a collection
        (None, ((True, (("id",), b"e", b"i")),)),
        (None, ((True, ((b"id",), b"e", b"q")),)),
        (((b"a",), b"x", b"i"), ((True, FLAT_SPEC),)),
        ("root", ((True, FLAT_SPEC),)),
        (None, ((True, ((b"id", b"id"), b"ee", b"ii")),)),  # a name twice
        (None, ((1, FLAT_SPEC),)),  # a flag that is not a bool
    ],
)
def test_records_bytes_fit_refuses_a_malformed_layout(root: object, collections: object) -> None:
    with pytest.raises(ValueError, match="layout is not well formed"):
        _accel._c.records_bytes_fit(b"\x80", root, collections, 10)


@pytest.mark.skipif(not _accel.ACCELERATED, reason="the C checks are not built here")
@given(st.binary(max_size=64), st.integers(0, 8))
def test_records_bytes_fit_reads_any_bytes_without_harm(raw: bytes, budget: int) -> None:
    """Random bytes, and every prefix of a fitting encoding: an answer, never a crash
    or a read past the end (which the allocator's guard would not always show, but a
    wrong size would)."""
    good = ormsgpack.packb({"k": {"id": 1, "tags": ["a", "b"]}})
    for cut in range(len(good)):
        assert _accel._c.records_bytes_fit(good[:cut], None, ((True, FLAT_SPEC),), 9) is None
    sizes = _accel._c.records_bytes_fit(raw, None, ((True, FLAT_SPEC),), budget)
    if sizes is not None:  # b"\x80", say: no records at all
        assert sizes == (len(msgpack.unpackb(raw)),)
    assert _accel._c.records_bytes_fit(good, None, ((True, FLAT_SPEC),), 3) == (1,)
    assert _accel._c.records_bytes_fit(good, None, ((True, FLAT_SPEC),), 2) is None


@pytest.mark.skipif(not _accel.built(), reason="the C checks are not built here")
@pytest.mark.parametrize(
    ("setting", "in_use"),
    [("", True), ("0", True), ("false", True), ("No", True), ("off", True),
     ("1", False), ("true", False), ("yes", False)],
)
def test_statemigrate_pure_python_turns_the_c_checks_off_only_when_it_says_so(
    setting: str, in_use: bool
) -> None:
    probe = "from statemigrate._model import _accel; print(_accel.ACCELERATED)"
    env = {**os.environ, "STATEMIGRATE_PURE_PYTHON": setting}
    answer = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert answer == str(in_use)
