"""The library's log records under gunicorn: through gunicorn's error log unless the
application configured logging itself.

Without a handler anywhere on their way, Python prints the "statemigrate" logger's
warnings bare on stderr (its last-resort handler: no time, level or pid) and drops its
INFO lines (a checkpoint's ``checkpoint: ...``). The gunicorn hooks then send them
through gunicorn's error log, its handlers and format, at gunicorn's ``loglevel``, so
they read like gunicorn's own lines. An application that gives the "statemigrate"
logger or the root logger a handler of its own keeps its records to itself.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["route_library_logs"]

LIBRARY = "statemigrate"


class _ToGunicorn(logging.Handler):
    """Hands each record to gunicorn's error log, whose handlers format and write it."""

    def __init__(self, error_log: logging.Logger) -> None:
        super().__init__()
        self.error_log = error_log
        self.set_level = False  # whether we set the library logger's level

    def emit(self, record: logging.LogRecord) -> None:
        self.error_log.handle(record)


def route_library_logs(log: Any) -> None:
    """Send the "statemigrate" records through ``log`` (gunicorn's logger) if nothing
    else would show them; take the route off again once the application configured
    logging of its own. Called in the master and in each worker, as often as
    needed."""
    error_log = getattr(log, "error_log", None)
    library = logging.getLogger(LIBRARY)
    ours = [h for h in library.handlers if isinstance(h, _ToGunicorn)]
    configured = any(not isinstance(h, _ToGunicorn) for h in library.handlers) or bool(
        logging.getLogger().handlers
    )
    if configured or not isinstance(error_log, logging.Logger):
        for handler in ours:
            library.removeHandler(handler)
            if handler.set_level:
                library.setLevel(logging.NOTSET)
        return
    if ours:
        route = ours[0]
        route.error_log = error_log
    else:
        route = _ToGunicorn(error_log)
        library.addHandler(route)
    if library.level == logging.NOTSET or route.set_level:
        # gunicorn's loglevel, INFO by default: a checkpoint's INFO line shows.
        library.setLevel(error_log.getEffectiveLevel())
        route.set_level = True
