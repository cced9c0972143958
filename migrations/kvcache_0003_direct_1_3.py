"""kvcache 1 <-> 3 in one pass, skipping version 2.

A service still holding a version 1 snapshot of a large cache upgrades it with one walk
over the entries instead of two. The planner prefers this path (fewer steps), so it must
give exactly what ``add_ttl`` followed by ``add_hits`` gives, and the downgrade exactly
what ``drop_hits`` then ``drop_ttl`` give; the test suite checks both. Record steps, like
the others.
"""

from __future__ import annotations

from typing import Any

from statemigrate import migration


@migration("kvcache", 1, 3, records="entries")
def upgrade_1_to_3(key: str, value: str) -> dict[str, Any]:
    """Turn a value into a version 3 entry that never expires and has no hits."""
    return {"data": value, "expires_at": None, "hits": 0}


@migration(
    "kvcache", 3, 1, lossy=("entries.*.expires_at", "entries.*.hits"), records="entries"
)
def downgrade_3_to_1(key: str, entry: dict[str, Any]) -> Any:
    """Keep only an entry's data, forgetting its deadline and hit count."""
    return entry["data"]
