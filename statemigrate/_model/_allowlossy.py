"""``allow_lossy``: whether steps declared lossy may run, for every component, none,
or the components named.

``True`` allows loss for every component, ``False`` for none, and a collection of
component names (``{"catalog", "orders"}``) for those alone: a team whose upgrades of
one component are lossy at the edges allows that component, not a lossy rollback of
every other one. The planner is asked once per component (``Registry.plan``), and
that is where :func:`lossy_allowed` turns the option into a yes or no. Entry points
check its form up front with :func:`check_allow_lossy`, so that a mistake (a single
name passed as a str, which would otherwise be read as its characters) is one
``ConfigurationError`` before anything runs.

Names are not checked against the registry here: a component named but not
registered is not an error (see :func:`unregistered_names`), since naming it can only
ever allow less, never more.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TypeAlias

from statemigrate._errors import ConfigurationError
from statemigrate._model._shown import shortened

__all__ = [
    "AllowLossy",
    "check_allow_lossy",
    "lossy_allowed",
    "names_shown",
    "unregistered_names",
]

AllowLossy: TypeAlias = bool | Collection[str]
"""``True`` (loss allowed for every component), ``False`` (for none), or the names of
the components whose lossy steps may run."""

_FORM = "must be True, False or a collection of component names such as {'catalog'}"


def check_allow_lossy(allow_lossy: object) -> bool | frozenset[str]:
    """``allow_lossy`` as a bool or a frozen set of component names.

    Raises:
        ConfigurationError: it is a str (a name must be in a collection: ``{"catalog"}``),
            a mapping, no collection at all, or holds something other than non-empty
            strs; the message names the value.
    """
    if isinstance(allow_lossy, bool):
        return allow_lossy
    if isinstance(allow_lossy, str | bytes):
        # Iterating it would allow loss for components named by its characters.
        kind = type(allow_lossy).__name__
        raise ConfigurationError("allow_lossy", f"{_FORM}, not the {kind} {shortened(allow_lossy)}")
    if isinstance(allow_lossy, Mapping) or not isinstance(allow_lossy, Iterable):
        raise ConfigurationError("allow_lossy", f"{_FORM}, not {shortened(allow_lossy)}")
    names = list(allow_lossy)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                "allow_lossy", f"component names must be non-empty strs, not {shortened(name)}"
            )
    return frozenset(names)


def lossy_allowed(allow_lossy: AllowLossy, component: str) -> bool:
    """Whether ``allow_lossy`` lets ``component``'s lossy steps run.

    Raises:
        ConfigurationError: ``allow_lossy`` has no form of :data:`AllowLossy`.
    """
    checked = check_allow_lossy(allow_lossy)
    return checked if isinstance(checked, bool) else component in checked


def unregistered_names(allow_lossy: bool | frozenset[str], registered: Iterable[str]) -> list[str]:
    """The names in a checked ``allow_lossy`` that are no component of ``registered``,
    sorted.

    A caller logs them rather than refusing them: the same setting is often given to
    both sides of a handoff and to consecutive releases, one of which may add or drop
    a component, and a name that matches nothing allows no loss anywhere.
    """
    if isinstance(allow_lossy, bool):
        return []
    return sorted(allow_lossy.difference(registered))


def names_shown(names: Iterable[str]) -> str:
    """Component names as the ``allow_lossy`` that allows their loss is written in a
    message: ``{'catalog', 'orders'}``, sorted."""
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"
