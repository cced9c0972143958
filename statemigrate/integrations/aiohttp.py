"""Hot restart for an ``aiohttp.web.Application``: one call serves it and hands it over.

:func:`serve` (or :func:`run_app`, which runs it with :func:`asyncio.run`) replaces
``web.run_app``::

    from statemigrate.integrations.aiohttp import run_app
    run_app(app, service, host="127.0.0.1", port=8080)

In a process started by a handoff it takes the inherited listener, restores
``service`` with :func:`~statemigrate.handoff.take_over_async` and only then starts
serving on it; otherwise it binds ``host:port`` itself. While it serves, ``SIGUSR2``
starts a successor with the same command line
(:func:`~statemigrate.handoff.hand_over_async`). During the snapshot, requests that
may change the state (any method but GET, HEAD, OPTIONS) are held, not refused;
reads go on. Once the successor has taken over, this process stops accepting,
answers the writes it still held with ``503`` and ``Retry-After: 0`` (their change
was not applied), lets the requests in flight finish (aiohttp's graceful shutdown,
``shutdown_timeout``) and :func:`serve` returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from statemigrate._errors import ConfigurationError
from statemigrate._runtime._service import Service
from statemigrate.handoff import (
    HandoffReport,
    HandoffTimeouts,
    Spawn,
    TakeOverReport,
    hand_over_async,
    install_signal_trigger_async,
    receive_handoff,
    take_over_async,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["HotRestart", "SAFE_METHODS", "run_app", "serve"]

logger = logging.getLogger("statemigrate.handoff")

#: Methods that never change the state: they are served during the pause.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


class HotRestart:
    """The state of one served application across a handoff: its middleware and its
    :class:`~statemigrate.handoff.AsyncServerControl`.

    :func:`serve` makes one and adds :meth:`middleware` to the application; use it
    directly only to build another runner around it.
    """

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writers = 0
        self.moved = False
        self.site: web.BaseSite | None = None
        self.done = asyncio.Event()

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Hold state-changing requests while the state is being handed over."""
        from aiohttp import web

        if request.method in SAFE_METHODS:
            return await handler(request)
        await self._writable.wait()
        if self.moved:  # the state went to the successor without this change
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "0"})
        self._writers += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._writers -= 1
            if self._writers == 0:
                self._idle.set()

    # -- AsyncServerControl ----------------------------------------------------------

    async def pause(self) -> None:
        """Hold new writes, and wait for the writes already running to end."""
        self._writable.clear()
        await self._idle.wait()

    async def resume(self) -> None:
        """Let the held writes go on (the handoff failed)."""
        self._writable.set()

    async def stop_accepting(self) -> None:
        """Stop the site's accepting; the listener stays open for the successor."""
        self.moved = True
        if self.site is not None:
            await self.site.stop()
        self._writable.set()  # the held writes are answered 503 now


def _successor_argv() -> list[str]:
    # orig_argv keeps interpreter options and "-m module" as they were given.
    return [sys.executable, *sys.orig_argv[1:]]


