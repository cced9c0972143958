"""The components a service caught changing values in place, remembered for the
rest of the process's life.

The in-place watch (:mod:`statemigrate._model._inplacewatch`) samples at most 144
records per field each time changes are taken, so at a few hundred thousand records
it misses a habit of changing values in place more often than it catches it. Each
sampler (a checkpoint's chain, a hand-over's pre-copy source) used to forget what the
other had found, and a chain trusted deltas again after its next full base: a
hand-over then carried on with deltas, and lost the changes no sample saw. A catch
is proof of the habit, so the service keeps it: from then on, in this process, every
pre-copy source of the service refuses deltas (a hand-over sends the full snapshot
inside the pause) and incremental checkpoints are full snapshots.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from statemigrate._errors import ChangeTrackingError

__all__ = ["CaughtInPlace", "InPlaceCatches"]

logger = logging.getLogger("statemigrate")


@dataclass(frozen=True, slots=True)
class CaughtInPlace:
    """The first catch of one component changing a value in place.

    Attributes:
        component: the component instance, ``component/instance``.
        at: when, in seconds since the epoch.
        by: what caught it (``"a checkpoint"``, ``"a pre-copy hand-over"``).
        path: where the value changed, e.g. ``['carts']['c53283']``.
        detail: what the watch saw there.
    """

    component: str
    at: float
    by: str
    path: str
    detail: str

    def describe(self) -> str:
        """The catch in words, for a fallback's reason and the log."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return (
            f"{self.component} was caught changing a value in place at {self.path}"
            f" ({self.detail}) by {self.by} at {when}"
        )


class InPlaceCatches:
    """A service's memory of the components caught changing values in place.

    Written by any thread that runs an in-place check (a checkpoint's, a hand-over's),
    read by every pre-copy source of the service before it trusts a delta.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._caught: dict[str, CaughtInPlace] = {}

    def record(self, component: str, exc: ChangeTrackingError, *, by: str) -> None:
        """Remember that ``component`` (``component/instance``) was caught by ``by``;
        the first time, say so once, at WARNING. Later catches change nothing."""
        with self._lock:
            if component in self._caught:
                return
            caught = CaughtInPlace(component, time.time(), by, exc.path, exc.detail)
            self._caught[component] = caught
        logger.warning(
            "%s: %s: its deltas are no longer trusted in this process, as a sample misses"
            " most such changes; until it restarts, its pre-copy hand-overs send the whole"
            " state inside the pause and its incremental checkpoints are full snapshots."
            " Fix the code: write the key again after changing its value in place"
            " (d[k] = v), and test the component with"
            " statemigrate.testing.check_change_tracking",
            self._service,
            caught.describe(),
        )

    def why(self, components: Iterable[str]) -> str | None:
        """Why deltas of ``components`` cannot be trusted: the first catch of the first
        of them caught, or ``None`` when none was."""
        with self._lock:
            for component in components:
                caught = self._caught.get(component)
                if caught is not None:
                    return (
                        f"{caught.describe()}; its deltas are not trusted for the rest of"
                        " this process's life"
                    )
        return None

    @property
    def caught(self) -> Mapping[str, CaughtInPlace]:
        """The first catch of each component caught, by ``component/instance``."""
        with self._lock:
            return dict(self._caught)
