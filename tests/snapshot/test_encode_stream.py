"""SnapshotStream: the bytes come out as chunks are sealed, in bounded memory, and are
exactly a snapshot that decodes to the data; errors of the data come while reading."""

from __future__ import annotations

import os
import time
import tracemalloc
import weakref

import pytest
from golden import PRODUCER

from statemigrate._snapshot import _packbatches, _sealer
from statemigrate._snapshot._encode import SectionInput, SnapshotStream, encode_snapshot
from statemigrate._snapshot._format import FORMAT_VERSION, open_snapshot
from statemigrate._snapshot._msgpack import NotPlainError, pack_data

MiB = 1 << 20
KEY = b"stream key of 16+ bytes"


def _table(count: int) -> dict[str, object]:
    return {f"k{i:07d}": os.urandom(24).hex() for i in range(count)}


def test_the_stream_holds_the_chunks_in_flight_not_the_snapshot() -> None:
    """Peak traced memory while the stream is read and dropped stays a fraction of the
    snapshot's size (encode_snapshot, which keeps the bytes, needs all of it)."""
    data = _table(700_000)  # about 45 MiB packed, 20 MiB stored
    sections = [SectionInput("table", "main", 1, "", data)]
    tracemalloc.start()
    try:
        stream = SnapshotStream(sections, producer=PRODUCER, chunk_size=MiB, workers=2)
        for _ in stream:
            pass
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = encode_snapshot(sections, producer=PRODUCER, chunk_size=MiB, workers=2)
        _, kept = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.size == held.size > 8 * MiB
    assert kept > held.size
    assert streamed < held.size // 2, (streamed, held.size)


@pytest.mark.parametrize("key", [None, KEY])
def test_the_streamed_bytes_are_a_snapshot_of_the_current_version(key: bytes | None) -> None:
    data = {"entries": _table(40_000), "count": 3}
    stream = SnapshotStream(
        [SectionInput("table", "main", 1, "", data), SectionInput("empty", "main", 2, "", {})],
        producer=PRODUCER, key=key, generation=9, chunk_size=64 << 10,
    )
    assert stream.header is None  # known only once the chunks are all out
    blob = b"".join(stream)
    snapshot = open_snapshot(blob, key=key)
    assert snapshot.format_version == FORMAT_VERSION
    assert snapshot.authenticated is (key is not None)
    assert snapshot.header == stream.header and stream.size == len(blob)
    assert len(snapshot.header.sections[0].chunks) > 10
    assert snapshot.read_section(0) == data and snapshot.read_section(1) == {}


def test_a_value_that_is_not_plain_fails_the_reading_after_earlier_chunks() -> None:
    data: dict[str, object] = {**_table(100_000), "zzz": object()}
    stream = SnapshotStream(
        [SectionInput("table", "main", 1, "", data)], producer=PRODUCER, chunk_size=MiB
    )
    received = 0
    with pytest.raises(NotPlainError) as caught:
        for part in stream:
            received += memoryview(part).nbytes
    assert received > MiB
    assert caught.value.section == 0 and caught.value.path == ["zzz"]
    assert stream.header is None


def test_a_header_that_would_be_refused_is_refused_before_anything_is_encoded() -> None:
    twice = [SectionInput("table", "main", 1, "", {}), SectionInput("table", "main", 1, "", {})]
    with pytest.raises(ValueError, match="cannot encode snapshot"):
        SnapshotStream(twice, producer=PRODUCER)


def test_closing_a_stream_read_halfway_stops_its_threads() -> None:
    stream = SnapshotStream(
        [SectionInput("table", "main", 1, "", _table(100_000))],
        producer=PRODUCER, chunk_size=256 << 10, workers=2,
    )
    iterator = iter(stream)
    next(iterator)
    next(iterator)
    stream.close()
    with pytest.raises(StopIteration):
        next(iterator)
    assert stream.header is None


class _Packed(bytearray):
    """A packed batch that can be watched (``bytes`` takes no weak reference)."""


def _watch_raw_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the raw packed bytes alive; returns ``[alive, most alive at once]``."""
    alive = [0, 0]

    def released(size: int) -> None:
        alive[0] -= size

    def pack_watched(data: object, *, default: object = None, nesting: int = 0) -> _Packed:
        packed = _Packed(pack_data(data))
        alive[0] += len(packed)
        alive[1] = max(alive)
        weakref.finalize(packed, released, len(packed))
        return packed

    monkeypatch.setattr(_packbatches, "pack_data", pack_watched)
    monkeypatch.setattr(_packbatches, "BATCH", 256)  # pieces small beside a chunk

    def slow_seal(pieces: list[memoryview], level: int) -> _sealer.SealedChunk:
        # Compression slower than packing: the queue fills up to its bound.
        time.sleep(0.005)
        return seal(pieces, level)

    seal = _sealer._seal
    monkeypatch.setattr(_sealer, "_seal", slow_seal)
    return alive


@pytest.mark.parametrize("workers", [None, 0, 1, 2, 3])
def test_the_raw_bytes_alive_are_the_chunks_being_sealed_and_the_one_being_filled(
    monkeypatch: pytest.MonkeyPatch, workers: int | None
) -> None:
    """Whatever the snapshot's size, the raw bytes alive at once are at most a chunk per
    compression thread and the chunk being filled (by default one thread per core but
    the one packing: one on two cores), plus the packed batches that straddle them."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    alive = _watch_raw_bytes(monkeypatch)
    data = {"entries": _table(60_000)}  # about 3.7 MiB packed
    chunk_size = 128 << 10
    stream = SnapshotStream(
        [SectionInput("table", "main", 1, "", data)],
        producer=PRODUCER, chunk_size=chunk_size, workers=workers,
    )
    for _ in stream:
        pass
    threads = 1 if workers is None else workers
    batch = max(len(pack_data(dict(list(data["entries"].items())[:256]))), 1)
    assert stream.size > 10 * chunk_size and alive[0] == 0
    assert alive[1] <= (threads + 1) * chunk_size + 2 * batch, (alive[1], threads)
    assert alive[1] > threads * chunk_size  # the queue did fill up


def test_a_negative_number_of_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="workers must be 0 or more, got -1"):
        SnapshotStream([], producer=PRODUCER, workers=-1)
