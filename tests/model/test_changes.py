"""What changed in a component: partial states, the records protocol, record keys."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

import pydantic
import pytest
from typing_extensions import TypedDict

from statemigrate import Registry, Service, TrackedDict
from statemigrate._errors import ChangeTrackingError, RegistrationError
from statemigrate._model import _inplacewatch
from statemigrate._model._changes import (
    ComponentChanges,
    follows_records_protocol,
    key_codec,
    records_protocol_gap,
)
from statemigrate._model._inplacewatch import InPlaceWatch


class State(TypedDict):
    entries: dict[str, int]
    counts: dict[int, str]
    label: str


REGISTRY = Registry()
REGISTRY.add_schema("c", 1, State)


@REGISTRY.migratable("c", version=1)
class Tracked:
    def __init__(self) -> None:
        self.entries: TrackedDict[str, int] = TrackedDict()
        self.counts: dict[int, str] = {}  # not tracked: travels whole
        self.label = ""


@REGISTRY.migratable("c", version=1)
class Untracked:
    def __init__(self) -> None:
        self.entries: dict[str, int] = {}
        self.counts: dict[int, str] = {}
        self.label = ""


@REGISTRY.migratable("c", version=1)
class Custom:
    """Its own export/import, and the records protocol for only one of two dict fields."""

    def __init__(self) -> None:
        self._entries: TrackedDict[str, int] = TrackedDict()

    def export_state(self) -> dict[str, Any]:
        return {"entries": dict(self._entries), "counts": {}, "label": ""}

    def import_state(self, state: dict[str, Any]) -> None:
        self._entries = TrackedDict(state["entries"])

    def tracked_records(self) -> dict[str, TrackedDict[str, int]]:
        return {"entries": self._entries}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        return {k: self._entries[k] for k in keys if k in self._entries}


def test_tracked_fields_travel_as_records_and_the_others_whole() -> None:
    obj = Tracked()
    obj.entries.update(a=1, b=2)
    obj.counts[1] = "one"
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None and changes.record_fields == ("entries",)
    changes.open()
    obj.entries["a"] = 10
    del obj.entries["b"]
    obj.label = "x"
    assert changes.pending() == 2
    partial = changes.take()
    assert partial.state == {"entries": {"a": 10}, "counts": {1: "one"}, "label": "x"}
    assert partial.deleted == {"entries": ["b"]}
    assert partial.records == 2
    assert changes.pending() == 0
    changes.close()
    assert not obj.entries.tracking


def test_a_component_that_cannot_tell_what_changed_gets_no_tracking() -> None:
    assert ComponentChanges.attach(Untracked(), registry=REGISTRY) is None
    # The records protocol must cover every field of the schema.
    assert ComponentChanges.attach(Custom(), registry=REGISTRY) is None


class NotTracked(Custom):
    def tracked_records(self) -> dict[str, Any]:
        return {"entries": dict(self._entries), "counts": {}, "label": TrackedDict()}


class Overtracked(Custom):
    def tracked_records(self) -> dict[str, TrackedDict[Any, Any]]:
        names = ("entries", "counts", "label", "extra")
        return {name: TrackedDict() for name in names}


@pytest.mark.parametrize(
    ("obj", "gap"),
    [
        (Custom(), "its schema's field 'counts' is not in tracked_records(): under the records"
         " protocol every field of the schema is a record field"),
        (NotTracked(), "tracked_records() gives dict for 'entries', not a TrackedDict"),
        (Overtracked(), "tracked_records() names 'extra', not a field of its schema"),
        (Untracked(), "it has no tracked_records() and export_records()"),
    ],
    ids=["a field left out", "a plain dict", "a field too many", "no protocol"],
)
def test_a_component_off_the_records_protocol_is_told_where(obj: object, gap: str) -> None:
    schema = REGISTRY.schema_for("c", 1)
    assert records_protocol_gap(obj, schema) == gap
    assert follows_records_protocol(obj, schema) is None


class Receiving(Custom):
    """Both halves of the records protocol, for one of the schema's fields only."""

    def import_records(
        self, field: str, records: dict[str, int], deleted: Iterable[str], moved: int = 0
    ) -> None:
        raise AssertionError("no delta is ever written for this component")


def test_pre_copy_names_the_field_the_records_protocol_leaves_out() -> None:
    service = Service("svc", registry=REGISTRY)
    service.register(Receiving())
    pieces = service.precopy_source()
    pieces.start()
    assert not pieces.deltas_possible
    assert pieces.why_no_deltas == (
        "c/default cannot tell what changed: its schema's field 'counts' is not in"
        " tracked_records(): under the records protocol every field of the schema is a"
        " record field (docs/precopy.md)"
    )
    pieces.close()


