"""Deltas: applying what changed in components, all or nothing.

A delta is a snapshot whose header names a base (the snapshot, full or delta, whose
state it changes) and whose sections each hold, for one component instance::

    {"state": <partial state>, "deleted": {<record field>: [<plain key>, ...]},
     "moved": {<record field>: <count>}}

The partial state has every field of the schema; the record fields named in
``deleted`` hold only the records set since the base (see
:mod:`statemigrate._model._changes`), and the last ``moved`` of them were inserted
since the base: they go to the end of the live dict, in their order, so that it keeps
the writer's key order (a section without ``moved`` moves none). On the way in, each
section is decoded, migrated by the plan's record steps (a plan with a whole-data step
cannot migrate a delta) and validated against the live schema, for every section,
before anything is applied. Then the records are set and deleted, and the other fields
assigned, component after component; if anything fails, every touched key and field is
given back its earlier value, newest first, and the keys their order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeGuard

import pydantic

from statemigrate._errors import (
    LossyMigrationError,
    MigrationStepError,
    NoMigrationPathError,
    RestoreError,
    SnapshotError,
    StateMigrateError,
)
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._changes import (
    imports_records,
    key_codec,
)
from statemigrate._model._importrecords import import_records
from statemigrate._model._migrate import raised_by_user_code
from statemigrate._model._nankeys import (
    may_hold_nan,
    under_held_nan,
)
from statemigrate._runtime._deltaundo import (
    MISSING,
    Undo,
    assign,
    assigner,
    giver,
    reimporter,
    reorderer,
    roll_back,
)
from statemigrate._runtime._deltawrite import writes_own_state
from statemigrate._runtime._fingerprintwarning import warn_fingerprint_differs
from statemigrate._runtime._readback import delta_read_back_problem
from statemigrate._runtime._report import ComponentRestore, RestoreReport
from statemigrate._runtime._restore import Registered
from statemigrate._snapshot._format import Snapshot

__all__ = ["DELTA_SHAPE", "apply_delta", "is_delta_section"]

logger = logging.getLogger("statemigrate")

@dataclass(slots=True)
class _Staged:
    """One section of a delta, validated and ready to apply."""

    entry: Registered
    report: ComponentRestore
    fields: dict[str, Any] = field(default_factory=dict)
    """The whole fields: name -> value (``MISSING`` to delete the attribute)."""
    records: dict[str, tuple[Mapping[Any, Any], list[Any], int]] = field(default_factory=dict)
    """The record fields: name -> (records to set, keys to delete, how many of the
    records set go to the end), in live form."""
    custom: bool = False
    """Whether records go through the component's ``import_records``."""
    nan_fields: set[str] = field(default_factory=set)
    """The record fields whose keys may be NaN: a delta's NaN key means the dict's."""

    @property
    def count(self) -> int:
        return sum(len(put) + len(gone) for put, gone, _ in self.records.values())


def apply_delta(
    snapshot: Snapshot,
    entries: Sequence[Registered],
    *,
    allow_lossy: AllowLossy,
    strict: bool,
    read_seconds: float,
    verify_seconds: float,
) -> RestoreReport:
    """Apply a verified delta to the registered components, all or nothing.

    ``entries`` are the components restored from the delta's base; the caller has
    checked the base. Sections no component claims are reported as unknown (refused
    when ``strict``); components without a section keep their state.

    Raises:
        RestoreError: a phase failed; every component is as it was before.
    """
    return _apply_delta(
        snapshot, entries, allow_lossy=allow_lossy, strict=strict,
        timings={"read": read_seconds, "verify": verify_seconds},
    )


