"""The old master's line when the new master of a kill -USR2 exits before the deploy is
done: its pid, its exit status and where its error went, and the old generation
serving on."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from integrations.loadclient import ask, read_value
from integrations.test_gunicorn import DEADLINE, EXAMPLE, gunicorn

from statemigrate.integrations._gunicorn_reexec import new_master_exited, watch_new_master

EXITED_1 = 1 << 8  # a wait status: exited with status 1


def test_a_new_master_that_fails_before_it_logs_is_reported_with_where_its_error_went() -> None:
    level, line = new_master_exited(
        4242, EXITED_1, master=4100, stderr="/dev/null", errorlog="/var/log/gunicorn.log"
    )
    assert level == logging.ERROR
    assert line.startswith(
        "deploy failed (kill -USR2): the new master (pid 4242) exited with status 1 before"
        " the deploy was done; this master (pid 4100) and its workers serve on; "
    )
    assert "went to its stderr, /dev/null (--daemon): set capture_output = True" in line
    assert "--check-config" in line and "under pid 4242" in line
    # gunicorn 27 exits 1, not 3, at times when every worker fails to boot at once.
    assert line.endswith("among them workers that failed to boot (gunicorn then exits"
                         " with 1 at times, not 3)")


@pytest.mark.parametrize(
    ("stderr", "errorlog", "where"),
    [
        ("/srv/gunicorn.log", "/srv/gunicorn.log", "went to its stderr, this log;"),
        ("/dev/pts/3", "-", "went to its stderr, this log;"),
        ("socket:[81723]", "/srv/gunicorn.log", "went to its stderr, socket:[81723];"),
    ],
    ids=["capture_output", "errorlog-stderr", "journal"],
)
def test_the_line_names_the_new_master_s_stderr(stderr: str, errorlog: str, where: str) -> None:
    _, line = new_master_exited(4242, EXITED_1, master=4100, stderr=stderr, errorlog=errorlog)
    assert where in line and "capture_output" not in line


def test_a_new_master_that_halted_after_logging_points_at_its_lines() -> None:
    level, line = new_master_exited(
        4242, 3 << 8, master=4100, stderr="/dev/null", errorlog="/var/log/gunicorn.log"
    )
    assert level == logging.ERROR
    assert line.endswith(
        "exited with status 3 before the deploy was done; this master (pid 4100) and its"
        " workers serve on; a worker failed to boot: its lines and its workers' in this"
        " log (pid 4242) say why"
    )


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "none"])
def test_a_new_master_dead_while_this_one_stops_names_what_holds_the_state(
    checkpoints: bool,
) -> None:
    """The window of retiring: the workers' final checkpoints hold the state only when
    ``checkpoints=`` is configured; without, the line does not promise them."""
    level, line = new_master_exited(
        4242,
        signal.SIGKILL,
        master=4100,
        stderr="",
        errorlog="-",
        stopping=True,
        checkpoints=checkpoints,
    )
    assert level == logging.ERROR
    assert "nothing serves once it exits; start the service again" in line
    if checkpoints:
        assert line.endswith("(the workers' final checkpoints hold their state)")
    else:
        assert line.endswith("(it starts cold: no checkpoints= is configured, so the"
                             " workers' state is lost)")
        assert "final checkpoints" not in line


def test_a_new_master_killed_or_stopped() -> None:
    level, line = new_master_exited(4242, signal.SIGKILL, master=4100, stderr="", errorlog="-")
    assert level == logging.ERROR and "(pid 4242) was killed by SIGKILL before" in line
    assert line.endswith("its lines in this log (pid 4242) say how far it got")
    level, line = new_master_exited(4242, 0, master=4100, stderr="", errorlog="-")
    assert level == logging.WARNING and "(pid 4242) exited with status 0 before" in line


@pytest.mark.parametrize(
    "status",
    [signal.SIGTERM, (128 + signal.SIGTERM) << 8],
    ids=["killed", "exited-on-it"],
)
def test_a_new_master_stopped_by_a_signal_is_said_to_be(status: int) -> None:
    """Stopped by kill -TERM mid-deploy (killed by it, or halting on it and exiting
    with 128 + 15): the line says so, and guesses at no configuration or import error."""
    level, line = new_master_exited(
        4242, status, master=4100, stderr="/dev/null", errorlog="/var/log/gunicorn.log"
    )
    assert level == logging.WARNING
    assert line == (
        "deploy failed (kill -USR2): the new master (pid 4242) was stopped by SIGTERM"
        " before the deploy was done; this master (pid 4100) and its workers serve on;"
        " its lines in this log (pid 4242) say how far it got"
    )


class Arbiter:
    """What the watch uses of gunicorn's arbiter."""

    def __init__(self, log: logging.Logger, pidfile: str | None = None) -> None:
        self.cfg = type("Cfg", (), {"errorlog": "-", "pidfile": pidfile})()
        self.log = log
        self.reexec_pid = 0
        self.reaped: list[int] = []

    def reap_workers(self) -> None:
        self.reaped.append(self.reexec_pid)

    def stop(self, graceful: bool = True) -> None:
        """gunicorn's: stops the workers, reaping its children meanwhile."""
        self.reap_workers()

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        """gunicorn's: stop, then exit with the status given."""
        self.stop()
        raise SystemExit(exit_status)

    def handle_term(self) -> None:
        """gunicorn's: the main loop halts."""
        raise StopIteration


