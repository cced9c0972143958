"""The aiohttp adapter end to end: a served application upgraded (cache v1 -> v2) to a
successor process by SIGUSR2 under load, with no acknowledged write lost."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = str(HERE / "aioapp.py")
KEYS = 100
MAX_REQUESTS = 400


def wait_ready(path: Path, proc: subprocess.Popen[bytes] | None = None) -> tuple[int, int]:
    for _ in range(3000):  # bounded: 30 s
        if path.exists():
            port, pid = path.read_text().split()
            return int(port), int(pid)
        assert proc is None or proc.poll() is None, "the server exited before serving"
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def ask(port: int, method: str, path: str, body: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@dataclass
class Load:
    """One client thread, one connection per request, no retries."""

    port: int
    requests: int = 0
    refused: int = 0
    reset: int = 0
    timed_out: int = 0
    non_2xx: int = 0
    acknowledged: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and self.requests < MAX_REQUESTS:
            n += 1
            self.requests += 1
            try:
                if n % 2:
                    status, _ = ask(self.port, "PUT", f"/k/w{n}", f"x{n}")
                    if status == 200:
                        self.acknowledged[f"w{n}"] = f"x{n}"
                else:
                    status, _ = ask(self.port, "GET", f"/k/k{n % KEYS}")
                if not 200 <= status < 300:
                    self.non_2xx += 1
            except ConnectionRefusedError:
                self.refused += 1
            except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
                self.reset += 1
            except TimeoutError:
                self.timed_out += 1
            time.sleep(0.005)


def test_aiohttp_app_upgrades_to_a_successor_under_load(tmp_path: Path) -> None:
    portfile = tmp_path / "port"
    old = subprocess.Popen([sys.executable, APP, "1", str(portfile)], cwd=HERE)
    successor_pid = None
    try:
        port, pid = wait_ready(portfile.with_name("port.1"), old)
        assert pid == old.pid
        for i in range(KEYS):
            assert ask(port, "PUT", f"/k/k{i}", f"v{i}") == (200, "1")
        load = Load(port)
        client = threading.Thread(target=load.run)
        client.start()
        while load.requests < 50:
            time.sleep(0.01)
        os.kill(old.pid, signal.SIGUSR2)
        _, successor_pid = wait_ready(portfile.with_name("port.2"))
        assert old.wait(timeout=60) == 0  # drained and exited after COMMIT
        while load.requests < MAX_REQUESTS and client.is_alive():
            time.sleep(0.05)
        load.stop.set()
        client.join()
        print(
            f"requests={load.requests} refused={load.refused} reset={load.reset}"
            f" timed_out={load.timed_out} non_2xx={load.non_2xx}"
            f" acknowledged_writes={len(load.acknowledged)}"
        )
        # The cache survived, migrated to release 2, served by the successor.
        assert [ask(port, "GET", f"/k/k{i}") for i in range(KEYS)] == [
            (200, f"v{i} 2") for i in range(KEYS)
        ]
        lost = [
            key
            for key, value in load.acknowledged.items()
            if ask(port, "GET", f"/k/{key}") != (200, f"{value} 2")
        ]
        assert lost == []
        assert load.acknowledged
        assert (load.refused, load.reset, load.timed_out) == (0, 0, 0)
        assert load.non_2xx <= 1  # a write held by the pause when the state moved: 503
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        if successor_pid is not None:
            os.kill(successor_pid, signal.SIGTERM)
            for _ in range(3000):
                try:
                    os.kill(successor_pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)
