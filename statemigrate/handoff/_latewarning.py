"""The old process's warning of records written after a handoff's last piece was taken.

Told once per component: at SERVING by a handoff whose caller does not drain, or by a
server adapter when its drain ends (it keeps the marks open until then, as a
websocket or a streaming response left on the old process writes all along).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["warn_late_writes"]

logger = logging.getLogger("statemigrate.handoff")


def warn_late_writes(
    counts: Mapping[str, int], *, until: str, writes: Mapping[str, int] | None = None
) -> None:
    """One WARNING per component of ``counts`` (component -> distinct records written),
    which stayed in this process ``until`` (what ended the count: "the successor
    served", "this process ended its drain"); ``writes`` (component -> writes made)
    tells how often, when known.

    Both figures are told: a single record (a hit counter's key) written hundreds of
    times is one record but as many writes lost, each of them perhaps acknowledged.
    """
    for key, count in counts.items():
        written = writes.get(key) if writes is not None else None
        often = (
            f"{written} write(s) in all" if written is not None else "possibly many times each"
        )
        logger.warning(
            "handoff: component %s had %d distinct record(s) (keys) written, %s, after"
            " the last piece was taken, until %s, by writers the pause does not hold; the"
            " successor never received those writes. A request of a method served during"
            " the pause (GET, HEAD, OPTIONS: safe_methods), a background task it started"
            " (FastAPI's and Starlette's BackgroundTasks), or a connection left on this"
            " process (a websocket, a streaming response such as server-sent events) must"
            " not write the state: pass safe_methods=() to the server adapter to hold every"
            " request during the pause, and let long-lived connections reconnect"
            " (docs/servers.md)",
            key,
            count,
            often,
            until,
        )
