"""Hot restart for an ASGI application served by hypercorn (asyncio worker).

One call replaces ``hypercorn.asyncio.serve``::

    from statemigrate.integrations.hypercorn import run
    run(app, service, host="127.0.0.1", port=8000)

It serves on the inherited listener in a process started by a handoff, or on one it
binds, through hypercorn's ``fd://`` bind (given a duplicate of the descriptor:
hypercorn closes what it serves on); the restore and the switch are
:class:`~statemigrate.integrations.asgi.HotRestart`'s.

hypercorn keeps its listening servers and connections to itself, and its shutdown
closes idle keep-alive connections at once. So :class:`HypercornHooks` stops
accepting by taking the listening descriptor off the event loop
(``loop.remove_reader``: the asyncio server accepts from that reader callback) and
drains by waiting out hypercorn's ``keep_alive_timeout``: by then each connection
this process held has either carried its next request (answered with
``Connection: close``, which hypercorn honours by closing) or been closed by
hypercorn's own idle timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate._runtime._service import Service
from statemigrate.handoff import HandoffReport, receive_handoff
from statemigrate.integrations._listen import bind_listener
from statemigrate.integrations._runserving import run_serving
from statemigrate.integrations._startuptimeout import startup_timeout
from statemigrate.integrations.asgi import ASGIApp, HotRestart

__all__ = ["HypercornHooks", "run", "serve"]

POLL = 0.05


class HypercornHooks:
    """:class:`~statemigrate.integrations.asgi.ServerHooks` for hypercorn's asyncio
    worker serving on descriptor ``fd``."""

    def __init__(self, fd: int, keep_alive_timeout: float, shutdown: asyncio.Event) -> None:
        self.fd = fd
        self.keep_alive_timeout = keep_alive_timeout
        self.shutdown = shutdown

    async def stop_accepting(self) -> None:
        """Take hypercorn's listening descriptor off the loop, then let go of the
        listener it holds.

        The kernel's accept queue is the successor's. hypercorn's socket object owns
        the descriptor and closes it at its shutdown, so it cannot be closed here;
        instead the descriptor is pointed at a socket that listens nowhere
        (``dup2``), which hypercorn then closes. Its copy of the listener is gone at
        once, and would otherwise keep the port bound if the successor died.
        """
        loop = asyncio.get_running_loop()
        if not loop.remove_reader(self.fd):
            raise HandoffError("stop_accepting", f"hypercorn does not accept on fd {self.fd}")
        await asyncio.sleep(0)  # the connections accepted last get their transport
        family = socket.socket(fileno=os.dup(self.fd))
        try:
            placeholder = socket.socket(family.family, socket.SOCK_STREAM)
        finally:
            family.close()
        with placeholder:
            os.dup2(placeholder.fileno(), self.fd)

    async def drain(self, active: Callable[[], int]) -> None:
        """Wait out hypercorn's keep-alive timeout, then the requests still running."""
        await asyncio.sleep(self.keep_alive_timeout + 2 * POLL)
        while active():
            await asyncio.sleep(POLL)

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        """SIGINT and SIGTERM fire the shutdown trigger through ``route``."""
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop, route, self.shutdown.set)

    def shut_down(self) -> None:
        """Fire the shutdown trigger hypercorn waits on."""
        self.shutdown.set()


