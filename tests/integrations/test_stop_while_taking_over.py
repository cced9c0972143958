"""A stop signal (SIGTERM, as a service manager sends) that reaches the successor while
it takes the state over, before SERVING, withdraws it on every adapter: it exits
without serving, and the old process serves on with its state. Killed by the
signal's default action instead, the successor took the state with it; acting on it
once serving, it took the state over and stopped, and nothing served."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from child_waits import free_port, pid_in, serving_child, wait_until

from statemigrate.integrations._successor import gone

CHILD = Path(__file__).with_name("stop_while_taking_over.py")
DEADLINE = 60.0  # a guard against a hung test, not a figure


def _wait(what: str, check: Callable[[], object]) -> None:
    wait_until(what, check, DEADLINE)


PID_FILES = ("pid", "importing")  # the successor's, once it serves or restores


@contextmanager
def _serving(server: str, folder: Path, port: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    """The first process of ``server``, serving, its output in ``folder/log``;
    ``uvicorn-fd`` is uvicorn's own command line on a listener passed as ``--fd N``."""
    port = port or free_port()
    if server != "uvicorn-fd":
        argv = [str(CHILD), server, str(port), str(folder)]
        with serving_child(
            argv, folder, log="log", deadline=DEADLINE, pid_files=PID_FILES
        ) as child:
            yield child
        return
    with socket.create_server(("127.0.0.1", port)) as listener:
        fd = listener.fileno()
        argv = ["-m", "uvicorn", "--fd", str(fd), "--app-dir", str(CHILD.parent),
                "--log-level", "warning", f"{CHILD.stem}:application"]
        env = {**os.environ, "STOP_WHILE_TAKING_OVER_DIR": str(folder)}
        with serving_child(
            argv, folder, log="log", deadline=DEADLINE, pid_files=PID_FILES,
            pass_fds=(fd,), env=env,
        ) as child:
            listener.close()  # as a socket-activating supervisor may
            # Its pid is written in the application's start-up, before uvicorn accepts
            # and before the wrapper handles SIGUSR2: wait for an answer.
            _wait("uvicorn to accept", lambda: _answers(port))
            yield child


def _answers(port: int) -> bool:
    """Whether the child answers a read (which changes nothing)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=DEADLINE) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _add(port: int) -> str:
    """``POST /add`` on the child: one more entry; how many there are now."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/add", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
        return str(answer.read().decode())


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn", "uvicorn-fd"])
def test_sigterm_during_pre_copy_withdraws_the_successor(server: str, tmp_path: Path) -> None:
    """The successor gets SIGTERM while it applies round 0 (the old process serves,
    unpaused): it reports FAILED and exits without serving, and the old process serves
    on with every write, which the next handoff carries. Before, the successor took the
    state over anyway and stopped, and the old process, which had let go, exited too:
    nothing served. The withdrawn successor runs its application's shutdown (aiohttp's
    cleanup, the ASGI lifespan's), which its start-up opened; on uvicorn and hypercorn
    it did not. ``uvicorn-fd`` is ``uvicorn --fd N`` with ``hot_restart``, which the
    documentation says withdraws too."""
    fd_mode = server == "uvicorn-fd"
    port = free_port()
    with _serving(server, tmp_path, port) as old:
        os.kill(old.pid, signal.SIGUSR2)
        _wait("the successor's restore of round 0", lambda: pid_in(tmp_path / "importing"))
        successor = pid_in(tmp_path / "importing")
        os.kill(successor, signal.SIGTERM)
        time.sleep(0.2)  # the signal is delivered before the restore goes on
        assert _add(port) == "51"  # served by the old process meanwhile
        (tmp_path / "go").touch()
        _wait("the successor to exit", lambda: gone(successor))
        text = (tmp_path / "log").read_text()
        assert old.poll() is None and pid_in(tmp_path / "pid") == old.pid, text
        assert (tmp_path / f"shutdown.{successor}").exists(), text
        assert "SIGTERM received before taking the state over: this process withdraws" in text
        if not fd_mode:  # uvicorn's command line tells of a failed start-up (docs/asgi.md)
            assert (tmp_path / f"exit.{successor}").read_text() == "stopped", text
            assert "ERROR" not in text, text  # no failed start-up told of: it withdrew
        # The old process says why, whether it was sending a piece or awaiting one
        # (once it has read the successor's FAILED, which may come after its exit).
        why = "the successor failed: SIGTERM received before taking the state over"
        _wait("the old process to say why", lambda: why in (tmp_path / "log").read_text())
        assert _add(port) == "52"
        # Nothing lost: the next successor takes every entry over and serves.
        (tmp_path / "importing").unlink()
        os.kill(old.pid, signal.SIGUSR2)
        _wait("the next successor to serve", lambda: pid_in(tmp_path / "pid") != old.pid)
        new = pid_in(tmp_path / "pid")
        assert (tmp_path / f"restored.{new}").read_text() == "52"
        assert old.wait(timeout=DEADLINE) == 0
        assert (tmp_path / f"shutdown.{old.pid}").exists()
        if not fd_mode:  # nothing runs after uvicorn's own command line
            assert (tmp_path / f"exit.{old.pid}").read_text() == "handed over"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn"])
def test_a_successor_whose_restore_fails_exits_1_with_no_traceback(
    server: str, tmp_path: Path
) -> None:
    """The old process serves on; the successor's run ends with the restore's ERROR and
    one line more, exit status 1, where it ended with a traceback of RestoreError. Its
    application's shutdown ran (on uvicorn and hypercorn it did not)."""
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
        assert (tmp_path / f"shutdown.{started.group(1)}").exists(), text
