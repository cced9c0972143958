"""Hot restart for an ``aiohttp.web.Application``: one call serves it and hands it over.

:func:`serve` (or :func:`run_app`, which runs it with :func:`asyncio.run`) replaces
``web.run_app``::

    from statemigrate.integrations.aiohttp import run_app
    run_app(app, service, host="127.0.0.1", port=8080)

In a process started by a handoff it takes the inherited listener, restores
``service`` with :func:`~statemigrate.handoff.take_over_async` and only then starts
serving on it; otherwise it binds ``host:port`` itself. While it serves, ``SIGUSR2``
starts a successor with the same command line
(:func:`~statemigrate.handoff.hand_over_async`).

The switch, as every adapter makes it (docs/servers.md):

* reads (``safe_methods``: GET, HEAD, OPTIONS by default) are served all along;
* from ``pause`` on, requests that may change the state are held, not refused; if
  the handoff fails they go on here;
* once the successor owns the state this process stops accepting and closes its
  copies of the listener (the successor holds its own; what waits in the accept
  queue is the successor's), and passes every request it still gets, held writes
  first, to the successor
  (:func:`~statemigrate.integrations._forward.forward_async`), relaying the answer
  with ``Connection: close`` so that the client's next request goes there directly;
* websockets (:mod:`statemigrate.integrations._aiohttpwebsockets`): from the pause on,
  a client's messages are held, not returned by ``receive``; if the handoff fails
  they are returned here. Once the successor serves, each websocket here is closed
  with code 1012 (``WSCloseCode.SERVICE_RESTART``) and its ``receive`` returns
  ``CLOSING``: the client reconnects, to the successor. One a client opens after
  the move, on a connection this process still holds, is closed with 1012 at once;
* it closes no idle keep-alive connection: each is closed after its next request,
  or at the drain deadline; then :func:`serve` returns;
* the records written in this process after the last piece was taken, which the
  successor never receives, are counted until the drain and the application's
  shutdown have ended, and told then, per component, as a WARNING
  (:class:`~statemigrate.integrations._keptlatewrites.KeptLateWrites`);
* if the successor dies after taking over, the state went with it: what is still
  passed on is answered ``503`` at once, the drain ends and the idle connections
  are closed, so that nothing stands in the way of restarting the service from its
  store (:mod:`statemigrate.integrations._successor`).

With ``trial=Trial(directory=...)`` each successor is put on trial, and a revert
(``statemigrate trial revert``) hands back to the permanent generation's program
through the same switch (:mod:`statemigrate.integrations._trial`, docs/trials.md).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy
from statemigrate._runtime._gate import started_by_handoff
from statemigrate._runtime._latewrites import LateWrites
from statemigrate._runtime._service import Service
from statemigrate.handoff import (
    HandoffReport,
    HandoffTimeouts,
    Inheritance,
    Spawn,
    TakeOverReport,
    hand_over_async,
    install_signal_trigger_async,
    receive_handoff,
)
from statemigrate.integrations._aiohttpwebsockets import WebSockets, is_websocket
from statemigrate.integrations._forward import (
    DEFAULT_TIMEOUT,
    Address,
    ForwardError,
    failure_text,
    forward_async,
    forwarding_address,
)
from statemigrate.integrations._gate import SAFE_METHODS, HeldStops, WriteGate, safe_methods_of
from statemigrate.integrations._keptlatewrites import KeptLateWrites
from statemigrate.integrations._listen import bind_listener, served_at
from statemigrate.integrations._runserving import run_serving
from statemigrate.integrations._successor import SuccessorWatch
from statemigrate.integrations._trial import Moved, Trial, own_argv, runner_for
from statemigrate.integrations._withdraw import Withdrawal, take_over_or_withdraw

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["HotRestart", "SAFE_METHODS", "Trial", "run_app", "serve"]

logger = logging.getLogger("statemigrate.handoff")

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]

# How often the drain looks at the connections left; the connections are the runner's,
# and aiohttp says nothing when one closes.
_DRAIN_POLL = 0.02


class HotRestart:
    """The state of one served application across a handoff: its middleware and its
    :class:`~statemigrate.handoff.AsyncServerControl`.

    :func:`serve` makes one, puts :meth:`middleware` first among the application's
    middlewares and :meth:`on_response_prepare` among its ``on_response_prepare``
    signals; use it directly only to build another runner around it.

    Args:
        forward_timeout: seconds to reach the successor and for each read of its answer.
        safe_methods: the methods that never change the state, served during the
            pause; every other request is held (see :func:`serve`).
        timeouts: the handoff's waits; the pause uses ``writes``.

    Raises:
        ConfigurationError: ``safe_methods`` is not a collection of method names.

    Attributes:
        address: where the successor accepts (from
            :func:`~statemigrate.integrations._forward.forwarding_address`); set once
            the listener is known.
        forwarded: requests passed on to the successor.
        forward_failures: requests the successor could not be reached for (``502``,
            or ``503`` once it died after taking over).
        site: the site serving the application, and ``accepting`` the socket it
            accepts on (a copy of the listener); both set by whoever starts the site.
        listener: this process's copy of the listener the handoff passes on, if the
            runner gives it: closed once the state has moved.
        successor: watches the successor once the state has moved to it, if the
            runner gives one (:meth:`SuccessorWatch.watch` with the handoff's report).
        late_writes: the marks on the state a handoff opened after its last piece
            (:meth:`keep_late_writes`), which the runner tells once its drain ended.
    """

    def __init__(
        self,
        *,
        forward_timeout: float = DEFAULT_TIMEOUT,
        safe_methods: Iterable[str] = SAFE_METHODS,
        timeouts: HandoffTimeouts | None = None,
    ) -> None:
        self.address: Address | None = None
        self.timeouts = timeouts if timeouts is not None else HandoffTimeouts()
        self.forward_timeout = forward_timeout
        self.safe_methods = safe_methods_of(safe_methods)
        self._gate = WriteGate()
        self._websockets = WebSockets(self._gate.passage)
        self.late_writes = KeptLateWrites()
        self.moved = False
        self.forwarded = 0
        self.forward_failures = 0
        self.site: web.BaseSite | None = None
        self.accepting: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.successor: SuccessorWatch | None = None
        self.done = asyncio.Event()

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Hold writes during the pause; after the move, pass every request on."""
        if self.moved:
            if is_websocket(request):
                refused = await self._websockets.refuse(request)
                if refused is not None:
                    return refused
            return await self.forward(request)
        if is_websocket(request):
            # Neither held nor a write running, which the pause would wait for as long
            # as the websocket stays open: its messages are held instead.
            return await self._websockets.serve(request, handler)
        if request.method in self.safe_methods:
            return self._closing_if_moved(await handler(request))
        await self._gate.passage()
        if self.moved:  # held while the state went to the successor
            return await self.forward(request)
        with self._gate.writing():
            response = await handler(request)
        return self._closing_if_moved(response)

    async def on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        """The application's ``on_response_prepare`` signal: finds the websockets, whose
        messages are held from the pause on."""
        self._websockets.track(request, response)

    def _closing_if_moved(self, response: web.StreamResponse) -> web.StreamResponse:
        # A request served here while the state moved: its connection must not carry
        # another one to this process.
        if self.moved and not response.prepared:
            response.force_close()
        return response

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Pass ``request`` to the successor and relay its answer, closing the connection.

        If the successor cannot be reached the client gets ``502``; once it died after
        taking over, ``503`` at once. Either way the request was not applied here, and
        the body says whether it reached the successor (which may then have applied it).
        """
        from aiohttp import web

        body = await request.read()
        watch = self.successor
        try:
            if self.address is None:
                raise ForwardError("no listener to reach the successor on", sent=False)
            answer = await forward_async(
                self.address,
                request.method,
                request.raw_path,
                request.headers.items(),
                body,
                client=request.remote,
                timeout=self.forward_timeout,
                abandoned=watch.died if watch is not None else None,
            )
        except HandoffError as exc:
            self.forward_failures += 1
            if watch is not None and await watch.died_by_now():
                # Logged once, as an error, by the watch.
                logger.debug("%s", exc)
                status, text = 503, failure_text(exc, successor_died=True)
            else:
                logger.warning("%s", exc)
                status, text = 502, failure_text(exc, successor_died=False)
            response = web.Response(status=status, body=text, content_type="text/plain")
        else:
            self.forwarded += 1
            response = web.Response(status=answer.status, reason=answer.reason, body=answer.body)
            for name, value in answer.headers:
                response.headers.add(name, value)
        response.force_close()
        return response

    # -- AsyncServerControl ----------------------------------------------------------

    async def pause(self) -> None:
        """Hold new writes, and wait for the writes already running to end (at most
        ``timeouts.writes``)."""
        await self._gate.close(self.timeouts.writes)

    async def resume(self) -> None:
        """Let the held writes go on (the handoff failed)."""
        self.late_writes.drop()  # closed by the failed handoff
        self._gate.open()

    def keep_late_writes(self, marks: LateWrites) -> None:
        """Keep the marks the handoff opened after its last piece: counted until the
        drain ends, as websockets and streaming responses left here write all along."""
        self.late_writes.keep(marks)

    async def stop_accepting(self) -> None:
        """Stop the site's accepting, close this process's copies of the listener, and
        pass the held writes on to the successor.

        It runs only once the successor confirmed it serves: no rollback needs the
        listener any more, and the successor holds its own copy. Keeping ours would
        keep the port bound if the successor died, refusing a restart of the service
        (``EADDRINUSE``) and leaving new connections queued where nobody accepts.
        """
        self.moved = True  # before any await: no request is served here from now on
        if self.accepting is not None:
            # Closing an asyncio server at once would drop, unanswered, the connections
            # it accepted in its last pass but has not given a transport yet (the
            # clients see a reset). So stop accepting first, and let those connections
            # get their transport (the tasks that do it run before this one resumes);
            # they are passed on like any other. Under loops that accept otherwise
            # (uvloop), there is no such reader to remove and no such window.
            asyncio.get_running_loop().remove_reader(self.accepting.fileno())
            await asyncio.sleep(0)
        if self.site is not None:
            await self.site.stop()  # closes ``accepting``
        if self.listener is not None:
            self.listener.close()
        # Before the gate opens: a websocket message held in the pause is not returned.
        self._websockets.restart()
        self._gate.open()  # the held writes go to the successor now

    async def drain(self, server: web.Server, deadline: float) -> tuple[int, int]:
        """Wait until every connection this process still has is closed, or ``deadline``
        seconds have passed.

        Idle keep-alive connections are left open meanwhile: a client may be sending on
        one at this very moment, and closing it would reset that request. Each closes
        after its next request (passed on, answered with ``Connection: close``) or when
        the client closes it. If the successor dies meanwhile the drain ends at once:
        nothing is left to pass requests on to (the runner's cleanup closes the idle
        connections).

        Returns:
            ``(finished, left)``: the connections closed during the drain and those
            still open at the deadline (the runner's cleanup closes them).
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        start = len(server.connections)
        while server.connections and loop.time() < end and not self.successor_died():
            await asyncio.sleep(_DRAIN_POLL)
        left = len(server.connections)
        return start - left, left

    def successor_died(self) -> bool:
        return self.successor is not None and self.successor.crashed


async def serve(
    app: web.Application,
    service: Service,
    *,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    name: str = "http",
    argv: Sequence[str] | None = None,
    signum: int = signal.SIGUSR2,
    timeouts: HandoffTimeouts | None = None,
    allow_lossy: AllowLossy = False,
    keepalive_timeout: float = 75.0,
    drain_timeout: float | None = None,
    shutdown_timeout: float = 10.0,
    forward_timeout: float = DEFAULT_TIMEOUT,
    backlog: int = 1024,
    on_take_over: Callable[[TakeOverReport], object] | None = None,
    on_serving: Callable[[socket.socket], object] | None = None,
    on_hand_over: Callable[[HandoffReport], object] | None = None,
    readiness_path: str | None = None,
    trial: Trial | None = None,
    safe_methods: Iterable[str] = SAFE_METHODS,
) -> HandoffReport | None:
    """Serve ``app`` until it was handed over to a successor, or until SIGINT/SIGTERM.

    Call it from the main thread, with every component of ``service`` registered and
    nothing served yet.

    Args:
        app: the application; :meth:`HotRestart.middleware` is put first among its
            middlewares, so it must not be frozen (set up) yet.
        service: the state that moves with each handoff.
        host: where to bind when nothing is inherited: an address or name of
            either family; ``None`` or ``""`` for every interface (IPv6 and IPv4 where
            the system can).
        port: as ``host``; ``0`` picks a free port.
        name: the listener's name in the handoff.
        argv: the successor's command line; this process's own by default.
        signum: the signal that starts a handoff.
        timeouts: the waits of both sides of the handoff.
        allow_lossy: passed to both sides of the handoff: True, or component names.
        keepalive_timeout: seconds an idle keep-alive connection stays open (as
            ``web.run_app``'s).
        drain_timeout: after a handoff, seconds the connections this process still
            has get to send their next request (passed on) or close; then the rest
            are closed. ``keepalive_timeout`` by default.
        shutdown_timeout: seconds the requests in flight get to finish at the end.
        forward_timeout: seconds to reach the successor, and for each read of its
            answer, when a request is passed on.
        backlog: the listen backlog of the listener, bound here or inherited.
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
        trial: put each successor on trial (docs/trials.md): a cold start restores
            through ``start_generation``, a handoff by ``signum`` begins a trial, and
            a revert hands over to the permanent generation's program through the
            same switch, with ``allow_lossy=True``.
        safe_methods: the methods that never change the state: they are served
            during the pause, beside the export, and every other request is held.
            An application whose reads change the state at all (an LRU's order, a
            hit counter), synchronously or not, must give ``()`` to hold every
            request during the pause: a read served after the snapshot (or
            pre-copy's last delta) was taken changes a state the successor never
            receives.

    Returns:
        The report of the handoff that ended serving, or ``None`` after a signal.

    Raises:
        ConfigurationError: ``app`` is frozen already, or an argument is invalid.
        HandoffError, RestoreError: as a successor, taking over failed; nothing was
            served and the old process goes on.
        TrialError: with ``trial``, a cold start while the generation on trial runs,
            or of another code than the permanent generation's after a crash.
    """
    from aiohttp import web

    if app.frozen:
        raise ConfigurationError("app", "already set up; pass the application before it runs")
    allow_lossy = check_allow_lossy(allow_lossy)
    if not name:
        raise ConfigurationError("name", "must be a non-empty listener name")
    for option, value in (
        ("keepalive_timeout", keepalive_timeout),
        ("drain_timeout", drain_timeout),
        ("shutdown_timeout", shutdown_timeout),
        ("forward_timeout", forward_timeout),
    ):
        if value is not None and not 0 < value < float("inf"):
            raise ConfigurationError(option, f"must be a positive number of seconds, not {value!r}")
    trials = runner_for(trial, service)
    if trials is not None:
        # Before anything else: a service that restored itself (start_from) must not
        # serve with a trial directory its upgrades could not record a trial in.
        trials.check()
    successor = Spawn(list(argv) if argv is not None else own_argv())
    handoff_timeouts = timeouts if timeouts is not None else HandoffTimeouts()
    hot = HotRestart(
        forward_timeout=forward_timeout, safe_methods=safe_methods, timeouts=handoff_timeouts
    )

    @web.middleware
    async def switch(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await hot.middleware(request, handler)

    # First, so that after the move a request is passed on before any other
    # middleware of the application acts on it here.
    app.middlewares.insert(0, switch)
    app.on_response_prepare.append(hot.on_response_prepare)
    if readiness_path is not None:

        async def readiness(request: web.Request) -> web.Response:
            code, body = service.status.readiness()
            return web.json_response(body, status=code)

        app.router.add_get(readiness_path, readiness)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive_timeout,
    )
    # A process that inherits no listener binds its own before the application's
    # start-up runs: a port in use (a second copy started by mistake) then ends it
    # before a start-up hook, a checkpointer in cleanup_ctx say, acts on the state or
    # commits to the store the running copy owns.
    own_listener = None if started_by_handoff() else bind_listener(host, port, backlog)
    # The application's start-up runs before the snapshot is asked for: the old
    # process keeps serving meanwhile, and the pause stays short.
    try:
        await runner.setup()
    except BaseException:
        if own_listener is not None:
            own_listener.close()
        raise
    listener: socket.socket | None = None
    outcome: list[HandoffReport] = []
    stopped: list[bool] = []  # a stop signal ended serving
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    # A stop signal from here until the site serves is kept and acted on once serving:
    # killed by the signal's default action just after the take-over, the process
    # would take the state with it. One received while taking the state over, before
    # SERVING, withdraws this process from the handoff instead (_withdraw.py).
    early_stops: list[int] = []
    for stop_signal in stop_signals:
        loop.add_signal_handler(stop_signal, early_stops.append, stop_signal)
    withdrawal = Withdrawal(stop_signals)
    try:
        inheritance = receive_handoff(
            expect={name}, timeouts=handoff_timeouts, serves=withdrawal.serves
        )
        if inheritance is not None:
            report = await _take_over(
                service, inheritance, withdrawal, early_stops, allow_lossy=allow_lossy
            )
            if report is None:
                return None
            listener = inheritance.listeners[name]
            if on_take_over is not None:
                on_take_over(report)
        else:
            if own_listener is None:  # a successor's descriptors taken already
                own_listener = bind_listener(host, port, backlog)
            listener = own_listener
            if service.status.state == "starting":
                if trials is not None:
                    trials.start()
                else:
                    service.start_cold("not started by a handoff")
        hot.address = forwarding_address(listener)
        hot.listener = listener
        hot.successor = SuccessorWatch()
        # The site gets its own descriptor: stopping it closes that copy, and the one
        # the handoff passes on stays open until the move (after a failed handoff, the
        # next one passes it on). Starting it calls listen() again on the socket every
        # release shares, so it must not fall back to aiohttp's backlog.
        hot.accepting = listener.dup()
        hot.site = web.SockSite(runner, hot.accepting, backlog=backlog)
        await hot.site.start()
        # web.run_app prints where it serves; a port 0 is known only from here.
        logger.info("serving on %s", served_at(listener))

        stops = HeldStops(
            trials.reverting if trials is not None else None, timeouts=handoff_timeouts
        )

        async def hand_over() -> None:
            async with stops.handing_over():
                if trials is not None:
                    trials.check_handoff()
                report = await _hand_over(successor, allow_lossy=allow_lossy)
                if trials is not None:
                    trials.begin(report)
                hot.done.set()

        async def revert(permanent: tuple[str, ...], moved: Moved) -> None:
            # The permanent code reads only older versions: the downgrade may be lossy.
            async with stops.handing_over():
                moved(await _hand_over(Spawn(list(permanent)), allow_lossy=True))
                hot.done.set()

        async def _hand_over(to: Spawn, *, allow_lossy: AllowLossy) -> HandoffReport:
            assert listener is not None
            try:
                report = await hand_over_async(
                    service,
                    to,
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
            assert hot.successor is not None
            hot.successor.watch(report.successor_pid)
            if on_hand_over is not None:
                on_hand_over(report)
            outcome.append(report)
            return report

        def stop() -> None:
            # A stop held during a handoff that succeeded skips the drain: it takes
            # effect within the handoff's waits its log line states, and
            # shutdown_timeout.
            stopped.append(True)
            hot.done.set()

        uninstall = install_signal_trigger_async(hand_over, signum=signum)
        for stop_signal in stop_signals:
            loop.add_signal_handler(stop_signal, stops.stop, stop)
        if early_stops:
            logger.info(
                "%s received after taking the state over, before serving: stopping now"
                " that it serves",
                signal.Signals(early_stops[0]).name,
            )
            stops.stop(hot.done.set)
        if trials is not None:
            trials.watch_on_loop(revert)
        try:
            if on_serving is not None:
                # Once the signals are handled: whoever it tells may send SIGUSR2 at once.
                on_serving(listener)
            await hot.done.wait()
        finally:
            uninstall()
        return outcome[0] if outcome else None
    finally:
        for stop_signal in stop_signals:
            loop.remove_signal_handler(stop_signal)
        if trials is not None:
            await trials.stop_async()
        if outcome and runner.server is not None and not stopped:
            # aiohttp's cleanup closes idle keep-alive connections at once, and a
            # request the client is sending on one at that instant would be reset.
            finished, left = await hot.drain(
                runner.server, drain_timeout if drain_timeout is not None else keepalive_timeout
            )
            # Left connections are closed by the cleanup below: at the deadline, or at
            # once when the successor died (then nothing is left to pass requests on to).
            ended_by = "when the successor died" if hot.successor_died() else "at the deadline"
            logger.info(
                "handoff: drained %d connection(s), %d left %s, %d request(s)"
                " passed on, %d could not be",
                finished,
                left,
                ended_by,
                hot.forwarded,
                hot.forward_failures,
            )
        try:
            await runner.cleanup()  # stops the site and ends the requests in flight
        finally:
            # Once the handlers left have ended: a stream or websocket writes until then.
            hot.late_writes.tell()
        if hot.successor is not None:
            hot.successor.close()
        if listener is not None:
            listener.close()
        elif own_listener is not None:
            own_listener.close()


async def _take_over(
    service: Service,
    inheritance: Inheritance,
    withdrawal: Withdrawal,
    early_stops: list[int],
    *,
    allow_lossy: AllowLossy,
) -> TakeOverReport | None:
    """Take the state over, or withdraw on a stop signal received before SERVING.

    Returns:
        The take-over's report, or ``None`` when this process withdrew: the old process
        serves on, and this one stops without serving.

    Raises:
        HandoffError, RestoreError: taking over failed for another reason.
    """
    loop = asyncio.get_running_loop()
    withdrawal.received.extend(early_stops)
    early_stops.clear()
    withdrawal.install(loop)
    try:
        return await take_over_or_withdraw(
            service, inheritance, withdrawal, allow_lossy=allow_lossy
        )
    finally:
        # Received from SERVING on: a stop of the service, acted on once it serves.
        early_stops.extend(withdrawal.received if withdrawal.confirmed else ())
        withdrawal.uninstall(loop, early_stops.append)


def run_app(app: web.Application, service: Service, **options: object) -> HandoffReport | None:
    """:func:`serve` in a new event loop, as ``web.run_app`` does; same options. A
    successor that cannot take the state over (:func:`serve` raises
    :class:`~statemigrate.HandoffError`) logs why and exits with status 1."""
    return run_serving(serve(app, service, **options))  # type: ignore[arg-type]
