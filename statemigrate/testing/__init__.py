"""The testing kit: hypothesis strategies per schema version and property checks of
migrations, for a service's own test suite.

Install it with the ``testing`` extra, which brings hypothesis::

    pip install 'statemigrate[testing]'

The one call most suites need::

    from statemigrate.testing import check_migrations

    def test_migrations():
        check_migrations(build_registry())   # raises MigrationCheckError on a failure

or, with no test code at all, the pytest plugin (``statemigrate_registry`` in the pytest
configuration) and the ``statemigrate check`` command. See ``docs/testing.md``.

The names are loaded on first use: the pytest plugin lives in this package and is
imported by every pytest run, which must not need hypothesis until a registry is
configured.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemigrate._errors import ChangeTrackingError, MigrationCheckError
    from statemigrate.testing._anyvalues import SMALL_SIZE, plain_data
    from statemigrate.testing._checks import (
        CheckFailure,
        CheckKind,
        CheckReport,
        CheckResult,
        MigrationCheck,
        check_migrations,
        migration_checks,
    )
    from statemigrate.testing._strategies import (
        DEFAULT_MAX_SIZE,
        from_schema,
        states,
        strategies_for,
    )
    from statemigrate.testing._tracking import check_change_tracking

__all__ = [
    "ChangeTrackingError",
    "CheckFailure",
    "CheckKind",
    "CheckReport",
    "CheckResult",
    "DEFAULT_MAX_SIZE",
    "MigrationCheck",
    "MigrationCheckError",
    "SMALL_SIZE",
    "check_change_tracking",
    "check_migrations",
    "from_schema",
    "migration_checks",
    "plain_data",
    "states",
    "strategies_for",
]

_HOMES = {
    "ChangeTrackingError": "statemigrate._errors",
    "MigrationCheckError": "statemigrate._errors",
    "check_change_tracking": "statemigrate.testing._tracking",
    "DEFAULT_MAX_SIZE": "statemigrate.testing._strategies",
    "SMALL_SIZE": "statemigrate.testing._anyvalues",
    "from_schema": "statemigrate.testing._strategies",
    "plain_data": "statemigrate.testing._anyvalues",
    "states": "statemigrate.testing._strategies",
    "strategies_for": "statemigrate.testing._strategies",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'statemigrate.testing' has no attribute {name!r}")
    try:
        module = importlib.import_module(_HOMES.get(name, "statemigrate.testing._checks"))
    except ImportError as exc:
        if exc.name == "hypothesis" or (exc.name or "").startswith("hypothesis."):
            raise ImportError(
                "statemigrate.testing needs hypothesis: pip install 'statemigrate[testing]'"
            ) from exc
        raise
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
