"""The migration registry: schema versions and steps per component, and the decorators.

It also holds the mark ``@migratable`` leaves on a component class
(:class:`ComponentSpec`), since the mark names the registry that resolves it; exporting
and importing a marked object's state is :mod:`statemigrate._model._component`'s job,
finding and importing a migrations directory's files
:mod:`statemigrate._model._migrationfiles`'s.

A :class:`Registry` holds, for each component, its schema versions and the migration
steps between them, and plans a path between any two versions. Registration errors
(duplicates, self-loops, invalid versions) are raised at registration time, so a
broken set of migrations fails when it is imported, not during a restore.

The module-level decorators :func:`schema`, :func:`migration` and :func:`migratable`
register into :data:`default_registry`, except in two cases: ``registry=`` names
another registry, or the decorator runs while :meth:`Registry.load_migrations` imports
a migrations module, in which case it registers into the registry being loaded. That is
how a migrations directory is written once and loaded into any registry (a service's,
a fresh one per test)::

    # migrations/sessions_0001_add_ttl.py
    from statemigrate import migration

    @migration("sessions", 1, 2)
    def add_ttl(data): ...
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from statemigrate._errors import LossyMigrationError, RegistrationError, UnknownComponentError
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy, lossy_allowed
from statemigrate._model._fieldpaths import (
    lost_path_problem,
    records_problem,
    records_refuse_none,
)
from statemigrate._model._migrate import MigrationResult, run_plan
from statemigrate._model._migrationfiles import import_file, migration_files
from statemigrate._model._plan import (
    Plan,
    RecordFunc,
    Step,
    StepFunc,
    check_component,
    check_version,
    plan_path,
    reachable,
)
from statemigrate._model._schema import SchemaVersion

__all__ = [
    "ComponentSpec",
    "Registry",
    "bind_component",
    "component_spec",
    "default_registry",
    "is_migratable",
    "migratable",
    "migration",
    "schema",
]

T = TypeVar("T")
C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])

Lossy = bool | Iterable[str]
"""``True`` for a lossy step, or the names of the fields it loses (also lossy)."""

SPEC_ATTRIBUTE = "__statemigrate__"


class Registry:
    """Schema versions and migration steps of any number of components.

    Thread-safe: registration and lookups take an internal lock. Create one per service
    (or per test); the module-level decorators use :data:`default_registry`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._schemas: dict[str, dict[int, SchemaVersion]] = {}
        self._steps: dict[str, dict[tuple[int, int], Step]] = {}
        # Whether a schema's records under a field certainly cannot be None, by
        # (component, version, field): a walk of its core schema, asked at every plan.
        # A registered version's schema never changes, so neither does the answer.
        self._none_refused: dict[tuple[str, int, str], bool] = {}
        # Components this release dropped on purpose: a restore drops their sections
        # instead of carrying them into the service's snapshots.
        self._retired: set[str] = set()

    def __repr__(self) -> str:
        return f"<Registry components={self.components()!r}>"

    # --- registration ------------------------------------------------------------------

    def schema(self, component: str, *, version: int) -> Callable[[T], T]:
        """Decorator: register the decorated type as schema ``version`` of ``component``.

        Returns the type unchanged. See :meth:`add_schema` for the errors.
        """

        def decorate(type_: T) -> T:
            self.add_schema(component, version, type_)
            return type_

        return decorate

    def add_schema(self, component: str, version: int, type_: object) -> SchemaVersion:
        """Register ``type_`` as schema ``version`` of ``component``.

        Raises:
            RegistrationError: invalid name or version; the version is already
                registered; or pydantic cannot use the type (including a
                ``typing.TypedDict`` on Python < 3.12).
        """
        built = SchemaVersion.create(component, version, type_)
        with self._lock:
            self._refuse_retired(component)
            versions = self._schemas.setdefault(component, {})
            if version in versions:
                raise RegistrationError(
                    f"schema {component!r} version {version} is already registered"
                    f" ({versions[version].type!r})"
                )
            versions[version] = built
        return built

    def migration(
        self,
        component: str,
        source: int,
        target: int,
        *,
        lossy: Lossy = False,
        records: str | None = None,
        other_fields: StepFunc | None = None,
    ) -> Callable[[F], F]:
        """Decorator: register the decorated function as a step from ``source`` to ``target``.

        The function takes plain data of the source version and returns plain data of
        the target version; it may mutate its argument and return it. Declare
        ``lossy=True``, or ``lossy=("field", ...)`` naming what is lost, when the step
        drops or defaults information. Returns the function unchanged.

        With ``records="entries"`` it is a record step: the function takes one record
        of the top-level ``dict`` field ``entries``, as ``(key, value)``, and returns
        its new value; the other fields are left as they are. Record steps migrate
        deltas as well as whole states, which a pre-copy hand-over needs.
        ``other_fields`` is its optional whole-data part for the other fields (see
        :class:`~statemigrate.Step`).
        """

        def decorate(func: F) -> F:
            self.add_migration(
                component, source, target, func,
                lossy=lossy, records=records, other_fields=other_fields,
            )
            return func

        return decorate

    def add_migration(
        self,
        component: str,
        source: int,
        target: int,
        func: StepFunc | RecordFunc,
        *,
        lossy: Lossy = False,
        name: str | None = None,
        records: str | None = None,
        other_fields: StepFunc | None = None,
    ) -> Step:
        """Register ``func`` as the step of ``component`` from ``source`` to ``target``.

        With ``records``, ``func`` is a record step on that field, and
        ``other_fields`` its optional part for the other fields (see
        :meth:`migration`).

        ``records`` and the fields named in ``lossy`` are checked against the schemas
        registered by then (the source version's, and for ``records`` the target's);
        :meth:`check` checks steps registered before their schemas.

        Raises:
            RegistrationError: invalid name or versions, ``source == target``, a step
                between these versions is already registered, ``lossy`` is neither a
                bool nor an iterable of field names, ``records`` names no field of a
                registered end's schema or one that holds no ``dict``, or a lost field
                names no field of the registered source schema.
        """
        flag, lost = _lossy_fields(lossy)
        step = Step(
            component, source, target, func, name or "", flag, lost, records, other_fields
        )
        with self._lock:
            self._refuse_retired(component)
            steps = self._steps.setdefault(component, {})
            if (source, target) in steps:
                raise RegistrationError(
                    f"a migration step {steps[(source, target)]} is already registered"
                )
            problems = self._field_problems(step)
            if problems:
                raise RegistrationError("; ".join(problems))
            steps[(source, target)] = step
        return step

    def migratable(self, component: str, *, version: int) -> Callable[[type[C]], type[C]]:
        """Decorator: mark a class as component ``component`` at schema ``version``.

        The class is bound to this registry (see :class:`ComponentSpec`). The schema
        version may be registered later; looking it up fails until it is.

        Raises:
            RegistrationError: the component is retired in this registry.
        """
        self._refuse_retired(component)

        def decorate(cls: type[C]) -> type[C]:
            return bind_component(cls, ComponentSpec(component, version, self))

        return decorate

    def retire(self, component: str) -> None:
        """Declare that this release retired ``component`` on purpose.

        A snapshot section of a component that no registered instance claims is
        carried: kept as it was read and written unchanged into the service's later
        snapshots, so that a release that still has the component restores it (after a
        rollback, say). A retired component's sections are dropped at restore instead,
        with an INFO line, and no longer written. Retiring twice is retiring once.

        Raises:
            RegistrationError: ``component`` is no valid name, or this registry holds a
                schema or a step of it (a component with schemas is not retired).
        """
        check_component(component)
        with self._lock:
            if component in self._schemas or component in self._steps:
                raise RegistrationError(
                    f"cannot retire component {component!r}: this registry holds its"
                    " schemas or steps; remove them from the release that retires it"
                )
            self._retired.add(component)

    def retired(self) -> list[str]:
        """The components retired with :meth:`retire`, sorted."""
        with self._lock:
            return sorted(self._retired)

    def _refuse_retired(self, component: str) -> None:
        if component in self._retired:
            raise RegistrationError(
                f"component {component!r} is retired in this registry (Registry.retire);"
                " a retired component has no schemas or steps"
            )

    # --- lookups -----------------------------------------------------------------------

    def components(self) -> list[str]:
        """Every component with a schema or a step, sorted."""
        with self._lock:
            return sorted(self._schemas.keys() | self._steps.keys())

    def versions(self, component: str) -> list[int]:
        """The schema versions of ``component``, ascending (may be empty if it has only
        steps).

        Raises:
            UnknownComponentError: nothing is registered for ``component``.
        """
        with self._lock:
            self._require(component)
            return sorted(self._schemas.get(component, {}))

    def schema_for(self, component: str, version: int) -> SchemaVersion:
        """Return schema ``version`` of ``component``.

        Raises:
            UnknownComponentError: the component, or that version of it, is not
                registered; ``known`` lists what is.
        """
        with self._lock:
            self._require(component)
            versions = self._schemas.get(component, {})
            if version not in versions:
                raise UnknownComponentError(component, version, known=versions)
            return versions[version]

    def latest(self, component: str) -> SchemaVersion:
        """Return the highest schema version of ``component``.

        Raises:
            UnknownComponentError: no schema is registered for ``component``.
        """
        with self._lock:
            versions = self._schemas.get(component)
            if not versions:
                raise UnknownComponentError(component, known=self._schemas)
            return versions[max(versions)]

    def steps(self, component: str) -> list[Step]:
        """The steps of ``component``, sorted by ``(source, target)``.

        Raises:
            UnknownComponentError: nothing is registered for ``component``.
        """
        with self._lock:
            self._require(component)
            steps = self._steps.get(component, {})
            return [steps[key] for key in sorted(steps)]

    def plan(
        self, component: str, source: int, target: int, *, allow_lossy: AllowLossy = False
    ) -> Plan:
        """Plan the steps that bring ``component`` from ``source`` to ``target``.

        The plan avoids lossy steps whenever a loss-free path exists, then takes the
        fewest steps; ties are broken the same way every time (see
        :func:`~statemigrate._model._plan.plan_path`). ``source == target`` gives an empty plan.

        Raises:
            UnknownComponentError: nothing is registered for ``component``.
            NoMigrationPathError: no chain of steps connects the versions; it names
                ``target`` or ``source`` when no schema or step registers it.
            LossyMigrationError: every path loses data and ``allow_lossy`` does not
                allow loss for ``component`` (it is neither True nor names it).
            ConfigurationError: ``allow_lossy`` is neither a bool nor component names.
        """
        steps = self.steps(component)
        try:
            plan = plan_path(
                component,
                steps,
                source,
                target,
                allow_lossy=lossy_allowed(allow_lossy, component),
                versions=self.versions(component),
            )
        except LossyMigrationError as exc:
            allowed = check_allow_lossy(allow_lossy)
            if isinstance(allowed, bool):
                raise
            # Its cure keeps the components allowed already.
            raise LossyMigrationError(
                component, source, target, exc.steps, allowed=allowed
            ) from None
        refused = frozenset(
            (step.source, step.target) for step in plan.steps if self.refuses_none(step)
        )
        return replace(plan, none_refused=refused) if refused else plan

    def refuses_none(self, step: Step) -> bool:
        """Whether record step ``step`` may not return ``None`` for a record: its
        target schema is registered and certainly takes no ``None`` there, so a
        ``None`` means the step forgot to return (see ``Plan.none_refused``)."""
        if step.records is None:
            return False
        with self._lock:
            schema = self._schemas.get(step.component, {}).get(step.target)
            if schema is None:
                return False
            key = (step.component, step.target, step.records)
            if key not in self._none_refused:
                core = schema.adapter.core_schema
                self._none_refused[key] = records_refuse_none(core, step.records)
            return self._none_refused[key]

    def migrate(
        self,
        component: str,
        data: Any,
        source: int,
        target: int,
        *,
        allow_lossy: AllowLossy = False,
        validate: bool = True,
        copy: bool = True,
        export: bool = True,
        instance: str | None = None,
    ) -> MigrationResult:
        """Bring plain data of ``component`` from version ``source`` to ``target``.

        The one migration pipeline: plan (see :meth:`plan`), run the steps, validate
        the result against the target schema and export it back to plain data. A
        restore, a snapshot for older targets, :func:`~statemigrate.migrate_snapshot`
        and the property checks all go through it.

        Args:
            component: the component the data belongs to.
            data: plain data at version ``source``.
            source: the version the data is in.
            target: the version to bring it to (``source`` itself validates only).
            allow_lossy: allow a plan through steps declared lossy: True, or
                names that include ``component``.
            validate: validate the result against the target schema; the result's
                ``state`` is then the validated state.
            copy: migrate a private copy and leave ``data`` as it was (steps may
                mutate their input). Pass ``False`` to hand data over that the caller
                does not use again (data it just decoded): no copy is made, and
                validation keeps the data itself when pydantic would only copy it,
                provided no other reference to it is left (pass it as the argument,
                not through a name that outlives the call).
            export: with ``validate``, set the result's ``data`` to the plain export
                of the validated state; without, ``data`` is ``None`` (a restore only
                needs the state).
            instance: the component instance, named in error messages.

        Returns:
            The plan run, the plain data and the validated state at ``target``.

        Raises:
            UnknownComponentError: the component, or (with ``validate``) the target
                schema, is not registered.
            NoMigrationPathError: no chain of steps connects the versions.
            LossyMigrationError: every path loses data and ``allow_lossy`` is false.
            MigrationStepError: a step raised, naming it as ``sessions 1 -> 2 (add_ttl)``.
            ValidationError: the result does not fit the target schema.
            ExportError: the validated state would not come back unchanged.
        """
        plan = self.plan(component, source, target, allow_lossy=allow_lossy)
        schema = self.schema_for(component, target) if validate else None
        # Handed on without a name of ours still holding it (see ``copy``).
        box = [data]
        del data
        return run_plan(
            plan, box.pop(), schema=schema, copy=copy, export=export, instance=instance
        )

    def check(self, component: str | None = None) -> None:
        """Check that the version graph of one component (or of all) is complete.

        Complete means: every step joins two registered schema versions, and every
        schema version can reach every other one (lossy steps allowed), as the
        two-directions guarantee promises. Meant for a service's own test suite.

        Raises:
            UnknownComponentError: ``component`` is given and unknown.
            RegistrationError: a problem was found; the message lists all of them.
        """
        problems = self.problems(component)
        if problems:
            raise RegistrationError("incomplete migrations: " + "; ".join(problems))

    def problems(self, component: str | None = None) -> list[str]:
        """What :meth:`check` finds wrong in the version graph of one component (or of
        all), one line each (``orders: version 5 cannot reach 1, 2, 3, 4``); empty
        when it is complete.

        Raises:
            UnknownComponentError: ``component`` is given and unknown.
        """
        with self._lock:
            names = [component] if component is not None else self.components()
            problems: list[str] = []
            for name in names:
                self._require(name)
                versions = sorted(self._schemas.get(name, {}))
                steps = list(self._steps.get(name, {}).values())
                if not versions:
                    problems.append(f"{name}: steps but no schema versions")
                for step in steps:
                    for end in (step.source, step.target):
                        if end not in versions:
                            problems.append(f"{step}: no schema version {end}")
                    problems += self._field_problems(step)
                for version in versions:
                    missing = set(versions) - reachable(steps, version)
                    if missing:
                        shown = ", ".join(str(v) for v in sorted(missing))
                        problems.append(f"{name}: version {version} cannot reach {shown}")
        return problems

    def _field_problems(self, step: Step) -> list[str]:
        """What ``records`` and the lost fields of ``step`` name that its registered
        schemas do not hold (the lock held)."""
        versions = self._schemas.get(step.component, {})
        problems: list[str] = []
        # The records are read at the source and written back at the target; the
        # source's problem, when it has one, is the one to report.
        for end in (step.source, step.target) if step.records is not None else ():
            if end in versions:
                core = versions[end].adapter.core_schema
                problem = records_problem(core, step.records or "", where=f"version {end}")
                if problem:
                    problems.append(f"record step {step}: records={step.records!r} {problem}")
                    break
        if step.source in versions:
            core = versions[step.source].adapter.core_schema
            for path in step.lost_fields:
                problem = lost_path_problem(core, path)
                if problem:
                    problems.append(
                        f"{step}: lost field {path!r} names no field of version"
                        f" {step.source}, the step's source: {problem}"
                    )
        return problems

    def _require(self, component: str) -> None:
        if component not in self._schemas and component not in self._steps:
            raise UnknownComponentError(component, known=self.components())

    # --- loading migrations modules ----------------------------------------------------

    def load_migrations(self, path: str | os.PathLike[str]) -> list[str]:
        """Import every migrations module in directory ``path`` into this registry.

        Modules are the ``*.py`` files directly in ``path`` whose names do not start
        with ``_``, imported in sorted order; module-level decorators in them register
        here (see the module docstring). Each file is imported under a fresh module
        name, so loading a directory into several registries works. Loading is all or
        nothing: if any module fails, everything it and the earlier modules of this call
        registered is removed again.

        Modules that a migrations module imports are cached by Python as usual and run
        once per process; keep registrations inside the migrations files themselves.

        Returns:
            The names of the loaded files without ``.py``, in load order.

        Raises:
            RegistrationError: ``path`` is not a directory, or a module failed to import
                (raised an exception or ``SystemExit``) or registered something
                invalid; the message names the file and the original exception is
                chained.
        """
        files = migration_files(Path(path))
        with self._lock:
            saved = self._save()
            loaded: list[str] = []
            try:
                with _loading_into(self):
                    for entry in files:
                        import_file(entry)
                        loaded.append(entry.stem)
            except BaseException:
                self._schemas, self._steps = saved
                raise
        return loaded

    def copy(self) -> Registry:
        """Return a new registry holding the same schema versions, steps and retired
        components.

        Schema versions and steps are immutable and shared; what is registered or
        loaded into the copy afterwards leaves this registry as it was. The command
        line loads a migrations directory into a copy of a configured registry this way.
        """
        copy = Registry()
        with self._lock:
            copy._schemas, copy._steps = self._save()
            copy._retired = set(self._retired)
        return copy

    def _save(
        self,
    ) -> tuple[dict[str, dict[int, SchemaVersion]], dict[str, dict[tuple[int, int], Step]]]:
        schemas = {name: dict(versions) for name, versions in self._schemas.items()}
        steps = {name: dict(by_pair) for name, by_pair in self._steps.items()}
        return schemas, steps


