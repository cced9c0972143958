"""The object store's part cutter: parts of exactly part_size bytes, the bytes in order,
and a multipart commit that holds at most max_concurrency + 1 parts of the snapshot,
however slow the server."""

from __future__ import annotations

import array
import mmap
import random
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

import obstore
import pytest
from _store_helpers import scratch_dir
from _store_helpers.object_server import S3Server, s3_place

from statemigrate.stores import ObjectStore, _object_parts
from statemigrate.stores._object_parts import PartCutter

MiB = 1 << 20
PART = 5 * MiB


def test_parts_are_part_size_but_the_last_and_keep_the_bytes_in_order() -> None:
    """Chunks of any size (empty ones, signed and char formats included) come out as
    parts of exactly part_size bytes, the last one shorter, joined equal to the input."""
    rnd = random.Random(7)
    pieces = [rnd.randbytes(rnd.choice((0, 1, 999, 4096, 70_000))) for _ in range(60)]
    views: list[Any] = [
        (memoryview(piece), memoryview(piece).cast("b"), memoryview(piece).cast("c"))[i % 3]
        for i, piece in enumerate(pieces)
    ]
    cutter = PartCutter(iter(views), part_size=65_536, alive=None)
    parts = [bytes(part) for part in cutter]
    data = b"".join(pieces)
    assert b"".join(parts) == data
    assert [len(part) for part in parts[:-1]] == [65_536] * (len(parts) - 1)
    assert 0 < len(parts[-1]) <= 65_536 and cutter.made == len(parts)


@pytest.mark.parametrize(("size", "fits"), [(0, True), (10, True), (100, True), (101, False)])
def test_fill_first_says_whether_the_data_fits_in_one_part(size: int, fits: bool) -> None:
    """With one part alive at a time, each part is made once the one before is gone."""
    cutter = PartCutter(iter([memoryview(b"x" * size)]), part_size=100, alive=1)
    assert cutter.fill_first() is fits
    joined = bytearray()
    for part in cutter:
        joined += part
        del part  # as an uploader drops a part once it is sent
    assert joined == b"x" * size


def test_bad_sizes_are_refused() -> None:
    for part_size, alive in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="must be positive"):
            PartCutter(iter(()), part_size=part_size, alive=alive)


class Chunks:
    """The caller's snapshot as 1 MiB chunks whose lifetime is tracked: ``alive`` is
    how many bytes of them exist right now, wherever they are held."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.alive = 0
        self.sent = bytearray()
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[memoryview]:
        rnd = random.Random(3)
        for _ in range(self.count):
            chunk = array.array("B", rnd.randbytes(MiB))
            self.sent += chunk
            with self._lock:
                self.alive += MiB
            weakref.finalize(chunk, self._gone)
            view = memoryview(chunk)
            del chunk
            yield view
            del view

    def _gone(self) -> None:
        with self._lock:
            self.alive -= MiB


class CountedParts:
    """Counts the store's part buffers alive (anonymous maps), the one it is filling
    included; ``most`` is the most alive at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.alive = 0
        self.most = 0
        self._lock = threading.Lock()
        shim = types.SimpleNamespace(**{n: getattr(mmap, n) for n in dir(mmap) if n.isupper()})
        shim.mmap = self._make
        monkeypatch.setattr(_object_parts, "mmap", shim)

    def _make(self, *args: Any, **kwargs: Any) -> mmap.mmap:
        buffer = mmap.mmap(*args, **kwargs)
        with self._lock:
            self.alive += 1
            self.most = max(self.most, self.alive)
        weakref.finalize(buffer, self._gone)
        return buffer

    def _gone(self) -> None:
        with self._lock:
            self.alive -= 1


