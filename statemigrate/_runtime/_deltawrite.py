"""Writing deltas: the section that carries one component's changes since a base.

A section holds the component's partial state in plain form, the plain keys deleted
from each record field and how many of the records set were inserted since the base
(the layout is told in :mod:`statemigrate._runtime._delta`, which applies them). A
delta written for an older version runs the plan's record steps on the changed records
only; a plan with a whole-data step cannot, and the caller sends a full snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemigrate._errors import ExportError, MigrationStepError, StateMigrateError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._changes import (
    ComponentChanges,
    PartialState,
    imports_records,
    key_codec,
)
from statemigrate._model._nankeys import has_nan, may_hold_nan, nan_keys, without_stale_nan
from statemigrate._model._schema import SchemaVersion
from statemigrate._runtime._restore import Registered
from statemigrate._snapshot._encode import SectionInput

__all__ = [
    "changes_of",
    "delta_obstacle",
    "delta_section",
    "takes_whole_states_only",
    "writes_own_state",
]


def delta_section(
    entry: Registered,
    changes: PartialState,
    *,
    target: int | None,
    allow_lossy: AllowLossy,
    walk: bool = False,
    check: bool = False,
) -> tuple[SectionInput, tuple[str, ...]]:
    """The section of a delta for one component's changes, at version ``target``;
    ``walk`` and ``check`` as for :meth:`SchemaVersion.export` (a checked plain state
    is validated deep, its changed records only).

    Returns the section and the steps applied on the way (record steps only).

    Raises:
        ExportError, ValidationError: the changes have no plain form.
        NoMigrationPathError, LossyMigrationError: ``target`` cannot be reached.
        MigrationStepError: a record step raised, or the plan needs a whole-data step
            (which cannot migrate a delta).
    """
    registry = entry.registry
    version = entry.spec.version
    schema = registry.schema_for(entry.component, version)
    _refuse_two_nan_keys(entry, schema, changes)
    state = schema.export(changes.state, walk=walk, check=check)
    deleted = {
        name: _deleted_keys(schema, name, keys, changes.state.get(name, ()))
        for name, keys in changes.deleted.items()
    }
    steps: tuple[str, ...] = ()
    if target is not None and target != version:
        plan = registry.plan(entry.component, version, target, allow_lossy=allow_lossy)
        if not plan.record_wise:
            whole = plan.whole_steps[0]
            raise MigrationStepError(
                entry.component,
                whole.source,
                whole.target,
                str(whole),
                "a whole-data step cannot migrate a delta; send a full snapshot",
                instance=entry.instance,
            )
        result = registry.migrate(
            entry.component,
            state,
            version,
            target,
            allow_lossy=allow_lossy,
            instance=entry.instance,
        )
        state, steps, version = result.data, result.step_names, target
        schema = registry.schema_for(entry.component, version)
    data = {"state": state, "deleted": deleted, "moved": changes.moved}
    return (
        SectionInput(entry.component, entry.instance, version, schema.fingerprint, data),
        steps,
    )


def _refuse_two_nan_keys(entry: Registered, schema: SchemaVersion, changes: PartialState) -> None:
    """Refuse a delta that sets a NaN key where the live dict holds another one.

    Each ``float("nan")`` is a new key, unequal to every other, so a dict may come to
    hold two. A snapshot writes both as ``nan`` and refuses them; a delta carries only
    the record set, and would restore it over the other without a word. So when the
    records set hold a NaN key, the live dict's are counted (a pass over it, paid only
    then)."""
    for name in changes.deleted:
        records = changes.state.get(name)
        if not records or not has_nan(records):
            continue
        live = getattr(entry.obj, name, None)
        if isinstance(live, Mapping) and nan_keys(live) > 1:
            raise ExportError(
                entry.component,
                schema.version,
                f"{name}[nan]",
                "two keys are both written as 'nan'",
                instance=entry.instance,
            )


def _deleted_keys(schema: SchemaVersion, name: str, keys: list[Any], records: Any) -> list[Any]:
    """The plain form of the keys a delta deletes from record field ``name``."""
    codec = key_codec(schema, name)
    if may_hold_nan(codec):
        keys = without_stale_nan(keys, records)
    return codec.export(keys, schema=schema, field=name)


def takes_whole_states_only(obj: object) -> bool:
    """Whether a component can only be given a whole state: it has its own
    ``import_state`` (or ``export_state``) and not the records protocol."""
    return writes_own_state(obj) and not imports_records(obj)


def delta_obstacle(
    entry: Registered, source_version: int, *, allow_lossy: AllowLossy
) -> str | None:
    """Why ``entry`` cannot take deltas written at ``source_version``, or ``None`` when
    it can: its state is written through the default path or it follows the records
    protocol, and the plan from that version has record steps only."""
    if takes_whole_states_only(entry.obj):
        return f"{entry.key} has its own import_state and no import_records/export_records"
    try:
        plan = entry.registry.plan(
            entry.component, source_version, entry.spec.version, allow_lossy=allow_lossy
        )
    except StateMigrateError as exc:
        return f"{entry.key}: {exc}"
    if not plan.record_wise:
        return f"{entry.key}: step {plan.whole_steps[0]} needs the whole data"
    return None


def changes_of(entry: Registered) -> ComponentChanges | None:
    """The change tracking of ``entry``, or ``None`` when it cannot tell what changed."""
    return ComponentChanges.attach(entry.obj, registry=entry.registry)


def writes_own_state(obj: object) -> bool:
    """Whether the component reads or writes its state through its own methods."""
    return callable(getattr(obj, "import_state", None)) or callable(
        getattr(obj, "export_state", None)
    )
