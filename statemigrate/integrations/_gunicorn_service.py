"""Which :class:`~statemigrate.Service` the gunicorn hooks serve.

``server_hooks(service)`` takes ``"module:attribute"``, a service or a function
returning one. It is resolved in each worker once its application is loaded; with
``preload_app``, once in the master as it becomes ready, and every worker the master
forks gets that service. gunicorn serves on the application it preloaded until the
next ``kill -USR2``, whatever ``HUP`` reads into the configuration since, so the
master keeps the service of that application too, and a configuration that names
another after ``HUP`` is refused with an error in the log.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemigrate._errors import ConfigurationError
from statemigrate._runtime._service import Service

__all__ = ["ServiceSpec", "give_preloaded", "preload", "reloaded", "service_of"]

_PRELOADED = "statemigrate_preloaded"  # on the arbiter: lives as long as the master
_SERVICE = "statemigrate_service"  # on a worker, set in the master before the fork

ServiceSpec = str | Service | Callable[[], Service]
"""``"module:attribute"`` naming a :class:`~statemigrate.Service` or a function that
returns one, or the service (or function) itself."""


def _resolve(spec: ServiceSpec) -> Service:
    target: object = spec
    if isinstance(spec, str):
        module_name, _, attribute = spec.partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError("service", f"cannot load {spec!r}: {exc}") from exc
    if not isinstance(target, Service) and callable(target):
        target = target()
    if not isinstance(target, Service):
        raise ConfigurationError(
            "service", f"{spec!r} is not a statemigrate.Service (got {type(target).__name__})"
        )
    return target


def _spec_key(spec: ServiceSpec) -> object:
    """What tells two specs apart across a configuration read again: a name as
    written, a service itself, a function by its name (it is made anew)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Service):
        return ("service", id(spec))
    return ("function", getattr(spec, "__module__", None), getattr(spec, "__qualname__", None))


def _named(spec: ServiceSpec) -> str:
    """A spec as a log line names it."""
    if isinstance(spec, str):
        return repr(spec)
    if isinstance(spec, Service):
        return f"the Service {spec.name!r} given"
    return f"{getattr(spec, '__module__', '?')}.{getattr(spec, '__qualname__', '?')}()"


@dataclass(frozen=True, slots=True)
class _Preloaded:
    """The service of the application the master loaded (``preload_app``), resolved
    once: every worker the master forks serves that application until the next
    ``kill -USR2``, whatever ``HUP`` reads into the configuration since."""

    key: object
    named: str
    application: str | None
    service: Service


def preload(server: Any, spec: ServiceSpec) -> None:
    """``when_ready``: with ``preload_app``, resolve in the master (``server``) the
    service of the application it has loaded, once.

    Raises:
        ConfigurationError: ``spec`` names nothing that loads, or no service.
    """
    if not server.cfg.preload_app or getattr(server, _PRELOADED, None) is not None:
        return
    application = getattr(server.app, "app_uri", None)
    preloaded = _Preloaded(
        key=_spec_key(spec),
        named=_named(spec),
        application=application if isinstance(application, str) else None,
        service=_resolve(spec),
    )
    setattr(server, _PRELOADED, preloaded)


def give_preloaded(server: Any, worker: Any) -> None:
    """``pre_fork``: the worker gets the service the master preloaded, if it did."""
    preloaded: _Preloaded | None = getattr(server, _PRELOADED, None)
    if preloaded is not None:
        setattr(worker, _SERVICE, preloaded.service)


def reloaded(server: Any, spec: ServiceSpec) -> None:
    """``on_reload``: ``spec`` is the service of the configuration read again. Kept
    if gunicorn has just loaded the application (``preload_app`` turned on); an
    error logged if it names another service than the one preloaded, which stays.

    Raises:
        ConfigurationError: as for :func:`preload`.
    """
    preloaded: _Preloaded | None = getattr(server, _PRELOADED, None)
    if preloaded is None:
        preload(server, spec)  # turned on by this reload: the application is loaded
    elif _spec_key(spec) != preloaded.key:
        # gunicorn keeps the application it preloaded (its loaded callable) and
        # forks every new worker from it: the configuration's new service would
        # belong to code nobody serves, its restored state unseen and checkpointed.
        loaded = f" ({preloaded.application!r})" if preloaded.application else ""
        server.log.error(
            "HUP: the configuration now names the service %s, but with preload_app"
            " gunicorn serves on the application loaded at start%s, so the hooks"
            " keep its service %s; changing releases needs kill -USR2, see"
            " docs/gunicorn.md",
            _named(spec),
            loaded,
            preloaded.named,
        )


def service_of(worker: Any, spec: ServiceSpec) -> Service:
    """``post_worker_init``: the service the worker serves, the master's preloaded
    one or ``spec`` resolved now that the application is loaded.

    Raises:
        ConfigurationError: as for :func:`preload`.
    """
    preloaded: Service | None = getattr(worker, _SERVICE, None)
    return preloaded if preloaded is not None else _resolve(spec)
