"""kvcache 1 <-> 2: every entry gains an expiry deadline (``expires_at``).

Upgrading gives every entry ``expires_at=None`` (never expires), which is exactly how
version 1 treated it, so nothing is lost. Downgrading keeps the values and drops the
deadlines: version 1 code would serve an entry forever, so that step is declared lossy.
Entries whose deadline has already passed are kept too, because a step must not read the
clock: the same input always gives the same output.

Both are record steps (``records="entries"``): they change one entry at a time, so they
migrate the deltas of a pre-copy hand-over as well as whole snapshots.
"""

from __future__ import annotations

from typing import Any

# Migrations modules register through the module-level decorator; loading this
# directory with Registry.load_migrations routes it to the registry being loaded.
from statemigrate import migration


@migration("kvcache", 1, 2, records="entries")
def add_ttl(key: str, value: str) -> dict[str, Any]:
    """Wrap a value as ``{"value": ..., "expires_at": None}``."""
    return {"value": value, "expires_at": None}


@migration("kvcache", 2, 1, lossy=("entries.*.expires_at",), records="entries")
def drop_ttl(key: str, entry: dict[str, Any]) -> Any:
    """Unwrap an entry to its value, forgetting its deadline."""
    return entry["value"]