def test_replacing_a_tracked_field_while_tracking_is_refused() -> None:
    obj = Tracked()
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    obj.entries = TrackedDict({"new": 1})
    with pytest.raises(RegistrationError, match="no longer the TrackedDict"):
        changes.take()


class Color(enum.IntEnum):
    RED = 1


class Keyed(TypedDict):
    by_int: dict[int, str]
    by_str: dict[str, str]
    by_color: dict[Color, str]


REGISTRY.add_schema("keyed", 1, Keyed)


@REGISTRY.migratable("keyed", version=1)
class KeyedStore:
    def __init__(self) -> None:
        self.by_int: TrackedDict[Any, str] = TrackedDict()
        self.by_str: TrackedDict[Any, str] = TrackedDict()
        self.by_color: TrackedDict[Any, str] = TrackedDict()


def keyed_pre_copy(
    before: Callable[[KeyedStore], None], after: Callable[[KeyedStore], None]
) -> tuple[KeyedStore, KeyedStore]:
    """A pre-copy of a KeyedStore: ``before`` runs before round 0, ``after`` between
    it and the delta; returns the source's store and the target's."""
    source, target = Service("keys", registry=REGISTRY), Service("keys", registry=REGISTRY)
    old, new = source.register(KeyedStore()), target.register(KeyedStore())
    before(old)
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        after(old)
        target.restore(pieces.delta().to_bytes())
    return old, new


def test_a_delta_carries_the_key_the_dict_holds_not_the_one_written() -> None:
    """``d[1.0] = v`` where ``d`` holds ``1`` keeps the key ``1``: the change log notes
    ``1.0``, and the delta must carry ``1``, as a full snapshot would."""
    obj = KeyedStore()
    obj.by_int[1] = "a"
    obj.by_color[Color.RED] = "a"
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    obj.by_int[1.0] = "b"
    obj.by_color[1] = "b"
    partial = changes.take()
    assert [(key, type(key)) for key in partial.state["by_int"]] == [(1, int)]
    assert [(key, type(key)) for key in partial.state["by_color"]] == [(Color.RED, Color)]
    changes.close()


def test_a_key_written_as_an_equal_key_of_another_type_restores_from_a_delta() -> None:
    def before(store: KeyedStore) -> None:
        store.by_int[1] = "a"
        store.by_color[Color.RED] = "a"

    def after(store: KeyedStore) -> None:
        store.by_int[1.0] = "b"  # was refused: "expected an int, found float"
        store.by_color[1] = "b"

    old, new = keyed_pre_copy(before, after)
    assert dict(new.by_int) == dict(old.by_int) == {1: "b"}
    assert dict(new.by_color) == dict(old.by_color) == {Color.RED: "b"}
    assert type(next(iter(new.by_color))) is Color


def delete_as(field: str, key: Any, *, written: bool = False) -> Callable[[KeyedStore], None]:
    """Delete ``key`` from ``field`` (``written``: write it first, between two pieces)."""

    def after(store: KeyedStore) -> None:
        records = getattr(store, field)
        if written:
            records[key] = "between the pieces"
        del records[key]

    return after


DELETIONS = {
    # an equal key of another type: was refused, "expected an int, found float"
    "1.0 under int keys": delete_as("by_int", 1.0),
    # an IntEnum key deleted as its int: was refused, "expected a Color key"
    "1 under IntEnum keys": delete_as("by_color", 1),
    # no str equals it: the delta committed, and every restore of it failed
    "an int under str keys": delete_as("by_str", 7, written=True),
    # no int equals it, its text validates into 7: was refused, "expected an int"
    "a str under int keys": delete_as("by_int", "7", written=True),
}


@pytest.mark.parametrize("case", sorted(DELETIONS))
def test_deleted_keys_are_sent_as_the_receiver_holds_them(case: str) -> None:
    """A key deleted as an equal key of another type deletes the receiver's key; one
    no key of the field's type equals (written and deleted between two pieces) is
    left out: no receiver holds it."""

    def before(store: KeyedStore) -> None:
        store.by_int.update({1: "a", 7: "seven"})
        store.by_str["s"] = "a"
        store.by_color[Color.RED] = "a"

    old, new = keyed_pre_copy(before, DELETIONS[case])
    assert dict(new.by_int) == dict(old.by_int)
    assert dict(new.by_str) == dict(old.by_str) == {"s": "a"}
    assert dict(new.by_color) == dict(old.by_color)
    assert 7 in new.by_int  # "7" deleted no key of the receiver's


