"""The restore transaction: verify, decode, migrate, validate, then apply all or nothing.

Nothing touches a live component until every section has been verified, decoded,
migrated to the version its component runs and validated against that version's
schema. Only then are the states applied, one component after another; if applying any
of them fails (even with ``KeyboardInterrupt`` or ``MemoryError``), every component
already changed is given back the state it exported before the attempt.

The "before" states are kept by reference, so taking them copies nothing even for
large caches; a component is given back its state in the form its ``import_state``
takes (a form ``export_state`` returned otherwise is validated again, on the rollback
path only). Rolling back by reference relies on one contract of components, which the
default import honours: ``import_state`` installs the state it is given and does not
mutate objects an earlier ``export_state`` returned. A component that breaks it is
caught: a digest of each component's plain export is taken before anything is applied
and compared after its rollback, and a component that exports anything else is
reported as not rolled back. The digest costs a msgpack pack and a hash of the state
read for the rollback anyway: a few microseconds for the empty components of a fresh
process, and for a large state what packing it for a snapshot costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

from statemigrate._errors import (
    LossyMigrationError,
    MigrationStepError,
    NoMigrationPathError,
    RestoreError,
    SnapshotError,
    StateMigrateError,
    UnknownComponentError,
)
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._component import (
    ComponentSpec,
    component_state,
    import_component,
    importable_state,
    plain_state,
)
from statemigrate._model._fieldchanges import FieldChanges, proves
from statemigrate._model._migrate import raised_by_user_code, run_plan
from statemigrate._runtime._fingerprintwarning import warn_fingerprint_differs
from statemigrate._runtime._gcpause import gc_paused
from statemigrate._runtime._readback import read_back
from statemigrate._runtime._report import ComponentRestore, RestoreReport
from statemigrate._snapshot._format import Snapshot
from statemigrate._snapshot._msgpack import NotPlainError, pack_data

if TYPE_CHECKING:
    from statemigrate._model._plan import Plan
    from statemigrate._model._registry import Registry
    from statemigrate._model._schema import SchemaVersion
    from statemigrate._model._typed import TypedForm

__all__ = ["Registered", "plan_proven", "run_restore"]

logger = logging.getLogger("statemigrate")


@dataclass(frozen=True, slots=True)
class Registered:
    """A live component instance held by a service."""

    obj: object
    spec: ComponentSpec
    instance: str
    registry: Registry
    """Where this component's schemas and steps are found."""

    @property
    def component(self) -> str:
        """The component name."""
        return self.spec.component

    @property
    def key(self) -> str:
        """``component/instance``."""
        return f"{self.spec.component}/{self.instance}"


@dataclass(slots=True)
class _Staged:
    """A section on its way to its component."""

    entry: Registered
    index: int
    data: Any
    report: ComponentRestore | None = None
    validated: bool = False
    """Whether ``data`` is already the validated state (decoded straight into it), or
    becomes it through :attr:`proven`."""
    proven: Plan | None = None
    """Field changes proven to lead from the decoded section to the validated state."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds the migration pipeline spent per phase on this section."""

    def take(self) -> Any:
        """Return the data and drop this item's reference to it."""
        data, self.data = self.data, None
        return data


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self._last
        self._last = now

    def skip(self) -> None:
        """Start the next lap now, counting the time since the last one nowhere."""
        self._last = time.perf_counter()


