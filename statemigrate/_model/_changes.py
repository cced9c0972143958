"""What changed in a component since a point: the model's side of a delta.

A delta of a component is a *partial state*: every field of its schema, where the
record fields (top-level ``dict`` fields held in a :class:`TrackedDict`) carry only
the records written since the point, plus, per record field, the keys deleted since.
The partial state is a state of the schema like any other (a dict with fewer
entries), so it is exported, migrated by record steps and validated by the usual
pipeline; the other fields are small and travel whole.

The default path needs nothing of the component but ``TrackedDict`` attributes: a
component without ``export_state`` whose schema's top-level ``dict`` fields are held
in ``TrackedDict`` attributes can tell what changed; its other fields travel whole.

A component with its own ``export_state``/``import_state`` takes part through three
methods (the *records protocol*), and then every field of its schema must be a record
field::

    def tracked_records(self) -> Mapping[str, TrackedDict]: ...
        # per record field, the TrackedDict whose keys are that field's record keys
    def export_records(self, field: str, keys: Iterable) -> Mapping: ...
        # the records of those keys that exist, in the schema's form
    def import_records(self, field: str, records: Mapping, deleted: Sequence,
                       moved: int = 0) -> None: ...
        # set validated records and delete keys (deleting an absent key is a no-op);
        # the last ``moved`` records go to the end (optional: see _importrecords)

The first two serve the writing side, the last two the receiving side (which also
uses ``export_records`` to keep what it replaces, for a rollback). Components that
neither keep ``TrackedDict`` attributes nor follow the protocol cannot tell what
changed, and a hand-over then sends their whole state.
"""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pydantic

from statemigrate._errors import ExportError, RegistrationError
from statemigrate._model._export import Exporter, compile_exporter
from statemigrate._model._export_leaves import NotExportable
from statemigrate._model._inplacewatch import POOL, InPlaceWatch
from statemigrate._model._paths import format_path
from statemigrate._model._registry import component_spec
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._shown import shortened
from statemigrate._model._tracked import ChangeMark, Changes, TrackedDict

if typing.TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = [
    "ComponentChanges",
    "KeyCodec",
    "PartialState",
    "follows_records_protocol",
    "imports_records",
    "key_codec",
]


@dataclass(frozen=True, slots=True)
class PartialState:
    """What changed in one component: a partial state and the deleted keys.

    Attributes:
        state: every field of the schema; record fields hold only the records set,
            those updated in place first and those inserted since the mark last, in
            the live order.
        deleted: per record field, the keys deleted (in the live form of the keys).
        moved: per record field, how many of its last records were inserted since the
            mark: a receiver moves them to the end, in their order, to keep the live
            order (for a component with its own ``export_records``, the order of its
            ``TrackedDict``).
    """

    state: dict[str, Any]
    deleted: dict[str, list[Any]]
    moved: dict[str, int]

    @property
    def records(self) -> int:
        """The records this delta sets or deletes."""
        return sum(len(self.state[name]) for name in self.deleted) + sum(
            len(keys) for keys in self.deleted.values()
        )


