"""statemigrate: keep a service's in-memory state across code changes and restarts."""

from statemigrate._errors import (
    HandoffError,
    LossyMigrationError,
    NoMigrationPathError,
    RegistrationError,
    RestoreError,
    SnapshotError,
    StateMigrateError,
    StoreError,
    UnknownComponentError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "HandoffError",
    "LossyMigrationError",
    "NoMigrationPathError",
    "RegistrationError",
    "RestoreError",
    "SnapshotError",
    "StateMigrateError",
    "StoreError",
    "UnknownComponentError",
    "ValidationError",
    "__version__",
]
