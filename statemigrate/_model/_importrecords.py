"""Handing a delta's records to a component on the records protocol, with their order.

A delta lists a record field's changed records with those replaced in place first and
those inserted (or moved to the end) since its base last, and says how many of those
last ones there are: ``moved``. A ``TrackedDict`` on the default path gets them back
in that order by itself. A component on the records protocol keeps its records in a
store of its own (an ``OrderedDict`` LRU, say), where only its ``import_records`` can
move them; so it is given ``moved`` too, when it takes it:

    def import_records(self, field, records, deleted, moved=0): ...

Older components, written for the three-argument form, are called as before: their
records arrive in the same order, and the keys that moved are theirs to guess.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["import_records"]


def import_records(
    obj: Any, field: str, records: Mapping[Any, Any], deleted: Sequence[Any], moved: int
) -> None:
    """Call ``obj.import_records`` with ``moved`` when it takes it, else without."""
    method = obj.import_records
    if _takes_moved(type(obj)):
        method(field, records, deleted, moved=moved)
    else:
        method(field, records, deleted)


_TAKES_MOVED: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()
"""Per component class, whether its ``import_records`` takes ``moved``: read once."""


def _takes_moved(cls: type) -> bool:
    """Whether ``cls.import_records`` has a ``moved`` parameter (or takes any keyword)."""
    known = _TAKES_MOVED.get(cls)
    if known is None:
        try:
            parameters = inspect.signature(cls.import_records).parameters  # type: ignore[attr-defined]
        except (TypeError, ValueError):  # a builtin, or a callable without a signature
            known = False
        else:
            known = "moved" in parameters or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
            )
        _TAKES_MOVED[cls] = known
    return known
