"""The two metrics backends: prometheus_client and the OpenTelemetry metrics API.

Each is an optional extra (``statemigrate[prometheus]``, ``statemigrate[opentelemetry]``)
imported only by the call that enables it. Both create every instrument of
:data:`~statemigrate._observe._instruments.INSTRUMENTS` up front, so a scrape shows
them before the first snapshot, and a name clash is found at once; and each declared
series of a counter at zero (prometheus_client: of a histogram too), so that the first
event is an increase Prometheus can see.

OpenTelemetry instruments carry the Prometheus names, ``_total`` left off counters and
the unit given apart (``s``, ``By``): an OpenTelemetry-to-Prometheus exporter, which
adds ``_total`` and unit suffixes only where missing, then shows the same names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from statemigrate._errors import ConfigurationError
from statemigrate._observe._instruments import (
    BUILD_INFO,
    INSTRUMENTS,
    Instrument,
    Sink,
    active_sink,
    emit,
    use_sink,
)
from statemigrate._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

__all__ = [
    "disable_metrics",
    "prometheus_multiprocess",
    "restate_after_fork",
    "use_opentelemetry",
    "use_prometheus",
]

logger = logging.getLogger("statemigrate")

# One sink per prometheus_client registry: its metrics can be registered only once.
_prometheus_sinks: list[tuple[CollectorRegistry, Sink]] = []

_OTEL_UNITS = {"seconds": "s", "bytes": "By", "ratio": "1", "": ""}


def _missing(extra: str, module: str, exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        "metrics",
        f"{module} is not installed: pip install 'statemigrate[{extra}]' ({exc})",
    )


def prometheus_multiprocess() -> bool:
    """Whether prometheus_client is in its multiprocess mode, which it chooses from
    this variable as it is imported: each process writes its values to its own files,
    which a collector sums (counters) or lists by ``pid`` (gauges)."""
    return bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    )


class _PrometheusSink:
    """Records into prometheus_client metrics, one per instrument.

    In multiprocess mode a process forked after a gauge was set starts with its own
    file, where the gauge reads 0 (``statemigrate_build_info``, set as metrics are
    enabled, in a preloading master): :meth:`restate` sets each gauge again in the
    child. Gauges are ``liveall`` there, so that ``multiprocess.mark_process_dead``
    removes a dead process's series.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self._record: dict[str, Callable[[float, Sequence[str]], None]] = {}
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self.multiprocess = prometheus_multiprocess()
        # The last value of each gauge series this process set, to set again after a
        # fork. Bounded as the declared series are: the labels are of this process.
        self._gauges: dict[tuple[Instrument, tuple[str, ...]], float] = {}
        for instrument in INSTRUMENTS:
            name, labels = instrument.name, instrument.labels
            metric: Counter | Gauge | Histogram
            try:
                if instrument.kind == "counter":
                    # prometheus_client writes the _total suffix itself.
                    metric = Counter(
                        name.removesuffix("_total"), instrument.help, labels, registry=registry
                    )
                elif instrument.kind == "gauge":
                    metric = Gauge(
                        name,
                        instrument.help,
                        labels,
                        registry=registry,
                        # One series per live process; the default, "all", keeps
                        # those of dead processes for ever.
                        multiprocess_mode="liveall",
                    )
                else:
                    metric = Histogram(
                        name,
                        instrument.help,
                        labels,
                        registry=registry,
                        buckets=instrument.buckets,
                    )
            except ValueError as exc:  # a metric of the same name is registered already
                raise ConfigurationError(
                    "registry", f"cannot register {name}: {exc}"
                ) from exc
            self._record[name] = _prometheus_recorder(instrument, metric)
            self._metrics[name] = metric

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        if instrument.kind == "gauge":
            self._gauges[instrument, tuple(labels)] = value
        self._record[instrument.name](value, labels)

    def prepare(self, instrument: Instrument, labels: Sequence[str]) -> None:
        """Create a counter's or histogram's series at zero (``labels()`` does)."""
        if instrument.kind != "gauge" and instrument.labels:
            self._metrics[instrument.name].labels(*labels)

    def restate(self) -> None:
        """Set every gauge again to its last value, in multiprocess mode: called in a
        process forked since, whose files hold none of them."""
        if not self.multiprocess:
            return  # the values live in the process's memory, forked with it
        for (instrument, labels), value in list(self._gauges.items()):
            self._record[instrument.name](value, labels)


