"""Shared pieces of the benchmarks: reference workloads, memory probes, child runs.

Every figure a benchmark prints is a ratio to a baseline measured in the same run on
the same machine (pickle protocol 5, committed to /dev/shm through a temp file, fsync
and rename: what a careful user would otherwise write). Absolute seconds are shown for
context only; machines differ and are shared.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

# pydantic needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import TypedDict

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class W1Entry(TypedDict):
    """One W1 cache entry, as :func:`build_w1` makes them."""

    id: int
    name: str
    score: float
    tags: list[str]
    updated: int


class W1State(TypedDict):
    """The schema of a W1 component: its cache entries by key."""

    entries: dict[str, W1Entry]


def w1_component(registry: Any, name: str = "bench", version: int = 1) -> Any:
    """A component class holding the W1 entries it is given, registered in
    ``registry`` as ``name`` at ``version`` with the schema :class:`W1State`."""
    registry.add_schema(name, version, W1State)

    @registry.migratable(name, version=version)
    class Cache:
        def __init__(self, entries: dict[str, Any]) -> None:
            self.entries = entries

    return Cache


def build_w1(entries: int, *, seed: int = 1) -> dict[str, dict[str, Any]]:
    """W1: cache entries ``"user:N" -> {id, name, score, tags, updated}``."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return {
        f"user:{i}": {
            "id": i,
            "name": "".join(rnd.choices(letters, k=12)),
            "score": rnd.random() * 1000,
            "tags": [rnd.choice(("free", "pro", "team")), rnd.choice(("eu", "us", "ap"))],
            "updated": 1_700_000_000 + rnd.randrange(10_000_000),
        }
        for i in range(entries)
    }


def build_w2(blobs: int, *, size: int = 512 << 10) -> dict[str, bytes]:
    """W2: incompressible 512 KiB blobs."""
    return {f"blob:{i}": os.urandom(size) for i in range(blobs)}


def rss_bytes() -> int:
    """Current resident set size."""
    return _status_field("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident set size since start or the last :func:`reset_peak_rss`."""
    return _status_field("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux, needs write access to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_field(name: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{name} not in /proc/self/status")


def pickle_commit(obj: object, directory: str) -> int:
    """The baseline save: pickle.dumps, then temp file, write, fsync, rename, dir fsync."""
    data = pickle.dumps(obj, protocol=5)
    final = os.path.join(directory, "state.pickle")
    temp = final + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, final)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(data)


def pickle_load(directory: str) -> object:
    """The baseline restore: read the file and pickle.loads it."""
    with open(os.path.join(directory, "state.pickle"), "rb") as handle:
        return pickle.loads(handle.read())


def best_of(repeat: int, func: Callable[[], object]) -> tuple[float, object]:
    """The fastest of ``repeat`` runs of ``func`` and its last result."""
    best = float("inf")
    result: object = None
    for _ in range(repeat):
        result = None  # free the previous result now, not inside the next timed run
        started = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - started)
    return best, result


def run_child(script: str, *args: str) -> dict[str, Any]:
    """Run ``script --child ...`` in a fresh interpreter and return its JSON line.

    Each measurement gets its own process so that one's memory peak or heap layout
    cannot colour the next.
    """
    completed = subprocess.run(
        [sys.executable, script, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    last = completed.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(last)
    return result


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
