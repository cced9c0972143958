"""Pausing the cyclic garbage collector while millions of containers are built.

A restore decoding a large cache, or an export copying one to migrate it to an older
version, allocates one container after another, and none of them is garbage; yet each
allocation burst triggers a collection that walks them all. With the collector paused,
the work runs two to three times faster.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused", "promote_young_objects"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, then move what it built into
    the oldest generation (see :func:`promote_young_objects`). A collector that was
    disabled before stays disabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        promote_young_objects()
        if was_enabled:
            gc.enable()


def promote_young_objects() -> None:
    """Move every object the collector tracks into its oldest generation.

    The containers just built sit in the youngest generation, so the first collections
    after the pause would walk all of them twice more (young, then middle generation)
    only to promote them: about half a second for a million entries of a dict and a
    list each. A freeze followed by an unfreeze moves them to the oldest generation in
    constant time, where they wait for the next full collection like any old object
    (or are freed by their reference counts first, as an export's copy is once
    encoded). Skipped when the application froze objects itself: unfreezing would undo
    its freeze.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
