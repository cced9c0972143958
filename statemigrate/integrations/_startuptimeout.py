"""How long an engine's lifespan start-up must be allowed to run in a successor.

The take-over runs inside the ASGI lifespan start-up, so an engine that bounds the
start-up (hypercorn's ``Config.startup_timeout``, 60 s by default) bounds the take-over
too: a round 0 of a large state that the handoff's own timeouts allow would be cut by
the engine's timer instead, with a traceback. uvicorn sets no such bound.
"""

from __future__ import annotations

import logging
from dataclasses import fields

from statemigrate.handoff import HandoffTimeouts

__all__ = ["handoff_waits", "startup_timeout"]

logger = logging.getLogger("statemigrate.handoff")


def handoff_waits(timeouts: HandoffTimeouts) -> float:
    """The seconds a take-over may last by the handoff's own waits: every one of them
    in turn (``hello`` to ``kill_grace``, one pre-copy round at ``precopy``), 305 s
    with the defaults. Each wait is bounded on its own, so the take-over never needs
    an outer bound; this is the one an engine's bound must not fall below. ``writes``
    is left out: the old process's wait for its writes runs inside the successor's
    ``snapshot``."""
    inside = {"writes"}
    return float(
        sum(getattr(timeouts, item.name) for item in fields(timeouts) if item.name not in inside)
    )


def startup_timeout(
    *, engine_default: float, given: float | None, timeouts: HandoffTimeouts, option: str
) -> float:
    """The start-up bound to give the engine.

    Not set by the user (``given`` is ``None``): the engine's default, for the
    application's own start-up, plus :func:`handoff_waits`. Set explicitly: kept as
    it is, with one WARNING when it is below :func:`handoff_waits`, since a take-over
    the handoff allows would then be cut short.
    """
    waits = handoff_waits(timeouts)
    if given is None:
        return engine_default + waits
    if given < waits:
        logger.warning(
            "handoff: %s is %g s, below the %g s the handoff's timeouts allow a take-over"
            " (HandoffTimeouts, summed): a take-over that runs longer, such as the restore"
            " of a large state, fails at that point; raise %s or leave it unset",
            option,
            given,
            waits,
            option,
        )
    return given
