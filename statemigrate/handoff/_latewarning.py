"""The old process's warning of records written after a handoff's last piece was taken.

Told once per component: at SERVING by a handoff whose caller does not drain, or by a
server adapter when its drain ends (it keeps the marks open until then, as a
websocket or a streaming response left on the old process writes all along).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the handoff's bytes level imports this module, and no model layer
    from statemigrate._runtime._latewrites import LateCount

__all__ = ["warn_late_writes"]

logger = logging.getLogger("statemigrate.handoff")


def warn_late_writes(written: Mapping[str, LateCount], *, until: str) -> None:
    """One WARNING per component of ``written``, whose writes stayed in this process
    ``until`` (what ended the count: "the successor served", "this process ended its
    drain")."""
    for key, (records, writes) in written.items():
        logger.warning(
            "handoff: component %s had %d distinct record(s) (keys) written, %d write(s) in"
            " all, after the last piece was taken, until %s, by writers the pause does not"
            " hold; the successor never received those writes. A request of a method served"
            " during the pause (GET, HEAD, OPTIONS: safe_methods), a background task it"
            " started (FastAPI's and Starlette's BackgroundTasks), or a connection left on"
            " this process (a websocket, a streaming response such as server-sent events)"
            " must not write the state: pass safe_methods=() to the server adapter to hold"
            " every request during the pause, and let long-lived connections reconnect"
            " (docs/servers.md)",
            key,
            records,
            writes,
            until,
        )
