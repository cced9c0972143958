"""Hot restart for any ASGI application: a wrapper that restores on lifespan start-up
and hands the state over on ``SIGUSR2``.

:class:`HotRestart` wraps the application. The server-specific part (stop
accepting, wait for the connections, stop the server) comes from the engine's module,
which also runs the server on the inherited listener:
:func:`statemigrate.integrations.uvicorn.run` and
:func:`statemigrate.integrations.hypercorn.run`.

What the wrapper does:

* **lifespan start-up**: the application's own start-up runs first (it warms up
  while the old process still serves), then the service is restored from the
  predecessor (:func:`~statemigrate.handoff.take_over_async`) when this process was
  started by a handoff, or, when nothing restored it before (``start_from``), it
  starts cold (``service.start_cold``), and only then does the server hear
  ``startup.complete`` and start accepting. A failed restore reports
  ``startup.failed``: the server exits without serving and the old process goes on.
  So does a successor that receives ``SIGINT`` or ``SIGTERM`` before it sends
  SERVING: it withdraws from the handoff (:mod:`statemigrate.integrations._withdraw`),
  and the engine's runner returns ``None``. One received later stops it once it
  serves.
* **the pause**: requests that may change the state (any method but
  ``safe_methods``: GET, HEAD, OPTIONS by default) are held, not refused, while the
  snapshot is taken; reads go on. If the handoff fails the held requests go on here.
* **the move**: once the successor has taken over, the server stops accepting and
  this process closes its copies of the listener (the successor accepts on its own,
  and the kernel's accept queue is left to it), each held request and every request
  that still arrives on a connection this process holds is passed on to the successor
  (:func:`~statemigrate.integrations._forward.forward_async`) and its answer
  relayed with ``Connection: close``, so the client's next request opens a
  connection to the successor. Requests in flight finish here.
* **websockets** (:mod:`statemigrate.integrations._asgiwebsockets`): from the pause
  on, a client's messages are held, not delivered to the application; if the handoff
  fails they are delivered here. Once the successor serves, each websocket here is
  closed with code 1012 (service restart) and the application's pending ``receive``
  gets ``websocket.disconnect``: the client reconnects, to the successor.
* **the drain**: idle keep-alive connections are not cut (a client may be sending on
  one at that instant): the process waits until each has carried its next request
  or was closed by the server's own keep-alive timeout, and the responses in flight
  have ended, then stops the server. ``drain_timeout`` bounds it: the requests
  being passed on to the successor then finish (each within ``forward_timeout``), and
  what is left is cut: the responses still streaming (server-sent events, long
  downloads), the websockets, a request to pass on whose body has not all arrived
  (answered ``502``, not applied). A stop signal (``SIGINT``, ``SIGTERM``) during the
  drain ends it at once, the same way; one received during the handoff takes effect
  when the handoff ends.
* **late writes**: the records written in this process after the last piece was
  taken, which the successor never receives, are counted until the drain ends and
  told then, per component, as a WARNING
  (:func:`~statemigrate.handoff._latewarning.warn_late_writes`).
* **a successor that dies** after taking over took the state with it: what is
  still passed on is answered ``503`` at once, and the drain ends (the server's
  shutdown closes the idle connections), so that nothing stands in the way of
  restarting the service from its store
  (:mod:`statemigrate.integrations._successor`).
* **trials** (``trial=Trial(directory=...)``, docs/trials.md): a cold start restores
  through ``start_generation``; a handoff by the signal puts the successor on trial;
  a revert hands over to the permanent generation's program through the same
  switch, with ``allow_lossy=True``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy
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
)
from statemigrate.integrations._asgiwebsockets import WebSockets
from statemigrate.integrations._forward import (
    Address,
    ForwardError,
    failure_text,
    forward_async,
    forwarding_address,
)
from statemigrate.integrations._gate import SAFE_METHODS, HeldStops, WriteGate, safe_methods_of
from statemigrate.integrations._keptlatewrites import KeptLateWrites
from statemigrate.integrations._successor import SuccessorWatch
from statemigrate.integrations._trial import Moved, Trial, own_argv, runner_for
from statemigrate.integrations._withdraw import Withdrawal, take_over_or_withdraw

__all__ = [
    "SAFE_METHODS",
    "ASGIApp",
    "HotRestart",
    "Receive",
    "Scope",
    "Send",
    "ServerHooks",
    "Trial",
    "successor_argv",
]

logger = logging.getLogger("statemigrate.handoff")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerHooks(Protocol):
    """What :class:`HotRestart` needs from the server it runs in; each engine's module
    provides one."""

    async def stop_accepting(self) -> None:
        """Accept no more connections, keeping those accepted, and close the server's
        own copies of the listener (the wrapper closes its own): once the successor
        serves, nothing here may keep the port bound."""

    async def drain(self, active: Callable[[], int]) -> None:
        """Wait until the connections this process holds are done, within the server's
        keep-alive timeout; ``active()`` counts the requests running in the app."""

    def shut_down(self) -> None:
        """Ask the server to stop gracefully (it then runs the lifespan shutdown)."""

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        """Pass the server's reaction to SIGINT and SIGTERM through ``route``, which
        runs it at once or, during a handoff, once the handoff has ended."""


def successor_argv() -> list[str]:
    """This process's own command line, as the successor's: interpreter options,
    ``-m module`` and a console script's path are kept as they were given."""
    return own_argv()


