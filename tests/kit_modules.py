"""Registries as the text of a module, for tests that run the testing kit where only an
importable module can name one: through the command line or in a child pytest."""

from __future__ import annotations


def roles_cut_at(keep: int) -> str:
    """A module whose ``build()`` returns a registry of ``roles`` at versions 1 and 2,
    whose downgrade keeps at most ``keep`` roles: a loss only lists longer than that
    show (it declares only the ``flag`` it drops)."""
    return f'''
from typing_extensions import TypedDict

from statemigrate import Registry


class Roles(TypedDict):
    roles: list[str]


class FlaggedRoles(TypedDict):
    roles: list[str]
    flag: bool


def build():
    registry = Registry()
    registry.add_schema("roles", 1, Roles)
    registry.add_schema("roles", 2, FlaggedRoles)
    registry.add_migration("roles", 1, 2, lambda data: {{**data, "flag": False}}, name="up")
    registry.add_migration(
        "roles", 2, 1, lambda data: {{"roles": data["roles"][:{keep}]}}, name="down",
        lossy=("flag",),
    )
    return registry
'''