default_registry = Registry()
"""The registry the module-level decorators use unless told otherwise."""


@dataclass(frozen=True)
class ComponentSpec:
    """What ``@migratable`` records about a component class.

    Attributes:
        component: the component name.
        version: the schema version the class's live state follows.
        registry: the registry the class was bound to, or ``None`` when it was marked by
            the module-level decorator outside any migrations load: then whoever handles
            the component chooses (a service passes its registry, otherwise the default
            registry is used).
    """

    component: str
    version: int
    registry: Registry | None = field(default=None, compare=False)

    def resolve(self, registry: Registry | None = None) -> Registry:
        """Return the registry to use: ``registry`` if given, else the bound one, else
        the default registry."""
        if registry is not None:
            return registry
        if self.registry is not None:
            return self.registry
        return default_registry

    def schema(self, registry: Registry | None = None) -> SchemaVersion:
        """Return the schema version of the live state.

        Raises:
            UnknownComponentError: the registry has no schema for this version.
        """
        return self.resolve(registry).schema_for(self.component, self.version)


def bind_component(cls: type[C], spec: ComponentSpec) -> type[C]:
    """Mark ``cls`` with ``spec``; the work behind every ``migratable`` decorator.

    The schema version need not be registered yet (modules may register schemas after
    the class is defined); :meth:`ComponentSpec.schema` raises when it is still missing.

    Raises:
        RegistrationError: ``cls`` is not a class, or the name or version is invalid.
    """
    if not isinstance(cls, type):
        raise RegistrationError(f"@migratable decorates classes, not {cls!r}")
    check_component(spec.component)
    check_version(spec.version)
    setattr(cls, SPEC_ATTRIBUTE, spec)
    return cls