class ComponentChanges:
    """The change tracking of one component instance whose record fields are
    :class:`TrackedDict` attributes (see the module docstring).

    Made by :meth:`attach`; each open one holds one mark per record field.
    """

    def __init__(
        self,
        obj: object,
        schema: SchemaVersion,
        fields: Mapping[str, TrackedDict[Any, Any]],
        *,
        custom: bool = False,
    ) -> None:
        self._obj = obj
        self._schema = schema
        self._fields = dict(fields)
        self._custom = custom
        self._marks: dict[str, ChangeMark] = {}
        self._watch = InPlaceWatch(schema.component, held_objects=not custom)

    @classmethod
    def attach(cls, obj: object, *, registry: Registry | None = None) -> ComponentChanges | None:
        """Change tracking for ``obj``, or ``None`` when it cannot tell what changed.

        ``None`` for a component with no ``TrackedDict`` attribute among its schema's
        fields, and for one with its own ``export_state`` that does not follow the
        records protocol (see the module docstring) for every field of its schema.
        """
        schema = component_spec(obj).schema(registry)
        if callable(getattr(obj, "export_state", None)):
            fields = follows_records_protocol(obj, schema)
            return None if fields is None else cls(obj, schema, fields, custom=True)
        found = {}
        for name in schema.fields:
            value = getattr(obj, name, None)
            if isinstance(value, TrackedDict):
                found[name] = value
        if not found:
            return None
        return cls(obj, schema, found)

    @property
    def record_fields(self) -> tuple[str, ...]:
        """The fields sent as records."""
        return tuple(self._fields)

    @property
    def tracked(self) -> Mapping[str, TrackedDict[Any, Any]]:
        """The ``TrackedDict`` of each record field, by field name."""
        return dict(self._fields)

    def open(self) -> None:
        """Open a mark on every record field: writes from now on are recorded."""
        self._check_same()
        for name, tracked in self._fields.items():
            if name not in self._marks:
                self._marks[name] = tracked.mark()
        self._seed_watch()

    def pending(self) -> int:
        """Distinct records written since the last :meth:`take` (or :meth:`open`)."""
        return sum(self._fields[name].pending(mark) for name, mark in self._marks.items())

    def records(self) -> int:
        """Records held now in the record fields; O(record fields)."""
        return sum(len(tracked) for tracked in self._fields.values())

    def skip(self) -> None:
        """Forget the changes recorded so far (a full state was taken instead)."""
        self._check_same()
        self._watch.forget()
        for name, mark in self._marks.items():
            self._fields[name].advance(mark)
        self._seed_watch()

    def take(self, *, limit: int | None = None) -> PartialState:
        """The changes since the last take (or open), and a new starting point.

        With ``limit``, at most that many records, the ones written longest ago
        (field by field): the rest stay pending for the next take.

        Raises:
            RegistrationError: the component replaced a record field's
                ``TrackedDict`` with another object since :meth:`open`, so what
                changed is unknown.
        """
        self._check_same()
        state: dict[str, Any] = {}
        deleted: dict[str, list[Any]] = {}
        moved: dict[str, int] = {}
        for name in self._schema.fields:
            mark = self._marks.get(name)
            if mark is None:
                value = getattr(self._obj, name, _MISSING)
                if value is not _MISSING:
                    state[name] = value
                continue
            changes = self._fields[name].take_changes(mark, limit=limit)
            if limit is not None:
                limit = max(limit - len(changes), 0)
            self._watch.check(
                name,
                changes.set.keys() | set(changes.deleted),
                partial(self._current, name),
                partial(self._written_meanwhile, name),
            )
            if self._custom:
                self._refuse_foreign_deleted(name, list(changes.deleted))
                state[name], moved[name] = self._exported_in_order(name, changes)
            else:
                codec = key_codec(self._schema, name)
                state[name] = codec.held(self._fields[name], changes.set)
                moved[name] = changes.moved
            self._watch.watch(name, state[name])
            deleted[name] = list(changes.deleted)
        return PartialState(state, deleted, moved)

    def check_in_place(self) -> None:
        """Check the watched records as a take would, without taking anything: for a
        caller about to skip a take because no key was written, when a value changed in
        place is just what the log cannot show. Costs the digests of the watched
        records (at most ``SAMPLE + POOL`` per field), whatever the size of the state.

        Raises:
            ChangeTrackingError: a watched record's value changed, but its key was not
                written.
        """
        self._check_same()
        for name in self._marks:
            self._watch.check(
                name,
                (),
                partial(self._current, name),
                partial(self._written_meanwhile, name),
            )

    def _seed_watch(self) -> None:
        """Watch a random sample of every record field's records, from its marks on
        (a write before the mark is in the digest, one after it in the log)."""
        for name in self._marks:
            keys = list(self._fields[name])
            if len(keys) > POOL:
                keys = random.sample(keys, POOL)
            self._watch.seed(name, self._current(name, keys), held=len(self._fields[name]))

    def _current(self, name: str, keys: list[Any]) -> Mapping[Any, Any]:
        """The records of ``keys`` that exist now, as a take would export them."""
        if self._custom:
            return dict(self._obj.export_records(name, keys))  # type: ignore[attr-defined]
        tracked = self._fields[name]
        return {
            key: dict.__getitem__(tracked, key) for key in keys if dict.__contains__(tracked, key)
        }

    def _written_meanwhile(self, name: str, key: Any) -> bool:
        """Whether ``key`` was written since this take began. A write changes the dict
        before it logs the key, so one seen half-way is given a few moments."""
        tracked, mark = self._fields[name], self._marks[name]
        for pause in (0.0, 0.001, 0.01):
            time.sleep(pause)
            if tracked.written_since(mark, key):
                return True
        return False

    def _exported_in_order(self, name: str, changes: Changes) -> tuple[dict[Any, Any], int]:
        """A custom component's records of ``changes``, in its ``TrackedDict``'s order:
        those replaced in place first, then those inserted (or moved to the end) since
        the mark, and how many of those last ones it still holds. A receiver that
        composes the delta (a folded chain, ``statemigrate migrate``) moves them to
        the end, as a restore piece by piece does through ``import_records``."""
        keys = list(changes.set)
        exported = self._exported(name, keys)
        ordered = {key: exported[key] for key in keys if key in exported}
        inserted = keys[len(keys) - changes.moved :] if changes.moved else []
        return ordered, sum(1 for key in inserted if key in exported)

    def _exported(self, name: str, keys: list[Any]) -> dict[Any, Any]:
        """The records of ``keys`` from a custom component, all of them: a key its
        change log holds but ``export_records`` leaves out would be a change the delta
        loses without a word. A key written since the take (a request of a serving
        process deleted it meanwhile, say) may be left out: its change is in the next
        delta."""
        exported = dict(self._obj.export_records(name, keys))  # type: ignore[attr-defined]
        missing = [
            key
            for key in keys
            if key not in exported and not self._written_meanwhile(name, key)
        ]
        if missing:
            shown = ", ".join(repr(key) for key in missing[:3])
            raise RegistrationError(
                f"{type(self._obj).__qualname__}.export_records({name!r}, ...) left out"
                f" {len(missing)} of the {len(keys)} keys asked for ({shown}); it must"
                " return the record of every key its TrackedDict holds, or the delta"
                " would miss their changes"
            )
        return exported

    def _refuse_foreign_deleted(self, name: str, keys: list[Any]) -> None:
        """Refuse deleted keys of a custom component that are no keys of the field.

        A delta carries a deleted key in the field's own key type, and leaves out one
        that no such key equals. For the default path that is a key written and
        deleted between two pieces, which no receiver holds. A custom component's
        ``TrackedDict`` keyed otherwise than its field (tuples, while the schema and
        ``export_records`` give text) would have every deletion left out: its records
        travel through ``export_records``, its deletions would not, and the receiver
        would keep what was deleted.
        """
        foreign = key_codec(self._schema, name).foreign(keys)
        if foreign:
            shown = ", ".join(repr(key) for key in foreign[:3])
            raise RegistrationError(
                f"{type(self._obj).__qualname__}.tracked_records()[{name!r}] deleted"
                f" {len(foreign)} key(s) that are no key of the field's type ({shown}):"
                " its TrackedDict must hold the field's own keys, as export_records"
                " returns them, or a delta could not carry their deletion"
            )

    def close(self) -> None:
        """Close every mark: the tracked dicts stop recording."""
        self._watch.forget()
        for name, mark in self._marks.items():
            self._fields[name].close(mark)
        self._marks.clear()

    def _check_same(self) -> None:
        if self._custom:
            now = self._obj.tracked_records()  # type: ignore[attr-defined]
        else:
            now = {name: getattr(self._obj, name, None) for name in self._fields}
        for name, tracked in self._fields.items():
            if now.get(name) is not tracked:
                raise RegistrationError(
                    f"{type(self._obj).__qualname__}.{name} is no longer the TrackedDict"
                    " whose changes were being recorded; a record field must be changed"
                    " in place, never replaced, while changes are tracked"
                )


