"""A service that writes without pause and checkpoints, to be killed at any instant.

    checkpoint_child.py DIRECTORY MODE EVERY

Restores the ledger (``restore_children.ledger``) from the TmpfsStore in DIRECTORY,
then a writer thread makes writes one after another and a :class:`Checkpointer`
commits the state every EVERY seconds. Each event is one line on stdout, written with
one ``write(2)`` (atomic on a pipe), so that whatever the parent has read when the
child dies is exactly what the child had done:

    r COUNT restored|cold     the state restored at start
    ready                     writing and checkpointing from now on
    w N T                     write N applied and acknowledged at time T (monotonic)
    s COUNT                   a snapshot holding writes 1..COUNT goes to the store now
    c COUNT T0 T1             ... and is committed; its snapshot began at T0, its commit
                              ended at T1 (the store gets the bytes in small pieces,
                              with pauses, so that kills land inside commits too)
    m                         (``inplace`` only) half the snapshot is written

MODE is ``good`` (writers held through a lock while the snapshot is taken, here while
a child is forked to export it; commits through the TmpfsStore), ``incremental`` (the
same with a tracked ledger and incremental checkpoints: a base, then deltas, the chain
committed as one object), or one of three broken checkpointers, which the same check
must catch: ``noquiesce`` takes snapshots in this process without holding the
writers, ``inplace`` rewrites the ``current`` file in place, pausing half-way, and
``deltaonly`` checkpoints incrementally but commits each new piece alone, as if the
store kept the pieces before it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from restore_children.ledger import ledger_service, tracked_ledger_service
from statemigrate import Checkpointer, TmpfsStore
from statemigrate._runtime._chain import split_chain
from statemigrate.stores import Buffer

# A slow export (5 ms between reading the count and handing over the items): without
# the writers held, writes land inside every snapshot.
SLOW_EXPORT = 0.005
# A slow commit: the store gets the snapshot in small pieces with a pause between them,
# as it would a large snapshot on a busy machine, so that kills land inside commits.
PIECE = 1024
PIECE_PAUSE = 0.002


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


class Announcing:
    """Passes commits to ``store``, announcing each on stdout before and after."""

    def __init__(self, store: Any, taken: dict[str, float]) -> None:
        self.store = store
        self.taken = taken

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        count, began = int(self.taken["count"]), self.taken["began"]
        say(f"s {count}")
        ref = self.store.commit(slowly(data))
        say(f"c {count} {began} {time.monotonic()}")
        return ref

    def open(self, ref: Any = None) -> Any:
        return self.store.open(ref)


def slowly(data: Buffer | Iterable[Buffer]) -> Iterator[memoryview]:
    parts = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    for part in parts:
        view = memoryview(part).cast("B")
        for start in range(0, len(view), PIECE):
            yield view[start : start + PIECE]
            time.sleep(PIECE_PAUSE)


class InPlace:
    """A broken store: truncates ``current`` and rewrites it in place, with a pause
    half-way; no temporary file, no ``previous``."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "current")

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        payload = b"".join(bytes(part) for part in parts)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            half = len(payload) // 2
            os.write(fd, payload[:half])
            say("m")
            time.sleep(0.2)
            os.write(fd, payload[half:])
        finally:
            os.close(fd)
        return None

    def open(self, ref: Any = None) -> bytes:
        with open(self.path, "rb") as handle:
            return handle.read()


class LastPieceOnly:
    """A broken store wrapper: commits only the newest piece of a checkpoint chain."""

    def __init__(self, store: TmpfsStore) -> None:
        self.store = store

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        return self.store.commit(split_chain(b"".join(bytes(part) for part in parts))[-1])

    def open(self, ref: Any = None) -> Any:
        return self.store.open(ref)


def main() -> None:
    directory, mode, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
    incremental = mode in ("incremental", "deltaonly")
    service, ledger = (
        tracked_ledger_service() if incremental else ledger_service(slow=SLOW_EXPORT)
    )
    store = TmpfsStore(directory)
    report = service.start_from(store)
    say(f"r {ledger.count} {'cold' if report is None else 'restored'}")
    lock = threading.Lock()
    taken: dict[str, float] = {}

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        with lock if mode != "noquiesce" else contextlib.nullcontext():
            taken["began"] = time.monotonic()
            taken["count"] = ledger.count
            yield

    inner: Any = store
    if mode == "inplace":
        inner = InPlace(directory)
    elif mode == "deltaonly":
        inner = LastPieceOnly(store)
    Checkpointer(
        service,
        Announcing(inner, taken),
        every=every,
        quiesce=held,
        changes=lambda: ledger.count,
        incremental=incremental,
        max_deltas=8,
        # A forked export reads the image of the fork, which no writer changes; the
        # broken checkpointer reads the live state, in this process, as they write.
        export="inline" if mode == "noquiesce" else "fork",
    ).start()

    def write_forever() -> None:
        while True:
            with lock:
                n = ledger.write()
            say(f"w {n} {time.monotonic()}")
            time.sleep(0.0005)

    threading.Thread(target=write_forever, daemon=True).start()
    say("ready")
    threading.Event().wait()


if __name__ == "__main__":
    main()