def is_migratable(obj: object) -> bool:
    """Tell whether ``obj`` (a class or an instance) is marked ``@migratable``."""
    owner = obj if isinstance(obj, type) else type(obj)
    return isinstance(getattr(owner, SPEC_ATTRIBUTE, None), ComponentSpec)


def component_spec(obj: object) -> ComponentSpec:
    """Return the :class:`ComponentSpec` of a migratable class or instance.

    Raises:
        RegistrationError: the class was not marked with ``@migratable``.
    """
    owner = obj if isinstance(obj, type) else type(obj)
    spec = getattr(owner, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, ComponentSpec):
        raise RegistrationError(
            f"{owner.__qualname__} is not a migratable component; decorate it with"
            " @migratable(component, version=N)"
        )
    return spec

_loading: contextvars.ContextVar[Registry | None] = contextvars.ContextVar(
    "statemigrate_loading", default=None
)


@contextmanager
def _loading_into(registry: Registry) -> Iterator[None]:
    token = _loading.set(registry)
    try:
        yield
    finally:
        _loading.reset(token)


def _lossy_fields(lossy: Lossy) -> tuple[bool, tuple[str, ...]]:
    if isinstance(lossy, bool):
        return lossy, ()
    if isinstance(lossy, str):
        return True, (lossy,)  # a single field name, not its characters
    try:
        lost = tuple(lossy)
    except TypeError:
        raise RegistrationError(f"lossy must be a bool or field names, not {lossy!r}") from None
    if not all(isinstance(name, str) and name for name in lost):
        raise RegistrationError(f"lossy field names must be non-empty strings: {lost!r}")
    return bool(lost), lost


