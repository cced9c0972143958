"""The gunicorn hooks end to end: the example cache upgraded (release 1 -> 2) and rolled
back (2 -> 1) with kill -USR2 under load, with no request refused, reset, timed out or
answered otherwise than 2xx, and no acknowledged write lost."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from integrations.loadclient import Tally, ask, load, lost_writes, read_value, wait_for_requests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gunicorn_cache"
KEYS = 100
DEADLINE = 60.0  # bounds every wait for a process: a hang fails, a slow machine passes


def _state(pid: int) -> str | None:
    """The process's state letter, or None once it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state = stat.rpartition(")")[2].split()[0]
    return None if state in {"Z", "X"} else state


def _wait_gone(pid: int) -> None:
    end = time.monotonic() + DEADLINE
    while _state(pid) is not None:
        assert time.monotonic() < end, f"process {pid} did not exit"
        time.sleep(0.02)


@dataclass
class Gunicorn:
    """A gunicorn started by the test from the example's configuration."""

    tmp: Path
    worker_class: str
    workers: int
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    masters: list[int] = field(default_factory=list)

    @property
    def pidfile(self) -> Path:
        return self.tmp / "gunicorn.pid"

    @property
    def log(self) -> Path:
        return self.tmp / "gunicorn.log"

    def master(self) -> int | None:
        try:
            text = self.pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def start(self, release: int) -> None:
        (self.tmp / "RELEASE").write_text(f"{release}\n")
        env = {**os.environ, "CACHE_RELEASE_FILE": str(self.tmp / "RELEASE")}
        argv = [
            # The console script, as an operator runs it: a re-exec of "python -m
            # gunicorn" runs gunicorn/__main__.py as a script, whose folder then
            # shadows the standard library's http package.
            str(Path(sys.executable).with_name("gunicorn")),
            "-c", str(EXAMPLE / "gunicorn.conf.py"),
            "--bind", "127.0.0.1:0",
            "--pid", str(self.pidfile),
            "--worker-class", self.worker_class,
            "--workers", str(self.workers),
            "--no-control-socket",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=EXAMPLE, env=env, stderr=log)
        end = time.monotonic() + DEADLINE
        while not self.port:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < end, self.log.read_text()
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.log.read_text())
            if found:
                self.port = int(found.group(1))
            time.sleep(0.02)
        self.masters.append(self.proc.pid)
        self.wait_serving(release)

    def wait_serving(self, release: int) -> None:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                status, body = ask(self.port, "GET", "/cache/-")
            except OSError:
                status, body = 0, ""
            if status == 404 and json.loads(body) == {"key": "-"}:
                return
            assert time.monotonic() < end, self.log.read_text()
            time.sleep(0.05)

    def deploy(self, release: int) -> tuple[float, float]:
        """The operator's deploy: write the release, kill -USR2 the master, and wait
        until the old master is gone and the new one promoted. Returns the window."""
        old = self.master()
        assert old is not None
        (self.tmp / "RELEASE").write_text(f"{release}\n")
        began = time.monotonic()
        os.kill(old, signal.SIGUSR2)
        if self.proc is not None and self.proc.pid == old:
            self.proc.wait(timeout=DEADLINE)  # our child: reap it
        _wait_gone(old)
        end = time.monotonic() + DEADLINE
        while self.master() in (None, old):  # promoted: gunicorn.pid.2 renamed
            assert time.monotonic() < end, self.log.read_text()
            time.sleep(0.02)
        new = self.master()
        assert new is not None
        self.masters.append(new)
        return began, time.monotonic()

    def stop(self) -> None:
        for pid in reversed(self.masters):
            if _state(pid) is not None:
                os.kill(pid, signal.SIGTERM)
        for pid in self.masters:
            try:
                _wait_gone(pid)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def gunicorn(tmp: Path, release: int, *, worker_class: str, workers: int = 1) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp, worker_class, workers)
    try:
        server.start(release)
        yield server
    finally:
        server.stop()


def _report(tally: Tally, windows: dict[str, tuple[float, float]]) -> None:
    print(f"\n{tally.line()}")
    for name, (since, until) in windows.items():
        print(f"  {name} ({until - since:.2f} s): {tally.latency_summary(since, until)}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker_class", "keep_alive"),
    [("gthread", True), ("gthread", False), ("sync", False)],
    ids=["gthread-keepalive", "gthread-fresh", "sync-fresh"],
)
def test_upgrade_and_rollback_under_load(
    tmp_path: Path, worker_class: str, keep_alive: bool
) -> None:
    with gunicorn(tmp_path, 1, worker_class=worker_class) as server:
        port = server.port
        windows: dict[str, tuple[float, float]] = {}
        with load(port, clients=4, keep_alive=keep_alive, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            windows["upgrade 1 -> 2"] = server.deploy(2)
            wait_for_requests(tally, 300)
            assert json.loads(ask(port, "GET", "/cache/k1")[1])["release"] == 2
            windows["rollback 2 -> 1"] = server.deploy(1)
            wait_for_requests(tally, 300)
        _report(tally, windows)
        assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
        assert tally.acknowledged
        assert lost_writes(port, tally) == []
        # The preloaded cache went through v2 and back, entry by entry.
        assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]
        assert json.loads(ask(port, "GET", "/cache/k1")[1])["release"] == 1
        assert len(server.masters) == 3


def _owner(port: int, key: str, tries: int = 400) -> int:
    """The pid of the worker holding ``key``: ask on fresh connections until one has it."""
    for _ in range(tries):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", f"/cache/{key}")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status == 200:
            return int(response.getheader("X-Worker", "0"))
    raise AssertionError(f"no worker holds {key}")


@pytest.mark.slow
def test_each_worker_hands_its_state_to_the_same_slot(tmp_path: Path) -> None:
    with gunicorn(tmp_path, 1, worker_class="gthread", workers=2) as server:
        port = server.port
        written: dict[str, int] = {}
        n = 0
        while len(set(written.values())) < 2:  # until both workers hold some keys
            n += 1
            assert n < 2000, "one worker took every connection"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("PUT", f"/cache/s{n}", body=f"x{n}")
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            assert response.status == 200
            written[f"s{n}"] = int(response.getheader("X-Worker", "0"))
        server.deploy(2)
        moved = {key: _owner(port, key) for key in written}
        # Every key of one old worker is in one new worker, a different one for each.
        pairs = {(written[key], moved[key]) for key in written}
        assert len(pairs) == 2
        assert len({new for _, new in pairs}) == 2
        assert not {new for _, new in pairs} & set(written.values())
