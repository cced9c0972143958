"""The object store's pacer of multipart uploads: views handed out in order, no larger
than a piece, a limit that grows with the bytes streamed, and a multipart commit that
holds at most two parts or a quarter of the snapshot, and never more than
max_concurrency + 1 parts, however slow the server."""

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
from statemigrate.stores._object_parts import SHARE, Pacer

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
    pacer = Pacer(piece=32_768, floor=65_536, ceiling=None)
    out = list(pacer.paced(views))
    assert b"".join(bytes(view) for view in out) == b"".join(pieces)
    assert max(view.nbytes for view in out) == 32_768 and min(v.nbytes for v in out) > 0
    assert pacer.alive == pacer.most == sum(len(piece) for piece in pieces)
    del out
    assert pacer.alive == 0


def test_a_view_waits_until_there_is_room() -> None:
    """With a limit of two pieces, a third view is handed out only once one of the
    first two is let go of."""
    pacer = Pacer(piece=100, floor=200, ceiling=200)
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
    for piece, floor, ceiling in ((0, 10, 10), (100, 199, None), (100, 300, 299)):
        with pytest.raises(ValueError, match="need 1 <= piece"):
            Pacer(piece=piece, floor=floor, ceiling=ceiling)


def test_the_limit_grows_with_the_bytes_streamed() -> None:
    """The limit is the floor while few bytes were streamed, then a quarter of them,
    then the ceiling; without a ceiling there is none."""
    pacer = Pacer(piece=100, floor=400, ceiling=1_000)
    assert SHARE == 4
    assert [pacer.limit(n) for n in (0, 1, 1_600, 2_000, 3_999, 4_000, 10**9)] == [
        400, 400, 400, 500, 999, 1_000, 1_000,
    ]
    assert Pacer(piece=100, floor=400, ceiling=None).limit(10**9) is None


def test_a_view_waits_for_room_under_the_limit_of_the_bytes_streamed() -> None:
    """Once 1,600 bytes were streamed in 100-byte views, a view is handed out while
    the bytes alive stay within 400, not 1,000: holding the four newest views, the
    pacer waits until one of them is let go of; after 2,000 bytes, five fit."""
    pacer = Pacer(piece=100, floor=400, ceiling=1_000)
    views = pacer.paced(iter([memoryview(b"y" * 3_000)]))
    held: deque[memoryview] = deque()
    for _ in range(16):
        held.append(next(views))
        if len(held) > 3:
            held.popleft()
    assert pacer.streamed == 1_600 and pacer.alive == 300
    held.append(next(views))
    taken: list[memoryview] = []
    waiter = threading.Thread(target=lambda: taken.append(next(views)))
    waiter.start()
    held.popleft()  # 400 alive made room only once one of them is gone
    waiter.join()
    held.append(taken.pop())
    assert pacer.streamed == 1_800 and pacer.alive == 400
    while pacer.streamed < 2_000:
        held.popleft()
        held.append(next(views))
    held.append(next(views))  # 500 alive: a quarter of 2,000 streamed
    assert pacer.alive == 500 == pacer.most


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
    ``max_concurrency`` parts are unacknowledged; a part, and the buffers it was
    made of, are dropped when acknowledged.
    The server acknowledges one part every 50 ms, slower than the caller. Everything
    else is the real obstore. It records the most bytes of the caller's chunks alive at once,
    wherever they are held.
    """

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self.chunks_held = 0
        self.parts = 0
        self.most_in_flight = 0

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
            for view in data:
                # Held as obstore holds a buffer: the object handed over stays alive.
                # (A memoryview of it would keep only the memory it shows alive, and
                # let the pacer's view go at once.)
                with lock:
                    lock.wait_for(lambda: len(unacknowledged) <= limit)
                    filling.append(view)
                    del view
                    measure()
                    self.most_in_flight = max(self.most_in_flight, len(unacknowledged))
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
        self.parts = sum(1 for part in written if part)
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


def test_by_default_a_commit_holds_two_parts_of_a_medium_snapshot() -> None:
    """With the default settings, a 30 MiB snapshot through a server slower than the
    caller is uploaded in 5 MiB parts, and at no time are more than two of them
    (a third of the snapshot) alive, plus one chunk in the caller's hand.

    With a fixed limit of max_concurrency + 1 parts, five 8 MiB parts were allowed
    alive, more than the whole snapshot, and the caller ran that far ahead."""
    with scratch_dir() as path:
        store = ObjectStore(f"file://{path}/app")
        chunks = Chunks(30)
        server = SlowServer(chunks)
        store._backend._obs = server
        ref = store.commit(chunks)
        assert bytes(store.open()) == bytes(chunks.sent) and ref.size == 30 * MiB
        assert 0 < server.chunks_held <= 2 * PART + MiB
        assert server.parts == 6


def test_a_snapshot_the_caller_holds_is_not_paced() -> None:
    """An encoded snapshot passed as a list costs nothing more while obstore holds
    it: its parts go up max_concurrency at a time from the start, where a stream's
    would wait for two parts' worth to be acknowledged."""
    with scratch_dir() as path:
        store = ObjectStore(f"file://{path}/app")
        chunks = Chunks(30)
        held = list(chunks)
        server = SlowServer(chunks)
        store._backend._obs = server
        store.commit(held)
        assert bytes(store.open()) == bytes(chunks.sent)
        assert server.most_in_flight >= 3


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

