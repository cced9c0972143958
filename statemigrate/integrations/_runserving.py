"""Running an adapter's ``serve`` as a program's main loop, and ending it as one.

``serve`` raises a :class:`~statemigrate.HandoffError` or a
:class:`~statemigrate.RestoreError` when the process was started as a successor and
cannot take the state over (its predecessor died before the handoff, the snapshot it
was given does not restore), and a :class:`~statemigrate.integrations._listen.ListenError`
when it cannot bind its own listener: a caller of its own decides what to do. The
``run`` entry points are a program's whole life, so they end it as a program should:
one ``ERROR`` line naming what went wrong, and exit status 1, not a traceback. The
predecessor still serves, or a supervisor restarts the service from its store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from statemigrate._errors import HandoffError, RestoreError
from statemigrate.integrations._listen import ListenError

__all__ = ["run_serving"]

logger = logging.getLogger("statemigrate.handoff")

T = TypeVar("T")


def run_serving(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, ending the process with status 1 and one logged line
    when ``main`` raises a :class:`~statemigrate.HandoffError` or a
    :class:`~statemigrate.RestoreError` (the restore has logged its own ERROR), or
    cannot bind its listener (:class:`~statemigrate.integrations._listen.ListenError`)."""
    try:
        return asyncio.run(main)
    except (HandoffError, ListenError) as exc:
        logger.error("%s; this process exits", exc)
        raise SystemExit(1) from None
    except RestoreError:
        logger.error("the state could not be restored (above); this process exits")
        raise SystemExit(1) from None
