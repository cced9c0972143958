"""Development tools for evolving schemas: the schema lock, diffs and migration stubs.

Used while writing a new schema version, by the ``statemigrate`` command and in CI,
never by a running service; see ``docs/schemas.md`` and ``docs/migrations.md``.
``statemigrate`` re-exports the everyday ones (:func:`check_schemas`,
:func:`freeze_schemas`, :func:`make_migration`) and loads them on first use.
"""

from statemigrate.evolution._graphcheck import (
    DeclaredStep,
    LockProblem,
    ProblemKind,
    duplicate_problems,
    graph_problems,
    scan_migrations,
)
from statemigrate.evolution._makemigration import MigrationStub, make_migration
from statemigrate.evolution._schemadiff import Change, ChangeKind, FieldPath, diff_schemas
from statemigrate.evolution._schemalock import (
    FreezeResult,
    LockReport,
    check_schemas,
    freeze_schemas,
)

__all__ = [
    "Change",
    "ChangeKind",
    "DeclaredStep",
    "FieldPath",
    "FreezeResult",
    "LockProblem",
    "LockReport",
    "MigrationStub",
    "ProblemKind",
    "check_schemas",
    "diff_schemas",
    "duplicate_problems",
    "freeze_schemas",
    "graph_problems",
    "make_migration",
    "scan_migrations",
]