def test_record_keys_go_through_the_key_type() -> None:
    schema = REGISTRY.schema_for("c", 1)
    assert key_codec(schema, "entries").adapter is None  # str keys: as they are
    ints = key_codec(schema, "counts")
    # Written as the records' keys are: as text (msgpack maps hold str keys).
    assert ints.export([1, 2], schema=schema, field="counts") == ["1", "2"]
    assert ints.validate(["3", 4]) == [3, 4]
    assert key_codec(schema, "counts") is ints  # built once


class Entries(TypedDict):
    entries: dict[str, int]


@REGISTRY.migratable("e", version=1)
class Recorded:
    """The records protocol for its one field; ``hides`` names a key its
    export_records leaves out, as a buggy component would."""

    def __init__(self, hides: str | None = None) -> None:
        self._entries: TrackedDict[str, int] = TrackedDict()
        self._hides = hides

    def export_state(self) -> dict[str, Any]:
        return {"entries": dict(self._entries)}

    def import_state(self, state: dict[str, Any]) -> None:
        self._entries = TrackedDict(state["entries"])

    def tracked_records(self) -> dict[str, TrackedDict[str, int]]:
        return {"entries": self._entries}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        return {k: self._entries[k] for k in keys if k in self._entries and k != self._hides}

    def import_records(self, field: str, records: dict[str, int], deleted: list[str]) -> None:
        self._entries.update(records)
        for key in deleted:
            self._entries.pop(key, None)


REGISTRY.add_schema("e", 1, Entries)


@pytest.mark.parametrize("hides", [None, "b"])
def test_keys_export_records_leaves_out_are_refused(hides: str | None) -> None:
    obj = Recorded(hides)
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    obj._entries.update(a=1, b=2)
    if hides is None:
        assert changes.take().state == {"entries": {"a": 1, "b": 2}}
    else:
        with pytest.raises(RegistrationError, match=r"left out 1 of the 2 keys asked for \('b'\)"):
            changes.take()


class DeletedMeanwhile(Recorded):
    """A component whose key ``b`` a request deletes while its records are exported
    (in a serving process, between the take of the changes and ``export_records``)."""

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        self._entries.pop("b", None)
        return super().export_records(field, keys)


def test_a_key_deleted_while_its_record_is_exported_goes_in_the_next_delta() -> None:
    obj = DeletedMeanwhile(None)
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    obj._entries.update(a=1, b=2)
    assert changes.take().state == {"entries": {"a": 1}}
    assert changes.take().deleted == {"entries": ["b"]}


class Carts(TypedDict):
    carts: dict[str, list[int]]


REGISTRY.add_schema("carts", 1, Carts)


@REGISTRY.migratable("carts", version=1)
class CartStore:
    def __init__(self) -> None:
        self.carts: TrackedDict[str, list[int]] = TrackedDict()


def _watched_store() -> tuple[CartStore, ComponentChanges]:
    store = CartStore()
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()
    store.carts["a"] = [1]
    store.carts["b"] = [1]
    changes.take()  # "a" and "b" are watched from here
    return store, changes


def test_a_value_changed_in_place_without_a_write_is_caught_at_the_next_take() -> None:
    store, changes = _watched_store()
    store.carts["a"].append(2)  # no write: a delta would miss it
    with pytest.raises(
        ChangeTrackingError, match=r"carts: a delta misses a change at \['carts'\]\['a'\]"
    ):
        changes.take()


def test_check_in_place_catches_without_taking_anything() -> None:
    """The watch run on its own, for a caller about to skip a take because no key was
    written: it catches the change, and leaves the log as it was."""
    store, changes = _watched_store()
    changes.check_in_place()  # nothing changed yet
    store.carts["a"].append(2)
    with pytest.raises(ChangeTrackingError, match=r"\['carts'\]\['a'\]"):
        changes.check_in_place()
    assert changes.pending() == 0


def test_check_in_place_passes_a_value_changed_and_written_again() -> None:
    """Negative control: the same change, with its key written again, is the log's."""
    store, changes = _watched_store()
    store.carts["a"].append(2)
    store.carts["a"] = store.carts["a"]
    changes.check_in_place()
    assert changes.pending() == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda carts: carts.__setitem__("a", [*carts["a"], 2]),  # written again
        lambda carts: carts["a"].append(2) or carts.__setitem__("a", carts["a"]),  # and noted
        lambda carts: carts.pop("a"),  # deleted
        lambda carts: None,  # untouched
    ],
)
def test_values_written_deleted_or_left_alone_pass(write: Any) -> None:
    store, changes = _watched_store()
    write(store.carts)
    changes.take()
    changes.take()


