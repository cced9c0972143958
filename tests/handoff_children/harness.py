"""Test-side helpers for the handoff tests: child scripts, reaping, and a load generator."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def script(name: str) -> str:
    return str(HERE / name)


def runtime_fds() -> set[int]:
    """Descriptors above 2 that a fresh interpreter holds before doing anything."""
    code = "from _fdtable import fd_table; print(fd_table())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {fd for fd in json.loads(out.stdout) if fd > 2}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test (not a timing assertion: a hang guard)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.01)


def reap(pid: int | None, timeout: float = 30.0) -> int:
    """Wait for our child ``pid`` to exit (bounded), reap it, return its exit status.

    ``pid`` may come from a handoff report, where None says there was no child."""
    assert pid is not None, "no child to reap"
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            select.select([pidfd], [], [], 30.0)
    finally:
        os.close(pidfd)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def readline(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


@dataclass
class ClientStats:
    acked: int = 0  # the last value the server acknowledged
    ok: int = 0
    retries: int = 0
    refused: int = 0
    reset: int = 0
    timeouts: int = 0
    out_of_order: int = 0
    other: list[str] = field(default_factory=list)
    generations: set[int] = field(default_factory=set)


class Clients:
    """Threads that each send ``INC <name>`` on a fresh connection, as fast as they can.

    Every acknowledged value must be the previous one plus one: a lost increment
    (state that did not move) or a duplicated one (two owners) breaks the sequence.
    ``RETRY`` is the server's "not done, send again" and is retried.
    """

    def __init__(self, address: tuple[str, int], *, threads: int, prefix: str = "c") -> None:
        self.address = address
        self.names = [f"{prefix}{i}" for i in range(threads)]
        self.stats = {name: ClientStats() for name in self.names}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(name,), daemon=True) for name in self.names
        ]

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60.0)

    def _run(self, name: str) -> None:
        stats = self.stats[name]
        request = f"INC {name}\n".encode()
        while not self._stop.is_set():
            try:
                with socket.create_connection(self.address, timeout=20.0) as sock:
                    sock.sendall(request)
                    reply = readline(sock)
            except ConnectionRefusedError:
                stats.refused += 1
                time.sleep(0.001)
                continue
            except (ConnectionResetError, BrokenPipeError):
                stats.reset += 1
                continue
            except TimeoutError:
                stats.timeouts += 1
                continue
            except OSError as exc:
                stats.other.append(repr(exc))
                continue
            verb, *rest = reply.split() or ["(closed)"]
            if verb == "OK":
                value, generation = int(rest[0]), int(rest[1])
                if value != stats.acked + 1:
                    stats.out_of_order += 1
                stats.acked = value
                stats.ok += 1
                stats.generations.add(generation)
            elif verb == "RETRY":
                stats.retries += 1
            elif verb == "(closed)":
                stats.reset += 1  # closed without an answer: as bad as a reset
            else:
                stats.other.append(reply)

    def total(self, attribute: str) -> int:
        return sum(getattr(s, attribute) for s in self.stats.values())

    @property
    def ok(self) -> int:
        return self.total("ok")

    def summary(self) -> dict[str, Any]:
        keys = ("ok", "retries", "refused", "reset", "timeouts", "out_of_order")
        result: dict[str, Any] = {key: self.total(key) for key in keys}
        result["other"] = [o for s in self.stats.values() for o in s.other][:5]
        return result


def query(address: tuple[str, int], line: str) -> str:
    with socket.create_connection(address, timeout=20.0) as sock:
        sock.sendall(line.encode() + b"\n")
        return readline(sock)


class ServerChain:
    """Generations of ``server.py`` under ``reaper.py``, driven by SIGUSR2; events from stdout.

    Every generation runs in the session this starts, so :meth:`kill` can end all of
    them (and nothing else) with one ``killpg``.
    """

    def __init__(self, *, mode: str = "handoff", drain: float = 5.0) -> None:
        argv = [sys.executable, script("reaper.py"), sys.executable, script("server.py")]
        argv += ["--mode", mode, "--drain", str(drain)]
        self.proc = subprocess.Popen(
            argv, cwd=HERE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True
        )
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.wait_event("ready", generation=1)
        self.address = ("127.0.0.1", int(first["port"]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def wait_event(self, kind: str, *, generation: int, timeout: float = 60.0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in self.events:
                if event["event"] == kind and event["generation"] == generation:
                    return event
            return None

        with self._changed:
            if not self._changed.wait_for(lambda: find() is not None, timeout=timeout):
                raise AssertionError(f"no {kind} event for generation {generation}: {self.events}")
            found = find()
            assert found is not None
            return found

    def pid_of(self, generation: int) -> int:
        return int(self.wait_event("ready", generation=generation)["pid"])

    def send_signal(self, generation: int, signum: int) -> None:
        # The pid comes from the generation itself and is still running (it has not
        # reported its exit), so it cannot have been reused.
        os.kill(self.pid_of(generation), signum)

    def hand_over(self, generation: int) -> dict[str, Any]:
        """Make ``generation`` hand over; return its exit event once it is done."""
        self.send_signal(generation, signal.SIGUSR2)
        self.wait_event("ready", generation=generation + 1)
        return self.wait_event("exit", generation=generation)

    def stop(self, generation: int) -> None:
        self.send_signal(generation, signal.SIGTERM)
        self.wait_event("exit", generation=generation)
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=60)
        self._reader.join(timeout=60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
