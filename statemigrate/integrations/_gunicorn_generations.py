"""Whether a gunicorn worker's master, and the next generation, still live.

A new worker confirms a take-over only while its master lives and has not told it to
stop (:func:`master_alive`). A worker that the old master forks for a slot whose state
moved to the next generation must not serve a stale copy: it waits
(:func:`next_generation_gone`) until its master stops it, or until the next
generation has died before serving on its own, and then serves the slot's latest
checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from statemigrate.integrations._gunicorn_directory import HandoffDirectory
from statemigrate.integrations._successor import gone

__all__ = ["master_alive", "next_generation_gone", "parent_of"]


def parent_of(pid: int) -> int | None:
    """The parent of ``pid``, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: count from its end.
    return int(stat.rpartition(")")[2].split()[1])


def master_alive(worker: Any) -> bool:
    """Whether this worker's master is alive and has not told it to stop: a worker
    whose master is gone (``Parent changed``) or stopping will not serve."""
    return bool(getattr(worker, "alive", True)) and os.getppid() == worker.ppid


def next_generation_gone(
    mark: Path, worker: Any, slot: int, directory: HandoffDirectory
) -> bool:
    """A worker forked by a master whose state has moved to the next generation
    (``mark`` names the successor and its master): wait until either the master stops
    it (False: it must not serve), or the successor that holds the state and its
    master have both exited (True: the new generation died before it served on its
    own, and this worker serves the slot's latest checkpoint, its successor's final
    one)."""
    try:
        pids = [int(p) for p in mark.read_text().split()]
    except (OSError, ValueError):
        pids = []
    pids = [p for p in pids if p > 0]
    # Routine after every deploy (the old master forks a worker for the slot its moved
    # worker left, until it is stopped): INFO, unless the mark names nobody.
    worker.log.log(
        logging.INFO if pids else logging.WARNING,
        "worker %s (slot %s): this generation was upgraded; not serving while"
        " the next one (pids %s) lives",
        worker.pid,
        slot,
        ", ".join(map(str, pids)) or "unknown",
    )
    # It waits here, not in gunicorn's loop: there, a listener it refuses to accept on
    # is readable as soon as a connection is queued, a busy loop.
    while master_alive(worker):
        if pids and all(gone(pid) for pid in [*pids, *_latest(pids, slot, directory)]):
            with contextlib.suppress(FileNotFoundError):
                mark.unlink()
            worker.log.warning(
                "worker %s (slot %s): the next generation (pids %s) is gone before"
                " it served on its own: serving again",
                worker.pid,
                slot,
                ", ".join(map(str, pids)),
            )
            return True
        worker.notify()  # the master would take a silent worker for hung
        time.sleep(0.2)
    return False


def _latest(pids: list[int], slot: int, directory: HandoffDirectory) -> list[int]:
    """The pid of the next generation's latest worker of ``slot``, if it said so (a
    worker its master forked again after the first)."""
    if len(pids) < 2:
        return []
    try:
        return [int(directory.ready(pids[1], slot).read_text())]
    except (OSError, ValueError):
        return []
