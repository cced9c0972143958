"""The migration pipeline: copy, apply a plan's steps, validate, export.

Every caller that brings data from one version to another goes through
:func:`run_plan` (usually by way of :meth:`Registry.migrate
<statemigrate._model._registry.Registry.migrate>`, which plans first): a restore, a
snapshot written for older targets, the ``migrate`` command and the property checks.
So they all copy the same way, report a failing step the same way
(:class:`~statemigrate.MigrationStepError` naming ``sessions 1 -> 2 (add_ttl)``) and
validate the same way.

Who copies: the pipeline, when told to (``copy=True``, the default). Steps may mutate
their input, so a caller that still needs its data (a live component's export) asks
for a copy; a caller that owns its data (a restore's decoded section) hands it over
with ``copy=False`` and must not use it afterwards. Either way the pipeline then owns
the data it migrates, so validation takes it over through
:meth:`SchemaVersion.adopt <statemigrate._model._schema.SchemaVersion.adopt>`, which
keeps it without a copy whenever pydantic would only have copied it. For that to
work the data must have no other reference left: pass it as the call's argument
(``registry.migrate(name, take(), ...)``) rather than from a name kept alive across
the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pydantic

from statemigrate._errors import MigrationStepError, StateMigrateError, ValidationError
from statemigrate._model._compare import first_changed_value
from statemigrate._model._fieldchanges import FieldChanges
from statemigrate._model._paths import FieldName, format_path, located_path
from statemigrate._model._plaindata import (
    INT_MAX,
    INT_MIN,
    copy_plain,
    find_not_plain,
    strictly_plain,
)
from statemigrate._model._plan import Plan, Step, failed_record, more_failures
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._validity import Unsure

__all__ = ["MigrationResult", "raised_by_user_code", "run_plan"]


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What the pipeline made of one piece of data.

    Attributes:
        plan: the plan that was run (its steps, source and target).
        data: plain data at the target version: the export of :attr:`state` when the
            data was validated and exported (:attr:`state` itself when it is its own
            plain form: see :attr:`SchemaVersion.exports_as_is`), the steps' output as
            it is when it was not validated, and ``None`` when it was validated but not
            exported.
        state: the validated state at the target version (what
            :meth:`SchemaVersion.validate` returns), or ``None`` when not validated.
        timings: seconds spent per phase: ``copy``, ``migrate`` (the steps),
            ``validate`` and ``export``.
    """

    plan: Plan
    data: Any = field(repr=False)
    state: Any = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps applied, in order."""
        return self.plan.steps

    @property
    def step_names(self) -> tuple[str, ...]:
        """The steps applied, printed (``sessions 1 -> 2 (add_ttl)``)."""
        return tuple(str(step) for step in self.plan.steps)


def run_plan(
    plan: Plan,
    data: Any,
    *,
    schema: SchemaVersion | None,
    copy: bool = True,
    export: bool = True,
    instance: str | None = None,
) -> MigrationResult:
    """Bring ``data`` through ``plan``, then validate it against ``schema``.

    Args:
        plan: the steps to run.
        data: plain data at ``plan.source``.
        schema: the schema of ``plan.target`` to validate against, or ``None`` to
            return the steps' output unvalidated.
        copy: run the steps on a private copy, leaving ``data`` as it was. With
            ``False`` the data is handed over: steps may change it in place and the
            validated state may be made of it.
        export: with a schema, also export the validated state to plain data (with a
            full walk, so the result holds plain values only).
        instance: the component instance, named in error messages.

    Raises:
        MigrationStepError: a step raised (the step's exception is chained),
            returned ``None``, or returned data that is not plain (``path`` says where).
        ValidationError: the result does not fit ``schema``; ``instance`` is set.
        ExportError: the validated state does not export so that it comes back the same.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if copy:
        data = copy_plain(data)
    copied = time.perf_counter()
    timings["copy"] = copied - started
    checked_plain = packs = False
    # The last step's output can be checked for plain data and for fitting the schema
    # in one walk (SchemaVersion.in_place_plain); its own plain check then waits.
    proving = schema is not None and schema.in_place_plain is not None
    for step in plan.steps:
        try:
            # Also refuses a step that forgot to return (a record step, where the
            # target's records cannot be None).
            data = step.apply(data, none_refused=plan.refuses_none(step))
        except Exception as exc:
            detail, path = f"{type(exc).__name__}: {exc}", None
            record = failed_record(exc)
            if record is not None:
                field, key = record
                path = format_path([FieldName(field), key])
                more = more_failures(exc)
                also = "" if more is None else more.describe(field)
                detail += f" (on the record at {path}{also})"
            raise MigrationStepError(
                step.component,
                step.source,
                step.target,
                str(step),
                detail,
                instance=instance,
                path=path,
            ) from exc
        checked_plain = not isinstance(step.func, FieldChanges)
        # Plain data in, plain data out; whether it also packs as it is, for the export.
        if not (checked_plain and proving and step is plan.steps[-1]):
            packs = checked_plain and _check_plain(step, data, instance)
    migrated = time.perf_counter()
    timings["migrate"] = migrated - copied
    if schema is None:
        return MigrationResult(plan, data, None, timings)
    box = [data]
    del data  # the box holds the only reference, so adopt can keep the data
    proven = False
    if checked_plain and proving:
        # One walk: plain data that fits as it is. Otherwise the plain check the
        # step's output still owes (its refusal names the step), then validation.
        proven = schema.adopt_proven(box)
        packs = proven or _check_plain(plan.steps[-1], box[0], instance)
    # When the last step's output passed the plain-data check, adopt may count on it.
    # A copy that validation made is compared with what it was made from: the steps'
    # output, or a plain state as its snapshot holds it (see _refuse_silent_change).
    compared = bool(plan.steps) or schema.validity is not None
    validated_from: list[Any] | None = [] if compared else None
    if proven:
        state, kept = box.pop(), True
    else:
        state, kept = _validated(
            schema, box, instance, plain=checked_plain, copied=validated_from
        )
    if validated_from:
        # Kept as it is, the data held nothing that validation would have changed.
        if plan.steps:
            _refuse_changed_number(plan, schema, validated_from.pop(), state, instance)
        else:
            _refuse_silent_change(schema, validated_from.pop(), state, instance)
    validated = time.perf_counter()
    timings["validate"] = validated - migrated
    if not export:
        plain = None
    elif kept and packs and schema.exports_as_is:
        # The steps' output packs as it is and validation kept it as it is: the walk
        # would rebuild an equal copy (same values, types and key order), at several
        # times the cost of encoding it, for a downgraded export of a large state.
        plain = state
    else:
        plain = schema.export(state, walk=True)
    timings["export"] = time.perf_counter() - validated
    return MigrationResult(plan, plain, state, timings)


def _check_plain(step: Step, data: Any, instance: str | None) -> bool:
    """Refuse a step's output that is not plain data, naming the step and the path;
    True when it packs as it is (``strictly_plain``), False when it is plain data that
    only the snapshot decoder's wider rule takes (``bytes`` keys, deep nesting).

    Validation alone would let some through (pydantic takes a ``datetime`` or a
    ``set`` where the schema has one), and then a restore would accept what the testing
    kit's checks refuse; the contract is plain data out of every step. This is
    ``not_plain_output``, told in two answers.
    """
    if strictly_plain(data):
        return True
    problem = find_not_plain(data)
    if problem is None:
        return False
    path, what = problem
    where = format_path(path)
    value = _at(data, path)
    if type(value) is int and not INT_MIN <= value <= INT_MAX:
        # Such an int reached the step as its decimal text: the one plain form it has.
        what += "; return an int past 64 bits as its decimal text, str(n), as steps receive it"
    raise MigrationStepError(
        step.component,
        step.source,
        step.target,
        str(step),
        f"it returned data that is not plain at {where}: {what}; a step returns dicts,"
        " lists, str, bytes, 64-bit ints, floats, bools and None",
        instance=instance,
        path=where,
    )


def _at(data: Any, path: list[object]) -> Any:
    """The value at ``path`` (keys and indexes) in plain data."""
    for step in path:
        data = data[step]
    return data


def _validated(
    schema: SchemaVersion,
    box: list[Any],
    instance: str | None,
    *,
    plain: bool,
    copied: list[Any] | None = None,
) -> tuple[Any, bool]:
    """The state validated from the data in ``box``, and whether it is that data kept
    as it is (see :meth:`SchemaVersion.adopt_kept`, which also fills ``copied``)."""
    try:
        return schema.adopt_kept(box, plain=plain, copied=copied)
    except ValidationError as exc:
        if instance is None or exc.instance is not None:
            raise
        raise ValidationError(
            exc.component, exc.version, exc.detail, instance=instance, errors=exc.errors
        ) from exc
    except StateMigrateError:
        raise
    except Exception as exc:
        # pydantic lets everything but ValueError and AssertionError out of a model's
        # own validators (MemoryError from a huge state, a bug in a validator).
        raise ValidationError(
            schema.component, schema.version, f"{type(exc).__name__}: {exc}", instance=instance
        ) from exc


def _refuse_changed_number(
    plan: Plan, schema: SchemaVersion, data: Any, state: Any, instance: str | None
) -> None:
    """Refuse the steps' output when validation made one of its ints a float that is
    another number (``2**53 + 1`` as ``2.0**53`` in a field that a step retyped from
    ``int`` to ``float``), as an export refuses such an int, unless a step of the plan
    declares the field lost (``lossy=("n",)``, or ``lossy=True`` naming no field).

    Made only when validation copied the data: data kept as it is holds no int where a
    float is declared. The float columns are looked at first, at C speed; the data is
    walked (a Python step per value) only when one holds an int, or the schema is not
    one those passes follow."""
    if schema.float_check(data) is False:
        return  # no int in a float column, or no float declared at all
    found = first_changed_value(data, state)
    if found is None:
        return
    path, detail = found
    if any(_declares_lost(step, path) for step in plan.steps):
        return
    last = plan.steps[-1]
    raise ValidationError(
        schema.component,
        schema.version,
        f"at {format_path(path)}: {detail}, validating the output of {last}; declare"
        " the field lost by the step if it is meant to change",
        instance=instance,
    )


def _refuse_silent_change(
    schema: SchemaVersion, data: Any, state: Any, instance: str | None
) -> None:
    """Refuse a plain ``TypedDict`` state, read as its snapshot holds it, that
    validation took changed without a word: a record's key that is not a field (which
    it drops), an int in a ``float`` field that it makes another number.

    A committed snapshot never holds one: the commit checked the state first. But
    ``Service.snapshot()``, which a handoff sends, writes such a state as it is and
    leaves the check to the restore; taking it changed would lose data in the
    successor while the old process, seeing the handoff succeed, stops serving.
    Made only when validation copied the data, which a valid state skips. The check a
    commit makes tells first, in C over the state's columns when it can; the data is
    compared with the copy, a Python step per value, only when that check is unsure
    (a value of another type, which validation converts by design)."""
    try:
        found = schema.change_by_validation(data)
    except Unsure:
        found = first_changed_value(data, state, dropped_keys=True)
        if found is not None:  # a path of keys: named by the schema, as the check names it
            found = located_path(schema.adapter.core_schema, found[0], labelled=False), found[1]
    if found is None:
        return
    path, detail = found
    raise ValidationError(
        schema.component,
        schema.version,
        f"at {format_path(path)}: {detail}; the snapshot was written unchecked (as"
        " Service.snapshot() writes a state for a handoff; commit() checks it first)",
        instance=instance,
    )


def _declares_lost(step: Step, path: list[object]) -> bool:
    """Whether ``step`` is declared lossy for the value at ``path``: lossy naming no
    field, or naming the value or a field above it (``*`` for any key or item)."""
    if not step.lossy:
        return False
    if not step.lost_fields:
        return True
    names = [str(part) for part in path]
    for lost in step.lost_fields:
        parts = lost.split(".")
        if len(parts) <= len(names) and all(
            part in ("*", name) for part, name in zip(parts, names, strict=False)
        ):
            return True
    return False


def raised_by_user_code(error: StateMigrateError) -> BaseException:
    """The exception of user code that the pipeline reported as ``error``, else ``error``.

    That is a step's own exception behind a :class:`MigrationStepError`, and a model
    validator's behind a :class:`ValidationError` that reports one (pydantic lets all
    but ``ValueError`` and ``AssertionError`` out). A restore chains its error to it.
    """
    cause = error.__cause__
    if cause is None:
        return error
    if isinstance(error, MigrationStepError):
        return cause
    if isinstance(error, ValidationError) and not isinstance(
        cause, StateMigrateError | pydantic.ValidationError
    ):
        return cause
    return error