class HaltServer(BaseException):
    """gunicorn's, raised out of its halt when a worker fails to boot as it stops."""


@pytest.mark.parametrize(
    ("master_pid", "halt", "status"),
    [(4100, "exits", 143), (4100, "raises", 143), (0, "exits", 0)],
    ids=["new-exits", "new-raises", "promoted"],
)
def test_a_new_master_stopped_by_sigterm_exits_with_128_plus_15(
    master_pid: int, halt: str, status: int
) -> None:
    """Before its promotion (``master_pid``, its parent's), a new master halting on
    SIGTERM exits with 143, which its parent reads as "stopped by SIGTERM", also when
    gunicorn's halt raises; once promoted, gunicorn's status is left alone."""
    server: Any = Arbiter(logging.getLogger("test.gunicorn.error"))
    server.master_pid = master_pid
    if halt == "raises":
        def stop(graceful: bool = True) -> None:
            raise HaltServer("Worker failed to boot.")

        server.stop = stop
    watch_new_master(server)
    with pytest.raises(StopIteration):
        server.handle_term()
    with pytest.raises(SystemExit) as exited:
        server.halt()
    assert exited.value.code == status


def _dead_child(code: str = "import os; os.kill(os.getpid(), 9)") -> int:
    """A child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", code])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    child.returncode = 0  # reaped by the watch: Popen must not wait for it again
    return child.pid


@pytest.mark.parametrize(
    ("handed_over", "when", "status"),
    [
        (True, "stopping", 1),
        (True, "before", 1),
        (False, "stopping", 0),
        (False, "before", 0),
    ],
    ids=["moved-reaped-stopping", "moved-reaped-before", "kept-stopping", "kept-before"],
)
def test_the_old_master_exits_with_failure_when_the_state_went_to_a_dead_generation(
    handed_over: bool, when: str, status: int
) -> None:
    """The window of retiring: once the state moved to the new generation and its
    master died, the old master's stop leaves nothing serving, and it exits with 1 for
    a supervisor to start the service again; a failed deploy that kept the state here
    ends with gunicorn's 0."""
    server: Any = Arbiter(logging.getLogger("test.gunicorn.error"))
    watch_new_master(server, handed_over=lambda: handed_over)
    server.reexec_pid = _dead_child()
    if when == "before":
        server.reap_workers()  # reaped in the main loop, then SIGTERM
        assert server.reexec_pid == 0
    with pytest.raises(SystemExit) as exited:
        server.halt()
    assert exited.value.code == status


