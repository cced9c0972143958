"""Three releases of the reference key-value cache, one class per schema version.

They stand for the "old code" and the "new code" of a service, so tests and the demo
can run one release in one process and another release in the next. All three are
small but real: bounded size with least-recently-used eviction, and from version 2 on,
per-entry expiry.

``KVCacheV1`` and ``KVCacheV2`` keep their state in an ``entries`` attribute shaped
exactly like their schema, so they rely on the default export and import (read and
assign the ``entries`` attribute). ``KVCacheV3`` keeps its entries in a private
structure and defines ``export_state``/``import_state``, the way most real components
will. Every release keeps its entries in a :class:`~statemigrate.TrackedDict`, and
``KVCacheV3`` follows the records protocol, so a pre-copy hand-over sends only the
entries written since its previous round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from statemigrate._model._registry import migratable
from statemigrate._model._tracked import TrackedDict
from statemigrate.reference._schemas import (
    COMPONENT,
    EntryV2,
    EntryV3,
    KVCacheStateV1,
    KVCacheStateV2,
    KVCacheStateV3,
)

__all__ = ["KVCacheV1", "KVCacheV2", "KVCacheV3"]

Clock = Callable[[], float]


class _Bounded:
    """Size bound shared by the releases: evict the least recently used entry."""

    def __init__(self, *, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries

    def _table(self) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._table())

    def __contains__(self, key: object) -> bool:
        return key in self._table()

    def delete(self, key: str) -> bool:
        """Remove ``key``; tell whether it was there."""
        table = self._table()
        if key not in table:
            return False
        del table[key]
        return True

    def _make_room(self) -> None:
        table = self._table()
        while self.max_entries is not None and len(table) >= self.max_entries:
            del table[next(iter(table))]  # dicts keep order: the first key is the oldest

    def _touch(self, key: str) -> None:
        table = self._table()
        table[key] = table.pop(key)  # move to the end: most recently used


@migratable(COMPONENT, version=1)
class KVCacheV1(_Bounded):
    """Release 1: a string cache without expiry. State follows ``KVCacheStateV1``."""

    def __init__(self, *, max_entries: int | None = None) -> None:
        super().__init__(max_entries=max_entries)
        self.entries: dict[str, str] = TrackedDict()

    def _table(self) -> dict[str, Any]:
        return self.entries

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the value of ``key``, or ``default``."""
        if key not in self.entries:
            return default
        self._touch(key)
        return self.entries[key]

    def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``."""
        self.entries.pop(key, None)
        self._make_room()
        self.entries[key] = value

    def state(self) -> KVCacheStateV1:
        """The state as its schema describes it (the live dict, not a copy)."""
        return {"entries": self.entries}


@migratable(COMPONENT, version=2)
class KVCacheV2(_Bounded):
    """Release 2: entries may carry a time to live. State follows ``KVCacheStateV2``."""

    def __init__(self, *, max_entries: int | None = None, clock: Clock = time.time) -> None:
        super().__init__(max_entries=max_entries)
        self.entries: dict[str, EntryV2] = TrackedDict()
        self.clock = clock

    def _table(self) -> dict[str, Any]:
        return self.entries

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the value of ``key`` unless it is missing or expired."""
        entry = self.entries.get(key)
        if entry is None:
            return default
        if _expired(entry["expires_at"], self.clock()):
            del self.entries[key]
            return default
        self._touch(key)
        return entry["value"]

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, to expire ``ttl`` seconds from now if given."""
        deadline = None if ttl is None else self.clock() + ttl
        self.entries.pop(key, None)
        self._make_room()
        self.entries[key] = {"value": value, "expires_at": deadline}

    def purge_expired(self) -> int:
        """Drop every expired entry; return how many were dropped."""
        now = self.clock()
        gone = [k for k, e in self.entries.items() if _expired(e["expires_at"], now)]
        for key in gone:
            del self.entries[key]
        return len(gone)

    def state(self) -> KVCacheStateV2:
        """The state as its schema describes it (the live dict, not a copy)."""
        return {"entries": self.entries}


@dataclass(slots=True)
class _Entry:
    data: str
    expires_at: float | None
    hits: int


@migratable(COMPONENT, version=3)
class KVCacheV3(_Bounded):
    """Release 3: counts hits per entry. State follows ``KVCacheStateV3``."""

    def __init__(self, *, max_entries: int | None = None, clock: Clock = time.time) -> None:
        super().__init__(max_entries=max_entries)
        self._entries: TrackedDict[str, _Entry] = TrackedDict()
        self.clock = clock

    def _table(self) -> dict[str, Any]:
        return self._entries

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the value of ``key`` unless it is missing or expired; count the hit."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        if _expired(entry.expires_at, self.clock()):
            del self._entries[key]
            return default
        entry.hits += 1
        self._touch(key)
        return entry.data

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` with a fresh hit count."""
        deadline = None if ttl is None else self.clock() + ttl
        self._entries.pop(key, None)
        self._make_room()
        self._entries[key] = _Entry(value, deadline, 0)

    def hits(self, key: str) -> int:
        """How often ``key`` was read since it was stored (0 if absent)."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry.hits

    def export_state(self) -> KVCacheStateV3:
        """Return the entries as plain dicts (a new structure, safe to keep)."""
        entries: dict[str, EntryV3] = {
            key: {"data": e.data, "expires_at": e.expires_at, "hits": e.hits}
            for key, e in self._entries.items()
        }
        return {"entries": entries}

    def import_state(self, state: KVCacheStateV3) -> None:
        """Replace every entry with those of ``state`` (validated); nothing is mutated."""
        self._entries = TrackedDict(
            {
                key: _Entry(e["data"], e["expires_at"], e["hits"])
                for key, e in state["entries"].items()
            }
        )

    # The records protocol: what changed can be sent as records, and taken as such.

    def tracked_records(self) -> dict[str, TrackedDict[str, _Entry]]:
        """The tracked dict behind each record field of the schema."""
        return {"entries": self._entries}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, EntryV3]:
        """The entries of ``keys`` that exist, as the schema has them."""
        found: dict[str, EntryV3] = {}
        for key in keys:
            e = self._entries.get(key)
            if e is not None:
                found[key] = {"data": e.data, "expires_at": e.expires_at, "hits": e.hits}
        return found

    def import_records(
        self,
        field: str,
        records: Mapping[str, EntryV3],
        deleted: Sequence[str],
        moved: int = 0,
    ) -> None:
        """Set validated entries and delete keys (absent keys are skipped). The last
        ``moved`` entries were inserted, or used, since the delta's base: they go to the
        end, in their order, so that the LRU order is the sender's."""
        for key in deleted:
            self._entries.pop(key, None)
        in_place = len(records) - moved
        for index, (key, e) in enumerate(records.items()):
            if index >= in_place:
                self._entries.pop(key, None)
            self._entries[key] = _Entry(e["data"], e["expires_at"], e["hits"])


def _expired(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now
