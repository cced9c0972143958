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
  ``child_exit``), or a scrape lists them for ever (:func:`worker_exited`).

Both do nothing outside multiprocess mode.
"""

from __future__ import annotations

from typing import Any

from statemigrate._observe._backends import prometheus_multiprocess, restate_after_fork

__all__ = ["worker_exited", "worker_started"]


def worker_started() -> None:
    """In a worker once it is forked: set the gauges set before the fork again."""
    restate_after_fork()


def worker_exited(pid: int, log: Any) -> None:
    """In the master, once worker ``pid`` has exited: remove its gauges from the
    multiprocess directory, if prometheus_client uses one."""
    if not prometheus_multiprocess():
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return  # the variable is set for another library's sake
    try:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    except OSError as exc:
        log.warning("could not remove the metrics of worker %s: %s", pid, exc)
