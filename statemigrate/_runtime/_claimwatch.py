"""Claiming a store whose other writer has stopped: a checkpointer's commits refused
(``StoreSharedError``) while the store's latest snapshot stays the same.

A store has one writer at a time, and a process whose commits find another process's
snapshot is refused, so as not to replace that process's acknowledged writes. When
that process has stopped (the old pod of a rollout that overlapped, which committed
once more after the new pod's start and exited), the refusals would go on for this
process's whole life, and a restart would lose everything it holds. The refusals
themselves tell: each one carries the identity of the latest snapshot it found
(``StoreSharedError.latest``). A live writer replaces it at each of its checkpoints;
one that keeps being the same for ``claim_after`` seconds, measured on this process's
monotonic clock between refusals (no other host's clock is asked), belongs to a
writer that stopped committing, and the checkpointer claims the store: its next
commit goes over that very snapshot. Reads of the store (an idle checkpointer's
check that it still holds its last checkpoint) leave the identity as it is, and a
snapshot committed after the claim is still refused.

A writer this host sees running (``writer_running``) is never claimed from: it is
alive, merely idle. One on another host cannot be asked; idle (or failing to commit)
for ``claim_after``, it is the one refused from then on, which the ``StateStoreShared``
alert shows as it showed this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from statemigrate._errors import ConfigurationError, StoreSharedError

__all__ = ["DEFAULT_CLAIM_AFTER", "QuietStore", "check_claim_after"]

DEFAULT_CLAIM_AFTER = 600.0
"""Seconds: far above the interval of any live writer's checkpoints (5 s by default)
and its back-off after failures (60 s at most by default), so that only a writer that
stopped committing goes that long without replacing its snapshot."""


def check_claim_after(value: object) -> None:
    """Refuse ``claim_after`` unless it is ``None`` or a positive number of seconds.

    Raises:
        ConfigurationError: it is neither.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            "claim_after", f"must be a positive number of seconds or None, not {value!r}"
        )


class QuietStore:
    """The refusals of one checkpointer's commits, and whether they found the same
    snapshot for ``after`` seconds (``None``: never claim).

    Not thread-safe on its own: the checkpointer calls it under its lock.
    """

    def __init__(self, after: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self._clock = clock
        self._first: StoreSharedError | None = None  # the first refusal finding that snapshot
        self._since = 0.0

    def refused(self, exc: StoreSharedError) -> float | None:
        """Note a refusal; returns the seconds the store has been quiet when that is
        ``after`` or more and the store may be claimed from its writer, else ``None``."""
        now = self._clock()
        first = self._first
        if first is None or first.latest != exc.latest or first.place != exc.place:
            self._first, self._since = exc, now
            first = exc
        quiet = now - self._since
        if (
            self.after is None
            or quiet < self.after
            # Without an identity, two refusals cannot tell whether the store moved.
            or exc.latest is None
            # Alive on this host: idle, not gone.
            or exc.writer_running is True
        ):
            return None
        return quiet

    def reset(self) -> None:
        """Forget the refusals: a commit went through, or the store was claimed."""
        self._first = None
