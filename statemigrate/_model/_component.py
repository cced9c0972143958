"""Migratable components: how a live object exports and imports its state.

``@migratable("sessions", version=2)`` marks a class as a component whose live state
follows schema version 2 of ``"sessions"``. The mark is a small frozen
:class:`ComponentSpec` stored on the class as ``__statemigrate__``; it names the
registry it was bound to, so it lives with the registry (``_registry``) and is
re-exported here. This module exports and imports the state of marked objects.

A component class may define either or both of::

    def export_state(self) -> State: ...          # a model, dataclass or plain dict
    def import_state(self, state: State) -> None: ...

Without them, the defaults read and write the schema's top-level fields as attributes
of the instance: export reads ``obj.<field>`` for every field, import assigns
``obj.<field> = state[field]``. Import only ever *replaces* attributes, it never
mutates the objects they held, so a caller that kept the old export can roll back by
importing it again; if one assignment fails, the ones already made are undone before
the error propagates. Custom ``import_state`` methods should follow the same rule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, cast

from statemigrate._errors import ExportError, RegistrationError, StateMigrateError
from statemigrate._model._registry import (
    ComponentSpec,
    Registry,
    bind_component,
    component_spec,
    is_migratable,
)
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._tracked import TrackedDict

# The mark's names are re-exported: callers find everything about components here.
__all__ = [
    "ComponentSpec",
    "bind_component",
    "component_spec",
    "component_state",
    "export_component",
    "import_component",
    "importable_state",
    "is_migratable",
    "plain_state",
]

_MISSING = object()


def export_component(
    obj: object,
    *,
    registry: Registry | None = None,
    walk: bool = False,
    check: bool = False,
    prove: bool = True,
) -> Any:
    """Return the live state of component ``obj`` in its schema's plain form.

    Uses ``obj.export_state()`` when the class defines it, else reads the schema's
    fields as attributes. A state that is plain data already is returned without a
    copy or a walk unless ``walk`` is given, and validated deep only with ``check``
    (see :meth:`SchemaVersion.export`); ``prove`` as there.

    Raises:
        RegistrationError: ``obj`` is not migratable, or has no ``export_state`` and
            lacks attributes for required schema fields (or the schema has no fields).
        UnknownComponentError: no schema is registered for the class's version.
        ExportError: the state holds a value with no plain form, or one that would come
            back changed; or ``export_state()`` raised (its exception chained).
        ValidationError: the state is not a state of the schema.
    """
    try:
        state = component_state(obj, registry=registry)
    except StateMigrateError:
        raise
    except Exception as exc:
        # The component's own code failed: said as the export error it is, so that a
        # caller of snapshot() or commit() handles one kind of error for a state that
        # cannot be written. (A restore reads the state with component_state itself,
        # and names the component's exception as the reason it cannot roll back.)
        spec = component_spec(obj)
        failed = (
            "export_state()"
            if callable(getattr(obj, "export_state", None))
            else "reading its fields"
        )
        first_line = next(iter(str(exc).splitlines()), "")
        raise ExportError(
            spec.component,
            spec.version,
            "(root)",
            f"{failed} raised {type(exc).__name__}: {first_line}",
        ) from exc
    return plain_state(obj, state, registry=registry, walk=walk, check=check, prove=prove)


def plain_state(
    obj: object,
    state: Any,
    *,
    registry: Registry | None = None,
    walk: bool = False,
    check: bool = False,
    prove: bool = True,
) -> Any:
    """Return the plain form of ``state``, which :func:`component_state` returned for ``obj``.

    :func:`export_component` is this applied to the live state; a restore takes the
    state once and uses it both to roll back and to check the rollback.

    Raises:
        RegistrationError, UnknownComponentError, ExportError, ValidationError: as for
            :func:`export_component`.
    """
    if type(state) is dict and any(isinstance(v, TrackedDict) for v in state.values()):
        # The snapshot encoder takes exact dicts only; copying a TrackedDict into one
        # is a C-level copy, far cheaper than the walk the encoder would ask for.
        state = {k: dict(v) if isinstance(v, TrackedDict) else v for k, v in state.items()}
    return component_spec(obj).schema(registry).export(state, walk=walk, check=check, prove=prove)


def component_state(obj: object, *, registry: Registry | None = None) -> Any:
    """Return the live state of ``obj``, without copying any value.

    That is ``obj.export_state()`` when the class defines it, else a new dict of the
    schema's fields read as attributes. :func:`importable_state` turns it into what
    :func:`import_component` takes back, and importing that restores the component,
    which is how a restore rolls back: keep this before importing anything new, and
    import it again on failure.

    Raises:
        RegistrationError: as for :func:`export_component`.
        UnknownComponentError: no schema is registered for the class's version.
    """
    spec = component_spec(obj)
    schema = spec.schema(registry)
    exporter = getattr(obj, "export_state", None)
    if callable(exporter):
        return exporter()
    return _read_fields(obj, schema)


def importable_state(obj: object, state: Any, *, registry: Registry | None = None) -> Any:
    """Return ``state`` (from :func:`component_state`) in the form ``obj`` imports.

    The default import takes back what :func:`component_state` gave, as it is. A
    custom ``import_state`` takes a validated state, while ``export_state`` may have
    returned another form of it (a dict for a model schema, say): that is validated
    again from its plain data. A model or dataclass instance of the schema, and a dict
    for a ``TypedDict`` schema, are already validated and returned as they are, and so
    is ``None``, which an ``export_state`` may return while the component holds nothing.

    Raises:
        ValidationError: the state does not export, or its export does not validate.
        RegistrationError, UnknownComponentError: as for :func:`export_component`.
    """
    schema = component_spec(obj).schema(registry)
    if not callable(getattr(obj, "import_state", None)):
        return state
    if state is None:
        # What an export_state gives before the component holds anything: no schema
        # describes it, and only that component's own import takes it back.
        return None
    if schema.kind in ("model", "dataclass") and isinstance(state, cast(type, schema.type)):
        return state
    if schema.kind == "typeddict" and type(state) is dict:
        return state
    return schema.validate(plain_state(obj, state, registry=registry))


def import_component(obj: object, state: Any, *, registry: Registry | None = None) -> None:
    """Make ``state`` the live state of component ``obj``.

    ``state`` is a *validated* state, i.e. what :meth:`SchemaVersion.validate` returns
    for the class's version: a plain dict for a ``TypedDict`` schema, an instance for a
    model or dataclass. Uses ``obj.import_state(state)`` when the class defines it,
    else assigns each schema field as an attribute (all or none).

    Raises:
        RegistrationError: ``obj`` is not migratable, or has no ``import_state`` and
            lacks attributes for required schema fields (or the schema has no fields).
        UnknownComponentError: no schema is registered for the class's version.
    """
    spec = component_spec(obj)
    schema = spec.schema(registry)
    importer = getattr(obj, "import_state", None)
    if callable(importer):
        importer(state)
        return
    _read_fields(obj, schema)  # the same check as export: refuse unrelated objects early
    new: list[tuple[str, object]] = []
    for name in schema.fields:
        value = (
            state.get(name, _MISSING)
            if isinstance(state, Mapping)
            else getattr(state, name, _MISSING)
        )
        new.append((name, value))
    _assign(obj, new)


def _read_fields(obj: object, schema: SchemaVersion) -> dict[str, Any]:
    owner = type(obj).__qualname__
    if not schema.fields:
        raise RegistrationError(
            f"{owner} has no export_state/import_state and {schema} ({schema.kind} schema"
            f" {schema.type!r}) has no fields to read as attributes; define both methods"
        )
    values: dict[str, Any] = {}
    missing = []
    for name in schema.fields:
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            values[name] = value
        elif name in schema.required_fields:
            missing.append(name)
    if missing:
        raise RegistrationError(
            f"{owner} has no export_state/import_state and lacks attributes"
            f" {', '.join(missing)} required by {schema}; define the methods or set"
            " those attributes"
        )
    return values


def _assign(obj: object, new: list[tuple[str, object]]) -> None:
    previous = [(name, getattr(obj, name, _MISSING)) for name, _ in new]
    touched = 0
    try:
        for name, value in new:
            touched += 1  # counted first: a half-done assignment is undone too
            _put(obj, name, value)
    except BaseException:
        for name, value in reversed(previous[:touched]):
            _put(obj, name, value)
        raise


def _put(obj: object, name: str, value: object) -> None:
    if value is not _MISSING:
        if type(value) is dict and isinstance(getattr(obj, name, None), TrackedDict):
            # The component keeps this collection tracked: so does its new state.
            value = type(getattr(obj, name))(value)
        setattr(obj, name, value)
    elif hasattr(obj, name):
        # An optional field the new state does not have. A class-level default cannot
        # be deleted through the instance and simply stays visible.
        with contextlib.suppress(AttributeError):
            delattr(obj, name)
