"""When a handoff's successor takes its first checkpoint: a moment after it serves.

A successor's state is in no checkpoint of its release, so its checkpointer takes a
full base soon after the take-over. That base is forked with the writers held, and
forking a large process copies its page tables: 24 to 93 ms at 1,000,000 entries
(benchmarks/bench_takeover_stall.py), during which its event loop runs nothing.
Taken at once, that stall lands on the requests the old process held in the pause
and now forwards, and on their clients' reconnections, which have waited the pause
already. ``first_after_takeover`` seconds later (0.5 by default), it lands on
ordinary traffic instead. A kill -9 in between loses what changed since the old
process's last checkpoint, as it would during the base's own time: the window after
a take-over is that much longer (docs/checkpoints.md).
"""

from __future__ import annotations

import math
import time

from statemigrate._errors import ConfigurationError

__all__ = ["DEFAULT_FIRST_AFTER_TAKEOVER", "check_delay", "takeover_wait"]

#: Seconds from a take-over (the successor sent SERVING) to its first checkpoint.
DEFAULT_FIRST_AFTER_TAKEOVER = 0.5


def check_delay(option: str, value: object) -> None:
    """Refuse ``value`` for ``option`` unless it is a finite number of seconds, 0 or
    more (an infinite delay would put off every checkpoint after a take-over, without a
    word).

    Raises:
        ConfigurationError: it is not.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value >= 0
    ):
        raise ConfigurationError(
            option, f"must be a finite number of seconds, 0 or more, not {value!r}"
        )


def takeover_wait(taken_over_at: float | None, delay: float) -> float:
    """Seconds left before the first checkpoint of a state taken over at
    ``taken_over_at`` (``time.monotonic()``; ``None``: not taken over)."""
    if taken_over_at is None or delay <= 0:
        return 0.0
    return max(taken_over_at + delay - time.monotonic(), 0.0)
