"""Traces: the spans of a snapshot, commit and restore in one process, and of a handoff
across two, joined into one trace through the snapshot message."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import statemigrate as sm
import statemigrate.tracing
from statemigrate.handoff import Spawn, hand_over
from statemigrate.handoff._protocol import SnapshotOffer, decode_message, encode_message
from statemigrate.reference import KVCacheV1, build_registry

CHILD = str(Path(__file__).resolve().parents[1] / "handoff_children" / "traced_successor.py")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    statemigrate.tracing.use_opentelemetry(provider)
    yield exporter
    statemigrate.tracing.disable_tracing()


def service() -> tuple[sm.Service, KVCacheV1]:
    svc = sm.Service("tracing-test", registry=build_registry())
    cache = svc.register(KVCacheV1())
    for i in range(100):
        cache.set(f"key:{i}", f"value {i}")
    return svc, cache


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def children(parent: ReadableSpan, exporter: InMemorySpanExporter) -> list[str]:
    return [
        s.name
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def test_commit_and_restore_are_spans_with_their_phases(spans: InMemorySpanExporter) -> None:
    svc, _ = service()
    committed = svc.commit(sm.MemoryStore())
    fresh, cache = service()
    cache.entries.clear()
    fresh.restore(committed.ref)
    found = by_name(spans)
    (snapshot,) = found["statemigrate.snapshot"]
    assert snapshot.attributes is not None
    assert snapshot.attributes["statemigrate.snapshot_bytes"] == committed.snapshot.size
    assert "statemigrate.snapshot.export" in children(snapshot, spans)
    (commit,) = found["statemigrate.commit"]
    assert commit.attributes is not None and commit.attributes["statemigrate.store"] == "memory"
    (restore,) = found["statemigrate.restore"]
    assert children(restore, spans) == [
        f"statemigrate.restore.{phase}"
        for phase in ("read", "verify", "decode", "migrate", "validate", "apply")
    ]
    assert restore.attributes is not None
    assert restore.attributes["statemigrate.components"] == ("kvcache 1->1",)
    assert restore.status.status_code != StatusCode.ERROR
    assert restore.start_time is not None and restore.end_time is not None
    assert restore.start_time <= restore.end_time


def test_a_failed_restore_is_an_error_span(spans: InMemorySpanExporter) -> None:
    svc, _ = service()
    with pytest.raises(sm.RestoreError):
        svc.restore(b"not a snapshot")
    (restore,) = by_name(spans)["statemigrate.restore"]
    assert restore.status.status_code == StatusCode.ERROR


def test_nothing_is_recorded_when_tracing_is_off() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    statemigrate.tracing.use_opentelemetry(provider)
    statemigrate.tracing.disable_tracing()
    assert not statemigrate.tracing.tracing_enabled()
    svc, _ = service()
    svc.commit(sm.MemoryStore())
    assert exporter.get_finished_spans() == ()


def test_the_snapshot_message_carries_a_well_formed_traceparent_only() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = SnapshotOffer(size=10, listeners=("http",), trace=good)
    assert decode_message(encode_message(sent), stage="receive") == sent
    forged = encode_message(SnapshotOffer(size=10, trace="00-zz-not-a-trace"))
    decoded = decode_message(forged, stage="receive")
    assert isinstance(decoded, SnapshotOffer) and decoded.trace == ""
    quiet = encode_message(SnapshotOffer(size=10))
    assert b"trace" not in quiet  # older successors see the message they know


class Hooks:
    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def stop_accepting(self) -> None:
        pass


@pytest.mark.slow
def test_one_trace_spans_both_processes_of_a_handoff(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    svc, _ = service()
    output = tmp_path / "spans.jsonl"
    report = hand_over(
        svc, Spawn([sys.executable, CHILD, str(output)]), listeners={}, control=Hooks()
    )
    assert report.ok and report.successor_pid is not None
    os.waitpid(report.successor_pid, 0)
    found = by_name(spans)
    (handoff,) = found["statemigrate.hand_over"]
    assert children(handoff, spans) == [
        f"statemigrate.hand_over.{phase}"
        for phase in ("spawn", "handshake", "precopy", "export", "transfer", "ready", "serving")
    ]
    assert handoff.attributes is not None
    assert handoff.attributes["statemigrate.outcome"] == "ready"
    assert handoff.attributes["statemigrate.snapshot_bytes"] == report.snapshot_size
    theirs = {span["name"]: span for span in map(json.loads, output.read_text().splitlines())}
    take = theirs["statemigrate.take_over"]
    assert take["trace_id"] == handoff.context.trace_id
    assert take["parent_id"] == handoff.context.span_id
    restore = theirs["statemigrate.restore"]
    assert restore["trace_id"] == handoff.context.trace_id
    assert restore["parent_id"] == take["span_id"]
    assert restore["attributes"]["statemigrate.components"] == ["kvcache 1->2"]
