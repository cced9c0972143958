"""Metrics of snapshots, restores and handoffs, for Prometheus or OpenTelemetry.

Nothing is recorded until a backend is enabled, once per process::

    import statemigrate.metrics
    statemigrate.metrics.use_prometheus()          # prometheus_client's default registry
    # or: statemigrate.metrics.use_opentelemetry()  # the global meter provider

Every instrument is listed in :data:`INSTRUMENTS` and in ``docs/observability.md``.
A sink of your own (any object with :meth:`Sink.record`) takes :func:`use_sink`.
"""

from statemigrate._observe._backends import disable_metrics, use_opentelemetry, use_prometheus
from statemigrate._observe._instruments import INSTRUMENTS, Instrument, Sink, use_sink

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "Sink",
    "disable_metrics",
    "use_opentelemetry",
    "use_prometheus",
    "use_sink",
]
