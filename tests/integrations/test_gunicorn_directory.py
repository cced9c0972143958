"""The gunicorn hooks' directory of sockets and marks: a master's start removes the
files that processes gone (kill -9) left, and never one a live process uses."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from statemigrate.integrations import _gunicorn_directory
from statemigrate.integrations._gunicorn_directory import HandoffDirectory
from statemigrate.integrations.gunicorn import server_hooks

# No process has a pid above the kernel's largest: these are of processes gone.
GONE = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
GONE_WORKER = GONE + 1


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)

    warning = error = info


def _arbiter() -> Any:
    cfg = type(
        "Cfg", (), {"workers": 1, "reuse_port": False, "max_requests": 0, "preload_app": False}
    )()
    return type("Arbiter", (), {"cfg": cfg, "log": Log()})()


def _socket_file(path: Path, *, listening: bool) -> socket.socket:
    """A Unix socket bound to ``path``: listening as a worker's, or bound only, as the
    file a worker killed left (once the socket is closed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind(str(path))
    if listening:
        sock.listen(4)
        sock.setblocking(False)
    return sock


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "d"
    path.mkdir(mode=0o700)
    return path


def _no_connection(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def test_a_master_s_start_removes_what_processes_gone_left_and_keeps_what_is_in_use(
    directory: Path,
) -> None:
    live_master = os.getppid()  # pytest's parent: lives throughout
    own = os.getpid()  # the master whose start this is
    _socket_file(directory / f"{GONE}-0.sock", listening=False).close()
    (directory / f"{GONE}-1.ready").write_text(f"{GONE_WORKER}\n")
    (directory / f"{GONE}.moved").write_text(f"{GONE_WORKER} {GONE}\n")
    (directory / f"{own}-0.ready").write_text(f"{own}\n")  # an earlier process's, our pid
    stale = {f"{GONE}-0.sock", f"{GONE}-1.ready", f"{GONE}.moved", f"{own}-0.ready"}

    # A worker its master's kill -9 left listening: a successor may still take over.
    orphan = _socket_file(directory / f"{GONE}-2.sock", listening=True)
    # A worker whose master was killed, and that took its state over and lives.
    (directory / f"{GONE}-3.ready").write_text(f"{own}\n")
    # A mark being written: it names no worker yet.
    (directory / f"{GONE}-4.ready").write_text("")
    # A live master's: a worker between bind() and listen(), its marks.
    binding = _socket_file(directory / f"{live_master}-0.sock", listening=False)
    (directory / f"{live_master}-0.ready").write_text(f"{GONE_WORKER}\n")
    (directory / f"{live_master}.moved").write_text(f"{GONE_WORKER} {GONE}\n")
    (directory / "notes.txt").write_text("not the hooks'")
    kept = {path.name for path in directory.iterdir()} - stale

    arbiter = _arbiter()
    try:
        server_hooks("app_v1:service", directory=directory)["when_ready"](arbiter)
        assert {path.name for path in directory.iterdir()} == kept
        assert _no_connection(orphan)  # asked nothing: it would take it for a successor
    finally:
        orphan.close()
        binding.close()
    removed = [line for line in arbiter.log.lines if "removed" in line]
    assert removed == [f"removed 4 files left by processes gone from {directory}"]


def test_a_socket_no_listed_socket_is_bound_to_is_removed_only_if_refused(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``/proc/net/unix`` does not list it (unreadable, or a listener of another
    network namespace), a connection decides: refused, nothing listens."""
    monkeypatch.setattr(_gunicorn_directory, "_bound_names", set)
    _socket_file(directory / f"{GONE}-0.sock", listening=False).close()
    listener = _socket_file(directory / f"{GONE}-1.sock", listening=True)
    try:
        assert HandoffDirectory(directory).sweep() == [f"{GONE}-0.sock"]
        assert (directory / f"{GONE}-1.sock").exists()
        assert not _no_connection(listener)  # what a listener elsewhere sees
    finally:
        listener.close()