async def serve(
    app: ASGIApp,
    service: Service,
    *,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    backlog: int = 2048,
    on_serving: Callable[[socket.socket], object] | None = None,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> HandoffReport | None:
    """Serve ``app`` with hypercorn until it was handed over, or until SIGINT/SIGTERM.

    Call it from the main thread, with every component of ``service`` registered.

    Args:
        app: the ASGI application.
        service: the state that moves with each handoff.
        host: where to bind when nothing is inherited: an address or name of
            either family; ``None`` or ``""`` for every interface (IPv6 and IPv4 where
            the system can).
        port: as ``host``; ``0`` picks a free port.
        backlog: the listen backlog when this process binds.
        on_serving: called with the listener once the lifespan start-up (the restore)
            is done; hypercorn accepts right after.
        config: attributes of ``hypercorn.config.Config`` to set
            (``keep_alive_timeout``, ``graceful_timeout``, ...); ``bind`` is set here.
            ``startup_timeout``, which bounds the take-over too (it runs in the
            lifespan start-up), is by default hypercorn's 60 s plus the sum of
            ``timeouts``; one set here below that sum is kept, with a warning.
        **options: options of :class:`~statemigrate.integrations.asgi.HotRestart`.

    Returns:
        The report of the handoff that ended serving, or ``None`` otherwise: after
        SIGINT or SIGTERM, and in a successor that one of them reached before it
        confirmed it serves (it withdrew from the handoff; the old process serves on).

    Raises:
        ConfigurationError: an argument is invalid.
        HandoffError: as a successor, the inherited descriptors were not usable.
        hypercorn.utils.LifespanFailureError: the lifespan start-up failed, as when
            the restore failed; the old process goes on serving.
    """
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config
    from hypercorn.utils import LifespanFailureError

    settings = Config()
    for key, value in (config or {}).items():
        if key in ("bind", "insecure_bind", "quic_bind", "workers"):
            raise ConfigurationError("config", f"{key!r} is set by serve()")
        if not hasattr(settings, key):
            raise ConfigurationError("config", f"hypercorn has no setting {key!r}")
        setattr(settings, key, value)
    hot = HotRestart(app, service, **options)
    # The take-over runs inside the lifespan start-up, which hypercorn bounds.
    given = (config or {}).get("startup_timeout")
    settings.startup_timeout = startup_timeout(
        engine_default=float(Config.startup_timeout),
        given=None if given is None else float(given),
        timeouts=hot.timeouts,
        option="hypercorn's startup_timeout",
    )
    inheritance = receive_handoff(
        expect={hot.name}, timeouts=hot.timeouts, serves=hot.withdrawal.serves
    )
    if inheritance is None:
        listener = bind_listener(host, port, backlog)
    else:
        listener = inheritance.listeners[hot.name]
    copy = os.dup(listener.fileno())  # hypercorn's: it closes it at shutdown
    settings.bind = [f"fd://{copy}"]
    settings.backlog = backlog
    shutdown = asyncio.Event()
    hot.attach(
        HypercornHooks(copy, float(settings.keep_alive_timeout), shutdown), listener, inheritance
    )
    loop = asyncio.get_running_loop()
    announced: asyncio.Task[None] | None = None
    if on_serving is not None:
        callback = on_serving

        async def announce() -> None:
            await hot.started.wait()
            callback(listener)

        announced = loop.create_task(announce())
    stops = (signal.SIGINT, signal.SIGTERM)
    for stop in stops:
        loop.add_signal_handler(stop, shutdown.set)
    try:
        await hypercorn_serve(hot, settings, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
    except LifespanFailureError:
        # A withdrawal ends the start-up as a failed one: hypercorn has no other way
        # to stop before it accepts. Logged as a WARNING by the withdrawal.
        if not hot.withdrawal.withdrew:
            raise
        return None
    finally:
        for stop in stops:
            loop.remove_signal_handler(stop)
        if announced is not None:
            announced.cancel()
        if inheritance is not None:
            inheritance.close()
        listener.close()
        if not hot.started.is_set():
            os.close(copy)  # hypercorn wraps (and later closes) it only once started
    return hot.report


def run(app: ASGIApp, service: Service, **options: Any) -> HandoffReport | None:
    """:func:`serve` in a new event loop; same options. A successor that cannot take
    the state over (:func:`serve` raises :class:`~statemigrate.HandoffError`), and a
    start-up that fails (hypercorn's ``LifespanFailureError``: a restore refused in the
    lifespan, the application's own start-up) or runs past hypercorn's
    ``startup_timeout``, log why and exit with status 1."""
    from hypercorn.utils import LifespanFailureError, LifespanTimeoutError

    try:
        return run_serving(serve(app, service, **options))
    except LifespanFailureError as exc:
        logging.getLogger("statemigrate.handoff").error("%s; this process exits", exc)
        raise SystemExit(1) from None
    except LifespanTimeoutError:
        logging.getLogger("statemigrate.handoff").error(
            "hypercorn's startup_timeout ran out before the lifespan start-up (the"
            " application's own, then the take-over in a successor) ended; this process"
            " exits"
        )
        raise SystemExit(1) from None
