"""gunicorn's configuration as the hooks need it, checked in the master as it becomes
ready (``when_ready``).

A configuration the hooks cannot use (a worker class that does not serve a WSGI
application, one checkpoint store for several workers, a trial with more than one, a
directory they cannot use, a service that cannot be loaded) stops the master the way
gunicorn stops on its own errors: its reason in one line of gunicorn's log, the pid
file removed, exit status 1. Raised from ``when_ready``, the error would escape
gunicorn's arbiter, which calls the hook before its main loop catches anything: a
traceback on stderr, and the pid file left behind.
A configuration that works but loses state is warned of.
"""

from __future__ import annotations

from typing import Any, NoReturn

from statemigrate._errors import ConfigurationError
from statemigrate.integrations._gunicorn_checkpoints import Checkpoints
from statemigrate.integrations._gunicorn_directory import HandoffDirectory
from statemigrate.integrations._trial import Trial

__all__ = [
    "CONFIGURATION_ERROR",
    "check_configuration",
    "check_worker_class",
    "refuse",
    "warn_of_losses",
]

#: The exit status of a master whose configuration the hooks refuse: gunicorn's for a
#: configuration it cannot use.
CONFIGURATION_ERROR = 1

#: gunicorn's worker classes that call the application as WSGI and run ``pre_request``
#: around it, as the hooks' gate needs; a worker class derived from one of them too.
#: Named, not imported: gunicorn's tornado and gevent workers import their engines.
_WSGI_WORKERS = frozenset(
    {
        "gunicorn.workers.sync.SyncWorker",
        "gunicorn.workers.gthread.ThreadWorker",
        "gunicorn.workers.base_async.AsyncWorker",
        "gunicorn.workers.gtornado.TornadoWorker",
    }
)


def check_configuration(
    server: Any,
    *,
    directory: HandoffDirectory,
    trial: Trial | None,
    checkpoints: Checkpoints | None,
) -> None:
    """Check what the hooks need of the configuration of ``server`` (the arbiter).

    Raises:
        ConfigurationError: the hooks cannot work with it; the message says what to
            change.
    """
    check_worker_class(server)
    workers = server.cfg.workers
    directory.check(workers)
    if trial is not None and workers != 1:
        raise ConfigurationError(
            "trial",
            f"a trial needs workers = 1 (the permanent state is one worker's), not"
            f" {workers}",
        )
    if checkpoints is not None and checkpoints.shared and workers != 1:
        raise ConfigurationError(
            "checkpoints",
            f"one store for workers = {workers}, where each worker needs a store of its"
            " own (each would replace the others' checkpoints): give a function"
            " slot -> store, or set workers = 1",
        )


def check_worker_class(server: Any) -> None:
    """Refuse a worker class that does not serve a WSGI application (gunicorn's
    ``asgi``, uvicorn's ``UvicornWorker``): the hooks wrap the application as WSGI, so
    under such a worker every request would fail, and no handoff could hold one.

    Raises:
        ConfigurationError: the worker class of ``server`` (the arbiter) is not derived
            from one of gunicorn's WSGI workers.
    """
    worker_class = getattr(server, "worker_class", None)
    if not isinstance(worker_class, type):
        return  # not gunicorn's arbiter (a stand-in)
    names = {f"{c.__module__}.{c.__qualname__}" for c in worker_class.__mro__}
    if names & _WSGI_WORKERS:
        return
    named = getattr(server.cfg, "worker_class_str", None) or (
        f"{worker_class.__module__}.{worker_class.__qualname__}"
    )
    raise ConfigurationError(
        "worker_class",
        f"{named} is not one of gunicorn's WSGI workers (sync, gthread, gevent,"
        " tornado), and the hooks hold and hand over WSGI requests only: run"
        " an ASGI application under uvicorn or hypercorn with hot_restart"
        " (docs/asgi.md), or a WSGI one with worker_class = \"gthread\"",
    )


def refuse(server: Any, exc: ConfigurationError) -> NoReturn:
    """Stop the master (``server``) on a configuration the hooks cannot use, as
    gunicorn halts: ``Reason: statemigrate: ...`` in its log, exit status 1."""
    server.halt(reason=f"statemigrate: {exc}", exit_status=CONFIGURATION_ERROR)
    raise SystemExit(CONFIGURATION_ERROR)  # not reached: halt() exits


def warn_of_losses(server: Any, checkpoints: Checkpoints | None) -> None:
    """Warn of the settings of ``server``'s configuration under which the hooks lose
    a worker's state."""
    if server.cfg.max_requests and checkpoints is None:
        server.log.warning(
            "max_requests=%s: a recycled worker's state is lost, its replacement"
            " starts from the master's copy; give checkpoints= to keep it (the"
            " recycled worker's final checkpoint is restored by the next)",
            server.cfg.max_requests,
        )
    if server.cfg.reuse_port:
        server.log.warning(
            "reuse_port gives each worker its own listening queue: connections"
            " queued on an old worker's are reset when it exits; turn it off"
        )
