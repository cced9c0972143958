"""A FIFO planted where a store reads, and whether anything opened it to read.

A reader that opens a FIFO with no writer waits for one for ever. The watcher plays
the writer only once a reader is there: it tries a non-blocking open for writing,
which fails (``ENXIO``) while no one has the FIFO open to read. So a fixed reader
never opens it and the watcher never succeeds; a reader that blocks in its open is
seen, let go (it reads an empty file) and recorded, so the test fails instead of
hanging.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FifoWatch", "watched_fifo"]


class FifoWatch:
    """What the watcher saw: ``opened`` is whether a reader opened the FIFO."""

    def __init__(self) -> None:
        self.opened = False
        self.stop = threading.Event()


@contextmanager
def watched_fifo(path: Path) -> Iterator[FifoWatch]:
    """Make a FIFO at ``path`` (replacing any file) and watch for a reader of it."""
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path, 0o600)
    watch = FifoWatch()

    def writer() -> None:
        while not watch.stop.wait(0.05):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    continue  # no reader: the one wanted outcome
                return  # the FIFO is gone
            watch.opened = True
            os.close(fd)  # the blocked reader sees end of file and goes on

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stop.set()
        thread.join()
