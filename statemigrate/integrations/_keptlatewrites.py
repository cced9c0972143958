"""The late-write marks a server adapter keeps from the move to the end of its drain.

A handoff opens marks on the state just after its last piece was taken
(:class:`~statemigrate._runtime._latewrites.LateWrites`) and, when its control has
``keep_late_writes``, leaves them to the server adapter: the websockets and streaming
responses left on the old process write all along the drain, not only until the
successor serves. The adapter tells them once, when its drain has ended.
"""

from __future__ import annotations

from statemigrate._runtime._latewrites import LateWrites
from statemigrate.handoff._latewarning import warn_late_writes

__all__ = ["KeptLateWrites"]


class KeptLateWrites:
    """The marks of the last handoff, if it gave them and they are still open."""

    def __init__(self) -> None:
        self._marks: LateWrites | None = None

    def keep(self, marks: LateWrites) -> None:
        """Keep the marks the handoff opened after its last piece."""
        self._marks = marks

    def drop(self) -> None:
        """Forget the marks: the handoff failed, and closed them itself."""
        self._marks = None

    def tell(self) -> None:
        """Warn of what was written here after the last piece was taken, one WARNING per
        component, and close the marks. Nothing if none are kept."""
        marks, self._marks = self._marks, None
        if marks is not None:
            warn_late_writes(marks.written(), until="this process ended its drain")
            marks.close()
