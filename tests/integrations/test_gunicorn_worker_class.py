"""The hooks refuse, at the master's start, a worker class that serves an ASGI
application: one ``Reason:`` line and exit status 1, not a 500 on every request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from integrations.test_gunicorn import DEADLINE, HaltingArbiter

from statemigrate.integrations.gunicorn import server_hooks


def _arbiter(worker_class: str) -> Any:
    from gunicorn.util import load_class  # type: ignore[import-untyped]

    server: Any = HaltingArbiter(workers=1)
    with warnings.catch_warnings():
        # uvicorn.workers says it is deprecated in favour of the uvicorn-worker package.
        warnings.simplefilter("ignore", DeprecationWarning)
        server.worker_class = load_class(worker_class)
    server.cfg.worker_class_str = worker_class
    return server


@pytest.mark.parametrize(
    "worker_class", ["uvicorn.workers.UvicornWorker", "gunicorn.workers.gasgi.ASGIWorker"]
)
def test_an_asgi_worker_class_is_refused_in_one_line(tmp_path: Path, worker_class: str) -> None:
    hooks = server_hooks("app_v1:service", directory=tmp_path / "sockets")
    server = _arbiter(worker_class)
    with pytest.raises(SystemExit) as exited:
        hooks["when_ready"](server)
    assert exited.value.code == 1
    [line] = server.lines
    assert line.startswith(f"Reason: statemigrate: worker_class: {worker_class} is not one of")
    assert "uvicorn or hypercorn with hot_restart (docs/asgi.md)" in line


@pytest.mark.parametrize(
    "worker_class",
    ["gunicorn.workers.sync.SyncWorker", "gunicorn.workers.gthread.ThreadWorker"],
)
def test_the_wsgi_worker_classes_pass(tmp_path: Path, worker_class: str) -> None:
    from statemigrate.integrations._gunicorn_config import check_worker_class

    server = _arbiter(worker_class)
    check_worker_class(server)  # raises nothing
    derived = type("MyWorker", (server.worker_class,), {})
    check_worker_class(SimpleNamespace(worker_class=derived, cfg=server.cfg))
    assert server.lines == []


ASGI_APP = """
import statemigrate as sm

service = sm.Service("tiny", registry=sm.Registry())

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.mark.slow
def test_gunicorn_with_uvicorn_s_worker_and_the_hooks_stops_at_start(tmp_path: Path) -> None:
    """As a user met it: ``worker_class = "uvicorn.workers.UvicornWorker"`` started,
    and then answered every request 500 (the hooks called the ASGI application as
    WSGI). The master now stops before it forks a worker."""
    (tmp_path / "tinyapp.py").write_text(ASGI_APP)
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "from statemigrate.integrations.gunicorn import server_hooks\n"
        "wsgi_app = 'tinyapp:app'\n"
        "worker_class = 'uvicorn.workers.UvicornWorker'\n"
        "preload_app = True\n"
        f"globals().update(server_hooks('tinyapp:service', directory={str(tmp_path / 's')!r}))\n"
    )
    pidfile = tmp_path / "gunicorn.pid"
    argv = [
        str(Path(sys.executable).with_name("gunicorn")), "-c", str(config),
        "--bind", "127.0.0.1:0", "--pid", str(pidfile), "--no-control-socket",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    # The timeout only stops a hang.
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "Reason:" in line]
    assert re.search(
        r"\[ERROR\] Reason: statemigrate: worker_class: uvicorn\.workers\.UvicornWorker is"
        r" not one of gunicorn's WSGI workers",
        line,
    ), output
    assert "Booting worker" not in output
    assert not pidfile.exists()