def run_restore(
    snapshot: Snapshot,
    entries: Sequence[Registered],
    *,
    allow_lossy: AllowLossy,
    strict: bool,
    read_seconds: float,
    verify_seconds: float,
    settled: Sequence[Registered] = (),
    progress: Callable[[float], None] | None = None,
) -> RestoreReport:
    """Run the transaction for a verified snapshot against the registered components.

    ``entries`` are the components to restore; ``settled`` are registered components
    that already hold this snapshot's state: their sections are left alone, and
    neither reported as unclaimed nor applied again. ``progress`` is told the share
    of the work done after each section is decoded and migrated, and after the apply:
    three equal parts, each weighed by the sections' raw sizes.

    Raises:
        RestoreError: any phase failed; every component is as it was before.
        KeyboardInterrupt, SystemExit: re-raised after rolling every component back.
    """
    header = snapshot.header
    clock = _Clock()
    clock.timings = {"read": read_seconds, "verify": verify_seconds}
    staged, unknown, missing = _match(snapshot, entries, settled)
    if strict and (unknown or missing):
        parts = []
        if unknown:
            parts.append(f"snapshot sections no component claims: {', '.join(unknown)}")
        if missing:
            parts.append(f"components the snapshot lacks: {', '.join(missing)}")
        raise RestoreError("verify", "; ".join(parts) + " (strict mode)")

    tell = _Progress(snapshot, staged, progress)
    with gc_paused():
        for item in staged:
            _decode(snapshot, item, allow_lossy=allow_lossy)
            tell.done(item)
        clock.lap("decode")
        for item in staged:
            _migrate(snapshot, item, allow_lossy=allow_lossy)
            tell.done(item)
        # The pipeline ran both phases per section and timed each.
        clock.skip()
        for phase in ("migrate", "validate"):
            clock.timings[phase] = sum(item.timings.get(phase, 0.0) for item in staged)
    _apply_all(staged)
    clock.lap("apply")
    tell.finished()
    return RestoreReport(
        snapshot_id=header.snapshot_id,
        generation=header.generation,
        skipped=False,
        components=tuple(item.report for item in staged if item.report is not None),
        unknown=tuple(unknown),
        missing=tuple(missing),
        already_restored=tuple(entry.key for entry in settled),
        size=snapshot.size,
        timings=clock.timings,
    )


class _Progress:
    """Tells a progress callback how much of a restore's work is done."""

    def __init__(
        self,
        snapshot: Snapshot,
        staged: Sequence[_Staged],
        report: Callable[[float], None] | None,
    ) -> None:
        self._report = report
        sections = snapshot.header.sections
        # Weighed by size; an empty section still counts for one byte.
        self._weights = {id(item): max(1, sections[item.index].raw_size) for item in staged}
        self._total = 3 * sum(self._weights.values()) or 1
        self._done = 0

    def done(self, item: _Staged) -> None:
        if self._report is not None:
            self._done += self._weights[id(item)]
            self._report(self._done / self._total)

    def finished(self) -> None:
        if self._report is not None:
            self._report(1.0)


def _match(
    snapshot: Snapshot, entries: Sequence[Registered], settled: Sequence[Registered] = ()
) -> tuple[list[_Staged], list[str], list[str]]:
    by_key = {(e.component, e.instance): e for e in entries}
    done = {(e.component, e.instance) for e in settled}
    staged: list[_Staged] = []
    unknown: list[str] = []
    for index, section in enumerate(snapshot.header.sections):
        entry = by_key.pop((section.component, section.instance), None)
        if entry is None:
            if (section.component, section.instance) not in done:
                unknown.append(section.key)
        else:
            staged.append(_Staged(entry, index, None))
    missing = [f"{e.component}/{e.instance}" for e in by_key.values()]
    return staged, unknown, missing


def _decode(snapshot: Snapshot, item: _Staged, *, allow_lossy: AllowLossy) -> None:
    section = snapshot.header.sections[item.index]
    item.proven = _proven_plan(item.entry, section.version, allow_lossy)
    form, into_state = _typed_form(item.entry, section.version, section.fingerprint, item.proven)
    try:
        if form is None:
            item.data = snapshot.read_section(item.index)
        else:
            item.data, exact = snapshot.read_typed(item.index, form)
            item.validated = exact and into_state
    except SnapshotError as exc:
        raise RestoreError("decode", str(exc), component=item.entry.key) from exc


def _proven_plan(entry: Registered, version: int, allow_lossy: AllowLossy) -> Plan | None:
    """The plan from ``version`` when it is made of proven field changes only, else None
    (the pipeline then plans again, and reports what is wrong with the plan)."""
    if version == entry.spec.version:
        return None
    registry = entry.registry
    try:
        plan = registry.plan(entry.component, version, entry.spec.version, allow_lossy=allow_lossy)
    except StateMigrateError:
        return None
    return plan if plan_proven(plan, registry) else None


def plan_proven(plan: Plan, registry: Registry) -> bool:
    """Whether every step of ``plan`` is a :class:`FieldChanges` step proven between the
    schemas of its versions (see ``statemigrate._model._fieldchanges``). An empty plan
    is not: it has nothing to prove."""
    if not plan.steps:
        return False
    for step in plan.steps:
        if not isinstance(step.func, FieldChanges) or step.other_fields is not None:
            return False
        try:
            source = registry.schema_for(step.component, step.source).tree
            target = registry.schema_for(step.component, step.target).tree
        except UnknownComponentError:
            return False
        if source is None or target is None:
            return False
        if not proves(step.func, source, target, step.records):
            return False
    return True


