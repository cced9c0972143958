"""A stop signal (SIGTERM, as a service manager sends) that reaches the successor while
it takes the state over is acted on once it serves: it stops as a serving process
does, and the old process, which let go, has handed the state over. Killed by the
signal's default action instead, the successor took the state with it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from child_waits import free_port, pid_in, serving_child, wait_until

from statemigrate.integrations._successor import gone

CHILD = Path(__file__).with_name("stop_while_taking_over.py")
DEADLINE = 60.0  # a guard against a hung test, not a figure


def _wait(what: str, check: Callable[[], object]) -> None:
    wait_until(what, check, DEADLINE)


PID_FILES = ("pid", "importing")  # the successor's, once it serves or restores


def _serving(server: str, folder: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The first process of ``server``, serving, its output in ``folder/log``."""
    argv = [str(CHILD), server, str(free_port()), str(folder)]
    return serving_child(argv, folder, log="log", deadline=DEADLINE, pid_files=PID_FILES)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn"])
def test_sigterm_during_the_take_over_stops_the_successor_once_it_serves(
    server: str, tmp_path: Path
) -> None:
    with _serving(server, tmp_path) as old:
        os.kill(old.pid, signal.SIGUSR2)
        _wait("the successor's restore", lambda: pid_in(tmp_path / "importing"))
        successor = pid_in(tmp_path / "importing")
        os.kill(successor, signal.SIGTERM)
        time.sleep(0.2)  # the signal is delivered before the restore goes on
        (tmp_path / "go").touch()
        _wait("the successor to serve", lambda: pid_in(tmp_path / "pid") == successor)
        _wait("both processes to end", lambda: (tmp_path / f"exit.{successor}").exists())
        assert old.wait(timeout=DEADLINE) == 0
        text = (tmp_path / "log").read_text()
        assert (tmp_path / f"exit.{old.pid}").read_text() == "handed over", text
        assert (tmp_path / f"exit.{successor}").read_text() == "stopped", text
        assert (tmp_path / f"restored.{successor}").read_text() == "50"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn"])
def test_a_successor_whose_restore_fails_exits_1_with_no_traceback(
    server: str, tmp_path: Path
) -> None:
    """The old process serves on; the successor's run ends with the restore's ERROR and
    one line more, exit status 1, where it ended with a traceback of RestoreError."""
    with _serving(server, tmp_path) as old:
        (tmp_path / "fail").touch()
        os.kill(old.pid, signal.SIGUSR2)
        _wait("the handoff to fail", lambda: "handoff failed" in (tmp_path / "log").read_text())
        started = re.search(r"started successor pid (\d+)", (tmp_path / "log").read_text())
        assert started is not None
        _wait("the successor to exit", lambda: gone(int(started.group(1))))
        text = (tmp_path / "log").read_text()
        assert "Traceback" not in text, text
        # aiohttp's run_app says it; uvicorn and hypercorn end their start-up themselves.
        if server == "aiohttp":
            assert "the state could not be restored (above); this process exits" in text
        assert old.poll() is None and pid_in(tmp_path / "pid") == old.pid
