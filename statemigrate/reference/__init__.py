"""The reference component: a key-value cache with three schema versions.

It is the demo service's state and the project's own example of a migratable
component. Its migration steps live in the repository's top-level ``migrations/``
directory and its frozen schemas in ``schemas/``, laid out exactly as a user's service
lays out its own; the wheel ships both folders as package data (under ``_data/``), so
an installed copy finds them too. :func:`build_registry` loads the steps into a fresh
:class:`~statemigrate.Registry`::

    from statemigrate.reference import KVCacheV3, build_registry

    registry = build_registry()                 # schemas v1..v3 + the migrations
    plan = registry.plan("kvcache", 1, 3)       # kvcache 1 -> 3 (upgrade_1_to_3)

Importing this package registers nothing anywhere: the cache classes are marked
``@migratable`` without a registry, so the registry that handles them decides.
"""

from __future__ import annotations

import os
from pathlib import Path

from statemigrate._model._registry import Registry
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
    "SCHEMAS_DIR",
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


def _data_dir(name: str, *, package: Path, checkout: Path) -> Path:
    """The folder ``name`` shipped in the wheel, or else the source checkout's own.

    The top-level folders of the repository are the only copy: the wheel build copies
    them into ``statemigrate/reference/_data/`` (``force-include`` in pyproject.toml),
    and a source checkout or an editable install reads them where they are.
    """
    packaged = package / "_data" / name
    return packaged if packaged.is_dir() else checkout / name


_HERE = Path(__file__).resolve().parent

MIGRATIONS_DIR = _data_dir("migrations", package=_HERE, checkout=_HERE.parents[1])
"""The reference cache's migrations modules: the repository's ``migrations/``, as
installed with the package."""

SCHEMAS_DIR = _data_dir("schemas", package=_HERE, checkout=_HERE.parents[1])
"""The reference cache's frozen JSON Schemas: the repository's ``schemas/``, as
installed with the package (``statemigrate schemas check --schemas`` takes it)."""


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
