"""kvcache 1 <-> 3 in one pass, skipping version 2.

A service still holding a version 1 snapshot of a large cache upgrades it with one walk
over the entries instead of two. The planner prefers this path (fewer steps), so it must
give exactly what ``add_ttl`` followed by ``add_hits`` gives, and the downgrade exactly
what ``drop_hits`` then ``drop_ttl`` give; the test suite checks both.
"""

from __future__ import annotations

from typing import Any

from statemigrate import migration


@migration("kvcache", 1, 3)
def upgrade_1_to_3(data: dict[str, Any]) -> dict[str, Any]:
    """Turn each value into a version 3 entry that never expires and has no hits."""
    entries = data["entries"]
    for key, value in entries.items():
        entries[key] = {"data": value, "expires_at": None, "hits": 0}
    return data


@migration("kvcache", 3, 1, lossy=("entries.*.expires_at", "entries.*.hits"))
def downgrade_3_to_1(data: dict[str, Any]) -> dict[str, Any]:
    """Keep only each entry's data, forgetting its deadline and hit count."""
    entries = data["entries"]
    for key, entry in entries.items():
        entries[key] = entry["data"]
    return data
