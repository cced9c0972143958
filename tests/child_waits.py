"""Waiting on child processes in tests: a free port for one to serve on, a bounded
wait for something it does, and the pid it wrote to a file."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(what: str, check: Callable[[], object], deadline: float) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``deadline`` seconds
    (a guard against a hung child, not a figure)."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"gave up waiting: {what}"
        time.sleep(0.01)


def pid_in(path: Path) -> int:
    """The pid a child wrote to ``path``, or 0 while there is none yet."""
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0
