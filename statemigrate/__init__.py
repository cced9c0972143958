"""statemigrate: keep a service's in-memory state across code changes and restarts.

Register stateful components under named, versioned schemas; snapshot them into a
checksummed container committed atomically to tmpfs or a sealed memfd; restore the
snapshot in the next process through upgrade or downgrade steps, all components or
none. See ``docs/tutorial.md``.

Sub-namespaces: :mod:`statemigrate.stores` (where snapshots are committed),
:mod:`statemigrate.handoff` (hot restart with sockets and state),
:mod:`statemigrate.metrics` (Prometheus or OpenTelemetry metrics), and
:mod:`statemigrate.testing` (hypothesis strategies and migration checks).

The development-time tools (:func:`make_migration`, :func:`check_schemas`,
:func:`freeze_schemas`) are imported on first use: a service that only snapshots and
restores does not load them at start-up.
"""

from typing import TYPE_CHECKING

from statemigrate import _lazy
from statemigrate._errors import (
    CallerStackError,
    ChangeTrackingError,
    CheckpointError,
    ConfigurationError,
    ExportError,
    HandoffError,
    LossyMigrationError,
    MigrationCheckError,
    MigrationStepError,
    NoMigrationPathError,
    RegistrationError,
    RestoreError,
    SnapshotError,
    SourceTypeError,
    StateMigrateError,
    StoreConflictError,
    StoreError,
    StoreSharedError,
    UnknownComponentError,
    ValidationError,
)
from statemigrate._model._component import component_state, export_component, import_component
from statemigrate._model._fieldchanges import FieldChanges
from statemigrate._model._migrate import MigrationResult
from statemigrate._model._plan import Plan, Step
from statemigrate._model._registry import (
    ComponentSpec,
    Registry,
    component_spec,
    default_registry,
    is_migratable,
    migratable,
    migration,
    schema,
)
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._tracked import ChangeMark, Changes, TrackedDict
from statemigrate._observe._status import RestoreStatus
from statemigrate._runtime._checkpoint import Checkpointer
from statemigrate._runtime._precopy import PreCopySource
from statemigrate._runtime._report import (
    CheckpointReport,
    CommitReport,
    ComponentRestore,
    RestoreReport,
    SectionReport,
    SnapshotReport,
)
from statemigrate._runtime._rewrite import SnapshotMigration, migrate_snapshot
from statemigrate._runtime._service import Service
from statemigrate._snapshot._format import (
    DEFAULT_MAX_SNAPSHOT_SIZE,
    DecodeLimits,
    Snapshot,
    open_snapshot,
)
from statemigrate._version import __version__
from statemigrate.stores import MemfdStore, MemoryStore, TmpfsStore

if TYPE_CHECKING:
    from statemigrate.evolution._makemigration import MigrationStub, make_migration
    from statemigrate.evolution._schemalock import LockReport, check_schemas, freeze_schemas

_LAZY = {
    "LockReport": "statemigrate.evolution._schemalock",
    "MigrationStub": "statemigrate.evolution._makemigration",
    "check_schemas": "statemigrate.evolution._schemalock",
    "freeze_schemas": "statemigrate.evolution._schemalock",
    "make_migration": "statemigrate.evolution._makemigration",
}
"""Public names whose modules load on first access (tooling a running service never needs)."""

__all__ = [
    "CallerStackError",
    "ChangeMark",
    "ChangeTrackingError",
    "Changes",
    "CheckpointError",
    "CheckpointReport",
    "Checkpointer",
    "CommitReport",
    "ComponentRestore",
    "ComponentSpec",
    "ConfigurationError",
    "DEFAULT_MAX_SNAPSHOT_SIZE",
    "DecodeLimits",
    "ExportError",
    "FieldChanges",
    "HandoffError",
    "LockReport",
    "LossyMigrationError",
    "MemfdStore",
    "MemoryStore",
    "MigrationCheckError",
    "MigrationResult",
    "MigrationStepError",
    "MigrationStub",
    "NoMigrationPathError",
    "Plan",
    "PreCopySource",
    "RegistrationError",
    "Registry",
    "RestoreError",
    "RestoreReport",
    "RestoreStatus",
    "SchemaVersion",
    "SectionReport",
    "Service",
    "Snapshot",
    "SnapshotError",
    "SnapshotMigration",
    "SnapshotReport",
    "SourceTypeError",
    "StateMigrateError",
    "Step",
    "StoreConflictError",
    "StoreError",
    "StoreSharedError",
    "TmpfsStore",
    "TrackedDict",
    "UnknownComponentError",
    "ValidationError",
    "__version__",
    "check_schemas",
    "component_spec",
    "component_state",
    "default_registry",
    "export_component",
    "freeze_schemas",
    "import_component",
    "is_migratable",
    "make_migration",
    "migratable",
    "migrate_snapshot",
    "migration",
    "open_snapshot",
    "schema",
]

__getattr__, __dir__ = _lazy.lazy_names(__name__, globals(), _LAZY)