async def serve(
    app: web.Application,
    service: Service,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    name: str = "http",
    argv: Sequence[str] | None = None,
    signum: int = signal.SIGUSR2,
    timeouts: HandoffTimeouts | None = None,
    allow_lossy: bool = False,
    shutdown_timeout: float = 10.0,
    backlog: int = 1024,
    on_take_over: Callable[[TakeOverReport], object] | None = None,
    on_serving: Callable[[socket.socket], object] | None = None,
    on_hand_over: Callable[[HandoffReport], object] | None = None,
    readiness_path: str | None = None,
) -> HandoffReport | None:
    """Serve ``app`` until it was handed over to a successor, or until SIGINT/SIGTERM.

    Call it from the main thread, with every component of ``service`` registered and
    nothing served yet.

    Args:
        app: the application; :meth:`HotRestart.middleware` is added to its
            middlewares, so it must not be frozen (set up) yet.
        service: the state that moves with each handoff.
        host: where to bind when nothing is inherited.
        port: as ``host``; ``0`` picks a free port.
        name: the listener's name in the handoff.
        argv: the successor's command line; this process's own by default.
        signum: the signal that starts a handoff.
        timeouts: the waits of both sides of the handoff.
        allow_lossy: passed to both sides of the handoff.
        shutdown_timeout: seconds the requests in flight get to finish at the end.
        backlog: the listen backlog when this process binds.
        on_take_over: called with the successor's report, before serving.
        on_serving: called with the listener once the site accepts on it (its
            ``getsockname()`` tells the port ``0`` picked).
        on_hand_over: called with the report of each handoff, failed ones included
            (they are also logged as warnings; serving goes on).
        readiness_path: if given, a GET route there answers ``service.status``'s
            readiness: 200 once the state is restored (or the service started cold),
            503 before, with the status as JSON. A process that binds its own
            listener starts cold ("not started by a handoff") unless its service
            restored or started cold already.

    Returns:
        The report of the handoff that ended serving, or ``None`` after a signal.

    Raises:
        ConfigurationError: ``app`` is frozen already, or an argument is invalid.
        HandoffError, RestoreError: as a successor, taking over failed; nothing was
            served and the old process goes on.
    """
    from aiohttp import web

    if app.frozen:
        raise ConfigurationError("app", "already set up; pass the application before it runs")
    if not name:
        raise ConfigurationError("name", "must be a non-empty listener name")
    successor = Spawn(list(argv) if argv is not None else _successor_argv())
    handoff_timeouts = timeouts if timeouts is not None else HandoffTimeouts()
    hot = HotRestart()

    @web.middleware
    async def hold_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await hot.middleware(request, handler)

    app.middlewares.append(hold_writes)
    if readiness_path is not None:

        async def readiness(request: web.Request) -> web.Response:
            code, body = service.status.readiness()
            return web.json_response(body, status=code)

        app.router.add_get(readiness_path, readiness)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
    # The application's start-up runs before the snapshot is asked for: the old
    # process keeps serving meanwhile, and the pause stays short.
    await runner.setup()
    listener: socket.socket | None = None
    try:
        inheritance = receive_handoff(expect={name}, timeouts=handoff_timeouts)
        if inheritance is None:
            if service.status.state == "starting":
                service.start_cold("not started by a handoff")
            listener = socket.create_server((host, port), backlog=backlog)
        else:
            with inheritance:
                report = await take_over_async(service, inheritance, allow_lossy=allow_lossy)
            listener = inheritance.listeners[name]
            if on_take_over is not None:
                on_take_over(report)
        # The site gets its own descriptor: stopping it closes that copy, and the one
        # the handoff passes on stays open.
        hot.site = web.SockSite(runner, listener.dup())
        await hot.site.start()
        if on_serving is not None:
            on_serving(listener)
        outcome: list[HandoffReport] = []

        async def hand_over() -> None:
            assert listener is not None
            try:
                report = await hand_over_async(
                    service,
                    successor,
                    listeners={name: listener},
                    control=hot,
                    timeouts=handoff_timeouts,
                    allow_lossy=allow_lossy,
                )
            except Exception as exc:
                failed = getattr(exc, "report", None)
                if on_hand_over is not None and isinstance(failed, HandoffReport):
                    on_hand_over(failed)
                raise
            if on_hand_over is not None:
                on_hand_over(report)
            outcome.append(report)
            hot.done.set()

        loop = asyncio.get_running_loop()
        uninstall = install_signal_trigger_async(hand_over, signum=signum)
        stops = (signal.SIGINT, signal.SIGTERM)
        for stop in stops:
            loop.add_signal_handler(stop, hot.done.set)
        try:
            await hot.done.wait()
        finally:
            for stop in stops:
                loop.remove_signal_handler(stop)
            uninstall()
        return outcome[0] if outcome else None
    finally:
        await runner.cleanup()  # stops the site and drains the requests in flight
        if listener is not None:
            listener.close()


def run_app(app: web.Application, service: Service, **options: object) -> HandoffReport | None:
    """:func:`serve` in a new event loop, as ``web.run_app`` does; same options."""
    return asyncio.run(serve(app, service, **options))  # type: ignore[arg-type]
