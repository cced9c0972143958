"""Traces of snapshots, restores and handoffs through the OpenTelemetry API.

Off until :func:`use_opentelemetry_tracing` is called; the API is imported only then,
and with tracing off every call here returns after one ``None`` check.

Most spans are recorded when the work is over, from the timings the reports already
measure, with their real start and end times: the hot paths carry no tracing code.
Two spans are live, because something must name them while they run: the old
process's handoff span, whose context travels to the successor with the snapshot
(the ``traceparent`` of W3C Trace Context), and the successor's take-over span, a
child of it, under which the successor's restore is recorded. So one trace shows a
whole upgrade across both processes.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from statemigrate._errors import ConfigurationError
from statemigrate._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "SpanHandle",
    "disable_tracing",
    "ended_now",
    "record_span",
    "start_span",
    "tracing_enabled",
    "under",
    "use_opentelemetry_tracing",
]

logger = logging.getLogger("statemigrate")

Attributes = Mapping[str, str | int | float | bool | Sequence[str]]

_tracer: Tracer | None = None

_current: contextvars.ContextVar[SpanHandle | None] = contextvars.ContextVar(
    "statemigrate_span", default=None
)
"""The live span that spans recorded now belong under (the successor's take-over)."""


def use_opentelemetry_tracing(tracer_provider: TracerProvider | None = None) -> None:
    """Record spans through ``tracer_provider`` (the global one by default).

    Raises:
        ConfigurationError: the OpenTelemetry API is not installed.
    """
    global _tracer
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigurationError(
            "tracing",
            f"opentelemetry-api is not installed: pip install 'statemigrate[opentelemetry]'"
            f" ({exc})",
        ) from exc
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    _tracer = provider.get_tracer("statemigrate", __version__)


def disable_tracing() -> None:
    """Record no more spans."""
    global _tracer
    _tracer = None


def tracing_enabled() -> bool:
    """Whether spans are recorded."""
    return _tracer is not None


class SpanHandle:
    """A live span, or nothing when tracing is off; never raises into the caller."""

    def __init__(self, span: Span | None = None) -> None:
        self.span = span

    def traceparent(self) -> str | None:
        """The span's W3C ``traceparent``, to pass to another process."""
        if self.span is None:
            return None
        from opentelemetry.trace import set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, set_span_in_context(self.span))
        return carrier.get("traceparent")

    def end(self, *, error: str | None = None, attributes: Attributes | None = None) -> None:
        """End the span, marking it failed with ``error`` if given."""
        if self.span is None:
            return
        try:
            _finish(self.span, error, attributes)
            self.span.end()
        except Exception:  # tracing must never break the operation it describes
            logger.exception("statemigrate: recording a span failed")
        self.span = None


def _finish(span: Span, error: str | None, attributes: Attributes | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if attributes:
        span.set_attributes(dict(attributes))
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))


def _context(parent: SpanHandle | None, traceparent: str | None) -> Any:
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if parent is not None and parent.span is not None:
        return set_span_in_context(parent.span)
    if traceparent:
        return TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    current = _current.get()
    if current is not None and current.span is not None:
        return set_span_in_context(current.span)
    return None


def start_span(
    name: str,
    *,
    attributes: Attributes | None = None,
    traceparent: str | None = None,
    start_ns: int | None = None,
) -> SpanHandle:
    """Start a live span, under ``traceparent`` (another process's span) if given,
    at ``start_ns`` (``time.time_ns()``) or now."""
    tracer = _tracer
    if tracer is None:
        return SpanHandle()
    try:
        span = tracer.start_span(
            name,
            context=_context(None, traceparent),
            attributes=dict(attributes or {}),
            start_time=start_ns,
        )
    except Exception:
        logger.exception("statemigrate: starting a span failed")
        return SpanHandle()
    return SpanHandle(span)


def record_span(
    name: str,
    start_ns: int,
    end_ns: int,
    *,
    parent: SpanHandle | None = None,
    attributes: Attributes | None = None,
    error: str | None = None,
    children: Sequence[tuple[str, float]] = (),
) -> None:
    """Record a span that is over: ``start_ns`` to ``end_ns`` (``time.time_ns()``).

    ``children`` are ``(name, seconds)`` phases laid end to end from the start; the
    last one is cut at the span's end if the measured phases add up to more.
    Without ``parent``, the span goes under the live span of :func:`under`, if any.
    """
    tracer = _tracer
    if tracer is None:
        return
    try:
        span = tracer.start_span(
            name,
            context=_context(parent, None),
            attributes=dict(attributes or {}),
            start_time=start_ns,
        )
        at = start_ns
        handle = SpanHandle(span)
        for child, seconds in children:
            until = min(end_ns, at + max(0, int(seconds * 1e9)))
            tracer.start_span(
                f"{name}.{child}", context=_context(handle, None), start_time=at
            ).end(end_time=until)
            at = until
        _finish(span, error, None)
        span.end(end_time=end_ns)
    except Exception:
        logger.exception("statemigrate: recording a span failed")


def ended_now(seconds: float) -> tuple[int, int]:
    """``(start_ns, end_ns)`` of something that took ``seconds`` and just ended."""
    end = time.time_ns()
    return end - int(seconds * 1e9), end


@contextmanager
def under(span: SpanHandle) -> Iterator[None]:
    """Spans recorded in this block without a parent of their own go under ``span``."""
    token = _current.set(span)
    try:
        yield
    finally:
        _current.reset(token)