def _typed_form(
    entry: Registered, version: int, fingerprint: str, proven: Plan | None
) -> tuple[TypedForm | None, bool]:
    """The typed form to decode a section into (its version's schema's, when this code
    has one), and whether what it decodes is the state: when the section was written
    by that very schema and needs no step, or proven steps only.

    Otherwise the steps run on plain data, and a form whose bytes are read in C (its
    ``layout``) is only a faster way to it: what it decodes exactly is what plain
    decoding returns (see ``_snapshot._msgpack.unpack_typed``). Any other form would
    cost more than plain decoding there, checking an order no step needs.
    """
    try:
        schema = entry.registry.schema_for(entry.component, version)
    except UnknownComponentError:
        return None, False  # the pipeline reports it
    form = schema.typed
    validated_by_decoding = version == entry.spec.version or proven is not None
    if schema.fingerprint == fingerprint and validated_by_decoding:
        return form, True
    return (form, False) if form is not None and form.layout is not None else (None, False)


def _migrate(snapshot: Snapshot, item: _Staged, *, allow_lossy: AllowLossy) -> None:
    """Bring a decoded section to the version its component runs, validated.

    The section's data is the restore's own, so it is handed to the pipeline without
    a copy, and validation can keep it as it is.
    """
    section = snapshot.header.sections[item.index]
    entry = item.entry
    registry = entry.registry
    try:
        source_schema = registry.schema_for(entry.component, section.version)
    except UnknownComponentError:
        # Versions this code never knew (newer code wrote them) are fine as long as a
        # step leads from them; the planner says so if none does. There is no schema
        # of ours to compare with, so no fingerprint can differ.
        fingerprint_matches = False
        read_back = 0.0
        logger.debug(
            "%s: this code has no schema for the snapshot's version %d; its steps read it",
            entry.key,
            section.version,
        )
    else:
        fingerprint_matches = source_schema.fingerprint == section.fingerprint
        read_back = 0.0
        if not fingerprint_matches:
            warn_fingerprint_differs("snapshot", entry.key, source_schema, section.fingerprint)
            read_back, read_state = _check_read_back(item, source_schema, section.version)
            if not item.validated and section.version == entry.spec.version:
                # The check validated the section into the very schema it restores into,
                # with no step between: that is the state, so it is not validated twice.
                item.take()
                item.data, item.validated = read_state, True
    if item.validated and item.proven is not None:
        # Decoded straight into its own schema; the proven steps keep it validated.
        item.data, item.timings, steps = _run_proven(item, item.proven)
    elif item.validated:
        # Decoded straight into the schema it runs: no step to run, nothing to check.
        item.timings = {"migrate": 0.0, "validate": 0.0}
        steps = ()
    else:
        item.data, item.timings, steps = _run_pipeline(item, section.version, allow_lossy)
    # The read-back check validates the section too: its seconds count as validation's,
    # so that the phases still add up to the whole restore.
    item.timings = {**item.timings, "validate": item.timings.get("validate", 0.0) + read_back}
    item.report = ComponentRestore(
        component=entry.component,
        instance=entry.instance,
        source_version=section.version,
        target_version=entry.spec.version,
        steps=steps,
        raw_size=section.raw_size,
        stored_size=section.stored_size,
        fingerprint_matches=fingerprint_matches,
    )


def _check_read_back(
    item: _Staged, schema: SchemaVersion, version: int
) -> tuple[float, Any]:
    """Refuse a section written under ``version`` by a schema other than this code's,
    when this code's would not read it back as written; return the seconds the check
    took and the state ``schema`` validated the section into.

    A schema edited without a new version (a field renamed, a type narrowed) would
    otherwise drop or change data with no error: validation ignores unknown keys and
    fills the renamed field from its default. Schemas that differ in form only (a
    description, a title) read the data back as written and restore as usual.
    """
    started = time.perf_counter()
    state, problem = read_back(schema, item.data, version)
    if problem is not None:
        raise RestoreError("validate", problem, component=item.entry.key)
    seconds = time.perf_counter() - started
    logger.info(
        "%s: the section reads back as written (checked in %.1f ms, counted in validate)",
        item.entry.key,
        seconds * 1000,
    )
    return seconds, state


