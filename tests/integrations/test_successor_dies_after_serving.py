"""The aiohttp and ASGI adapters when the successor dies just after it took the state
over and serves: the old process answers what it still passes on with 503 at once,
frees the port for a restart from the store, and exits well before its drain and
forward timeouts (60 s in crash_after_serving.py)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from child_waits import free_port, pid_in, serving_child, wait_until

from statemigrate.integrations._successor import gone

CHILD = Path(__file__).with_name("crash_after_serving.py")
# Seconds any one wait of the test may take: a third of the child's forward and
# keep-alive timeouts, so that only an old process that does not sit them out passes.
DEADLINE = 20.0
DIED = "died after taking over the state"


def _wait(what: str, check: Callable[[], object]) -> None:
    wait_until(what, check, DEADLINE)


def _serving(folder: Path) -> int:
    return pid_in(folder / "pid")


def _bindable(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


def _old_process(
    server: str, port: int, folder: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    argv = [str(CHILD), server, str(port), str(folder)]
    return serving_child(argv, folder, log="old.log", deadline=DEADLINE)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn"])
def test_a_successor_dying_after_it_serves_leaves_nothing_in_the_way_of_a_restart(
    tmp_path: Path, server: str
) -> None:
    port = free_port()
    with _old_process(server, port, tmp_path) as old:
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        try:
            kept.request("PUT", "/k", body=b"1")
            first = kept.getresponse()
            assert (first.status, first.read()) == (200, f"served by {old.pid}".encode())
            (tmp_path / "crash").touch()
            os.kill(old.pid, signal.SIGUSR2)
            # The successor serves, then blocks (it accepts nothing) until told to die.
            _wait("the successor to serve", lambda: _serving(tmp_path) not in (0, old.pid))
            successor = _serving(tmp_path)
            # A write from now on is held by the pause or passed on at once: either way
            # it waits in the successor's accept queue.
            kept.request("PUT", "/k", body=b"2")
            time.sleep(0.2)  # in the queue, most likely; the test holds either way
            (tmp_path / "go").touch()
            _wait("the successor to die", lambda: gone(successor))
            # Answered well before the 60 s forward timeout (the client gives up at 20).
            answer = kept.getresponse()
            assert answer.status == 503, (answer.status, answer.read())
            assert b"died after taking over" in answer.read()
            assert answer.getheader("connection") == "close"
        finally:
            kept.close()
        # The old process holds no copy of the listener: a new connection is refused,
        # not queued where nobody accepts, and a restart can bind the port at once.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        assert _bindable(port)
        # Its drain (60 s) ends at once, with one error line telling what happened.
        old.wait(timeout=DEADLINE)
        log = (tmp_path / "old.log").read_text()
        assert log.count(DIED) == 1, log
        assert f"successor pid {successor} {DIED} (exit status 1)" in log
        if server == "aiohttp":  # its drain line says why the drain ended
            assert "left when the successor died" in log and "at the deadline" not in log, log
