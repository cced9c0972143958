"""Round 0 of a pre-copy handoff, exported in a forked child while the old process
serves.

A pre-copy handoff's round 0 is a full snapshot of a state that may hold millions
of entries; exported in a child made with ``fork(2)`` it costs the serving process
only the fork and the pages it writes afterwards. The machinery (the memfd, the
child's life, the deadline, the heap frozen meanwhile) lives in
:mod:`statemigrate._runtime._fork`, which checkpoints use too; this module gives it
the handoff's stage and errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from statemigrate._errors import HandoffError
from statemigrate._runtime import _fork
from statemigrate._runtime._fork import Exported, freeze_heap, thaw_heap
from statemigrate.handoff._drive import Steps
from statemigrate.stores._base import Buffer

__all__ = ["ROUND_ZERO_NICE", "Exported", "export_forked", "freeze_heap", "thaw_heap"]

ROUND_ZERO_NICE = 10
"""How much lower than the serving process's round 0's child CPU priority is. Its
slowness risks nothing: the old process keeps serving its own state meanwhile (nothing
is held, no write waits on it), and a round 0 that starves past its deadline fails
the handoff before the pause, with the old process serving on. So the requests come
first. A checkpoint's child is another matter: until it commits, a crash loses every
write since the last checkpoint, so it runs at the serving process's priority
(:data:`statemigrate._runtime._checkpointtake.CHECKPOINT_NICE`)."""


def export_forked(
    produce: Callable[[], Buffer | Iterable[Buffer]],
    *,
    deadline: float,
    stage: str,
    name: str = "statemigrate-precopy",
) -> Steps[Exported]:
    """Steps: run ``produce`` in a forked child and return the sealed memfd it wrote.

    Args:
        produce: builds the snapshot bytes (or buffers) from the state the child
            inherited; it runs only in the child.
        deadline: on the ``time.monotonic()`` clock; a child still running then is
            killed (``SIGKILL``) and reaped.
        stage: the stage named by errors.
        name: the memfd's name, as shown in ``/proc/<pid>/fd``.

    Raises:
        HandoffError: the memfd could not be made, the fork failed, the child
            failed (its error), was killed by a signal, or ran past the deadline.
            The child is reaped and nothing is left open, whatever happened.
    """
    return (
        yield from _fork.export_forked(
            produce,
            deadline=deadline,
            label="round-0",
            fail=partial(HandoffError, stage),
            name=name,
            nice=ROUND_ZERO_NICE,
        )
    )
