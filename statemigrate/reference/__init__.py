"""The reference component: a key-value cache with three schema versions.

It is the demo service's state and the project's own example of a migratable
component. Its migration steps live in the repository's top-level ``migrations/``
directory, laid out exactly as a user's service lays out its own, and
:func:`build_registry` loads them into a fresh :class:`~statemigrate.Registry`::

    from statemigrate.reference import KVCacheV3, build_registry

    registry = build_registry()                 # schemas v1..v3 + the migrations
    plan = registry.plan("kvcache", 1, 3)       # kvcache 1 -> 3 (upgrade_1_to_3)

Importing this package registers nothing anywhere: the cache classes are marked
``@migratable`` without a registry, so the registry that handles them decides.
"""

from __future__ import annotations

import os
from pathlib import Path

from statemigrate._registry import Registry
from statemigrate.reference._cache import KVCacheV1, KVCacheV2, KVCacheV3
from statemigrate.reference._schemas import (
    COMPONENT,
    SCHEMAS,
    EntryV2,
    EntryV3,
    KVCacheStateV1,
    KVCacheStateV2,
    KVCacheStateV3,
    register_schemas,
)

__all__ = [
    "COMPONENT",
    "MIGRATIONS_DIR",
    "SCHEMAS",
    "EntryV2",
    "EntryV3",
    "KVCacheStateV1",
    "KVCacheStateV2",
    "KVCacheStateV3",
    "KVCacheV1",
    "KVCacheV2",
    "KVCacheV3",
    "build_registry",
    "register_schemas",
]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
"""The repository's ``migrations/`` directory (present in a source checkout, not in a
wheel: pass the path explicitly there)."""


def build_registry(migrations: str | os.PathLike[str] | None = None) -> Registry:
    """Return a new registry holding the reference cache's schemas and migrations.

    Args:
        migrations: the directory of migrations modules to load; the repository's
            ``migrations/`` directory (:data:`MIGRATIONS_DIR`) by default.

    Raises:
        RegistrationError: the directory does not exist or a module in it fails.
    """
    registry = Registry()
    register_schemas(registry)
    registry.load_migrations(MIGRATIONS_DIR if migrations is None else migrations)
    return registry