class SlowServer:
    """obstore's multipart put as a slow server makes it behave.

    Like obstore, it gathers the buffers it is given into parts of ``chunk_size``
    bytes, sends each full part at once, and takes the next buffer only while at most
    ``max_concurrency`` parts are unacknowledged; a part is dropped when acknowledged.
    The server acknowledges one part every 50 ms, slower than the caller. Everything else is the
    real obstore. It records the most bytes of the caller's chunks alive at once
    (wherever they are held) and the most bytes of other buffers (the store's own
    parts) it held unacknowledged at once.
    """

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self.chunks_held = 0
        self.parts_held = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(obstore, name)

    def put(self, store: Any, path: str, data: Any, **options: Any) -> Any:
        if not options.get("use_multipart"):
            return obstore.put(store, path, data, **options)
        part_size, limit = options["chunk_size"], options["max_concurrency"]
        unacknowledged: deque[list[memoryview]] = deque()
        written: list[bytes] = []
        lock = threading.Condition()
        finished = False

        def serve() -> None:
            while True:
                with lock:
                    lock.wait_for(lambda: unacknowledged or finished)
                    if not unacknowledged:
                        return
                time.sleep(0.05)
                with lock:
                    part = unacknowledged.popleft()
                    written.append(b"".join(part))
                    for view in part:
                        view.release()
                    del part
                    lock.notify_all()

        def measure(filling: list[memoryview]) -> None:
            copies = sum(
                view.nbytes for part in (*unacknowledged, filling) for view in part
                if not isinstance(view.obj, array.array)
            )
            self.chunks_held = max(self.chunks_held, self.chunks.alive)
            self.parts_held = max(self.parts_held, copies)

        server = threading.Thread(target=serve)
        server.start()
        filling: list[memoryview] = []
        try:
            for buffer in data:
                view = memoryview(buffer)
                del buffer
                with lock:
                    lock.wait_for(lambda: len(unacknowledged) <= limit)
                    filling.append(view)
                    del view
                    measure(filling)
                    if sum(part.nbytes for part in filling) >= part_size:
                        unacknowledged.append(filling)
                        filling = []
                        lock.notify_all()
            with lock:
                unacknowledged.append(filling)
                filling = []
                lock.notify_all()
        finally:
            with lock:
                finished = True
                lock.notify_all()
            server.join()
        return obstore.put(store, path, written)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_multipart_commit_holds_at_most_max_concurrency_plus_one_parts(
    concurrency: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30 MiB snapshot in 5 MiB parts through a server slower than the caller: the
    caller's chunks are dropped once copied (one in hand at a time), the uploader never
    holds more than max_concurrency + 1 parts (nor does the store, the part it is
    filling included), and the snapshot reads back intact.

    Handing the caller's chunks to obstore as they are kept each one until its part
    was acknowledged, and the first part's chunks for the whole upload."""
    with scratch_dir() as path:
        store = ObjectStore(f"file://{path}/app", part_size=PART, max_concurrency=concurrency)
        parts = CountedParts(monkeypatch)
        chunks = Chunks(30)
        server = SlowServer(chunks)
        store._backend._obs = server
        ref = store.commit(chunks)
        assert bytes(store.open()) == bytes(chunks.sent) and ref.size == 30 * MiB
        assert server.chunks_held <= 2 * MiB  # the one being copied, the next one made
        assert 0 < server.parts_held <= (concurrency + 1) * PART
        assert parts.most <= concurrency + 1 and parts.alive == 0


def test_parts_wait_for_real_acknowledgements(s3: S3Server) -> None:
    """With max_concurrency=1 against a real S3 server, the cutter waits for obstore
    to drop acknowledged parts before making more: the commit of 7 parts completes
    and reads back intact (a part kept after its acknowledgement would hang it)."""
    store = s3_place(s3).store(part_size=PART, max_concurrency=1)
    data = random.Random(5).randbytes(7 * PART - 123)
    ref = store.commit(data[i : i + MiB] for i in range(0, len(data), MiB))
    assert ref.entry is not None and ref.entry.etag is not None
    assert ref.entry.etag.rstrip('"').endswith("-7")
    assert store.open() == data

