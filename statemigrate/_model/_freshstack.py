"""Deep walks that go on, on a fresh thread's stack, where the caller's runs out.

The exporter and the comparison of states walk a state with Python calls, a few per
level of nesting. How deep a state may nest is set by what a restore takes (pydantic
validates 255 levels of recursive types) and what a snapshot holds (1,024 levels of
lists and dicts), not by the recursion limit of the process at hand nor by how deep
its stack already is. A state that one process committed under a raised limit, another
process restores under the default one; that process must be able to commit it again,
or the next deploy loses it.

So a walk marks a checkpoint every :data:`EVERY` levels. When the stack runs out below
one (``RecursionError``), the walk of that value starts again from the checkpoint on a
new thread, whose stack is empty, and hands back its result or its error. A walk that
never runs out costs nothing more than the test of its level; the work done below the
checkpoint before the stack ran out is done again, once per fresh stack.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["EVERY", "on_fresh_stack"]

P = ParamSpec("P")
T = TypeVar("T")

EVERY = 32
"""Levels of nesting between the checkpoints where a walk may go on on a fresh stack:
few enough that the levels between two fit in any stack a walk starts from (a few
Python calls each, against the default limit of 1,000), and a walk moves at most once
per :data:`EVERY` levels."""


def on_fresh_stack(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``call(*args, **kwargs)`` on a new thread and wait for it: its result, or
    its exception raised here.

    The thread runs in a copy of the caller's context variables, and is a daemon: an
    interrupt of the caller's wait leaves it to finish on its own, never holding the
    interpreter's exit. It runs nothing but ``call``, which must not need a lock the
    caller holds (the walks read the state only). The arguments come apart from
    ``call`` so that the callers build no closure: a function that makes one keeps its
    variables in cells, at a cost on every call, not only the rare call that moves.
    """
    results: list[T] = []
    errors: list[BaseException] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            results.append(context.run(call, *args, **kwargs))
        except BaseException as exc:  # handed to the caller, who raises it
            errors.append(exc)

    thread = threading.Thread(target=run, name="statemigrate-deep-walk", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