_MISSING: Any = object()


def follows_records_protocol(
    obj: object, schema: SchemaVersion
) -> dict[str, TrackedDict[Any, Any]] | None:
    """The record fields of a component with its own ``export_state``, when it follows
    the records protocol for every field of ``schema``; else ``None``
    (:func:`records_protocol_gap` says why)."""
    fields, _ = _records_protocol(obj, schema)
    return fields


def records_protocol_gap(obj: object, schema: SchemaVersion) -> str | None:
    """Why a component with its own ``export_state`` does not follow the records
    protocol, in a few words; None when it does."""
    return _records_protocol(obj, schema)[1]


def _records_protocol(
    obj: object, schema: SchemaVersion
) -> tuple[dict[str, TrackedDict[Any, Any]] | None, str | None]:
    tracked = getattr(obj, "tracked_records", None)
    if not callable(tracked) or not callable(getattr(obj, "export_records", None)):
        return None, "it has no tracked_records() and export_records()"
    fields = tracked()
    if not isinstance(fields, Mapping):
        return None, f"tracked_records() returned {type(fields).__qualname__}, not a mapping"
    missing = [name for name in schema.fields if name not in fields]
    if missing:
        return None, (
            f"its schema's field {missing[0]!r} is not in tracked_records(): under the"
            " records protocol every field of the schema is a record field"
        )
    extra = [name for name in fields if name not in schema.fields]
    if extra:
        return None, f"tracked_records() names {shortened(extra[0])}, not a field of its schema"
    for name, value in fields.items():
        if not isinstance(value, TrackedDict):
            return None, (
                f"tracked_records() gives {type(value).__qualname__} for {name!r}, not a"
                " TrackedDict"
            )
    return dict(fields), None


