"""A restore refused because a newer release wrote the snapshot: which component and
versions, and the way out a start-up names.

A release reads the versions it registers, and older ones through its upgrade steps;
the downgrade steps that bring a newer version back are the newer release's code. So
when a start-up (``Service.start_from``) meets a newer release's snapshot, whatever
the server, its error says what to do: start the release that wrote it, or rewrite
the snapshot for this one with ``statemigrate migrate`` run with the newer release's
registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from statemigrate._errors import (
    LossyMigrationError,
    NoMigrationPathError,
    RestoreError,
    UnknownComponentError,
)

__all__ = ["NewerVersion", "newer_version", "with_way_out"]


@dataclass(frozen=True)
class NewerVersion:
    """A component's version written by a newer release, and the newest this reads."""

    component: str
    written: int
    readable: int


def newer_version(exc: BaseException) -> NewerVersion | None:
    """The newer version a failed restore met and this release cannot read at all,
    following its causes; None when it failed for another reason (a lossy downgrade
    this release holds says ``allow_lossy`` itself)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, LossyMigrationError):
            return None  # this release holds the steps: allow_lossy is the way out
        if isinstance(seen, NoMigrationPathError):
            if seen.source > seen.target:
                return NewerVersion(seen.component, seen.source, seen.target)
            return None
        if isinstance(seen, UnknownComponentError) and seen.version is not None:
            known = [v for v in seen.known if isinstance(v, int)]
            if known and seen.version > max(known):
                return NewerVersion(seen.component, seen.version, max(known))
            return None
        seen = seen.__cause__ or seen.__context__
    return None


def with_way_out(error: RestoreError) -> RestoreError:
    """``error`` ending with the way out when a newer release wrote what it refused
    (an error that names one already is returned as it is); else ``error`` itself.
    The caller raises the copy in ``error``'s place, from ``error``'s cause."""
    newer = newer_version(error)
    if newer is None or error.way_out is not None:
        return error
    hinted = RestoreError(
        error.phase,
        error.detail,
        component=error.component,
        step=error.step,
        rollback_failed=error.rollback_failed,
        restoring=error.restoring,
        piece=error.piece,
        way_out=(
            f"a newer release wrote it ({newer.component!r} version {newer.written}; this"
            f" release reads up to {newer.readable}): start the release that wrote it, or"
            " fold it back for this one with that release's registry: `statemigrate"
            f" migrate SNAPSHOT -o OUT --to {newer.component}={newer.readable}"
            " --allow-lossy` (docs/cli.md), and start from OUT"
        ),
    )
    hinted.__cause__ = error.__cause__
    return hinted.with_traceback(error.__traceback__)
