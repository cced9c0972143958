"""Traces of snapshots, commits, restores and handoffs, through OpenTelemetry.

Nothing is recorded until tracing is enabled, once per process::

    import statemigrate.tracing
    statemigrate.tracing.use_opentelemetry()   # the global tracer provider

A handoff's span travels with the snapshot to the successor, whose take-over and
restore spans join the same trace. The spans and their attributes are listed in
``docs/observability.md``.
"""

from statemigrate._observe._tracing import (
    disable_tracing,
    tracing_enabled,
)
from statemigrate._observe._tracing import (
    use_opentelemetry_tracing as use_opentelemetry,
)

__all__ = ["disable_tracing", "tracing_enabled", "use_opentelemetry"]
