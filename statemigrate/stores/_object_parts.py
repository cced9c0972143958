"""A snapshot's chunks cut into the parts of a multipart upload, in bounded memory.

obstore uploads the buffers it is given without copying them, and a buffer stays in
memory until the request that carries it is acknowledged. Handed the encoder's chunks
directly, the upload keeps alive every chunk of the parts in flight and of the part it
is filling, on top of what the encoder holds, and nothing says when it lets one go.
The cutter here copies the chunks into part buffers of its own instead, so that each
chunk is dropped as soon as it is copied, and it counts the part buffers alive: one is
made only when fewer than ``alive`` exist, which bounds the upload's memory at
``alive * part_size`` bytes whatever the server's pace.

Each part buffer is an anonymous memory map. Its pages become resident as the part is
filled, and go back to the operating system the moment the uploader drops the part:
the memory is not left in the allocator's free lists, where other allocations (in
other threads' arenas) could not reuse it.
"""

from __future__ import annotations

import mmap
import threading
import weakref
from collections.abc import Iterator

__all__ = ["PartCutter"]


class PartCutter:
    """Copy a stream of byte views into parts of ``part_size`` bytes, the last one
    shorter, with at most ``alive`` parts in memory at once.

    A part counts as alive until every reference to it is gone, the uploader's
    included. Asking for a part when ``alive`` are alive waits, without holding the
    GIL, until the uploader drops one, so the uploader must drop the parts it has sent
    (obstore does, once a part's request is acknowledged, or has failed). ``alive=None``
    waits for nothing: for an uploader that keeps every part until the upload
    completes (obstore's in-memory store).

    Args:
        chunks: flat byte views (format ``B``, ``b`` or ``c``), e.g. from
            :func:`~statemigrate.stores._base.chunks`.
        part_size: the size of every part but the last.
        alive: the most parts in memory at once, or ``None``.
    """

    def __init__(self, chunks: Iterator[memoryview], *, part_size: int, alive: int | None) -> None:
        if part_size < 1 or (alive is not None and alive < 1):
            raise ValueError(f"part_size and alive must be positive, not {part_size}, {alive}")
        self._chunks = chunks
        self._part_size = part_size
        self._slots = threading.Semaphore(alive) if alive is not None else None
        self._left: memoryview | None = None  # the rest of a chunk that filled a part
        self._done = False
        self._first: memoryview | None = None
        self.made = 0
        """How many parts were made so far."""

    def fill_first(self) -> bool:
        """Fill the first part ahead of iteration; whether it holds every byte (the
        data fits in one part, or there is none).

        Raises:
            Exception: whatever the chunks' iterator raises.
        """
        self._first = self.next_part()
        return not self.more()

    def next_part(self) -> memoryview | None:
        """The next part: full, or shorter when the chunks ran out; ``None`` after the
        last one.

        Raises:
            Exception: whatever the chunks' iterator raises; the part being filled is
                dropped.
        """
        if self._done or not self.more():
            self._done = True
            return None
        view = self._new_part()
        filled = 0
        while filled < self._part_size and self.more():
            chunk = self._left
            assert chunk is not None
            take = min(chunk.nbytes, self._part_size - filled)
            view[filled : filled + take] = chunk[:take]
            filled += take
            self._left = chunk[take:] if take < chunk.nbytes else None
            del chunk
        self.made += 1
        return view if filled == self._part_size else view[:filled]

    def more(self) -> bool:
        """Whether any byte is left for a further part (reads ahead one chunk)."""
        while self._left is None:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            if chunk.nbytes:
                self._left = chunk if chunk.format == "B" else chunk.cast("B")
        return True

    def __iter__(self) -> Iterator[memoryview]:
        """Every part left, in order (the one :meth:`fill_first` filled first)."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
            del first
        while (part := self.next_part()) is not None:
            yield part
            del part  # held by the uploader as long as it needs it, not longer

    def _new_part(self) -> memoryview:
        if self._slots is not None:
            self._slots.acquire()
        try:
            buffer = mmap.mmap(-1, self._part_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        if self._slots is not None:
            # Runs when the last view of the part is released, by whichever thread
            # releases it (obstore's, once the part is acknowledged).
            weakref.finalize(buffer, self._slots.release)
        return memoryview(buffer)