def _nodelay(listener: socket.socket) -> None:
    # Linux passes TCP_NODELAY from a listener to the connections it accepts. A server
    # that wraps an inherited descriptor may not know it is TCP (uvicorn's fd= labels
    # it AF_UNIX, and asyncio then skips TCP_NODELAY): without it a response written
    # in two parts waits for the client's delayed ACK.
    if listener.family in (socket.AF_INET, socket.AF_INET6):
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


Locate = Callable[[], "tuple[ServerHooks, socket.socket, Inheritance | None]"]

#: The default of ``drain_timeout``: long enough for the downloads and requests in
#: flight at the move, short enough for a service manager's stop timeout.
DRAIN_TIMEOUT = 30.0

# The cancellation message of an application call cut at the drain's end.
_CUT = "statemigrate: cut at the end of the drain"

# What a call on a connection is doing (HotRestart._running), as the drain's end tells
# it: a request running in the application, unanswered yet; a response it has begun;
# a request to pass on whose body is arriving; one being passed on (never cut: the
# successor may apply it, and only its answer tells the client so); a websocket.
_REQUEST = "request(s) running in the application, unanswered"
_RESPONSE = "response(s) still streaming"
_RECEIVING = "request(s) to pass on whose body had not all arrived (answered 502, not applied)"
_FORWARDING = "request(s) being passed on"
_WEBSOCKET = "websocket(s)"

# The answer to a request to pass on that the drain's end cut while its body arrived.
_CUT_TEXT = (
    b"this process stopped before the request had arrived whole; it was not passed on"
    b" to the service's new process and was not applied\n"
)