def _run_proven(item: _Staged, plan: Plan) -> tuple[Any, dict[str, float], tuple[str, ...]]:
    """The validated state of a section decoded into its own schema: the plan's steps,
    proven to give what validation would, run with no validation after them."""
    entry = item.entry
    try:
        result = run_plan(plan, item.take(), schema=None, copy=False, instance=entry.instance)
    except MigrationStepError as exc:
        raise RestoreError(
            "migrate", exc.detail, component=entry.key, step=exc.step
        ) from raised_by_user_code(exc)
    return result.data, {"migrate": result.timings["migrate"], "validate": 0.0}, result.step_names


def _run_pipeline(
    item: _Staged, source: int, allow_lossy: AllowLossy
) -> tuple[Any, dict[str, float], tuple[str, ...]]:
    """The validated state of a plain section: its steps run, its target validated."""
    entry = item.entry
    try:
        result = entry.registry.migrate(
            entry.component,
            item.take(),  # passed on with no other reference left
            source,
            entry.spec.version,
            allow_lossy=allow_lossy,
            copy=False,
            export=False,
            instance=entry.instance,
        )
    except MigrationStepError as exc:
        raise RestoreError(
            "migrate", exc.detail, component=entry.key, step=exc.step
        ) from raised_by_user_code(exc)
    except (NoMigrationPathError, LossyMigrationError) as exc:
        raise RestoreError("migrate", str(exc), component=entry.key) from exc
    except StateMigrateError as exc:
        raise RestoreError(
            "validate", str(exc), component=entry.key, step=_last_step(entry, source, allow_lossy)
        ) from raised_by_user_code(exc)
    return result.state, result.timings, result.step_names


def _last_step(entry: Registered, source: int, allow_lossy: AllowLossy) -> str | None:
    """The step whose output was being validated, when steps ran: the one to look at
    when it does not fit (a validation error names the path, not the step)."""
    try:
        steps = entry.registry.plan(
            entry.component, source, entry.spec.version, allow_lossy=allow_lossy
        ).steps
    except StateMigrateError:
        return None
    return str(steps[-1]) if steps else None


@dataclass(slots=True)
class _Before:
    """A component's state before the attempt: what to import again, and its digest."""

    state: Any
    digest: bytes | None
    """Of the packed plain export; None when that export cannot be taken, and for a
    state that holds nothing (see :func:`_holds_nothing`)."""

    @property
    def unchecked(self) -> bool:
        """Whether a rollback to this state cannot be checked."""
        return self.digest is None and not _holds_nothing(self.state)


def _holds_nothing(state: Any) -> bool:
    """Whether ``state`` is one of a component that holds nothing yet: ``None`` (an
    ``export_state`` that returns None until the component holds something), or the
    fields of a component without one, every attribute still ``None``. No schema
    describes either, and none is needed to check a rollback: the state must be that
    again (see :func:`_roll_back`)."""
    return state is None or (
        type(state) is dict and bool(state) and all(value is None for value in state.values())
    )


def _take_before(item: _Staged) -> _Before:
    entry = item.entry
    try:
        state = component_state(entry.obj, registry=entry.registry)
    except Exception as exc:
        # Refused, not applied unchecked: the rollback imports this very state again,
        # and without it a failure of any component's import could not be undone.
        raise RestoreError(
            "apply",
            f"cannot read the current state, which a rollback would need:"
            f" {type(exc).__name__}: {exc}",
            component=entry.key,
        ) from exc
    if _holds_nothing(state):
        # A copy of a dict of Nones is the whole of it, and out of reach of an import
        # that would change the dict it was given.
        return _Before(state if state is None else dict(state), None)
    try:
        # Not proven (validated back): only compared with the export after a rollback,
        # which would otherwise run the schema's validators over the live state twice.
        digest = _export_digest(entry, state)
    except Exception as exc:
        # A state that cannot be exported is about to be replaced anyway; its rollback
        # is still attempted, it just cannot be checked. Said once per component: a
        # test suite restoring into new components again and again would be flooded.
        level = logging.DEBUG if entry.key in _UNCHECKED_SAID else logging.WARNING
        _UNCHECKED_SAID.add(entry.key)
        logger.log(
            level,
            "%s: current state has no plain export (%s: %s); its rollback is not checked",
            entry.key,
            type(exc).__name__,
            exc,
        )
        digest = None
    return _Before(state, digest)