def test_a_deploy_after_a_failed_one_ends_with_status_0_when_its_master_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A first kill -USR2 whose new master died kept the state here; the second one's
    new master took it and serves. The old master's stop leaves the service served:
    gunicorn's 0, and no line saying that nothing serves."""
    handed_over = False
    server: Any = Arbiter(logging.getLogger("test.gunicorn.error"))
    watch_new_master(server, handed_over=lambda: handed_over, checkpoints=True)
    server.reexec_pid = _dead_child()
    server.reap_workers()  # the failed deploy, reaped in the main loop
    assert server.reexec_pid == 0
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server.reexec_pid = alive.pid  # the next deploy's new master
        server.reap_workers()
        handed_over = True
        with caplog.at_level(logging.INFO, "test.gunicorn.error"):
            with pytest.raises(SystemExit) as exited:
                server.halt()
    finally:
        alive.kill()
        alive.wait()
    assert exited.value.code == 0
    assert not any("nothing serves" in r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("exiting"))


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "none"])
def test_the_orphaned_old_master_promises_checkpoints_only_when_configured(
    checkpoints: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Its exit line says a restart restores the workers' final checkpoints only when
    the hooks commit them; otherwise that the restart starts cold."""
    server: Any = Arbiter(logging.getLogger("test.gunicorn.error"))
    watch_new_master(server, handed_over=lambda: True, checkpoints=checkpoints)
    server.reexec_pid = _dead_child()
    with caplog.at_level(logging.INFO, "test.gunicorn.error"), pytest.raises(SystemExit):
        server.halt()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    promised = [line for line in lines if "final checkpoints" in line]
    if checkpoints:
        assert len(promised) == 2, lines  # the new master's death, and the exit
    else:
        assert promised == [], lines
        assert any("starts the service again, cold: no checkpoints=" in x for x in lines)
        assert any("(it starts cold: no checkpoints= is configured" in x for x in lines)


@pytest.mark.parametrize("names_it", [True, False], ids=["its-pid", "another-pid"])
def test_a_dead_new_master_s_pid_file_is_removed_if_it_names_it(
    tmp_path: Path, names_it: bool
) -> None:
    pidfile = tmp_path / "gunicorn.pid"
    server: Any = Arbiter(logging.getLogger("test.gunicorn.error"), str(pidfile))
    watch_new_master(server)
    dead = _dead_child("raise SystemExit(1)")
    pid2 = tmp_path / "gunicorn.pid.2"
    pid2.write_text(f"{dead if names_it else os.getpid()}\n")
    server.reexec_pid = dead
    server.reap_workers()
    assert server.reexec_pid == 0
    assert pid2.exists() is not names_it


def test_a_new_master_that_dies_while_this_one_stops_is_no_serving_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The new workers retire the old master once they serve; a new master killed
    after that leaves nobody serving. Reaped while the old master stops, the line says
    so, rather than "serve on"."""
    log = logging.getLogger("test.gunicorn.error")
    caplog.set_level(logging.INFO, logger=log.name)
    server: Any = Arbiter(log)
    watch_new_master(server)
    child = subprocess.Popen([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"])
    child_pid = child.pid
    os.waitid(os.P_PID, child_pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped yet
    server.reexec_pid = child_pid
    server.stop()
    child.returncode = -9  # reaped by the watch: Popen must not wait for it again
    (record,) = caplog.records
    assert record.levelname == "ERROR"
    assert f"the new master (pid {child_pid}) was killed by SIGKILL while this master" in (
        record.getMessage()
    )
    assert "nothing serves once it exits" in record.getMessage()
    assert "serve on" not in record.getMessage()


def test_the_watch_reaps_the_new_master_before_gunicorn_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.gunicorn.error")
    caplog.set_level(logging.INFO, logger=log.name)
    server: Any = Arbiter(log)
    watch_new_master(server)
    watch_new_master(server)  # once, however often the hooks run
    server.reap_workers()  # no new master: gunicorn's reap only
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    server.reexec_pid = child.pid
    end = time.monotonic() + DEADLINE
    while server.reexec_pid:
        assert time.monotonic() < end
        server.reap_workers()  # gunicorn's SIGCHLD handling
        time.sleep(0.02)
    child.poll()
    # gunicorn's own reap ran every time, and found the new master reaped already.
    assert len(server.reaped) >= 2 and server.reaped[-1] == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0][0] == "ERROR"
    assert f"the new master (pid {child.pid}) exited with status 1 before" in lines[0][1]


@pytest.mark.slow
def test_a_deploy_whose_new_master_cannot_import_the_application_is_logged(
    tmp_path: Path,
) -> None:
    """The user's case: ``preload_app``, and the new release fails at import. The old
    master logs one ERROR line; the new master's own error is in the log too, since
    its stderr is the log here (``errorlog`` is stderr)."""
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('injected import failure')\n")
    fault = tmp_path / "FAULT"
    config = tmp_path / "faulty.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        f"if os.path.exists({str(fault)!r}):\n"
        f"    wsgi_app = 'broken_app:application'\n"
        f"    pythonpath = {str(tmp_path)!r}\n"
    )
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        assert ask(server.port, "PUT", "/cache/k1", "v1")[0] == 200
        old = server.master()
        assert old is not None
        fault.write_text("import\n")
        os.kill(old, signal.SIGUSR2)
        end = time.monotonic() + DEADLINE
        while "deploy failed" not in server.log.read_text():
            assert time.monotonic() < end, server.log.read_text()
            time.sleep(0.05)
        log = server.log.read_text()
        found = re.search(
            rf"\[{old}\] \[ERROR\] deploy failed \(kill -USR2\): the new master \(pid (\d+)\)"
            rf" exited with status 1 before the deploy was done; this master \(pid {old}\) and"
            r" its workers serve on; an error before it could log \(.*\) went to its stderr,"
            r" this log; ",
            log,
        )
        assert found, log
        assert "Error: injected import failure" in log
        assert log.count("deploy failed") == 1
        assert server.master() == old
        assert read_value(server.port, "k1") == "v1"
        # gunicorn took the new master for gone: the next deploy is not refused.
        fault.unlink()
        server.deploy(1)
        assert read_value(server.port, "k1") == "v1"


@pytest.mark.parametrize("new_master", ["alive", "dead"])
def test_a_deploy_that_succeeded_names_the_new_master_to_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_master: str
) -> None:
    """systemd takes the old master's exit for the service's unless the new master is
    named the main process (MAINPID) first; a dead one is not named."""
    import socket

    address = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(address))
        listener.settimeout(0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        server: Any = Arbiter(logging.getLogger("test.gunicorn.error"))
        watch_new_master(server, handed_over=lambda: True)
        if new_master == "alive":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            server.reexec_pid = child.pid
        else:
            server.reexec_pid = _dead_child()
        try:
            with pytest.raises(SystemExit) as exited:
                server.halt()
        finally:
            if new_master == "alive":
                child.kill()
                child.wait()
        if new_master == "alive":
            assert exited.value.code == 0
            assert listener.recv(100) == f"MAINPID={child.pid}".encode()
        else:
            assert exited.value.code == 1
            with pytest.raises(BlockingIOError):
                listener.recv(100)