def imports_records(obj: object) -> bool:
    """Whether a component with its own ``import_state`` can take records (the
    receiving half of the records protocol)."""
    return callable(getattr(obj, "import_records", None)) and callable(
        getattr(obj, "export_records", None)
    )


@dataclass(frozen=True, slots=True)
class KeyCodec:
    """Converts the keys of one record field between live and plain form.

    A key a change log holds is the one its write or deletion was given, which may be
    another object than the dict's own: ``d[1.0] = v`` where ``d`` holds ``1``
    replaces the value and keeps the key ``1``. The codec gives a delta the keys the
    dict holds (:meth:`held`), and deleted keys as the receiver's dict would hold them
    (:meth:`export`). Keys of the field's own class, the usual case, are known so by
    one C pass over their classes; only the others are looked at one by one.
    """

    adapter: pydantic.TypeAdapter[Any] | None
    """None when keys are ``str`` (the plain form is the key itself)."""
    exporter: Exporter | None = None
    """Writes a map of the field's key type: the keys a delta deletes get the plain form
    its records' keys get (text for an int, bytes as they are), so that a reader
    matching plain keys finds them."""
    classes: frozenset[type] = frozenset()
    """The classes of the keys taken as they are: the key type when it is a class
    (``int``, an enum); empty when it is not (a union, a ``Literal``), when every key
    is looked at. ``str`` keys (no ``adapter``) are never looked up."""

    def held(self, tracked: Mapping[Any, Any], records: dict[Any, Any]) -> dict[Any, Any]:
        """``records`` (keys a change log noted, with their values, in its order) under
        the keys that ``tracked`` holds, which a full snapshot would write.

        ``str`` keys are taken as they are: a ``str`` subclass equal to one (a
        ``StrEnum`` member) is written as the same text.
        """
        if self.adapter is None or (
            self.classes and set(map(type, records)) <= self.classes
        ):
            return records
        return {_key_held(tracked, key): value for key, value in records.items()}

    def export(self, keys: list[Any], *, schema: SchemaVersion, field: str) -> list[Any]:
        """The plain form of deleted live keys, as a receiver holds them.

        A key that no key of the field's type equals (one written and deleted between
        two pieces, never in either: ``7`` under ``str`` keys, ``2.5`` under ``int``
        keys) is left out: no receiver holds it. A key equal to one of the field's type
        (``1.0`` under ``int`` keys) is written as that key.

        Raises:
            ExportError: a key has no plain form (the path names the field).
        """
        if self.exporter is None:
            if set(map(type, keys)) <= _STR_CLASSES:
                return keys
            return [str.__str__(key) for key in keys if isinstance(key, str)]
        if not self.classes or not set(map(type, keys)) <= self.classes:
            keys = [held for held in map(self._as_key, keys) if held is not _MISSING]
        try:
            return list(self.exporter(dict.fromkeys(keys)))
        except NotExportable as exc:
            raise ExportError(
                schema.component, schema.version,
                format_path(["deleted", field, *exc.path]), exc.detail,
            ) from exc

    def foreign(self, keys: list[Any]) -> list[Any]:
        """The keys that no key of the field's type equals (a NaN, unequal to itself,
        is taken as a float key: a stale one is dropped elsewhere)."""
        if self.adapter is None:
            return [key for key in keys if not isinstance(key, str)]
        if self.classes and set(map(type, keys)) <= self.classes:
            return []
        return [key for key in keys if key == key and self._as_key(key) is _MISSING]

    def _as_key(self, key: Any) -> Any:
        """``key`` as a key of the field's type equal to it, or ``_MISSING``."""
        assert self.adapter is not None
        try:
            (converted,) = self.adapter.validate_python([key])
        except pydantic.ValidationError:
            return _MISSING
        if converted == key and hash(converted) == hash(key):
            return converted
        return _MISSING  # "7" validates into 7, which it does not equal

    def validate(self, keys: object) -> list[Any]:
        """The live form of plain keys.

        Raises:
            pydantic.ValidationError: a key does not fit the field's key type.
        """
        if self.adapter is None:
            checked: list[Any] = _STR_KEYS.validate_python(keys, strict=True)
            return checked
        live: list[Any] = self.adapter.validate_python(keys)
        return live


