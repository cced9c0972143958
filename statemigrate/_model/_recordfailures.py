"""The other records a failing record step fails on, so that one error names them.

A record step that raises on one record most often raises on others like it: a record
the code did not foresee is seldom alone. Stopping at the first would have an operator
mend the data, or the step, one record per deploy. So once a record has failed, the
step runs on the records after it only to count those that fail too and to name the
first few; what it returns is dropped with the rest of the failed migration. Counting
stops at :data:`MAX_COUNTED`, so a step that fails on every record of a large state
costs a bounded time more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from statemigrate._model._paths import FieldName, format_path

__all__ = ["MAX_COUNTED", "MoreFailures", "count_more_failures"]

#: Failures counted after the first at most.
MAX_COUNTED = 1000
#: Keys named at most.
_SHOWN = 3


@dataclass(frozen=True)
class MoreFailures:
    """The records after the first failed one that the step failed on too.

    Attributes:
        count: how many (at most :data:`MAX_COUNTED`).
        keys: the first few of their keys.
        capped: counting stopped at :data:`MAX_COUNTED`: there may be more.
    """

    count: int
    keys: tuple[Any, ...]
    capped: bool

    def describe(self, field: str) -> str:
        """``; 7 more records raised too (at entries['b'], ...)``, or ``""``."""
        if not self.count:
            return ""
        paths = ", ".join(format_path([FieldName(field), key]) for key in self.keys)
        more = ", ..." if self.count > len(self.keys) else ""
        counted = f"{self.count:,} or more" if self.capped else f"{self.count:,} more"
        noun = "record" if self.count == 1 and not self.capped else "records"
        return f"; {counted} {noun} failed too (at {paths}{more})"


def count_more_failures(
    func: Callable[[Any, Any], Any], rest: Iterator[tuple[Any, Any]], *, none_refused: bool
) -> MoreFailures:
    """Run ``func`` on the records left in ``rest``, counting those it fails on: it
    raises, or returns ``None`` for a record that was not ``None`` when ``none_refused``.
    A step that changes the dict's size while running ends the count there."""
    count = 0
    keys: list[Any] = []
    try:
        for key, value in rest:
            try:
                result = func(key, value)
            except Exception:
                pass
            else:
                if not (none_refused and result is None and value is not None):
                    continue
            count += 1
            if len(keys) < _SHOWN:
                keys.append(key)
            if count >= MAX_COUNTED:
                return MoreFailures(count, tuple(keys), capped=True)
    except RuntimeError:  # "dictionary changed size during iteration"
        pass
    return MoreFailures(count, tuple(keys), capped=False)