def _apply_delta(
    snapshot: Snapshot,
    entries: Sequence[Registered],
    *,
    allow_lossy: AllowLossy,
    strict: bool,
    timings: dict[str, float],
) -> RestoreReport:
    header = snapshot.header
    by_key = {(e.component, e.instance): e for e in entries}
    unknown: list[str] = []
    started = time.perf_counter()
    decoded: list[tuple[int, Registered, Any]] = []
    for index, section in enumerate(header.sections):
        entry = by_key.pop((section.component, section.instance), None)
        if entry is None:
            unknown.append(section.key)
            continue
        decoded.append((index, entry, _decode(snapshot, index, entry)))
    missing = [e.key for e in by_key.values()]
    if strict and unknown:
        raise RestoreError(
            "verify", f"delta sections no component claims: {', '.join(unknown)} (strict mode)"
        )
    timings["decode"] = time.perf_counter() - started
    staged: list[_Staged] = []
    migrate = validate = 0.0
    for index, entry, data in decoded:
        item, seconds = _stage(snapshot, index, entry, data, allow_lossy=allow_lossy)
        staged.append(item)
        migrate += seconds.get("migrate", 0.0) + seconds.get("copy", 0.0)
        validate += seconds.get("validate", 0.0)
    decoded.clear()
    timings["migrate"] = migrate
    timings["validate"] = validate
    started = time.perf_counter()
    _apply_all(staged)
    timings["apply"] = time.perf_counter() - started
    return RestoreReport(
        snapshot_id=header.snapshot_id,
        generation=header.generation,
        skipped=False,
        components=tuple(item.report for item in staged),
        unknown=tuple(unknown),
        missing=tuple(missing),
        size=snapshot.size,
        timings=timings,
        delta=True,
        records=sum(item.count for item in staged),
    )



DELTA_SHAPE = (
    "a delta section is a map of 'state' (a map), 'deleted' (lists of keys per record"
    " field) and an optional 'moved' (counts per record field)"
)
"""What a delta section must look like, for errors that find it otherwise."""


def is_delta_section(data: object) -> TypeGuard[dict[str, Any]]:
    """Whether decoded section data has a delta's shape: ``state`` and ``deleted`` maps,
    a list of deleted keys per record field, and an optional ``moved`` map of counts
    (each no larger than its record field's records, for record fields only)."""
    if not (
        type(data) is dict
        and set(data) - {"moved"} == {"state", "deleted"}
        and type(data["state"]) is dict
        and type(data["deleted"]) is dict
        and all(type(keys) is list for keys in data["deleted"].values())
    ):
        return False
    moved = data.get("moved", {})
    state, deleted = data["state"], data["deleted"]
    return type(moved) is dict and all(
        name in deleted
        and type(count) is int
        and 0 <= count <= len(records := state.get(name, ()))
        and type(records) is dict
        for name, count in moved.items()
    )


def _decode(snapshot: Snapshot, index: int, entry: Registered) -> dict[str, Any]:
    try:
        data = snapshot.read_section(index)
    except SnapshotError as exc:
        raise RestoreError("decode", str(exc), component=entry.key) from exc
    if not is_delta_section(data):
        raise RestoreError("decode", DELTA_SHAPE, component=entry.key)
    for name in data["deleted"]:
        if type(data["state"].get(name)) is not dict:
            raise RestoreError(
                "decode",
                f"record field {name!r} has no map of records in the delta's state",
                component=entry.key,
            )
    return data


