"""Handing a delta's records to a component on the records protocol, with their order.

A delta lists a record field's changed records with those replaced in place first and
those inserted (or moved to the end) since its base last, and says how many of those
last ones there are: ``moved``. A ``TrackedDict`` on the default path gets them back
in that order by itself. A component on the records protocol keeps its records in a
store of its own (an ``OrderedDict`` LRU, say), where only its ``import_records`` can
move them; so it is given ``moved`` too, when it takes it::

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
    if _takes_moved(method):
        method(field, records, deleted, moved=moved)
    else:
        method(field, records, deleted)


_TAKES_MOVED: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Per function, whether it takes ``moved``, read once: keyed by a method's function,
so every instance of a class shares the answer, and a function set on one instance
has its own."""


def _takes_moved(method: Any) -> bool:
    """Whether ``method`` has a ``moved`` parameter (or takes any keyword)."""
    function = getattr(method, "__func__", method)
    try:
        known = _TAKES_MOVED.get(function)
    except TypeError:  # not weakly referable (a builtin): asked each time
        known = None
    if known is None:
        known = _signature_takes_moved(method)
        try:
            _TAKES_MOVED[function] = known
        except TypeError:
            pass
    return known


def _signature_takes_moved(method: Any) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin, or a callable without a signature
        return False
    return "moved" in parameters or any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()
    )
