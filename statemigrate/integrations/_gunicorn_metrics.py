"""Metrics across gunicorn's workers, with prometheus_client's multiprocess mode.

Each worker holds its own state, so its metrics are its own: with prometheus_client's
default registry a scrape is answered by whichever worker accepts it. In multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``) each process writes its values to files that one
collector reads, which needs two things of the server, done here:

* a worker forked after a value was set once (``statemigrate_build_info``, set as
  metrics are enabled in a preloading master) sets it again in its own files, where
  it reads 0 otherwise (:func:`worker_started`);
* the master removes the gauges of a worker that exited
  (``multiprocess.mark_process_dead``, what prometheus_client asks of gunicorn's
  ``child_exit``), or a scrape lists them for ever (:func:`worker_exited`);
* a master removes its own on its way out (:func:`master_exiting`, in ``on_exit``):
  after a ``kill -USR2`` the retired old master is no child of the new one, whose
  ``child_exit`` never hears of it, so its ``statemigrate_build_info`` stayed.

They do nothing outside multiprocess mode.
"""

from __future__ import annotations

import os
from typing import Any

from statemigrate._observe._backends import prometheus_multiprocess, restate_after_fork

__all__ = ["master_exiting", "worker_exited", "worker_started"]


def worker_started() -> None:
    """In a worker once it is forked: set the gauges set before the fork again."""
    restate_after_fork()


def worker_exited(pid: int, log: Any) -> None:
    """In the master, once worker ``pid`` has exited: remove its gauges from the
    multiprocess directory, if prometheus_client uses one."""
    _remove_gauges(pid, f"worker {pid}", log)


def master_exiting(log: Any) -> None:
    """In a master as it exits (gunicorn's ``on_exit``): remove its own gauges from
    the multiprocess directory, if prometheus_client uses one."""
    _remove_gauges(os.getpid(), "this master", log)


def _remove_gauges(pid: int, whose: str, log: Any) -> None:
    """``multiprocess.mark_process_dead(pid)``, in multiprocess mode."""
    if not prometheus_multiprocess():
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return  # the variable is set for another library's sake
    try:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    except OSError as exc:
        log.warning("could not remove the metrics of %s: %s", whose, exc)