def _stage(
    snapshot: Snapshot,
    index: int,
    entry: Registered,
    data: dict[str, Any],
    *,
    allow_lossy: AllowLossy,
) -> tuple[_Staged, dict[str, float]]:
    """Migrate and validate one section, and check that its component can take it."""
    section = snapshot.header.sections[index]
    registry = entry.registry
    obj = entry.obj
    custom = writes_own_state(obj)
    if custom and not imports_records(obj):
        raise RestoreError(
            "migrate",
            "the component has its own import_state and no import_records/export_records"
            " to take a delta with; restore a full snapshot",
            component=entry.key,
        )
    live = entry.spec.version
    try:
        plan = registry.plan(entry.component, section.version, live, allow_lossy=allow_lossy)
    except (NoMigrationPathError, LossyMigrationError) as exc:
        raise RestoreError("migrate", str(exc), component=entry.key) from exc
    if not plan.record_wise:
        whole = plan.whole_steps[0]
        raise RestoreError(
            "migrate",
            "a whole-data step cannot migrate a delta; restore a full snapshot",
            component=entry.key,
            step=str(whole),
        )
    deleted_plain: dict[str, list[Any]] = data["deleted"]
    moved: dict[str, int] = data.get("moved", {})
    fingerprint_matches = _fingerprint_matches(entry, section.version, section.fingerprint)
    read_back = 0.0
    if not fingerprint_matches:
        read_back = _check_read_back(entry, section.version, section.fingerprint, data)
    # Record steps keep every key; validation may still merge keys (under another key
    # type than the one that wrote them), which must not pass for a smaller delta.
    written = {name: len(data["state"][name]) for name in deleted_plain}
    try:
        result = registry.migrate(
            entry.component, data.pop("state"), section.version, live,
            allow_lossy=allow_lossy, copy=False, export=False, instance=entry.instance,
        )
    except MigrationStepError as exc:
        raise RestoreError(
            "migrate", exc.detail, component=entry.key, step=exc.step
        ) from raised_by_user_code(exc)
    except StateMigrateError as exc:
        raise RestoreError("validate", str(exc), component=entry.key) from raised_by_user_code(
            exc
        )
    schema = registry.schema_for(entry.component, live)
    state = result.state
    item = _Staged(
        entry,
        ComponentRestore(
            component=entry.component,
            instance=entry.instance,
            source_version=section.version,
            target_version=live,
            steps=result.step_names,
            raw_size=section.raw_size,
            stored_size=section.stored_size,
            fingerprint_matches=fingerprint_matches,
        ),
    )
    item.custom = custom
    for name in schema.fields:
        value = _field(state, name)
        if name not in deleted_plain:
            if custom and value is not MISSING:
                raise RestoreError(
                    "apply",
                    f"the delta carries field {name!r} whole, and a component with its own"
                    " import_state takes records only",
                    component=entry.key,
                )
            item.fields[name] = value
            continue
        codec = key_codec(schema, name)
        if may_hold_nan(codec):
            item.nan_fields.add(name)
        try:
            gone = codec.validate(deleted_plain[name])
        except pydantic.ValidationError as exc:
            raise RestoreError(
                "validate",
                f"a deleted key of record field {name!r} does not fit the schema:"
                f" {exc.errors(include_url=False, include_input=False)[0]['msg']}",
                component=entry.key,
            ) from exc
        target = getattr(obj, name, None)
        if not custom and not isinstance(target, MutableMapping):
            raise RestoreError(
                "apply",
                f"record field {name!r} of the live component is a"
                f" {type(target).__name__}, not a dict to apply records to",
                component=entry.key,
            )
        put = {} if value is MISSING else value
        if len(put) < written[name]:
            raise RestoreError(
                "validate",
                f"record field {name!r} holds {written[name]} records in the delta and"
                f" {len(put)} after validation: keys of the delta became one key under"
                " this code's key type",
                component=entry.key,
            )
        if moved.get(name, 0) > len(put):
            raise RestoreError(
                "validate",
                f"record field {name!r} has {len(put)} records after validation, fewer than"
                f" the {moved[name]} the delta moves",
                component=entry.key,
            )
        item.records[name] = (put, gone, moved.get(name, 0))
    unknown = set(deleted_plain) - set(schema.fields)
    if unknown:
        raise RestoreError(
            "validate",
            f"the delta names record fields the schema lacks: {', '.join(sorted(unknown))}",
            component=entry.key,
        )
    # The read-back check validates the delta too: its seconds count as validation's.
    return item, {**result.timings, "validate": result.timings.get("validate", 0.0) + read_back}


