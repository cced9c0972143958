"""kvcache 2 <-> 3: ``value`` is renamed ``data`` and each entry counts its ``hits``.

Upgrading starts every counter at 0, as a freshly stored entry would. Downgrading
renames the field back and drops the counters, so it is declared lossy. Both are record
steps: one entry at a time, in place.
"""

from __future__ import annotations

from typing import Any

from statemigrate import migration


@migration("kvcache", 2, 3, records="entries")
def add_hits(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Rename ``value`` to ``data`` and add ``hits=0``, in place."""
    entry["data"] = entry.pop("value")
    entry["hits"] = 0
    return entry


@migration("kvcache", 3, 2, lossy=("entries.*.hits",), records="entries")
def drop_hits(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Rename ``data`` back to ``value`` and drop ``hits``, in place."""
    entry["value"] = entry.pop("data")
    del entry["hits"]
    return entry