class HotRestart:
    """An ASGI application wrapped for hot restarts (see the module's description).

    Args:
        app: the ASGI 3 application. Its lifespan, if it has one, runs inside ours;
            one that does not speak lifespan is fine.
        service: the state that moves with each handoff, every component registered.
        name: the listener's name in the handoff.
        argv: the successor's command line; this process's own by default.
        env: the successor's environment (the handoff adds its own variables): a
            mapping, or a function called at each handoff that returns one (to read
            an environment file the deployment updated, say). By default the
            successor inherits this process's ``os.environ`` as it is at the handoff.
        signum: the signal that starts a handoff.
        timeouts: the waits of both sides of the handoff.
        allow_lossy: passed to both sides of the handoff (a rollback through a lossy
            downgrade needs it on the newer side): True, or the components allowed.
        forward_timeout: seconds a request passed on to the successor may take.
        locate: finds the server, the listener and the inheritance at lifespan
            start-up, when the engine's runner did not :meth:`attach` them (a server
            started from its own command line).
        on_take_over: called with the restore's report, before the server accepts.
        on_hand_over: called with the report of each handoff, failed ones included.
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
        drain_timeout: after a handoff, seconds the connections this process still
            has get to end: an idle one to carry its next request (passed on) or be
            closed by the server's keep-alive timeout, a response in flight to finish.
            Then the requests being passed on to the successor finish (each within
            ``forward_timeout``), the responses still streaming (server-sent events,
            long downloads) are cut, the websockets left are closed, and the server
            shuts down. The old process ends at most this long after the move (plus
            ``forward_timeout`` when a request is being passed on then, and the
            application's lifespan shutdown).

    Raises:
        ConfigurationError: an argument is invalid.
    """

    def __init__(
        self,
        app: ASGIApp,
        service: Service,
        *,
        name: str = "http",
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        signum: int = signal.SIGUSR2,
        timeouts: HandoffTimeouts | None = None,
        allow_lossy: AllowLossy = False,
        forward_timeout: float = 30.0,
        locate: Locate | None = None,
        on_take_over: Callable[[TakeOverReport], object] | None = None,
        on_hand_over: Callable[[HandoffReport], object] | None = None,
        trial: Trial | None = None,
        safe_methods: Iterable[str] = SAFE_METHODS,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        if not callable(app):
            raise ConfigurationError("app", f"must be an ASGI application, not {app!r}")
        if not isinstance(service, Service):
            raise ConfigurationError("service", f"must be a statemigrate.Service, not {service!r}")
        if not name:
            raise ConfigurationError("name", "must be a non-empty listener name")
        self.app = app
        self.service = service
        self.name = name
        if env is not None and not callable(env) and not isinstance(env, Mapping):
            raise ConfigurationError(
                "env", f"must be a mapping or a function returning one, not {env!r}"
            )
        self.argv = list(argv) if argv is not None else None
        self.env = env
        self.signum = signum
        self.timeouts = timeouts if timeouts is not None else HandoffTimeouts()
        self.allow_lossy = check_allow_lossy(allow_lossy)
        self.forward_timeout = forward_timeout
        self.safe_methods = safe_methods_of(safe_methods)
        if (
            isinstance(drain_timeout, bool)
            or not isinstance(drain_timeout, int | float)
            or not 0 < drain_timeout < float("inf")
        ):
            raise ConfigurationError(
                "drain_timeout", f"must be a positive number of seconds, not {drain_timeout!r}"
            )
        self.drain_timeout = float(drain_timeout)
        self._locate = locate
        self._on_take_over = on_take_over
        self._on_hand_over = on_hand_over
        self._trials = runner_for(trial, service)
        self.server: ServerHooks | None = None
        self.listener: socket.socket | None = None
        self._inheritance: Inheritance | None = None
        #: The report of the handoff that moved the state away, once it did.
        self.report: HandoffReport | None = None
        #: Watches the successor once the state has moved to it.
        self.successor = SuccessorWatch()
        self._address: Address | None = None
        #: True once the successor owns the state: every request is passed on.
        self.moved = False
        #: Seconds the writes were held in the last handoff (pause to move or resume).
        self.held: float | None = None
        self._paused_at = 0.0
        self._gate = WriteGate()
        self._websockets = WebSockets(self._gate.passage)
        self._active = 0
        #: The application's calls on connections (HTTP and websocket) running now,
        #: with what each is doing: what the end of the drain waits for or cuts.
        self._running: dict[asyncio.Task[Any], str] = {}
        #: Set by a stop signal once the state has moved: the drain ends at once.
        self._stop_draining = asyncio.Event()
        #: The marks on the state opened just after the last piece was taken, kept
        #: until the drain ends (keep_late_writes).
        self._late = KeptLateWrites()
        self._uninstall: Callable[[], None] | None = None
        self._stops = HeldStops(
            self._trials.reverting if self._trials is not None else None, timeouts=self.timeouts
        )
        #: Set once the lifespan start-up (and the restore) reported complete.
        self.started = asyncio.Event()
        #: A successor's stop signals until SERVING; the engine's runner passes its
        #: ``serves`` to ``receive_handoff``.
        self.withdrawal = Withdrawal((signal.SIGINT, signal.SIGTERM))

    def attach(
        self, server: ServerHooks, listener: socket.socket, inheritance: Inheritance | None
    ) -> None:
        """Give the wrapper its server, the listener it serves on and, in a process
        started by a handoff, the inheritance to restore from; the wrapper closes the
        listener at lifespan shutdown. Called by the engine's runner before serving."""
        self.server = server
        self.listener = listener
        self._inheritance = inheritance

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind in ("http", "websocket"):
            task = asyncio.current_task()
            assert task is not None
            self._running[task] = _REQUEST if kind == "http" else _WEBSOCKET
            if kind == "http":
                self._active += 1
            try:
                if kind == "http":
                    await self._http(scope, receive, self._answering(task, send))
                else:
                    await self._websockets.serve(
                        lambda receive, send: self.app(scope, receive, send), receive, send
                    )
            except asyncio.CancelledError as exc:
                if exc.args != (_CUT,):
                    raise
                # Cut at the drain's end: returning, the server closes the connection.
                task.uncancel()
            finally:
                self._running.pop(task, None)
                if kind == "http":
                    self._active -= 1
        else:
            await self.app(scope, receive, send)

    def _answering(self, task: asyncio.Task[Any], send: Send) -> Send:
        """``send``, noting when the response begins (a response cut later was
        streaming)."""

        async def answer(message: Message) -> None:
            # A request passed on stays so while its answer is relayed: never cut.
            if message["type"] == "http.response.start" and self._running.get(task) == _REQUEST:
                self._running[task] = _RESPONSE
            await send(message)

        return answer

    def _doing(self, what: str) -> None:
        task = asyncio.current_task()
        if task in self._running:
            self._running[task] = what

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.moved and scope["method"] in self.safe_methods:
            await self.app(scope, receive, send)
            return
        if not self.moved:
            await self._gate.passage()  # held during the pause
        if self.moved:
            await self._forward(scope, receive, send)
            return
        with self._gate.writing():
            await self.app(scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on to the successor and relay its answer, then close."""
        self._doing(_RECEIVING)
        body = bytearray()
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left: nobody to answer
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError as exc:
            if exc.args == (_CUT,):
                await _answer(send, 502, _CUT_TEXT, [_PLAIN_TEXT])
            raise
        # From here the successor may apply it: the drain's end waits for its answer.
        self._doing(_FORWARDING)
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode("latin-1")
        target = raw_path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        client = scope.get("client")
        try:
            if self._address is None:
                raise ForwardError("no listener to reach the successor on", sent=False)
            answer = await forward_async(
                self._address,
                scope["method"],
                target,
                headers,
                bytes(body),
                client=client[0] if client else None,
                timeout=self.forward_timeout,
                abandoned=self.successor.died,
            )
            status, payload = answer.status, answer.body
            relayed = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        except HandoffError as exc:
            if await self.successor.died_by_now():
                logger.debug("%s", exc)  # logged once, as an error, by the watch
                status, payload = 503, failure_text(exc, successor_died=True)
            else:
                logger.warning("%s", exc)
                status, payload = 502, failure_text(exc, successor_died=False)
            relayed = [_PLAIN_TEXT]
        await _answer(send, status, payload, relayed)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = _InnerLifespan(self.app, scope)
        message = await receive()
        assert message["type"] == "lifespan.startup", message
        if self._inheritance is not None:
            # From here until SERVING, the application's start-up included, a stop
            # signal withdraws this successor: the old process still owns the state.
            self.withdrawal.install(asyncio.get_running_loop())
        try:
            failure = await inner.step("startup")
            if failure is None:
                failure = await self._startup()
                if failure is not None:
                    # The application started; it will not serve (this successor
                    # withdrew, or the restore failed): its own shutdown closes what
                    # its start-up opened, as aiohttp's cleanup does.
                    await self._shut_down_app(inner)
        finally:
            self.withdrawal.restore()  # done already once the state was taken over
        if failure is not None:
            await send({"type": "lifespan.startup.failed", "message": failure})
            return
        await send({"type": "lifespan.startup.complete"})
        self.started.set()
        if self._trials is not None:
            self._trials.watch_on_loop(self._revert)
        message = await receive()
        assert message["type"] == "lifespan.shutdown", message
        failure = await inner.step("shutdown")
        if self._trials is not None:
            await self._trials.stop_async()
        self._shutdown()
        if failure is not None:
            await send({"type": "lifespan.shutdown.failed", "message": failure})
        else:
            await send({"type": "lifespan.shutdown.complete"})

    # -- start-up and shutdown ---------------------------------------------------------

    @staticmethod
    async def _shut_down_app(inner: _InnerLifespan) -> None:
        """The application's lifespan shutdown after our part of the start-up failed;
        the start-up's failure is what the server hears, so a failed shutdown is
        logged only."""
        failure = await inner.step("shutdown")
        if failure is not None:
            logger.warning("the application's lifespan shutdown failed: %s", failure)

    async def _startup(self) -> str | None:
        """Restore (in a successor) and install the trigger; a failure's message, or
        the reason this successor withdrew."""
        try:
            if self.server is None:
                if self._locate is None:
                    raise ConfigurationError(
                        "server",
                        "HotRestart was not attached to a server; run it with"
                        " statemigrate.integrations.uvicorn.run or .hypercorn.run",
                    )
                # The server is found by its signal handler: not the withdrawal's yet.
                self.attach(*self._locate())
                if self._inheritance is not None:
                    self.withdrawal.install(asyncio.get_running_loop())
            assert self.listener is not None and self.server is not None
            _nodelay(self.listener)
            if self._trials is not None:
                # Whatever restored the service before: its upgrades must be able to
                # record a trial.
                self._trials.check()
            inheritance, self._inheritance = self._inheritance, None
            if inheritance is not None:
                report = await take_over_or_withdraw(
                    self.service, inheritance, self.withdrawal, allow_lossy=self.allow_lossy
                )
                if report is None:
                    return f"statemigrate: {self.withdrawal.reason}"
                # The server's own handlers again (route_stop_signals wraps them).
                self.withdrawal.restore()
                if self._on_take_over is not None:
                    self._on_take_over(report)
            elif self.service.status.state == "starting":
                # Nothing restored the service before (start_from) or in the
                # application's own start-up, and no handoff brings a state: a cold
                # start, as with the aiohttp adapter, or readiness would answer 503
                # and checkpoints would wait for good.
                if self._trials is not None:
                    self._trials.start()
                else:
                    self.service.start_cold("not started by a handoff")
            self._uninstall = install_signal_trigger_async(self.hand_over, signum=self.signum)
            self.server.route_stop_signals(self._stop)
            if self.withdrawal.received:
                # Received from SERVING on: a stop of the service, which this process
                # now is; the server stops once it serves.
                logger.info(
                    "%s received after taking the state over, before serving: stopping"
                    " now that it serves",
                    signal.Signals(self.withdrawal.received[0]).name,
                )
                self._stop(self.server.shut_down)
        except Exception as exc:
            logger.error("start-up failed: %s", exc)
            return f"statemigrate: {exc}"
        return None

    def _stop(self, action: Callable[[], None]) -> None:
        """A stop signal: its ``action`` (the server's own reaction) runs now, or once a
        handoff running has ended; after the move it ends the drain at once too."""

        def stop() -> None:
            if self.moved:
                self._stop_draining.set()
            action()

        self._stops.stop(stop)

    def _shutdown(self) -> None:
        if self._uninstall is not None:
            self._uninstall()
            self._uninstall = None
        self.successor.close()
        if self.listener is not None:
            self.listener.close()

    # -- the handoff -------------------------------------------------------------------

    async def hand_over(self) -> HandoffReport:
        """Hand the state and the listener over to a successor, then drain and stop.

        What ``SIGUSR2`` runs. A failed handoff raises
        :class:`~statemigrate.HandoffError` and serving goes on. A stop signal that
        arrives meanwhile takes effect when it has ended.
        """
        successor = Spawn(
            self.argv if self.argv is not None else successor_argv(), env=self._successor_env()
        )
        async with self._stops.handing_over():
            if self._trials is not None:
                self._trials.check_handoff()
            report = await self._hand_over(successor, allow_lossy=self.allow_lossy, trial=True)
        # Not inside the handoff: a stop signal takes effect (ends the drain) at once.
        await self._drain_and_stop()
        return report

    def _successor_env(self) -> dict[str, str] | None:
        """The successor's environment as ``env`` gives it now; ``None`` for ours.

        Raises:
            HandoffError: stage ``spawn``; the ``env`` function failed or returned
                something else than a mapping of strings.
        """
        if self.env is None:
            return None
        try:
            env = self.env() if callable(self.env) else self.env
            copied = dict(env)
        except Exception as exc:
            raise HandoffError("spawn", f"env failed: {type(exc).__name__}: {exc}") from exc
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in copied.items()):
            raise HandoffError("spawn", "env must map names to strings")
        return copied

    async def _revert(self, permanent: tuple[str, ...], moved: Moved) -> None:
        """A trial's revert: the same handoff, to the permanent generation's program.

        The permanent code reads only older versions, so the downgrade may be lossy.
        """
        async with self._stops.handing_over():
            await self._hand_over(Spawn(list(permanent)), allow_lossy=True, moved=moved)
        await self._drain_and_stop()

    async def _hand_over(
        self, successor: Spawn, *, allow_lossy: AllowLossy, trial: bool = False,
        moved: Moved | None = None,
    ) -> HandoffReport:
        assert self.listener is not None and self.server is not None
        try:
            report = await hand_over_async(
                self.service,
                successor,
                listeners={self.name: self.listener},
                control=self,
                timeouts=self.timeouts,
                allow_lossy=allow_lossy,
            )
        except HandoffError as exc:
            failed = getattr(exc, "report", None)
            if self._on_hand_over is not None and isinstance(failed, HandoffReport):
                self._on_hand_over(failed)
            raise
        self.successor.watch(report.successor_pid)
        self.report = report
        if trial and self._trials is not None:
            self._trials.begin(report)
        if moved is not None:
            moved(report)
        logger.info("handoff: writes held %.1f ms", 1e3 * (self.held or 0.0))
        if self._on_hand_over is not None:
            self._on_hand_over(report)
        return report

    async def _drain_and_stop(self) -> None:
        """Drain, cut what still runs, tell the late writes, and stop the server."""
        assert self.server is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            drained = await self._drain(self.server)
            if not await self._cut() and drained:
                logger.info("handoff: drain ended after %.1f s, nothing cut", loop.time() - began)
        finally:
            self._late.tell()
            self.server.shut_down()

    async def _drain(self, server: ServerHooks) -> bool:
        """The server's drain, for ``drain_timeout`` at most; cut short if the
        successor dies meanwhile (nothing is left to pass requests on to, and the
        server's shutdown closes the idle connections at once) or a stop signal
        arrives. Whether it ended by itself."""
        drain = asyncio.ensure_future(server.drain(lambda: self._active))
        died = asyncio.ensure_future(self.successor.wait())
        stopped = asyncio.ensure_future(self._stop_draining.wait())
        try:
            await asyncio.wait(
                (drain, died, stopped),
                timeout=self.drain_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiting in (drain, died, stopped):
                waiting.cancel()
        if drain.done() and not drain.cancelled():
            drain.result()  # what it raised
            return True
        if stopped.done() and not stopped.cancelled():
            logger.info("handoff: drain ended by a stop signal")
        elif not died.done():
            logger.info("handoff: drain ended at drain_timeout (%g s)", self.drain_timeout)
        return False

    async def _cut(self) -> int:
        """Let the requests being passed on get their answers (``forward_timeout``
        bounds each: cut, a client would not learn that the successor applied it),
        then cut the application's calls still running (streaming responses,
        websockets the application kept open, requests), and let them end; how many
        were cut."""
        forwarding = self._calls(_FORWARDING)
        if forwarding:
            logger.info(
                "handoff: the drain waits for %d request(s) being passed on to the"
                " successor (at most forward_timeout, %.0f s, each)",
                len(forwarding),
                self.forward_timeout,
            )
        while forwarding:  # more may begin meanwhile, one at most per connection
            await asyncio.wait(forwarding)
            forwarding = self._calls(_FORWARDING)
        running = dict(self._running)
        if not running:
            return 0
        doing = list(running.values())
        told = [
            f"{doing.count(what)} {what}"
            for what in (_RESPONSE, _WEBSOCKET, _REQUEST, _RECEIVING)
            if what in doing
        ]
        logger.warning("handoff: cut at the end of the drain: %s", ", ".join(told))
        for task in running:
            task.cancel(_CUT)
        await asyncio.wait(running)
        return len(running)

    def _calls(self, what: str) -> list[asyncio.Task[Any]]:
        return [task for task, doing in self._running.items() if doing == what]

    # -- AsyncServerControl ------------------------------------------------------------

    async def pause(self) -> None:
        """Hold new writes, and wait for the writes already running to end."""
        self._paused_at = asyncio.get_running_loop().time()
        await self._gate.close(self.timeouts.writes)

    async def resume(self) -> None:
        """Let the held writes go on here (the handoff failed)."""
        self.held = asyncio.get_running_loop().time() - self._paused_at
        self._late.drop()  # closed by the failed handoff
        self._gate.open()

    def keep_late_writes(self, marks: LateWrites) -> None:
        """Keep the marks the handoff opened after its last piece: counted until the
        drain ends, when websockets and streaming responses left here stop writing."""
        self._late.keep(marks)

    async def stop_accepting(self) -> None:
        """Stop the server's accepting, then pass the held writes on to the successor."""
        assert self.server is not None and self.listener is not None
        try:
            self._address = forwarding_address(self.listener)
        except HandoffError as exc:
            logger.warning("%s", exc)  # each request passed on is answered 502
        # In this order: a request passed on must not be accepted back by this process.
        await self.server.stop_accepting()
        # No rollback needs it any more, and the successor holds its own copy: ours
        # would keep the port bound if the successor died, refusing a restart.
        self.listener.close()
        self.moved = True
        # Before the gate opens: a message held in the pause is not delivered.
        self._websockets.restart()
        self.held = asyncio.get_running_loop().time() - self._paused_at
        self._gate.open()


_PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")


async def _answer(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer with ``payload`` whole and ``Connection: close``."""
    relayed = [
        *headers,
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": relayed})
    await send({"type": "http.response.body", "body": payload})


class _InnerLifespan:
    """The wrapped application's lifespan, driven one step at a time."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._run(app, scope), name="statemigrate-lifespan"
        )
        self._supported = True

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self._inbox.get, self._outbox.put)
        except Exception as exc:
            # The ASGI way for an application to say it does not speak lifespan.
            if self._supported:
                logger.debug("the application's lifespan raised %r: ignored", exc)
        finally:
            self._supported = False
            await self._outbox.put({"type": "ended"})

    async def step(self, stage: str) -> str | None:
        """Send ``lifespan.<stage>`` and wait for the answer; a failure's message."""
        if not self._supported:
            return None
        await self._inbox.put({"type": f"lifespan.{stage}"})
        answer = await self._outbox.get()
        if answer["type"] == f"lifespan.{stage}.failed":
            return str(answer.get("message", "") or f"the application's {stage} failed")
        if stage == "shutdown":
            await self._task
        return None