def _field(state: Any, name: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(name, MISSING)
    return getattr(state, name, MISSING)


def _check_read_back(
    entry: Registered, version: int, fingerprint: str, data: dict[str, Any]
) -> float:
    """Refuse a delta written under ``version`` by a schema other than this code's (the
    fingerprints differ) when this code would not read it back as written: records
    changed or merged, a deleted key read as another (see ``_readback``). Return the
    seconds the check took."""
    try:
        schema = entry.registry.schema_for(entry.component, version)
    except StateMigrateError:
        return 0.0  # a version this code never knew: only steps read it
    warn_fingerprint_differs("delta", entry.key, schema, fingerprint)
    started = time.perf_counter()
    problem = delta_read_back_problem(schema, data["state"], data["deleted"], version)
    if problem is not None:
        raise RestoreError("validate", problem, component=entry.key)
    seconds = time.perf_counter() - started
    # DEBUG: a chain or a take-over reads back every piece, and warned once for them all.
    logger.debug(
        "%s: the delta reads back as written (checked in %.1f ms, counted in validate)",
        entry.key,
        seconds * 1000,
    )
    return seconds


def _fingerprint_matches(entry: Registered, version: int, fingerprint: str) -> bool:
    try:
        return entry.registry.schema_for(entry.component, version).fingerprint == fingerprint
    except StateMigrateError:
        return False


def _apply_all(staged: Sequence[_Staged]) -> None:
    """Apply every staged section, or give back every touched key and field."""
    undo: list[Undo] = []
    current = ""
    try:
        # Deletions come last, for every component: a rollback gives back the values
        # of keys set and removes keys added, which leaves the order of the keys as it
        # was; a deleted key given back would go to the end.
        for item in staged:
            current = item.entry.key
            _apply_sets(item, undo)
        for item in staged:
            current = item.entry.key
            _apply_deletions(item, undo)
    except BaseException as exc:
        failed = roll_back(undo)
        if not isinstance(exc, Exception):
            if failed:
                exc.add_note(f"statemigrate: rollback failed for {current}")
            raise
        raise RestoreError(
            "apply",
            f"{type(exc).__name__}: {exc}",
            component=current,
            rollback_failed=[current] if failed else [],
        ) from exc


def _apply_sets(item: _Staged, undo: list[Undo]) -> None:
    """Set the records and assign the whole fields of one section (and, through the
    records protocol, delete its keys too)."""
    obj = item.entry.obj
    if item.custom:
        for name, (put, gone, moved) in item.records.items():
            touched = [*put, *gone]
            old = dict(obj.export_records(name, touched))  # type: ignore[attr-defined]
            absent = [key for key in touched if key not in old]
            undo.append(reimporter(obj, name, old, absent))  # noted first, as below
            import_records(obj, name, put, gone, moved)
        return
    for name, (put, _, moved) in item.records.items():
        target: MutableMapping[Any, Any] = getattr(obj, name)
        if name in item.nan_fields:
            put = under_held_nan(target, put)  # a decoded NaN key means the one held
        in_place = len(put) - moved
        if moved and any(map(target.__contains__, islice(put, in_place, None))):
            # A key moved to the end leaves its place: only a rebuild gives it back, in
            # the order noted here. Noted first, so it runs after the values are back.
            undo.append(reorderer(target, list(target)))
        before: list[tuple[Any, Any]] = []
        undo.append(giver(target, before))
        records = iter(put.items())
        for key, value in islice(records, in_place):
            before.append((key, target.get(key, MISSING)))  # first: a failed set too
            target[key] = value
        for key, value in records:
            old = target.get(key, MISSING)
            before.append((key, old))
            if old is not MISSING:
                del target[key]
            target[key] = value
    for name, value in item.fields.items():
        old = getattr(obj, name, MISSING)
        undo.append(assigner(obj, name, old))
        assign(obj, name, value)


def _apply_deletions(item: _Staged, undo: list[Undo]) -> None:
    if item.custom:
        return
    for name, (_, gone, _) in item.records.items():
        target: MutableMapping[Any, Any] = getattr(item.entry.obj, name)
        before: list[tuple[Any, Any]] = []
        undo.append(giver(target, before))
        if name in item.nan_fields:
            gone = under_held_nan(target, gone)
        for key in gone:
            old = target.get(key, MISSING)
            if old is not MISSING:
                before.append((key, old))
                del target[key]