def test_without_the_watch_a_pre_copy_loses_a_value_changed_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Negative control: the same in-place change, with the check turned off, reaches
    the successor as the value of round 0: the write is lost."""
    monkeypatch.setattr(InPlaceWatch, "check", lambda *args: None)
    source, target = Service("svc", registry=REGISTRY), Service("svc", registry=REGISTRY)
    old, new = source.register(CartStore()), target.register(CartStore())
    old.carts["a"] = [1]
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        old.carts["b"] = [1]
        target.restore(pieces.delta().to_bytes())  # "b" is watched from here
        old.carts["b"].append(2)
        target.restore(pieces.delta().to_bytes())
    assert dict(old.carts) == {"a": [1], "b": [1, 2]}
    assert dict(new.carts) == {"a": [1], "b": [1]}


def test_a_pre_copy_with_a_value_changed_in_place_fails_at_the_delta() -> None:
    source, target = Service("svc", registry=REGISTRY), Service("svc", registry=REGISTRY)
    old, _ = source.register(CartStore()), target.register(CartStore())
    with source.precopy_source() as pieces:
        pieces.start()
        target.restore(pieces.full().to_bytes())
        old.carts["b"] = [1]
        target.restore(pieces.delta().to_bytes())
        old.carts["b"].append(2)
        with pytest.raises(ChangeTrackingError, match=r"\['carts'\]\['b'\]"):
            pieces.delta()


TICKS = [0]  # what a clock would give: changes with no write of the model


class Session(pydantic.BaseModel):
    user: str
    seen: list[int]

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def age(self) -> int:
        return TICKS[0]


class Sessions(TypedDict):
    sessions: dict[str, Session]


REGISTRY.add_schema("sessions", 1, Sessions)


@REGISTRY.migratable("sessions", version=1)
class SessionStore:
    def __init__(self) -> None:
        self.sessions: TrackedDict[str, Session] = TrackedDict()


def test_a_computed_field_that_changes_is_no_change_in_place() -> None:
    store = SessionStore()
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()
    store.sessions["s"] = Session(user="u", seen=[])
    changes.take()
    TICKS[0] += 1  # the computed field moves on; what a snapshot keeps does not
    changes.take()
    store.sessions["s"] = Session(user="u", seen=[])
    changes.take()
    store.sessions["s"].seen.append(1)  # a field changed in place: caught
    with pytest.raises(ChangeTrackingError, match=r"\['sessions'\]\['s'\]"):
        changes.take()


@pytest.mark.parametrize("held", [50, 5_000])
def test_records_held_before_tracking_began_and_changed_in_place_are_caught(held: int) -> None:
    """The habit the sample of fresh writes cannot see: records written once, before
    the changes were tracked, then changed in place. A random pool of every record
    watches them; with a tenth of them changed, one take finds one (the chance of
    missing is 0.9 ** 128, about 1e-6)."""
    store = CartStore()
    store.carts.update((f"c{i}", [i]) for i in range(held))
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()
    for i in range(0, held, 10):
        store.carts[f"c{i}"].append(-1)  # never written again
    with pytest.raises(ChangeTrackingError, match="its value changed"):
        changes.take()


def test_the_pool_starts_again_from_a_full_state() -> None:
    """Once a full state was taken instead of a delta, a change in place made before it
    is in that state: no later take holds it against the records."""
    store = CartStore()
    store.carts.update((f"c{i}", [i]) for i in range(50))
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()
    store.carts["c1"].append(-1)
    changes.skip()  # a full state, taken now, holds the change
    changes.take()


class Blobs(TypedDict):
    blobs: dict[str, str]
    pairs: dict[str, tuple[int, str]]
    boxes: dict[str, tuple[list[int], str]]


REGISTRY.add_schema("blobs", 1, Blobs)


@REGISTRY.migratable("blobs", version=1)
class BlobStore:
    def __init__(self) -> None:
        self.blobs: TrackedDict[str, str] = TrackedDict()
        self.pairs: TrackedDict[str, tuple[int, str]] = TrackedDict()
        self.boxes: TrackedDict[str, tuple[list[int], str]] = TrackedDict()


def _digests_counted(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The values the watch digests, from now on."""
    digested: list[object] = []
    digest = _inplacewatch._digest

    def counted(value: object) -> bytes | None:
        digested.append(value)
        return digest(value)

    monkeypatch.setattr(_inplacewatch, "_digest", counted)
    return digested