def _prometheus_recorder(
    instrument: Instrument, metric: Any
) -> Callable[[float, Sequence[str]], None]:
    method = {"counter": "inc", "gauge": "set", "histogram": "observe"}[instrument.kind]
    if not instrument.labels:
        bound = getattr(metric, method)
        return lambda value, labels: bound(value)
    return lambda value, labels: getattr(metric.labels(*labels), method)(value)


def use_prometheus(registry: CollectorRegistry | None = None) -> None:
    """Record every statemigrate metric in a prometheus_client registry.

    Serve the registry as usual (``prometheus_client.start_http_server``,
    ``make_asgi_app``, ``generate_latest``). Calling it again with the same registry
    switches back to it without registering anything twice.

    Args:
        registry: the registry to register the metrics in; prometheus_client's
            default one (``prometheus_client.REGISTRY``) when ``None``.

    Raises:
        ConfigurationError: prometheus_client is not installed (the ``prometheus``
            extra), or the registry already holds a metric of one of the names.
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise _missing("prometheus", "prometheus_client", exc) from exc
    target = prometheus_client.REGISTRY if registry is None else registry
    sink = next((s for r, s in _prometheus_sinks if r is target), None)
    if sink is None:
        sink = _PrometheusSink(target)
        _prometheus_sinks.append((target, sink))
    use_sink(sink)
    emit(BUILD_INFO, 1.0, __version__)


class _OpenTelemetrySink:
    """Records through OpenTelemetry instruments, one per statemigrate instrument."""

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter("statemigrate", __version__, meter_provider=meter_provider)
        self._record: dict[str, Callable[[float, Sequence[str]], None]] = {}
        for instrument in INSTRUMENTS:
            unit = _OTEL_UNITS[instrument.unit]
            record: Callable[[float, Any], None]
            if instrument.kind == "counter":
                record = meter.create_counter(
                    instrument.name.removesuffix("_total"), unit, instrument.help
                ).add
            elif instrument.kind == "gauge":
                record = meter.create_gauge(instrument.name, unit, instrument.help).set
            else:
                record = meter.create_histogram(
                    instrument.name,
                    unit,
                    instrument.help,
                    explicit_bucket_boundaries_advisory=instrument.buckets,
                ).record
            self._record[instrument.name] = _attributed(instrument.labels, record)

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        self._record[instrument.name](value, labels)

    def prepare(self, instrument: Instrument, labels: Sequence[str]) -> None:
        """Create a counter's series at zero: adding 0 does. The API has no way to
        create a histogram's without observing a value, so those wait for one."""
        if instrument.kind == "counter":
            self._record[instrument.name](0.0, labels)


def _attributed(
    names: tuple[str, ...], record: Callable[[float, Any], None]
) -> Callable[[float, Sequence[str]], None]:
    return lambda value, labels: record(value, dict(zip(names, labels, strict=True)))


def use_opentelemetry(meter_provider: MeterProvider | None = None) -> None:
    """Record every statemigrate metric through the OpenTelemetry metrics API.

    The instruments come from the meter ``statemigrate`` of ``meter_provider``; what
    reads and exports them (a periodic OTLP exporter, a Prometheus reader) is the
    application's SDK set-up.

    Args:
        meter_provider: where to get the meter; the global meter provider when
            ``None`` (until the application sets one, the API's no-op provider).

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the
            ``opentelemetry`` extra).
    """
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError as exc:
        raise _missing("opentelemetry", "opentelemetry-api", exc) from exc
    use_sink(_OpenTelemetrySink(meter_provider))
    emit(BUILD_INFO, 1.0, __version__)


def restate_after_fork() -> None:
    """In a process forked after metrics were enabled (a gunicorn worker), set the
    values that were set once before the fork (``statemigrate_build_info``, the
    status gauges of a service restored in the master) again, where the backend keeps
    them per process: prometheus_client's multiprocess mode. Nothing otherwise."""
    restate = getattr(active_sink(), "restate", None)
    if callable(restate):
        try:
            restate()
        except Exception:
            # As for every record: a metrics backend's trouble never stops the caller.
            logger.exception("setting the gauges again after a fork failed")


def disable_metrics() -> None:
    """Stop recording: the instruments already registered stay, at their last values."""
    use_sink(None)
