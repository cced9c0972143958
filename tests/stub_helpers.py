"""Running makemigration in tests: a schema frozen at version 1, its successor at 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statemigrate._model._registry import Registry
from statemigrate.evolution._makemigration import MigrationStub, make_migration
from statemigrate.evolution._schemalock import freeze_schemas


def evolve(
    tmp_path: Path, component: str, old: object, new: object, **options: Any
) -> tuple[Registry, MigrationStub]:
    """Freeze ``old`` as version 1, register ``new`` as version 2, run makemigration
    (into ``tmp_path / "migrations"``)."""
    registry = Registry()
    registry.add_schema(component, 1, old)
    freeze_schemas(registry, tmp_path / "schemas")
    registry.add_schema(component, 2, new)
    stub = make_migration(
        registry,
        component,
        schemas_dir=tmp_path / "schemas",
        migrations_dir=tmp_path / "migrations",
        **options,
    )
    return registry, stub
