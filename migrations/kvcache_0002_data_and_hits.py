"""kvcache 2 <-> 3: ``value`` is renamed ``data`` and each entry counts its ``hits``.

Upgrading starts every counter at 0, as a freshly stored entry would. Downgrading
renames the field back and drops the counters, so it is declared lossy.
"""

from __future__ import annotations

from typing import Any

from statemigrate import migration


@migration("kvcache", 2, 3)
def add_hits(data: dict[str, Any]) -> dict[str, Any]:
    """Rename ``value`` to ``data`` and add ``hits=0`` in every entry, in place."""
    for entry in data["entries"].values():
        entry["data"] = entry.pop("value")
        entry["hits"] = 0
    return data


@migration("kvcache", 3, 2, lossy=("entries.*.hits",))
def drop_hits(data: dict[str, Any]) -> dict[str, Any]:
    """Rename ``data`` back to ``value`` and drop ``hits`` in every entry, in place."""
    for entry in data["entries"].values():
        entry["value"] = entry.pop("data")
        del entry["hits"]
    return data
