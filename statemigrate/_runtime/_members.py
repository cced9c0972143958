"""A service's members: the component instances registered in it, each with its
restore-failure policy, and the schema versions they run and can read.

:class:`Service` keeps one :class:`Members` and answers its membership questions
through it (``register``, ``unregister``, ``versions``, ``readable_versions``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Literal

from statemigrate._errors import (
    ConfigurationError,
    LossyMigrationError,
    NoMigrationPathError,
    RegistrationError,
    UnknownComponentError,
)
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy, unregistered_names
from statemigrate._model._component import component_spec
from statemigrate._model._registry import default_registry
from statemigrate._runtime._restore import Registered

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = ["NAME_LIMIT", "Members", "RestoreFailurePolicy", "check_policy"]

logger = logging.getLogger("statemigrate")

NAME_LIMIT = 200
"""Characters at most in a service's name and in an instance's."""

#: What :meth:`Service.start_from` does when the restore fails: raise, so the process
#: refuses to start, or go on with the components' fresh state.
RestoreFailurePolicy = Literal["refuse", "serve_cold"]
_POLICIES = ("refuse", "serve_cold")


def check_policy(policy: object) -> RestoreFailurePolicy:
    """``policy``, if it is a :data:`RestoreFailurePolicy`.

    Raises:
        ConfigurationError: it is not.
    """
    if policy not in _POLICIES:
        raise ConfigurationError(
            "on_restore_failure", f"must be 'refuse' or 'serve_cold', not {policy!r}"
        )
    return policy  # type: ignore[return-value]


class Members:
    """The registered instances of one service, keyed by (component, instance), in
    registration order, and the policies registered with them."""

    def __init__(self, service: str, registry: Registry | None) -> None:
        self._service = service
        self._registry = registry
        self.entries: dict[tuple[str, str], Registered] = {}
        self._policies: dict[tuple[str, str], RestoreFailurePolicy] = {}
        # The allow_lossy names of no component already warned about: one handoff
        # checks its setting at each export it makes (pre-copy's source, then the
        # snapshot after the pause), and a checkpointer at each commit.
        self._warned_lossy: set[str] = set()
        self._warned_lock = threading.Lock()

    @property
    def registry(self) -> Registry:
        """The service's registry: the one given, else the default registry."""
        return default_registry if self._registry is None else self._registry

    def add(
        self, obj: object, *, instance: str, on_restore_failure: RestoreFailurePolicy | None
    ) -> None:
        """Register ``obj`` as ``instance`` (see :meth:`Service.register`).

        Raises:
            RegistrationError: the class is not migratable, ``obj`` is the class itself,
                ``instance`` is no name, or this component/instance pair is already
                registered.
            ConfigurationError: the policy is unknown.
        """
        policy = None if on_restore_failure is None else check_policy(on_restore_failure)
        spec = component_spec(obj)
        if isinstance(obj, type):
            # The mark is on the class, so the class passes for a component; but its
            # export_state is an unbound function, and every snapshot and restore would
            # fail on it later with a bare TypeError.
            raise RegistrationError(
                f"{obj.__qualname__} is a class; register an instance of it:"
                f" register({obj.__qualname__}(...))"
            )
        if not isinstance(instance, str):
            raise RegistrationError(
                f"instance name must be a str of 1..{NAME_LIMIT} characters,"
                f" not {type(instance).__qualname__}"
            )
        if not instance or len(instance) > NAME_LIMIT:
            raise RegistrationError(f"instance name must be 1..{NAME_LIMIT} characters")
        if not instance.isprintable():
            # It is shown in log lines, reports and `statemigrate inspect`: a newline
            # there would forge a line of its own.
            raise RegistrationError(
                f"instance name must be printable; {instance!r} holds a control character"
            )
        key = (spec.component, instance)
        if key in self.entries:
            raise RegistrationError(
                f"{spec.component}/{instance} is already registered in service {self._service!r}"
            )
        registry = spec.resolve(self._registry)
        registry.schema_for(spec.component, spec.version)  # fail now, not at restore
        self.entries[key] = Registered(obj, spec, instance, registry)
        if policy is not None:
            self._policies[key] = policy

    def remove(self, key: tuple[str, str]) -> None:
        """Unregister the instance ``key`` names (component, instance).

        Raises:
            UnknownComponentError: no such instance is registered (a ``KeyError``).
        """
        if key not in self.entries:
            raise UnknownComponentError(
                "/".join(key), known=(entry.key for entry in self.entries.values())
            )
        del self.entries[key]
        self._policies.pop(key, None)

    def versions(self) -> dict[str, int]:
        """The live schema version of each registered component."""
        return {e.component: e.spec.version for e in self.entries.values()}

    def check_lossy(self, allow_lossy: object) -> bool | frozenset[str]:
        """``allow_lossy`` checked up front (see :func:`check_allow_lossy`).

        A name of no registered component is logged as a warning, not refused: the
        same setting may go to both sides of a handoff or to the next release, which
        may add or drop a component, and such a name allows no loss anywhere. Each
        such name is warned about once, at the first call that gives it.

        Raises:
            ConfigurationError: ``allow_lossy`` is a str or no collection of names.
        """
        checked = check_allow_lossy(allow_lossy)
        with self._warned_lock:
            unknown = [
                name
                for name in unregistered_names(checked, self.versions())
                if name not in self._warned_lossy
            ]
            self._warned_lossy.update(unknown)
        if unknown:
            logger.warning(
                "allow_lossy names %s, no component of service %r (registered: %s);"
                " ignored",
                ", ".join(map(repr, unknown)),
                self._service,
                ", ".join(sorted(self.versions())) or "none",
            )
        return checked

    def readable_versions(self, *, allow_lossy: AllowLossy) -> dict[str, list[int]]:
        """Per component, the versions this code can restore from, ascending (see
        :meth:`Service.readable_versions`)."""
        readable: dict[str, list[int]] = {}
        for entry in self.entries.values():
            registry = entry.registry
            versions = []
            for version in registry.versions(entry.component):
                try:
                    registry.plan(
                        entry.component, version, entry.spec.version, allow_lossy=allow_lossy
                    )
                except (NoMigrationPathError, LossyMigrationError):
                    continue
                versions.append(version)
            readable[entry.component] = sorted(versions)
        return readable

    def refuse(self, default: RestoreFailurePolicy) -> bool:
        """Whether a failed restore at start-up must be raised: some member's policy
        (or ``default``, the service's, for those registered without one) refuses."""
        return any(self._policies.get(key, default) == "refuse" for key in self.entries)
