"""Waiting on child processes in tests: a free port for one to serve on, a bounded
wait for something it does, the pid it wrote to a file, and a serving child killed
with what it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
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


def _serves(folder: Path, child: subprocess.Popen[bytes]) -> bool:
    return pid_in(folder / "pid") == child.pid


@contextmanager
def serving_child(
    argv: Sequence[str],
    folder: Path,
    *,
    log: str,
    deadline: float,
    pid_files: Sequence[str] = ("pid",),
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python argv...``, its output in ``folder/log``, once it wrote its own pid to
    ``folder/pid`` (it serves). At the end, it and every process whose pid is in one of
    ``pid_files`` in ``folder`` (its successors) are killed. ``pass_fds`` and ``env``
    are ``subprocess.Popen``'s."""
    with (folder / log).open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
            pass_fds=pass_fds, env=env,
        )
    try:
        wait_until("the first process to serve", partial(_serves, folder, child), deadline)
        yield child
    finally:
        for pid in {child.pid, *(pid_in(folder / name) for name in pid_files)} - {0}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.wait()
