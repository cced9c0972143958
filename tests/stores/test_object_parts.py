"""The object store's pacer of multipart uploads: views handed out in order, no larger
than a piece, and a multipart commit that holds at most max_concurrency + 1 parts of
the snapshot, however slow the server."""

from __future__ import annotations

import array
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

import obstore
import pytest
from _store_helpers import scratch_dir
from _store_helpers.object_server import S3Server, s3_place

from statemigrate.stores import ObjectStore
from statemigrate.stores._object_parts import Pacer

MiB = 1 << 20
PART = 5 * MiB


def test_views_keep_the_bytes_in_order_and_are_at_most_a_piece() -> None:
    """Chunks of any size (empty ones, signed and char formats included) come out as
    views of at most ``piece`` bytes that join equal to the input; each is counted
    alive until the last reference to it is gone."""
    rnd = random.Random(7)
    pieces = [rnd.randbytes(rnd.choice((0, 1, 999, 4096, 70_000))) for _ in range(60)]
    views: list[Any] = [
        (memoryview(piece), memoryview(piece).cast("b"), memoryview(piece).cast("c"))[i % 3]
        for i, piece in enumerate(pieces)
    ]
    pacer = Pacer(limit=None, piece=32_768)
    out = list(pacer.paced(views))
    assert b"".join(bytes(view) for view in out) == b"".join(pieces)
    assert max(view.nbytes for view in out) == 32_768 and min(v.nbytes for v in out) > 0
    assert pacer.alive == pacer.most == sum(len(piece) for piece in pieces)
    del out
    assert pacer.alive == 0


def test_a_view_waits_until_there_is_room() -> None:
    """With a limit of two pieces, a third view is handed out only once one of the
    first two is let go of."""
    pacer = Pacer(limit=200, piece=100)
    views = pacer.paced(iter([memoryview(b"x" * 250)]))
    first, second = next(views), next(views)
    assert pacer.alive == 200
    taken: list[memoryview] = []
    waiter = threading.Thread(target=lambda: taken.append(next(views)))
    waiter.start()
    del first
    waiter.join()
    assert bytes(second) + bytes(taken[0]) == b"x" * 150 and pacer.most == 200


def test_bad_sizes_are_refused() -> None:
    for limit, piece in ((10, 0), (199, 100)):
        with pytest.raises(ValueError, match="need 1 <= piece"):
            Pacer(limit=limit, piece=piece)


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


class SlowServer:
    """obstore's multipart put as a slow server makes it behave.

    Like obstore, it gathers the buffers it is given into parts of ``chunk_size``
    bytes, sends each full part at once, and takes the next buffer only while at most
    ``max_concurrency`` parts are unacknowledged; a part is dropped when acknowledged.
    The server acknowledges one part every 50 ms, slower than the caller. Everything
    else is the real obstore. It records the most bytes of the caller's chunks alive at once,
    wherever they are held.
    """

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self.chunks_held = 0

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

        def measure() -> None:
            self.chunks_held = max(self.chunks_held, self.chunks.alive)

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
                    measure()
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
    concurrency: int,
) -> None:
    """A 30 MiB snapshot in 5 MiB parts through a server slower than the caller: at no
    time are more than max_concurrency + 1 parts of the caller's chunks alive (plus
    one in the caller's hand), and the snapshot reads back intact.

    Without pacing, the caller ran ahead of the server by as much as obstore would
    take, and the store kept the first part's chunks for the whole upload."""
    with scratch_dir() as path:
        store = ObjectStore(f"file://{path}/app", part_size=PART, max_concurrency=concurrency)
        chunks = Chunks(30)
        server = SlowServer(chunks)
        store._backend._obs = server
        ref = store.commit(chunks)
        assert bytes(store.open()) == bytes(chunks.sent) and ref.size == 30 * MiB
        # The parts the uploader holds, and a chunk in the hands of the caller's iterator.
        assert 0 < server.chunks_held <= (concurrency + 1) * PART + MiB


def test_parts_wait_for_real_acknowledgements(s3: S3Server) -> None:
    """With max_concurrency=1 against a real S3 server, the pacer waits for obstore
    to drop acknowledged parts before handing out more: the commit of 7 parts
    completes and reads back intact (a part kept after its acknowledgement would hang
    it)."""
    store = s3_place(s3).store(part_size=PART, max_concurrency=1)
    data = random.Random(5).randbytes(7 * PART - 123)
    ref = store.commit(data[i : i + MiB] for i in range(0, len(data), MiB))
    assert ref.entry is not None and ref.entry.etag is not None
    assert ref.entry.etag.rstrip('"').endswith("-7")
    assert store.open() == data