_UNCHECKED_SAID: set[str] = set()
"""The components whose unchecked rollback was logged as a warning already."""


def _export_digest(entry: Registered, state: Any) -> bytes:
    """The digest of the plain export of ``state``, the component's own state.

    A ``TypedDict`` state is exported as it is, and may still hold values the packer
    takes only converted (an ``OrderedDict`` where the schema has a ``dict``): a commit
    then exports it again with a walk, and so does this, or such a component's rollback
    could not be checked at all.
    """
    plain = plain_state(entry.obj, state, registry=entry.registry, prove=False)
    try:
        return _digest(plain)
    except NotPlainError:
        walked = plain_state(entry.obj, state, registry=entry.registry, prove=False, walk=True)
        return _digest(walked)


def _digest(plain: object) -> bytes:
    """A digest of plain data that tells two exports apart.

    The bytes msgpack writes for the data, hashed: an empty component costs a few
    microseconds, a large one about as much as packing it for a snapshot.
    """
    return xxhash.xxh3_128_digest(pack_data(plain))


def _apply_all(staged: Sequence[_Staged]) -> None:
    """Import every staged state, or put every component back as it was."""
    # Not the plain export: a custom import_state takes back what export_state gave
    # (or its validated form). The plain export is only hashed, so that the rollback
    # can be checked even if a failing import mutated the objects the state refers to.
    before = [_take_before(item) for item in staged]
    applied = 0
    try:
        for item in staged:
            applied += 1  # counted first: a half-done import must be rolled back too
            import_component(item.entry.obj, item.data, registry=item.entry.registry)
    except BaseException as exc:
        failed = staged[applied - 1].entry.key
        rollback_errors, interrupt = _roll_back(staged[:applied], before[:applied])
        if not isinstance(exc, Exception):
            if rollback_errors:
                exc.add_note(f"statemigrate: rollback failed for {', '.join(rollback_errors)}")
            raise  # KeyboardInterrupt, SystemExit: state is back, let them through
        if interrupt is not None:
            raise interrupt from exc
        unchecked = [
            item.entry.key
            for item, earlier in zip(staged[:applied], before[:applied], strict=True)
            if earlier.unchecked and item.entry.key not in rollback_errors
        ]
        raise RestoreError(
            "apply",
            f"{type(exc).__name__}: {exc}",
            component=failed,
            rollback_failed=rollback_errors,
            rollback_unchecked=unchecked,
        ) from exc


def _roll_back(
    staged: Sequence[_Staged], before: Sequence[_Before]
) -> tuple[list[str], BaseException | None]:
    """Import the earlier states again, newest first; report what could not be.

    A rollback fails when the import raises, and also when the component then exports
    something else than before the attempt (a failing import that emptied the very
    objects its earlier export returned, say).

    Returns the components whose rollback failed, and the first KeyboardInterrupt (or
    other non-``Exception``) raised meanwhile. Every component is attempted whatever
    happens to the others: stopping at an interrupt would leave the rest half-applied.
    """
    failures = []
    interrupt: BaseException | None = None
    for item, earlier in zip(reversed(staged), reversed(before), strict=True):
        entry = item.entry
        try:
            state = importable_state(entry.obj, earlier.state, registry=entry.registry)
            import_component(entry.obj, state, registry=entry.registry)
            if _holds_nothing(earlier.state):
                now = component_state(entry.obj, registry=entry.registry)
                if not (now is None if earlier.state is None else now == earlier.state):
                    raise _Differs("it holds something, where it held nothing before the restore")
            elif earlier.digest is not None:
                now = _export_digest(entry, component_state(entry.obj, registry=entry.registry))
                if now != earlier.digest:
                    raise _Differs("its export differs from the one before the restore")
        except BaseException as exc:
            logger.error("rollback of %s failed: %s: %s", entry.key, type(exc).__name__, exc)
            failures.append(entry.key)
            if interrupt is None and not isinstance(exc, Exception):
                interrupt = exc
    return failures, interrupt


class _Differs(Exception):
    """A component imported its earlier state, yet does not export what it did."""
