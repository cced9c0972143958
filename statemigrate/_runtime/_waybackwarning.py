"""The warning that a restore moved a component to a version with no steps back.

A release that upgrades a component (``1 -> 2``) without a downgrade step deploys
cleanly: the trouble shows only at the rollback, when the old release cannot take the
state over (``no version both sides understand``) and the deploy of the fix waits on
it. The restore that moved the state is where that is first known: it is said there,
once per component and pair of versions in a process, so that the release is fixed
before a rollback needs it. ``statemigrate check`` finds the same gap before a deploy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from statemigrate._errors import NoMigrationPathError, StateMigrateError
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._restore import Registered

__all__ = ["warn_no_way_back"]

logger = logging.getLogger("statemigrate")

_lock = threading.Lock()
_warned: set[tuple[str, int, int]] = set()
"""The (component, version restored from, version restored into) warned of."""


def warn_no_way_back(report: RestoreReport, entries: Iterable[Registered]) -> None:
    """Warn of each component ``report`` upgraded to a version from which its registry
    plans no way back to the version the snapshot held. (A downgrade's way back is the
    newer release's upgrade step, which this release's registry need not hold.)"""
    registered = {(entry.component, entry.instance): entry for entry in entries}
    for restored in report.components:
        source, target = restored.source_version, restored.target_version
        entry = registered.get((restored.component, restored.instance))
        if source >= target or entry is None:
            continue
        try:
            # A lossy way back is one all the same: a rollback allows it by name.
            entry.registry.plan(restored.component, target, source, allow_lossy=True)
        except NoMigrationPathError:
            pass
        except StateMigrateError:
            continue  # not a missing step: the registry's own error, said where it is used
        else:
            continue
        with _lock:
            if (restored.component, source, target) in _warned:
                continue
            _warned.add((restored.component, source, target))
        logger.warning(
            "%s was restored from version %d into version %d, which has no steps back to"
            " %d: a rollback to the release that wrote this snapshot cannot take its state"
            " over; register a %d -> %d step (`statemigrate check` lists every such gap)",
            restored.component,
            source,
            target,
            source,
            target,
            source,
        )
