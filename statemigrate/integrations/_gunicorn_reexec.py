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

A new master that dies once its workers took the state over, while the old master
stops (the new workers retire it), leaves nothing serving: the old master then exits
with :data:`ORPHANED_EXIT`, not gunicorn's 0, so that a supervisor (systemd's
``Restart=on-failure``, a container's restart policy) starts the service again, and
its workers restore their slots' final checkpoints. A deploy that succeeded names the
new master to systemd as the service's main process (``MAINPID``) as the old one
stops, so that its exit does not stop the service. A dead new master's pid file
(``gunicorn.pid.2``, which gunicorn's halt at times leaves) is removed when it still
names that master.

A new master stopped by a signal (``kill -TERM``, ``INT``, ``QUIT``) before its
promotion halts as gunicorn does, then exits with ``128 +`` the signal's number, the
shell's convention, rather than gunicorn's 0 (or 1, when its halt raises): the old
master, its parent and the only process waiting for it, then says it was stopped by that
signal instead of guessing at an error.

gunicorn has no hook for this: the hooks wrap the arbiter's ``reap_workers`` and
``halt`` (attributes of the one arbiter, not of its class). The wrappers can go once
gunicorn reports its re-executed master's exit itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from statemigrate._errors import HandoffError
from statemigrate.handoff import sd_notify

__all__ = ["ORPHANED_EXIT", "new_master_exited", "watch_new_master"]

#: The exit status of an old master that stops after the new generation took the state
#: over and its master died: nothing serves, and a supervisor must start the service
#: again (gunicorn's own halt would exit with 0, which ``Restart=on-failure`` ignores).
ORPHANED_EXIT = 1

#: gunicorn's exit statuses after it logged why it halts: a worker failed to boot
#: (``WORKER_BOOT_ERROR``), failed to load the application (``APP_LOAD_ERROR``).
_HALTED_AFTER_LOGGING = {3: "a worker failed to boot", 4: "a worker failed to load the app"}

_WATCHING = "statemigrate_watching_new_master"

#: The signals that stop a gunicorn master, and the ``handle_*`` methods of its arbiter.
_STOP_SIGNALS = {"term": signal.SIGTERM, "int": signal.SIGINT, "quit": signal.SIGQUIT}

#: The exit status of a process stopped by the signal ``N`` that exits on its own: the
#: shell's ``128 + N``.
_SIGNALLED_EXIT = 128


def watch_new_master(
    server: Any,
    *,
    handed_over: Callable[[], bool] = lambda: False,
    checkpoints: bool = False,
) -> None:
    """Have gunicorn's arbiter ``server`` log the exit of the new master it forks on
    ``kill -USR2``, when that master exits while this one runs: the deploy failed, and
    this generation serves on. Called in the master once it is ready; calling it again
    changes nothing.

    ``handed_over`` says whether this master's workers handed their state to the new
    generation and none took it back. If so when this master stops, its new master
    alive, it names that master to systemd as the service's main process; its new
    master dead, it exits with :data:`ORPHANED_EXIT`. ``checkpoints`` says whether the
    hooks commit checkpoints (``checkpoints=``): only then do its lines promise that a
    start restores the workers' state."""
    reap: Callable[[], None] | None = getattr(server, "reap_workers", None)
    if reap is None or getattr(reap, _WATCHING, False):
        return  # not gunicorn's arbiter (a stand-in), or watching already
    _Watch(server, reap, handed_over, checkpoints).install()


class _Watch:
    """The wrappers of one arbiter's ``reap_workers``, ``stop`` and ``halt``."""

    def __init__(
        self,
        server: Any,
        reap: Callable[[], None],
        handed_over: Callable[[], bool],
        checkpoints: bool,
    ) -> None:
        self.server = server
        self.reap = reap
        self.handed_over = handed_over
        self.checkpoints = checkpoints
        self.stopping = False
        # The latest new master died unpromoted: orphaned if the state moved. A deploy
        # that failed earlier says nothing of the next one's master.
        self.lost = False
        self.latest_new_master = 0
        self.orphaned = False
        self.stopped_by: signal.Signals | None = None  # the signal that stops this master

    def install(self) -> None:
        server = self.server
        self.stop: Callable[..., None] | None = getattr(server, "stop", None)
        if self.stop is not None:
            server.stop = self.noted_stop
        self.halt: Callable[..., None] | None = getattr(server, "halt", None)
        if self.halt is not None:
            server.halt = self.orphan_aware_halt
        for name, signum in _STOP_SIGNALS.items():
            handle: Callable[[], None] | None = getattr(server, f"handle_{name}", None)
            if handle is not None:
                # gunicorn's loop looks its handlers up on the arbiter at each signal.
                setattr(server, f"handle_{name}", self._noting(signum, handle))
        def reap_workers() -> None:
            self.reap_workers()

        setattr(reap_workers, _WATCHING, True)  # a bound method takes no attribute
        server.reap_workers = reap_workers

    def _noting(self, signum: signal.Signals, handle: Callable[[], None]) -> Callable[[], None]:
        def noted() -> None:
            self.stopped_by = signum
            handle()

        return noted

    def noted_stop(self, *args: Any, **kwargs: Any) -> None:
        # gunicorn reaps its children while it stops: a new master reaped then
        # leaves nobody serving, which the line must not deny.
        self.stopping = True
        if self.stop is not None:
            self.stop(*args, **kwargs)

    def orphan_aware_halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        # Asked before gunicorn's halt, whose on_exit removes the marks; the new master
        # may also be reaped during the halt's stop (orphaned then).
        server = self.server
        self.stopping = True  # a halt stops: a new master dead now leaves nobody serving
        self.reap_new_master()  # a new master dead and not reaped yet is not named
        if self.handed_over():
            if self.lost and not server.reexec_pid:
                self.orphaned = True
            else:
                _name_main_process(server.reexec_pid, server.log)
        if self.halt is None:
            return
        signum = self.stopped_by
        unpromoted: int = getattr(server, "master_pid", 0)  # the old master's pid, until then
        if signum is not None and unpromoted:
            # A new master not promoted yet, stopped by a signal: its parent, the old
            # master, is told which by the exit status (see the module's docstring).
            self._halt_stopped_by(signum, reason, exit_status)
        try:
            self.halt(reason=reason, exit_status=exit_status)
        except SystemExit as exc:
            if exc.code in (0, None) and self.orphaned:
                server.log.error(
                    "exiting with status %d, not 0: this generation handed its state to"
                    " a new one whose master died, and nothing serves; a supervisor"
                    " restarting on failure starts the service again, %s"
                    " (docs/gunicorn.md)",
                    ORPHANED_EXIT,
                    "which restores the workers' final checkpoints"
                    if self.checkpoints
                    else "cold: no checkpoints= is configured, so that state is lost",
                )
                raise SystemExit(ORPHANED_EXIT) from None
            raise

    def _halt_stopped_by(
        self, signum: signal.Signals, reason: str | None, exit_status: int
    ) -> None:
        assert self.halt is not None
        try:
            self.halt(reason=reason, exit_status=exit_status)
        except SystemExit:
            pass
        except BaseException as exc:
            # gunicorn's halt raises at times (its HaltServer, a BaseException, when a
            # worker fails to boot while it stops them): the stop was asked for all the
            # same, and is what happened.
            self.server.log.warning(
                "stopping on %s: %s: %s", signum.name, type(exc).__name__, exc
            )
        raise SystemExit(_SIGNALLED_EXIT + signum)

    def reap_workers(self) -> None:
        self.reap_new_master()
        self.reap()

    def reap_new_master(self) -> None:
        server = self.server
        pid = server.reexec_pid
        if pid and pid != self.latest_new_master:
            self.latest_new_master = pid  # forked since: a deploy of its own
            self.lost = False
        if pid:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: gunicorn's to notice
                reaped, status = 0, 0
            if reaped:
                server.reexec_pid = 0  # what gunicorn does once it reaps it
                _remove_pidfile_of(pid, getattr(server.cfg, "pidfile", None), server.log)
                self.lost = True
                if self.stopping and self.handed_over():
                    self.orphaned = True
                level, line = new_master_exited(
                    pid,
                    status,
                    master=os.getpid(),
                    stderr=_stderr(),
                    errorlog=getattr(server.cfg, "errorlog", None),
                    stopping=self.stopping,
                    checkpoints=self.checkpoints,
                )
                server.log.log(level, line)


def _name_main_process(pid: int, log: Any) -> None:
    """Under systemd, name the new master (``pid``) the service's main process before
    this one exits: gunicorn does not, and systemd would take this master's exit for
    the service's and stop the new generation with it. Nothing outside systemd."""
    if not pid:
        return
    try:
        sent = sd_notify(f"MAINPID={pid}")
    except HandoffError as exc:
        log.warning("could not name the new master (pid %s) to systemd: %s", pid, exc)
        return
    if sent:
        log.info("named the new master (pid %s) the service's main process to systemd", pid)


def _remove_pidfile_of(pid: int, pidfile: str | None, log: Any) -> None:
    """Remove the new master's pid file (``pidfile`` with ``.2``) if it names ``pid``,
    the new master reaped dead: gunicorn's halt at times leaves it, and a script
    waiting for it to go (the promotion) would wait forever. Another pid there is
    another master's file, left alone."""
    if not pidfile:
        return
    path = f"{pidfile}.2"
    try:
        with open(path) as file:
            named = file.read().strip()
    except OSError:
        return
    if named != str(pid):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        log.info("removed %s, left by the new master (pid %s)", path, pid)


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
    checkpoints: bool = False,
) -> tuple[int, str]:
    """The log level and the line for a new master (``pid``) that exited with the wait
    ``status`` while the old master (``master``, whose stderr is ``stderr``) runs on,
    or, ``stopping``, while it stops too (told to: by the new generation, which retires
    it once its workers serve, or by the operator).

    ERROR unless it exited with status 0 (someone stopped it: WARNING). ``errorlog``
    is gunicorn's setting: ``"-"`` when the log is stderr. ``checkpoints``: whether
    the workers' final checkpoints hold their state (``checkpoints=`` is configured)."""
    code = os.waitstatus_to_exitcode(status)
    stop = _stop_signal(code)
    if stop is not None:
        how = f"was stopped by {stop.name}"
    elif code < 0:
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
            " serve): nothing serves once it exits; start the service again"
            + (
                " (the workers' final checkpoints hold their state)"
                if checkpoints
                else " (it starts cold: no checkpoints= is configured, so the workers'"
                " state is lost)"
            )
        )
    text = (
        f"deploy failed (kill -USR2): the new master (pid {pid}) {how} before the deploy was done;"
        f" this master (pid {master}) and its workers serve on"
    )
    if code == 0:
        return logging.WARNING, text + f"; its lines in this log (pid {pid}) say why it stopped"
    if stop is not None:
        # Someone stopped it (an operator, a script, a supervisor): no error to guess at.
        return logging.WARNING, text + f"; its lines in this log (pid {pid}) say how far it got"
    if code < 0:
        # Killed outright (SIGKILL: by someone, or the kernel's out-of-memory killer):
        # it had no time to write an error anywhere.
        return logging.ERROR, text + f"; its lines in this log (pid {pid}) say how far it got"
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


def _stop_signal(code: int) -> signal.Signals | None:
    """The signal that stopped a master which exited with ``code`` (as
    ``waitstatus_to_exitcode`` gives it): killed by it, or exiting on it with ``128 +``
    its number; ``None`` for any other exit."""
    for signum in _STOP_SIGNALS.values():
        if code in (-signum, _SIGNALLED_EXIT + signum):
            return signum
    return None
