"""kvcache 1 <-> 2: every entry gains an expiry deadline (``expires_at``).

Upgrading gives every entry ``expires_at=None`` (never expires), which is exactly how
version 1 treated it, so nothing is lost. Downgrading keeps the values and drops the
deadlines: version 1 code would serve an entry forever, so that step is declared lossy.
Entries whose deadline has already passed are kept too, because a step must not read the
clock: the same input always gives the same output.
"""

from __future__ import annotations

from typing import Any

# Migrations modules register through the module-level decorator; loading this
# directory with Registry.load_migrations routes it to the registry being loaded.
from statemigrate import migration


@migration("kvcache", 1, 2)
def add_ttl(data: dict[str, Any]) -> dict[str, Any]:
    """Wrap each value as ``{"value": ..., "expires_at": None}``, in place."""
    entries = data["entries"]
    for key, value in entries.items():
        entries[key] = {"value": value, "expires_at": None}  # same keys: safe while iterating
    return data


@migration("kvcache", 2, 1, lossy=("entries.*.expires_at",))
def drop_ttl(data: dict[str, Any]) -> dict[str, Any]:
    """Unwrap each entry to its value, forgetting its deadline, in place."""
    entries = data["entries"]
    for key, entry in entries.items():
        entries[key] = entry["value"]
    return data
