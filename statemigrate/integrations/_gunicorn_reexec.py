"""A ``kill -USR2`` whose new master exits before the deploy is done: one line in the
old master's log, with the new master's pid, its exit status and where to look.

gunicorn forks and executes the new master (``reexec_pid``) and reaps it with its
workers, in ``reap_workers``; for the new master it only clears ``reexec_pid``, so its
exit status is dropped and nothing is logged. A new master that fails before it logs
anything (a configuration it cannot read, the application's import with
``preload_app``: gunicorn prints that error on stderr, not in its log) left no trace
but a pid file that does not change, since under ``--daemon`` its stderr is
``/dev/null``. The old master, which serves on, now reaps its new master itself, just
before gunicorn reaps its other children, and says so.

gunicorn has no hook for this: the hooks wrap the arbiter's ``reap_workers`` (an
attribute of the one arbiter, not of its class). The wrapper can go once gunicorn
reports its re-executed master's exit itself.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["new_master_exited", "watch_new_master"]

#: gunicorn's exit statuses after it logged why it halts: a worker failed to boot
#: (``WORKER_BOOT_ERROR``), failed to load the application (``APP_LOAD_ERROR``).
_HALTED_AFTER_LOGGING = {3: "a worker failed to boot", 4: "a worker failed to load the app"}

_WATCHING = "statemigrate_watching_new_master"


def watch_new_master(server: Any) -> None:
    """Have gunicorn's arbiter ``server`` log the exit of the new master it forks on
    ``kill -USR2``, when that master exits while this one runs: the deploy failed, and
    this generation serves on. Called in the master once it is ready; calling it again
    changes nothing."""
    reap: Callable[[], None] | None = getattr(server, "reap_workers", None)
    if reap is None or getattr(reap, _WATCHING, False):
        return  # not gunicorn's arbiter (a stand-in), or watching already
    stopping = [False]
    stop: Callable[..., None] | None = getattr(server, "stop", None)
    if stop is not None:

        def noted_stop(*args: Any, **kwargs: Any) -> None:
            # gunicorn reaps its children while it stops: a new master reaped then
            # leaves nobody serving, which the line must not deny.
            stopping[0] = True
            stop(*args, **kwargs)

        server.stop = noted_stop

    def reap_workers() -> None:
        pid = server.reexec_pid
        if pid:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: gunicorn's to notice
                reaped, status = 0, 0
            if reaped:
                server.reexec_pid = 0  # what gunicorn does once it reaps it
                level, line = new_master_exited(
                    pid,
                    status,
                    master=os.getpid(),
                    stderr=_stderr(),
                    errorlog=getattr(server.cfg, "errorlog", None),
                    stopping=stopping[0],
                )
                server.log.log(level, line)
        reap()

    setattr(reap_workers, _WATCHING, True)
    server.reap_workers = reap_workers


def _stderr() -> str:
    """Where this process's stderr goes, which the new master inherited."""
    try:
        return os.readlink("/proc/self/fd/2")
    except OSError:
        return "unknown"


def new_master_exited(
    pid: int,
    status: int,
    *,
    master: int,
    stderr: str,
    errorlog: str | None,
    stopping: bool = False,
) -> tuple[int, str]:
    """The log level and the line for a new master (``pid``) that exited with the wait
    ``status`` while the old master (``master``, whose stderr is ``stderr``) runs on,
    or, ``stopping``, while it stops too (told to: by the new generation, which retires
    it once its workers serve, or by the operator).

    ERROR unless it exited with status 0 (someone stopped it: WARNING). ``errorlog``
    is gunicorn's setting: ``"-"`` when the log is stderr."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    if stopping:
        return logging.ERROR, (
            f"deploy failed (kill -USR2): the new master (pid {pid}) {how} while this master"
            f" (pid {master}) was stopping, told to (the new workers retire it once they"
            " serve): nothing serves once it exits; start the service again (the workers'"
            " final checkpoints hold their state)"
        )
    text = (
        f"deploy failed (kill -USR2): the new master (pid {pid}) {how} before the deploy was done;"
        f" this master (pid {master}) and its workers serve on"
    )
    if code == 0:
        return logging.WARNING, text + f"; its lines in this log (pid {pid}) say why it stopped"
    if code in _HALTED_AFTER_LOGGING:
        return logging.ERROR, (
            f"{text}; {_HALTED_AFTER_LOGGING[code]}: its lines and its workers' in this log"
            f" (pid {pid}) say why"
        )
    if errorlog == "-" or (errorlog and os.path.realpath(errorlog) == stderr):
        where = "to its stderr, this log"
    elif stderr == "/dev/null":
        where = (
            "to its stderr, /dev/null (--daemon): set capture_output = True to have it in"
            " this log, or run the same command with --check-config to see it"
        )
    else:
        where = f"to its stderr, {stderr}"
    return logging.ERROR, (
        f"{text}; an error before it could log (reading the configuration, importing the"
        f" application with preload_app) went {where}; a later one is in this log under"
        f" pid {pid}"
        # gunicorn's own exit after workers that failed to boot all at once is at times
        # status 1 (its halt raises while it reaps them), not 3: its lines then say so.
        + (
            ", among them workers that failed to boot (gunicorn then exits with 1 at"
            " times, not 3)"
            if code == 1
            else ""
        )
    )
