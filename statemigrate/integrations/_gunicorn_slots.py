"""What the other slots' stores hold, for the lines that warn of state no worker sees.

Each gunicorn worker holds its own copy of the state and checkpoints it to its slot's
store. A change of the worker count between releases splits or strands that state: a
new slot starts cold while another slot's store holds the state, so reads differ with
the worker that takes them; and with fewer workers, the stores of the slots beyond the
new count hold acknowledged writes that no worker serves. Neither can the hooks repair
(per-worker state has no merge), but the operator must hear of it at WARNING rather
than find it from lost keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from statemigrate._errors import ConfigurationError, StoreError
from statemigrate.stores import Store

__all__ = ["HeldSlot", "others_holding_state", "unserved_slots"]

StoreFor = Callable[[int], Store]
"""The store of a slot (``Checkpoints.store_for``)."""

#: Slots past the worker count probed at most, stopping at the first whose store holds
#: nothing: gunicorn's slots are handed out lowest first, so none past it was written.
_PROBED_BEYOND = 32


@dataclass(frozen=True, slots=True)
class HeldSlot:
    """A slot whose store holds a snapshot (or a checkpoint chain) of ``size`` bytes."""

    slot: int
    store: str
    size: int

    def __str__(self) -> str:
        return f"slot {self.slot} in {self.store} ({self.size} bytes)"


def others_holding_state(
    slot: int, workers: int, store_for: StoreFor, own: Store
) -> list[HeldSlot]:
    """The slots below ``workers``, other than ``slot`` (whose store is ``own``), whose
    stores hold state."""
    found = (_held(other, store_for, own) for other in range(workers) if other != slot)
    return [one for one in found if one is not None]


def unserved_slots(workers: int, store_for: StoreFor, own: Store) -> list[HeldSlot]:
    """The slots from ``workers`` up whose stores hold state that no worker serves,
    up to the first one that holds none. ``own`` is the asking worker's store."""
    found: list[HeldSlot] = []
    for slot in range(workers, workers + _PROBED_BEYOND):
        one = _held(slot, store_for, own)
        if one is None:
            break
        found.append(one)
    return found


def _held(slot: int, store_for: StoreFor, own: Store) -> HeldSlot | None:
    """What ``slot``'s store holds, or None when it holds nothing it can read (the
    slot's own worker says why, when it restores), or is the asking worker's own."""
    try:
        store = store_for(slot)
    except ConfigurationError:
        return None  # the application's function refuses the slot: nothing kept there
    if store is own:
        return None  # one store given for every slot: no other slot's, and kept open
    where = repr(store)  # before it is closed, which its repr would say
    try:
        size = len(store.open())
    except StoreError:
        return None
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            with contextlib.suppress(StoreError, OSError):
                close()
    return HeldSlot(slot, where, size)
