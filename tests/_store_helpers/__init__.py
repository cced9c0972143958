"""Helpers shared by the store tests: scratch directories, descriptor and temp-file counts."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from statemigrate.stores._tmpfs import TEMP_PATTERN

SOAK = os.environ.get("STATEMIGRATE_SOAK") == "1"
"""STATEMIGRATE_SOAK=1 runs the reliability loops at their nightly size."""


def scaled(ci: int, soak: int) -> int:
    """The loop count for this run: ``ci`` by default, ``soak`` under STATEMIGRATE_SOAK=1."""
    return soak if SOAK else ci


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private scratch directory on tmpfs (``/dev/shm``) when there is one."""
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="statemigrate-test-", dir=parent)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def open_fds() -> set[int]:
    """The descriptors open in this process (the listing's own descriptor included:
    it gets the lowest free number, so a leak changes the set either way)."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def temp_names(directory: str | os.PathLike[str]) -> list[str]:
    """Names in ``directory`` that look like a commit's temporary file."""
    return sorted(name for name in os.listdir(directory) if TEMP_PATTERN.match(name))


def run_bounded(fn: Callable[[], Any], *, timeout: float = 10.0) -> tuple[bool, Any]:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` seconds.

    Returns ``(finished, result_or_exception)``; an unfinished call stays blocked in its
    daemon thread, which is what a test of "never blocks" needs to detect.
    """
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed back to the test, which judges it
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), box[0] if box else None)
