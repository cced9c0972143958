"""A release-2 successor that traces its take-over and writes its spans as JSON lines.

Usage: traced_successor.py OUTPUT
"""

from __future__ import annotations

import json
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import statemigrate as sm
import statemigrate.tracing
from statemigrate.handoff import receive_handoff, take_over
from statemigrate.reference import KVCacheV2, build_registry


def main(output: str) -> int:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    statemigrate.tracing.use_opentelemetry(provider)
    service = sm.Service("tracing-test", registry=build_registry())
    service.register(KVCacheV2())
    inheritance = receive_handoff()
    assert inheritance is not None, "not started by a handoff"
    with inheritance:
        take_over(service, inheritance)
    with open(output, "w") as out:
        for span in exporter.get_finished_spans():
            parent = span.parent
            out.write(
                json.dumps(
                    {
                        "name": span.name,
                        "trace_id": span.context.trace_id,
                        "span_id": span.context.span_id,
                        "parent_id": parent.span_id if parent is not None else None,
                        "attributes": dict(span.attributes or {}),
                    }
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
