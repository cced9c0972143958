"""Feeding a multipart upload in bounded memory: the views handed to obstore are
counted until obstore lets them go.

obstore uploads the buffers it is given without copying them, and keeps each one until
the request of the part holding it is acknowledged. Handed a snapshot's chunks as they
come, it holds the chunks of every part in flight and of the part it is filling, and
nothing limits how far the snapshot's producer runs ahead of a slow server. The pacer
hands obstore views of its own (slices of the chunks, no copy) and counts the bytes of
those still alive, obstore's references included: a view is handed over only when the
bytes alive stay within the limit, so the upload holds at most that many bytes of the
snapshot that nobody else holds, whatever the server's pace. A chunk is dropped once
obstore has let go of it, and a chunk the caller keeps anyway (an encoded snapshot held
whole) costs nothing more.

The limit grows with the bytes streamed so far: it starts at ``floor``, is
``1 / SHARE`` of what has been handed out once that is more, and stops at ``ceiling``.
The size of a snapshot is not known until its last chunk, and a fixed limit worth
several parts in flight would be most of a medium snapshot (five 8 MiB parts are more
than a 27 MiB one). Growing with what has been streamed, the upload holds at most
``floor`` or ``1 / SHARE`` of the snapshot, whichever is more, and a large snapshot
soon reaches the full ``ceiling``: a fraction of one that large is enough for every
request a server takes at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator

__all__ = ["SHARE", "Pacer"]

SHARE = 4
"""Past ``floor``, the upload holds at most ``1 / SHARE`` of the bytes streamed so far."""


class Pacer:
    """Hand out views of at most ``piece`` bytes, waiting while handing the next one
    would put more than :meth:`limit` bytes alive.

    A view counts as alive until every reference to it is gone, the uploader's
    included. Waiting releases the GIL, so that the uploader's threads can drop what
    they have sent; the uploader must drop the views of the parts it has sent (obstore
    does, once a part's request is acknowledged or has failed). A view is always handed
    over when nothing is alive. ``floor`` must leave room for the part being filled and
    for the views straddling its two ends (part size plus two pieces), or the bytes of
    a part being filled would wait on themselves. ``ceiling=None`` waits for nothing:
    for an uploader that keeps every part until the upload completes (obstore's
    in-memory store).

    Args:
        piece: the largest view handed out (larger chunks are sliced).
        floor: the bytes that may be alive from the start.
        ceiling: the most bytes alive at once, however many were streamed, or ``None``.

    Attributes:
        alive: bytes handed out and still referenced.
        most: the most bytes alive at once so far.
        streamed: bytes handed out so far.
    """

    def __init__(self, *, piece: int, floor: int, ceiling: int | None) -> None:
        if piece < 1 or floor < 2 * piece or (ceiling is not None and ceiling < floor):
            raise ValueError(
                f"need 1 <= piece, 2 * piece <= floor <= ceiling, not {piece}, {floor}, "
                f"{ceiling}"
            )
        self._piece = piece
        self._floor = floor
        self._ceiling = ceiling
        self._changed = threading.Condition()
        self.alive = 0
        self.most = 0
        self.streamed = 0

    def limit(self, streamed: int) -> int | None:
        """The most bytes that may be alive once ``streamed`` bytes were handed out
        (``None``: no limit)."""
        if self._ceiling is None:
            return None
        return min(self._ceiling, max(self._floor, streamed // SHARE))

    def paced(self, views: Iterable[memoryview]) -> Iterator[memoryview]:
        """``views`` as views of their own, each handed out once there is room for it.

        Raises:
            Exception: whatever ``views`` raises.
        """
        for view in views:
            for start in range(0, view.nbytes, self._piece):
                # A slice is a new view of the same memory: its lifetime is ours and the
                # uploader's, whoever else holds the chunk.
                part = view[start : start + self._piece]
                self._reserve(part.nbytes)
                # Runs when the last reference goes, in whichever thread drops it
                # (obstore's, once the part is acknowledged).
                weakref.finalize(part, self._release, part.nbytes)
                yield part
                del part  # held by the uploader as long as it needs it, not longer
            del view

    def _reserve(self, size: int) -> None:
        with self._changed:
            limit = self.limit(self.streamed)
            if limit is not None:
                self._changed.wait_for(lambda: self.alive == 0 or self.alive + size <= limit)
            self.alive += size
            self.streamed += size
            self.most = max(self.most, self.alive)

    def _release(self, size: int) -> None:
        with self._changed:
            self.alive -= size
            self._changed.notify_all()
