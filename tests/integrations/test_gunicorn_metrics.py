"""Metrics of several gunicorn workers in prometheus_client's multiprocess mode: each
worker reports the gauges its master set before the fork, and a worker or a master
that exited leaves no series behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from integrations.test_gunicorn import DEADLINE

import statemigrate

APP = """
import os
from typing_extensions import TypedDict
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
import statemigrate as sm
import statemigrate.metrics

statemigrate.metrics.use_prometheus()  # in the master: preload_app
registry = sm.Registry()

@registry.schema("counter", version=1)
class CounterV1(TypedDict):
    n: int

@registry.migratable("counter", version=1)
class Counter:
    def __init__(self):
        self.n = 0

service = sm.Service("metered", registry=registry)
service.register(Counter())

def application(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        body = generate_latest(collected)
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def _build_info(port: int) -> dict[int, float]:
    """``statemigrate_build_info`` by pid, as one scrape of the collector reads it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as answer:
        text = answer.read().decode()
    version = re.escape(statemigrate.__version__)
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(
            rf'statemigrate_build_info\{{pid="(\d+)",version="{version}"\}} (\S+)', line
        ) or re.fullmatch(
            rf'statemigrate_build_info\{{version="{version}",pid="(\d+)"\}} (\S+)', line
        )
        if match:
            found[int(match.group(1))] = float(match.group(2))
    return found


T = TypeVar("T")


def _wait(what: str, log: Path, done: Callable[[], T]) -> T:
    end = time.monotonic() + DEADLINE
    while True:
        result = done()
        if result:
            return result
        assert time.monotonic() < end, f"{what}\n{log.read_text()}"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_report_build_info_and_a_dead_one_is_removed(tmp_path: Path) -> None:
    (tmp_path / "metered.py").write_text(APP)
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "from statemigrate.integrations.gunicorn import server_hooks\n"
        "wsgi_app = 'metered:application'\n"
        "preload_app = True\n"
        "workers = 2\n"
        "worker_class = 'gthread'\n"
        f"globals().update(server_hooks('metered:service', directory={str(tmp_path / 's')!r}))\n"
    )
    log = tmp_path / "gunicorn.log"
    argv = [
        str(Path(sys.executable).with_name("gunicorn")), "-c", str(config),
        "--bind", "127.0.0.1:0", "--no-control-socket",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=out)
    try:

        def booted() -> list[int]:
            pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]
            return pids if len(pids) >= 2 else []

        def port() -> int:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
            return int(found.group(1)) if found else 0

        listening = _wait("gunicorn listening", log, port)
        workers = _wait("two workers", log, booted)

        def each_worker_says_1() -> dict[int, float]:
            seen = _build_info(listening)
            return seen if all(seen.get(pid) == 1.0 for pid in workers) else {}

        # Before the fix each worker's series read 0: the master set it before the fork.
        seen = _wait("build_info 1 in each worker", log, each_worker_says_1)
        assert seen.get(proc.pid) == 1.0  # the master's own

        os.kill(workers[0], signal.SIGKILL)

        def replaced() -> list[int]:
            pids = booted()
            return pids if len(pids) >= 3 else []

        replacement = _wait("a replacement", log, replaced)[2]

        def dead_one_gone() -> dict[int, float]:
            seen = _build_info(listening)
            ok = workers[0] not in seen and seen.get(replacement) == 1.0
            return seen if ok else {}

        _wait("the dead worker's series gone", log, dead_one_gone)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
    # The master's own series go with it: a retired old master's used to stay.
    assert not list(metrics.glob(f"gauge_live*_{proc.pid}.db")), list(metrics.iterdir())


def test_a_master_on_its_way_out_removes_its_own_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook gunicorn calls as a master exits (``on_exit``); the gauges of another
    process, and the values that outlive a process, stay."""
    from statemigrate.integrations.gunicorn import server_hooks

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    pid = os.getpid()
    own = [tmp_path / f"gauge_liveall_{pid}.db", tmp_path / f"gauge_livesum_{pid}.db"]
    kept = [tmp_path / f"gauge_liveall_{pid + 1}.db", tmp_path / f"counter_{pid}.db"]
    for path in own + kept:
        path.write_bytes(b"")
    hooks = server_hooks("metered:service", directory=str(tmp_path / "s"))
    server = type("Arbiter", (), {"log": None})()
    hooks["on_exit"](server)
    assert sorted(path for path in own + kept if path.exists()) == sorted(kept)
