"""Hot restart for an ASGI application served by uvicorn.

One call replaces ``uvicorn.run``::

    from statemigrate.integrations.uvicorn import run
    run(app, service, host="127.0.0.1", port=8000)

In a process started by a handoff it serves on the inherited listener
(``uvicorn.Config(fd=...)``) and restores ``service`` in the lifespan start-up,
before uvicorn accepts; otherwise it binds ``host:port`` itself. ``SIGUSR2`` hands
over to a successor with the same command line. The switch itself is
:class:`~statemigrate.integrations.asgi.HotRestart`'s.

From uvicorn's own command line, with a listener passed as a descriptor (systemd's
socket activation, for one), wrap the application with :func:`hot_restart` and run
``uvicorn --fd 3 myservice:app``: the successor runs the same command and gets the
listener under the same number.

uvicorn has no call that stops accepting and leaves the connections alone (its
shutdown closes the idle keep-alive ones at once), so :class:`UvicornHooks` takes
uvicorn's listening sockets off the event loop and waits for the connections to end
by themselves before setting ``should_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from statemigrate._errors import ConfigurationError
from statemigrate._runtime._service import Service
from statemigrate.handoff import HandoffReport, Inheritance, receive_handoff
from statemigrate.integrations._listen import bind_listener
from statemigrate.integrations._runserving import run_serving
from statemigrate.integrations._withdraw import Withdrawal
from statemigrate.integrations.asgi import ASGIApp, HotRestart, ServerHooks

if TYPE_CHECKING:
    import uvicorn

__all__ = ["UvicornHooks", "hot_restart", "run", "serve"]

#: How often the drain looks at uvicorn's connections (its own main loop ticks at 0.1 s).
POLL = 0.05


class UvicornHooks:
    """:class:`~statemigrate.integrations.asgi.ServerHooks` for a ``uvicorn.Server``."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        """Put ``route`` in front of uvicorn's own SIGINT and SIGTERM handler.

        ``uvicorn.Server.serve`` installs its ``handle_exit`` with ``signal.signal``
        for as long as it serves (the lifespan start-up runs inside), and puts the
        previous handlers back at the end: replacing it here lasts as long, too.
        """
        original = self.server.handle_exit

        def handle_exit(signum: int, frame: FrameType | None) -> None:
            route(lambda: original(signum, frame))

        for stop in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(stop) == original:
                signal.signal(stop, handle_exit)

    async def stop_accepting(self) -> None:
        """Take uvicorn's listening sockets off the event loop, then close them.

        Not ``asyncio.Server.close`` at once: a connection asyncio has accepted but not
        yet given a transport (that happens a loop iteration later) would then be
        dropped unanswered, and its client reset. asyncio accepts from a reader
        callback on each listening socket; without it the kernel's accept queue is
        left to the successor, and once the connections accepted last have their
        transports, the servers are closed: their sockets are duplicates of the
        listener the handoff passed on, and would keep the port bound if the
        successor died. A loop that does not accept through reader callbacks (uvloop)
        gets ``close`` at once.
        """
        loop = asyncio.get_running_loop()
        servers = list(getattr(self.server, "servers", []))
        for listening in servers:
            sockets = listening.sockets or ()
            if not all([loop.remove_reader(sock.fileno()) for sock in sockets]):
                listening.close()
        await asyncio.sleep(0)  # the connections accepted last get their transport
        for listening in servers:
            listening.close()

    async def drain(self, active: Callable[[], int]) -> None:
        """Wait until uvicorn holds no connection, at most its keep-alive timeout plus
        the requests then running.

        After the move each connection carries at most one more request (answered with
        ``Connection: close``), and uvicorn closes one left idle after
        ``timeout_keep_alive`` itself, as always.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.server.config.timeout_keep_alive + 2 * POLL
        state = self.server.server_state
        await asyncio.sleep(POLL)  # connections accepted last get their protocol
        while state.connections and (loop.time() < deadline or active()):
            await asyncio.sleep(POLL)

    def shut_down(self) -> None:
        """Let uvicorn's main loop end: it then shuts down and runs the lifespan's."""
        self.server.should_exit = True


def _running_server() -> uvicorn.Server:
    """The uvicorn server this lifespan start-up runs in, started by uvicorn's own CLI.

    ``uvicorn.Server.serve`` installs its bound ``handle_exit`` as the SIGTERM handler
    for as long as it runs (to restore the previous handler afterwards), and runs the
    lifespan start-up inside it: the handler's object is the server.
    """
    import uvicorn

    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    if not isinstance(server, uvicorn.Server):
        raise ConfigurationError(
            "server",
            "no uvicorn server is running in this process's main thread; start it with"
            " `uvicorn --fd N` or statemigrate.integrations.uvicorn.run",
        )
    return server


