"""Generation objects a commit finds with no pointer to place them: kept as unrestored.

A pointer deleted by hand (the repair of a damaged one) or by a lifecycle rule takes
with it the record of which generations were current, previous and unrestored. The
commit that creates the pointer anew cannot tell a generation some start could not
restore (a newer release's state, say) from an old one that retention may delete, so
it deletes none of them: it records them in the new pointer as unrestored, where
``statemigrate list`` shows them, the unrestored gauge counts them and
``forget_unrestored`` lets them go. Committing is ``_object``'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from statemigrate.stores._object_generation import Target
from statemigrate.stores._object_pointer import MAX_UNRESTORED, Kept

__all__ = ["Unplaced", "listed_as_kept", "say_unplaced", "unplaced_generations"]

_log = logging.getLogger("statemigrate.stores")


class Unplaced(NamedTuple):
    """The generation objects found with no pointer, as a commit keeps them."""

    recorded: list[Kept]
    """Recorded in the new pointer as unrestored, oldest first."""
    left: list[Target]
    """Past what a pointer can record (``MAX_UNRESTORED``): spared by this commit's
    retention only."""


def listed_as_kept(target: Target) -> Kept:
    """A generation object found by listing, as a pointer records it: its digest is not
    known (only the pointer that wrote it knew it)."""
    return Kept(
        generation=target.generation,
        object=target.object,
        size=target.size,
        xxh3_128=None,
        etag=target.etag,
    )


def unplaced_generations(listed: Sequence[Target]) -> Unplaced:
    """What a commit that creates the pointer keeps of the objects ``listed`` under
    the prefix: the oldest ``MAX_UNRESTORED`` recorded as unrestored (the state from
    before the trouble began, as when a pointer keeps too many), their digests
    unknown; the others spared once."""
    ordered = sorted(listed, key=lambda target: (target.generation, target.object))
    recorded = [listed_as_kept(target) for target in ordered[:MAX_UNRESTORED]]
    return Unplaced(recorded, list(ordered[MAX_UNRESTORED:]))


def say_unplaced(unplaced: Unplaced, kept: Sequence[Kept], location: str) -> None:
    """Log, at WARNING, that a commit created the pointer of ``location`` anew and
    keeps the generations it found as unrestored (``kept``: all the new pointer
    keeps), and which it could not record."""
    numbers = ", ".join(str(entry.generation) for entry in kept)
    left = ""
    if unplaced.left:
        shown = ", ".join(str(target.generation) for target in unplaced.left)
        left = (
            f"; a pointer records at most {MAX_UNRESTORED}, so the next commit's retention"
            f" deletes generations {shown}: copy any of them that matters first"
        )
    _log.warning(
        "%s had generation objects but no pointer: the lost pointer may have kept some as"
        " unrestored, so the new one keeps generations %s as unrestored (statemigrate list"
        " shows them; forget_unrestored() lets them go)%s",
        location,
        numbers,
        left,
    )
