"""A snapshot, commit or restore called from a stack already near Python's recursion
limit.

The walks of a state go on on a fresh stack where the caller's runs out
(``_model/_freshstack.py``), so how deep a state nests does not matter. The rest of a
snapshot runs on the caller's stack, a few dozen frames deep: the components'
``export_state``, migration steps, validation, the encoder, the store. It cannot move
to another thread, since it runs the application's own code, which may need a lock the
caller holds (an ``RLock`` taken again would wait for good there). So a caller with
too few frames left got a bare ``RecursionError`` from somewhere inside, or an
``ExportError`` blaming the state's depth; :func:`guard_caller_stack` turns either
into one :class:`~statemigrate.CallerStackError` that says what ran out. A restore
(``restore``, ``start_from``) is guarded the same way: it runs migration steps,
validation and the components' ``import_state`` on the caller's stack, and rolls every
component back when the stack runs out there, as after any failure.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import FrameType
from typing import ParamSpec, TypeVar

from statemigrate._errors import CallerStackError, StateMigrateError

__all__ = ["HEADROOM", "guard_caller_stack"]

P = ParamSpec("P")
T = TypeVar("T")

HEADROOM = 250
"""Frames left to the recursion limit below which a ``RecursionError`` in a snapshot is
the caller's stack's doing: several times what a snapshot of a plain state takes (about
20 frames), a quarter of the default limit. A caller with more left that still runs out
has code of its own that recurses (an ``export_state``, a step): its error stands (as
the ``ExportError`` or ``MigrationStepError`` it is reported as)."""


def _depth() -> int:
    """Frames on this thread's stack, this function's included."""
    frame: FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def _ran_out(exc: BaseException) -> bool:
    """Whether ``exc`` is the stack running out, or our error made of that."""
    if isinstance(exc, CallerStackError):
        return False  # said already, by a guard further in
    if isinstance(exc, RecursionError):
        return True
    return isinstance(exc, StateMigrateError) and isinstance(exc.__cause__, RecursionError)


def guard_caller_stack(act: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate the method that does ``act``: the stack running out in it, when its
    caller had fewer than :data:`HEADROOM` frames left, raises
    :class:`~statemigrate.CallerStackError` (the original error chained).

    The depth is measured only then, once the stack has unwound to the method: a
    snapshot that does not run out pays nothing for the guard but its one frame.
    """

    def decorate(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return method(*args, **kwargs)
            except (RecursionError, StateMigrateError) as exc:
                if not _ran_out(exc):
                    raise
                depth, limit = _depth() - 2, sys.getrecursionlimit()  # the caller's
                if limit - depth >= HEADROOM:
                    raise
                raise CallerStackError(act, depth=depth, limit=limit) from exc

        return guarded

    return decorate
