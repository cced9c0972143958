"""SIGTERM to the demo server during a handoff waits for the handoff to end."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_sigterm_mid_handoff_lets_the_successor_take_over() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "statemigrate.demo._server", "--release", "1"],
        stdout=subprocess.PIPE,
    )
    successor_pid = None
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["port"])
        batch = {f"k{i}": f"v{i}" for i in range(500)}
        assert call(port, "POST", "/batch", json.dumps(batch).encode())[0] == 200
        answers: list[tuple[int, bytes]] = []
        upgrade = threading.Thread(
            target=lambda: answers.append(call(port, "POST", "/admin/upgrade?to=3"))
        )
        upgrade.start()
        time.sleep(0.05)  # the successor is starting: well inside the handoff
        server.send_signal(signal.SIGTERM)
        upgrade.join(timeout=60)
        assert answers, "the upgrade request got no answer"
        status, body = answers[0]
        assert status == 200, body
        successor_pid = json.loads(body)["successor_pid"]
        assert server.wait(timeout=30) == 0
        stats = json.loads(call(port, "GET", "/stats")[1])
        assert (stats["release"], stats["entries"], stats["pid"]) == (3, 500, successor_pid)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if successor_pid is not None:
            os.kill(successor_pid, signal.SIGTERM)
        if server.stdout is not None:
            server.stdout.close()