def _target(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    return _loading.get() or default_registry


def schema(component: str, *, version: int, registry: Registry | None = None) -> Callable[[T], T]:
    """Decorator: register a schema version (see :meth:`Registry.schema`).

    Registers into ``registry``, else the registry being loaded, else
    :data:`default_registry`.
    """
    return _target(registry).schema(component, version=version)


def migration(
    component: str,
    source: int,
    target: int,
    *,
    lossy: Lossy = False,
    records: str | None = None,
    other_fields: StepFunc | None = None,
    registry: Registry | None = None,
) -> Callable[[F], F]:
    """Decorator: register a migration step (see :meth:`Registry.migration`).

    Registers into ``registry``, else the registry being loaded, else
    :data:`default_registry`. ``records="field"`` makes it a record step, and
    ``other_fields`` gives such a step a part for the other fields.
    """
    return _target(registry).migration(
        component, source, target, lossy=lossy, records=records, other_fields=other_fields
    )


def migratable(
    component: str, *, version: int, registry: Registry | None = None
) -> Callable[[type[C]], type[C]]:
    """Decorator: mark a class as a migratable component (see :class:`ComponentSpec`).

    Binds the class to ``registry``, else to the registry being loaded; outside a load
    and without ``registry`` the class stays unbound, and whoever handles it decides
    (a service uses its own registry; otherwise :data:`default_registry` is used).
    """
    bound = registry if registry is not None else _loading.get()

    def decorate(cls: type[C]) -> type[C]:
        return bind_component(cls, ComponentSpec(component, version, bound))

    check_component(component)
    check_version(version)
    return decorate
