"""Records written after a handoff's last piece was taken, counted per component.

The last piece (a delta or a full snapshot) is taken with the writers held, but only
the writers the server holds. A request of a method served during the pause
(``safe_methods``: GET, HEAD and OPTIONS by default), or a background task it started
(FastAPI's and Starlette's ``BackgroundTasks`` run after the response), may write the
state after the piece was taken: that write stays in the old process, and the
successor never receives it. :class:`LateWrites` opens a mark on every record field
(``TrackedDict``) of the components whose changes are tracked, just after the last
piece was taken, so that the old process can say, once the successor serves, which
components were written meanwhile and how often.

Reads cost nothing (a ``TrackedDict``'s reads are ``dict``'s own); a write costs its
record in the log while the marks are open, from the last piece to the end of the
handoff, or, when a server adapter keeps them (``kept``), to the end of its drain:
websockets and streaming responses left on the old process write all along.
Components that cannot tell what changed are not watched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from statemigrate._model._tracked import ChangeMark, TrackedDict
from statemigrate._runtime._deltawrite import changes_of
from statemigrate._runtime._restore import Registered

__all__ = ["LateCount", "LateWrites"]


class LateCount(NamedTuple):
    """What one component had written after the last piece: both figures are told, as a
    single record (a hit counter's key) written hundreds of times is one record but as
    many writes lost, each of them perhaps acknowledged."""

    records: int
    writes: int


class LateWrites:
    """Marks opened now on the record fields of ``entries``: the records written from
    now on, per component. Call :meth:`close` when done, so the fields stop recording.
    """

    def __init__(self, entries: Sequence[Registered]) -> None:
        #: Whether a server control keeps the marks past SERVING, to tell and close
        #: them itself when its drain ends.
        self.kept = False
        self._watched: list[tuple[str, list[tuple[TrackedDict[Any, Any], ChangeMark]]]] = []
        for entry in entries:
            changes = changes_of(entry)
            if changes is None:
                continue
            marks = [(tracked, tracked.mark()) for tracked in changes.tracked.values()]
            self._watched.append((entry.key, marks))

    def written(self) -> dict[str, LateCount]:
        """The components written since the marks, with the distinct records written
        in each and the writes made (a record written twice is one record, two
        writes); O(record fields). Empty once closed."""
        written = {}
        for key, marks in self._watched:
            records = sum(tracked.pending(mark) for tracked, mark in marks)
            if records:
                writes = sum(tracked.writes_since(mark) for tracked, mark in marks)
                written[key] = LateCount(records, writes)
        return written

    def close(self) -> None:
        """Close the marks. Idempotent."""
        for _, marks in self._watched:
            for tracked, mark in marks:
                tracked.close(mark)
        self._watched = []
