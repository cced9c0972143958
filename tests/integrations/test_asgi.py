"""The ASGI adapter end to end: examples/uvicorn_cache upgraded (cache v1 -> v2) and
rolled back (v2 -> v1) by SIGUSR2 under load, on uvicorn and hypercorn, with
keep-alive and with a fresh connection per request."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from integrations.loadclient import Tally, ask, load, lost_writes, read_value, wait_for_requests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "uvicorn_cache"
REAPER = ROOT / "tests" / "handoff_children" / "reaper.py"
KEYS = 100
DEADLINE = 60.0  # seconds any one wait may take before the test gives up


def server_options(server: str) -> list[str]:
    """The example's options to serve on ``server`` under the tests' load.

    hypercorn's drain always waits out its keep-alive timeout, as hypercorn does not
    tell when its connections are closed: a second instead of the default five spares
    4 s per handoff and changes nothing under a load whose clients send every few
    milliseconds, on which no connection stays idle that long. The default is
    exercised by test_sigterm_during_a_handoff_waits_for_it_to_end.
    """
    return ["--server", server, *(["--keep-alive", "1"] if server == "hypercorn" else [])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(what: str, check: object) -> None:
    end = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"gave up waiting: {what}"
        time.sleep(0.01)


def deploy(workdir: Path, release: int) -> None:
    """Point app.py at a release, as a deployment swaps the code in place."""
    link = workdir / "app.py.new"
    link.symlink_to(EXAMPLE / f"app_v{release}.py")
    link.replace(workdir / "app.py")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


class Generations:
    """The example's server processes, started under a reaper that adopts each
    orphaned generation."""

    def __init__(self, workdir: Path, argv: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        self.workdir = workdir
        self.reaper = subprocess.Popen(
            [sys.executable, str(REAPER), sys.executable, *argv], cwd=workdir, pass_fds=pass_fds
        )

    def serving(self) -> int:
        """The one server process, once it is the only one."""
        found: list[int] = []

        def single() -> bool:
            assert self.reaper.poll() is None, "every server process exited"
            found[:] = descendants(self.reaper.pid)
            return len(found) == 1

        wait_until("a single server process", single)
        return found[0]

    def stop(self) -> None:
        for pid in descendants(self.reaper.pid):
            os.kill(pid, signal.SIGKILL)
        self.reaper.wait(timeout=DEADLINE)


def hand_over(
    generations: Generations, port: int, release: int, tally: Tally
) -> tuple[float, float]:
    """Deploy ``release`` and SIGUSR2 the server; (start, end) of the handoff window."""
    old = generations.serving()
    deploy(generations.workdir, release)
    start = time.monotonic()
    os.kill(old, signal.SIGUSR2)
    wait_until("the old process to exit", lambda: not alive(old))
    end = time.monotonic()
    assert generations.serving() != old
    status_release = read_release(port)
    assert status_release == release, f"release {status_release} serves, not {release}"
    wait_for_requests(tally, 300)
    return start, end


def read_release(port: int, key: str = "k0") -> int:
    status, body = ask(port, "GET", f"/cache/{key}")
    assert status == 200, (status, body)
    release = json.loads(body)["release"]
    assert isinstance(release, int)
    return release


@contextmanager
def started(workdir: Path, argv: list[str], port: int, **kw: object) -> Iterator[Generations]:
    deploy(workdir, 1)
    generations = Generations(workdir, argv, **kw)  # type: ignore[arg-type]
    try:
        wait_until("the first release to serve", lambda: _answers(port))
        yield generations
    finally:
        generations.stop()


def _answers(port: int) -> bool:
    try:
        return ask(port, "GET", "/cache/nothing")[0] == 404
    except OSError:
        return False


def upgrade_and_roll_back(generations: Generations, port: int, keep_alive: bool) -> None:
    with load(port, clients=4, keep_alive=keep_alive, keys=KEYS) as tally:
        wait_for_requests(tally, 300)
        windows = [hand_over(generations, port, 2, tally), hand_over(generations, port, 1, tally)]
    print(f"\n{tally.line()}")
    for n, (start, end) in enumerate(windows, 1):
        print(f"handoff {n}: {end - start:.2f}s latency {tally.latency_summary(start, end)}")
    assert tally.acknowledged
    assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
    assert lost_writes(port, tally) == []
    # The preloaded cache survived the upgrade and the rollback.
    assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "keep_alive"),
    # Each server once and each kind of connection once: the adapter's code is the
    # same for both servers, and the four pairs cost a minute and a half of CI.
    [("uvicorn", True), ("hypercorn", False)],
    ids=["uvicorn-keep-alive", "hypercorn-fresh"],
)
def test_the_example_upgrades_and_rolls_back_under_load(
    tmp_path: Path, server: str, keep_alive: bool
) -> None:
    port = free_port()
    argv = ["app.py", "--port", str(port), *server_options(server), "--pidfile", "cache.pid"]
    pidfile = tmp_path / "cache.pid"
    with started(tmp_path, argv, port) as generations:
        wait_until("the pidfile", pidfile.exists)
        assert pidfile.read_text().strip() == str(generations.serving())
        upgrade_and_roll_back(generations, port, keep_alive)
        # Each release wrote its pid once serving: `kill -USR2 $(cat cache.pid)` works.
        assert pidfile.read_text().strip() == str(generations.serving())


@pytest.mark.slow
def test_uvicorn_started_from_its_command_line_on_a_passed_descriptor(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    argv = ["-m", "uvicorn", "--fd", str(fd), "--log-level", "warning", "app:application"]
    try:
        with started(tmp_path, argv, port, pass_fds=(fd,)) as generations:
            listener.close()  # as a socket-activating supervisor would keep it, or not
            upgrade_and_roll_back(generations, port, keep_alive=True)
    finally:
        listener.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["uvicorn-fd", "uvicorn", "hypercorn"])
def test_a_start_without_a_handoff_is_ready_as_a_cold_start(how: str) -> None:
    """Nothing restored the service before the server started, and no handoff brings
    a state: the adapter starts it cold, so readiness answers 200 (a service left
    ``starting`` answers 503 for good, and its checkpointer commits nothing)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    here = Path(__file__).parent
    if how == "uvicorn-fd":
        argv = ["-m", "uvicorn", "--fd", str(listener.fileno()), "--log-level", "warning",
                "readiness_app:application"]
        passed: tuple[int, ...] = (listener.fileno(),)
    else:
        listener.close()
        argv, passed = [str(here / "readiness_app.py"), how, str(port)], ()
    child = subprocess.Popen([sys.executable, *argv], cwd=here, pass_fds=passed)
    try:
        listener.close()
        answers: list[tuple[int, str]] = []

        def answered() -> bool:
            assert child.poll() is None, "the server exited"
            try:
                answers.append(ask(port, "GET", "/ready"))
            except OSError:
                return False
            return True

        wait_until("the server to answer", answered)
        status, body = answers[-1]
        assert (status, json.loads(body)["state"]) == (200, "cold_start"), body
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_not_cut_but_passed_on(tmp_path: Path) -> None:
    port = free_port()
    argv = ["app.py", "--port", str(port), "--keep-alive", "60", "--pidfile", "cache.pid"]
    with started(tmp_path, argv, port) as generations:
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            idle.request("PUT", "/cache/before", body="1")
            first = idle.getresponse()
            first.read()
            assert first.status == 204
            old = generations.serving()
            deploy(tmp_path, 2)
            os.kill(old, signal.SIGUSR2)
            wait_until("release 2 to serve", lambda: read_release(port, "before") == 2)
            # Ten ticks of uvicorn's main loop: a server that does not drain has shut
            # down and cut the idle connection by then.
            time.sleep(1.0)
            # The old process drains: it keeps the idle connection open for its next
            # request, which goes to release 2 and is answered with Connection: close.
            assert alive(old)
            idle.request("PUT", "/cache/after", body="2")
            answer = idle.getresponse()
            assert (answer.status, answer.getheader("connection")) == (204, "close")
            answer.read()
        finally:
            idle.close()
        assert read_value(port, "after") == "2"
        assert read_value(port, "before") == "1"
        wait_until("the old process to exit once drained", lambda: not alive(old))


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["app.py", "--server", "uvicorn"],
        ["app.py", "--server", "hypercorn"],
        ["-m", "uvicorn", "--fd", "FD", "--log-level", "warning", "app:application"],
    ],
    ids=["uvicorn", "hypercorn", "uvicorn-fd"],
)
def test_sigterm_during_a_handoff_waits_for_it_to_end(tmp_path: Path, argv: list[str]) -> None:
    """A service manager's SIGTERM right after SIGUSR2 must not abandon the successor."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if "FD" in argv:
        argv = [str(listener.fileno()) if part == "FD" else part for part in argv]
        passed: tuple[int, ...] = (listener.fileno(),)
    else:
        listener.close()
        argv = [*argv, "--port", str(port)]
        passed = ()
    try:
        with started(tmp_path, argv, port, pass_fds=passed) as generations:
            listener.close()
            assert ask(port, "PUT", "/cache/kept", "yes")[0] == 204
            old = generations.serving()
            deploy(tmp_path, 2)
            os.kill(old, signal.SIGUSR2)
            time.sleep(0.05)  # the successor is starting: well inside the handoff
            os.kill(old, signal.SIGTERM)
            wait_until("the old process to exit", lambda: not alive(old))
            assert generations.serving() != old
            status, body = ask(port, "GET", "/cache/kept")
            assert (status, json.loads(body)) == (
                200,
                {"key": "kept", "value": "yes", "release": 2},
            )
    finally:
        listener.close()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_returns_after_a_stop_signal(server: str, signum: int) -> None:
    """Code after run() (a final checkpoint) runs when a signal stops the server;
    uvicorn itself re-raises the signal once it has shut down."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / "run_until_signal.py"),
            server,
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "serving\n"
        child.send_signal(signum)
        out, err = child.communicate(timeout=DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert (child.returncode, out) == (0, "run returned None\n"), err


SLOW_WRITER = ROOT / "tests" / "integrations" / "slow_writer_app.py"


def _counter(port: int) -> dict[str, int]:
    status, body = ask(port, "GET", "/n")
    assert status == 200, (status, body)
    answer: dict[str, int] = json.loads(body)
    return answer


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text()


@pytest.mark.slow
def test_a_write_whose_body_never_ends_fails_the_handoff_at_writes_and_writes_go_on(
    tmp_path: Path,
) -> None:
    """A client that sends a PUT's headers and never its whole body keeps that write
    running: the pause gives up after ``HandoffTimeouts.writes`` (1.5 s), saying so
    while it waits and then why; the handoff fails at stage ``writes``, the successor
    is stopped, and the old process serves writes again, the slow client still there."""
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(SLOW_WRITER), str(port)], stderr=out, cwd=tmp_path
        )
    slow = socket.socket()
    try:
        wait_until("the server to answer", lambda: _answers_counter(port))
        old = server.pid
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"PUT /n HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nslow")
        wait_until("the slow write to run", lambda: _counter(port)["writing"] == 1)
        os.kill(old, signal.SIGUSR2)
        wait_until("the handoff to fail", lambda: _logged(log, "handoff failed at writes"))
        text = log.read_text()
        assert "the pause waits for 1 write request still running" in text
        assert "handoff failed at writes: 1 write request still running after 1.5 s" in text
        assert "the handoff is abandoned and the old process serves on" in text
        # The old process serves writes again, the slow write still running.
        assert ask(port, "PUT", "/n", "x")[0] == 204
        assert _counter(port) == {"n": 1, "pid": old, "writing": 1}
        wait_until("the successor to be stopped", lambda: descendants(old) == [])
        assert server.poll() is None
    finally:
        slow.close()
        server.kill()
        server.wait(timeout=DEADLINE)


def _answers_counter(port: int) -> bool:
    try:
        return ask(port, "GET", "/n")[0] == 200
    except OSError:
        return False