class _KeyProbe:
    """Equal to what its key equals, noting the object it was compared with: looked
    up in a dict, it finds the key the dict holds."""

    __slots__ = ("found", "key", "key_hash")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.key_hash = hash(key)
        self.found = key

    def __hash__(self) -> int:
        return self.key_hash

    def __eq__(self, other: object) -> bool:
        if other is self.key or other == self.key:
            self.found = other
            return True
        return False


def _key_held(tracked: Mapping[Any, Any], key: Any) -> Any:
    """The key of ``tracked`` equal to ``key`` (``key`` itself when there is none).

    The dict compares the key it holds with the probe, whose ``__eq__`` (the reflected
    one: the held key's own gives up on a probe) notes it.
    """
    probe = _KeyProbe(key)
    dict.__contains__(tracked, probe)
    return probe.found


_STR_CLASSES = frozenset({str})
_STR_KEYS: pydantic.TypeAdapter[list[str]] = pydantic.TypeAdapter(list[str])
_CODECS: dict[tuple[SchemaVersion, str], KeyCodec] = {}


def key_codec(schema: SchemaVersion, field: str) -> KeyCodec:
    """How the keys of record field ``field`` of ``schema`` are written (built once)."""
    found = _CODECS.get((schema, field))
    if found is not None:
        return found
    key_type = _key_type(schema, field)
    if key_type is str:
        codec = KeyCodec(None)
    else:
        keyed: Any = dict[key_type, None]  # type: ignore[valid-type]
        codec = KeyCodec(
            pydantic.TypeAdapter(list[key_type]),  # type: ignore[valid-type]
            compile_exporter(pydantic.TypeAdapter(keyed).core_schema),
            frozenset({key_type}) if isinstance(key_type, type) else frozenset(),
        )
    _CODECS[(schema, field)] = codec
    return codec


def _key_type(schema: SchemaVersion, field: str) -> Any:
    """The key type of the ``dict`` annotation of ``field`` (``str`` when unknown)."""
    annotation: Any = None
    try:
        if schema.kind == "model":
            info = schema.type.model_fields.get(field)  # type: ignore[attr-defined]
            annotation = None if info is None else info.annotation
        else:
            annotation = typing.get_type_hints(schema.type).get(field)
    except Exception:
        return str
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping, MutableMapping) or (
        isinstance(origin, type) and issubclass(origin, dict)
    ):
        args = typing.get_args(annotation)
        if args:
            return args[0]
    return str
