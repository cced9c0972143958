"""The undo log of a delta being applied: how each change is given back.

Applying a delta notes, before each change, a closure that gives it back; a failure
runs the log newest first, so every record and field ends as it was, in its key order
(see :mod:`statemigrate._runtime._delta`). One closure per field and a tuple per
record, not a closure per record: a large delta notes many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from statemigrate._model._tracked import TrackedDict

__all__ = [
    "MISSING",
    "Undo",
    "assign",
    "assigner",
    "giver",
    "reimporter",
    "reorderer",
    "roll_back",
]

logger = logging.getLogger("statemigrate")

MISSING: Any = object()
"""Where a key or attribute was absent: giving it back removes it."""

Undo = Callable[[], None]


def giver(target: MutableMapping[Any, Any], before: list[tuple[Any, Any]]) -> Undo:
    """Give the keys noted in ``before`` their earlier values, newest first (one
    closure per field: a tuple per record costs less than a closure per record)."""

    def give_back() -> None:
        failed: BaseException | None = None
        for key, old in reversed(before):
            try:
                if old is MISSING:
                    target.pop(key, None)
                else:
                    target[key] = old
            except BaseException as exc:  # go on: the other keys are given back too
                failed = failed or exc
        if failed is not None:
            raise failed

    return give_back


def reorderer(target: MutableMapping[Any, Any], order: list[Any]) -> Undo:
    """Put the keys of ``target`` back in ``order`` (its keys before the delta)."""

    def reorder() -> None:
        if list(target) != order:
            items = [(key, target[key]) for key in order]
            target.clear()
            target.update(items)

    return reorder


def reimporter(obj: Any, name: str, old: dict[Any, Any], absent: list[Any]) -> Undo:
    return lambda: obj.import_records(name, old, absent)


def assigner(obj: object, name: str, old: Any) -> Undo:
    return lambda: assign(obj, name, old)


def assign(obj: object, name: str, value: Any) -> None:
    if value is not MISSING:
        current = getattr(obj, name, None)
        if type(value) is dict and isinstance(current, TrackedDict):
            # A collection sent whole still stays tracked, as the default import keeps it.
            value = type(current)(value)
        setattr(obj, name, value)
    elif hasattr(obj, name):
        try:
            delattr(obj, name)
        except AttributeError:
            pass  # a class-level default stays visible, as the default import leaves it


def roll_back(undo: list[Undo]) -> bool:
    """Run the undo log newest first; True when some part of it failed."""
    failed = False
    for give_back in reversed(undo):
        try:
            give_back()
        except BaseException as exc:
            logger.error("rollback of a delta failed: %s: %s", type(exc).__name__, exc)
            failed = True
    undo.clear()
    return failed