def test_records_no_one_can_change_in_place_are_not_digested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A string (or a tuple of immutable values) a TrackedDict holds cannot change
    without a write of its key: the watch does not digest it, at any size (a digest of
    a few MB of text takes tens of milliseconds, with the writers held). A tuple
    holding a list can change in place, and is still watched and caught."""
    store = BlobStore()
    store.blobs.update((f"b{i}", "x" * 1000) for i in range(300))
    store.pairs.update((f"p{i}", (i, "x")) for i in range(300))
    digested = _digests_counted(monkeypatch)
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()  # the pool drawn from the records held
    store.blobs["b1"] = "y" * 4_000_000
    store.pairs["p1"] = (1, "y")
    store.boxes["x"] = ([1], "x")
    changes.take()  # the first records taken join the watch
    changes.check_in_place()
    assert digested == [([1], "x"), ([1], "x")]  # watched at the take, checked after
    store.boxes["x"][0].append(2)
    with pytest.raises(ChangeTrackingError, match=r"\['boxes'\]\['x'\]"):
        changes.take()


def test_a_string_replaced_behind_the_log_is_still_caught() -> None:
    """Not digested is not unwatched: a string set with ``dict.__setitem__`` on the
    tracked dict, which the log never sees, changes what the watch keeps of it."""
    store = BlobStore()
    store.blobs.update((f"b{i}", "x" * 1000) for i in range(300))
    changes = ComponentChanges.attach(store, registry=REGISTRY)
    assert changes is not None
    changes.open()
    store.blobs["b1"] = "y" * 4_000_000
    changes.take()  # b1 joins the watch
    changes.check_in_place()
    dict.__setitem__(store.blobs, "b1", "z")
    with pytest.raises(ChangeTrackingError, match=r"\['blobs'\]\['b1'\]"):
        changes.check_in_place()


class Summed(Recorded):
    """Records an int it computes from history of its own: the history can change
    without a write of the TrackedDict, and so the int exported."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[int]] = {}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        return {k: sum(self.history[k]) for k in keys if k in self._entries}


def test_an_exported_int_changed_behind_the_log_is_still_caught() -> None:
    """The ints of a records-protocol component are exports of its own structure, not
    the objects its TrackedDict holds: they are watched, and one that changed without
    a write of its key is caught."""
    obj = Summed()
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    obj.history["a"] = [1]
    obj._entries["a"] = 1
    changes.take()
    obj.history["a"].append(2)  # no write of "a"
    with pytest.raises(ChangeTrackingError, match=r"\['entries'\]\['a'\]"):
        changes.take()


class TupleKeyed(Recorded):
    """Holds its records under (tenant, route) tuples and gives them to the schema as
    ``"tenant/route"`` text: a TrackedDict that is not keyed like its field."""

    def __init__(self) -> None:
        super().__init__()
        self._pairs: TrackedDict[tuple[str, str], int] = TrackedDict()

    def tracked_records(self) -> dict[str, TrackedDict[Any, int]]:
        return {"entries": self._pairs}

    def export_records(self, field: str, keys: Iterable[Any]) -> dict[str, int]:
        return {"/".join(k): self._pairs[k] for k in keys if k in self._pairs}


def test_a_deletion_under_a_key_of_another_type_than_the_fields_is_refused() -> None:
    # Left out, the receiver would keep the record its sender deleted.
    obj = TupleKeyed()
    obj._pairs[("t0", "r")] = 1
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    del obj._pairs[("t0", "r")]
    with pytest.raises(
        RegistrationError,
        match=r"deleted 1 key\(s\) that are no key of the field's type \(\('t0', 'r'\)\)",
    ):
        changes.take()


def test_deletions_under_the_fields_own_keys_pass() -> None:
    obj = Recorded(None)
    obj._entries.update(a=1, b=2)
    changes = ComponentChanges.attach(obj, registry=REGISTRY)
    assert changes is not None
    changes.open()
    del obj._entries["a"]
    assert changes.take().deleted == {"entries": ["a"]}


@pytest.mark.parametrize(
    ("field", "keys", "foreign"),
    [
        ("entries", ["a", ("t", "r"), 7], [("t", "r"), 7]),  # str keys
        ("counts", [1, 1.0, 2.5, "x", float("nan")], [2.5, "x"]),  # int keys; NaN passes
    ],
)
def test_the_codec_names_the_keys_no_key_of_the_field_equals(
    field: str, keys: list[Any], foreign: list[Any]
) -> None:
    schema = REGISTRY.schema_for("c", 1)
    assert key_codec(schema, field).foreign(keys) == foreign