def hot_restart(app: ASGIApp, service: Service, **options: Any) -> HotRestart:
    """``app`` wrapped for ``uvicorn --fd N module:app`` (options of
    :class:`~statemigrate.integrations.asgi.HotRestart`).

    At lifespan start-up it finds the running uvicorn server and the descriptor its
    ``--fd`` names: that descriptor is the listener handed over, and in a successor
    the inherited one arrives under the same number.
    """
    hot: HotRestart

    def locate() -> tuple[ServerHooks, socket.socket, Inheritance | None]:
        server = _running_server()
        fd = server.config.fd
        if fd is None:
            raise ConfigurationError("fd", "uvicorn must serve on a descriptor: pass --fd N")
        inheritance = receive_handoff(
            expect={hot.name}, timeouts=hot.timeouts, serves=hot.withdrawal.serves
        )
        if inheritance is None:
            listener = socket.socket(fileno=fd)
        else:
            listener = inheritance.listeners[hot.name]
            if listener.fileno() != fd:
                inheritance.failed(f"the listener arrived as fd {listener.fileno()}, not {fd}")
                inheritance.close()
                raise ConfigurationError(
                    "fd", f"the inherited listener is fd {listener.fileno()}, not --fd {fd}"
                )
        return UvicornHooks(server), listener, inheritance

    hot = HotRestart(app, service, locate=locate, **options)
    return hot


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
    """Serve ``app`` with uvicorn until it was handed over, or until SIGINT/SIGTERM.

    Call it from the main thread, with every component of ``service`` registered.

    Args:
        app: the ASGI application.
        service: the state that moves with each handoff.
        host: where to bind when nothing is inherited: an address or name of
            either family; ``None`` or ``""`` for every interface (IPv6 and IPv4 where
            the system can).
        port: as ``host``; ``0`` picks a free port.
        backlog: the listen backlog when this process binds.
        on_serving: called with the listener once uvicorn accepts on it.
        config: more keyword arguments for ``uvicorn.Config`` (``timeout_keep_alive``,
            ``log_level``, ...); ``app``, ``fd`` and ``lifespan`` are set here.
        **options: options of :class:`~statemigrate.integrations.asgi.HotRestart`
            (``argv``, ``timeouts``, ``allow_lossy``, ...).

    Returns:
        The report of the handoff that ended serving, or ``None`` otherwise: after
        SIGINT or SIGTERM, and in a successor that one of them reached before it
        confirmed it serves (it withdrew from the handoff; the old process serves on).

    Raises:
        ConfigurationError: an argument is invalid.
        HandoffError: as a successor, the inherited descriptors were not usable.
        SystemExit: the lifespan start-up failed (uvicorn exits with status 3), as
            when the restore failed; the old process goes on serving.
    """
    import uvicorn

    settings = dict(config or {})
    for reserved in ("app", "fd", "lifespan", "host", "port", "uds"):
        if reserved in settings:
            raise ConfigurationError("config", f"{reserved!r} is set by serve()")
    hot = HotRestart(app, service, **options)
    inheritance = receive_handoff(
        expect={hot.name}, timeouts=hot.timeouts, serves=hot.withdrawal.serves
    )
    if inheritance is None:
        listener = bind_listener(host, port, backlog)
    else:
        listener = inheritance.listeners[hot.name]
    server = _server_class()(
        uvicorn.Config(hot, fd=listener.fileno(), lifespan="on", **settings)
    )
    hot.attach(UvicornHooks(server), listener, inheritance)
    if on_serving is not None:
        # uvicorn sets `started` once its servers accept; `startup` runs the lifespan's
        # start-up (the restore) first.
        startup = server.startup

        async def announce(sockets: list[socket.socket] | None = None) -> None:
            await startup(sockets=sockets)
            if server.started:
                on_serving(listener)

        server.startup = announce  # type: ignore[method-assign]
    # A withdrawal ends the start-up as a failed one (uvicorn has no other way to stop
    # before it accepts): its ERROR lines would tell of a failure that is none.
    quiet = _QuietOnceWithdrawn(hot.withdrawal)
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addFilter(quiet)
    try:
        await server.serve()
    except SystemExit:
        if not hot.withdrawal.withdrew:
            raise
        return None  # logged as a WARNING by the withdrawal
    finally:
        uvicorn_logger.removeFilter(quiet)
        if inheritance is not None:
            inheritance.close()
        listener.close()  # closed at lifespan shutdown already when it ran
    return hot.report


class _QuietOnceWithdrawn(logging.Filter):
    """Drops uvicorn's records once this successor withdrew: the start-up it then
    reports failed, and uvicorn says so at ERROR, failed only on purpose."""

    def __init__(self, withdrawal: Withdrawal) -> None:
        super().__init__()
        self.withdrawal = withdrawal

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.withdrawal.withdrew


def _server_class() -> type[uvicorn.Server]:
    """uvicorn's server, except that a signal that stops it is not raised again.

    Once it has shut down after ``SIGINT`` or ``SIGTERM``, uvicorn raises the signal
    again, with its handler back to the default, so that the process dies of it. The
    code after :func:`run` (a final checkpoint, say) would then never run; this
    server lets :func:`run` return instead, as ``hypercorn`` does.
    """
    import uvicorn

    class ReturningServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    # The signals uvicorn caught, kept to be raised on the way out.
                    captured = getattr(self, "_captured_signals", None)
                    if isinstance(captured, list):
                        captured.clear()

    return ReturningServer


def run(app: ASGIApp, service: Service, **options: Any) -> HandoffReport | None:
    """:func:`serve` in a new event loop, as ``uvicorn.run`` does; same options. It
    returns after ``SIGINT`` or ``SIGTERM`` too, once uvicorn has shut down (uvicorn's
    own ``run`` raises the signal again then). A successor that cannot take the state
    over (:func:`serve` raises :class:`~statemigrate.HandoffError`) logs why and exits
    with status 1."""
    return run_serving(serve(app, service, **options))
