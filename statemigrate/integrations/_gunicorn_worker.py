"""One gunicorn worker's side of a handoff: holding writes, forwarding, stopping.

The gunicorn hooks (:mod:`statemigrate.integrations.gunicorn`) make a
:class:`WorkerGate` in each worker once its application is loaded. It wraps the
worker's application and its copies of the listeners, holds the requests that may
change the state from ``pre_request`` while the state is exported, and once the state
has moved accepts nothing more, forwards every request to the listener's address (the
new generation accepts it there) and stops the worker the way gunicorn does on
``SIGTERM``.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import quote

from statemigrate._errors import HandoffError
from statemigrate.handoff import HandoffTimeouts
from statemigrate.integrations._forward import Address, failure_text, forward, forwarding_address
from statemigrate.integrations._gate import (
    SAFE_METHODS,
    TELL_AFTER,
    safe_methods_of,
    waiting_for_writes,
    writes_still_running,
)
from statemigrate.integrations._successor import gone

__all__ = ["SAFE_METHODS", "WorkerGate"]

logger = logging.getLogger("statemigrate.handoff")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Listener(Protocol):
    sock: socket.socket

    def accept(self) -> tuple[socket.socket, Any]: ...


class _Worker(Protocol):
    """The parts of a gunicorn worker the hooks use (sync and gthread alike)."""

    pid: int
    ppid: int
    sockets: list[Any]
    wsgi: WSGIApp
    cfg: Any


class _Request(Protocol):
    method: str
    must_close: bool


class _GatedListener:
    """A worker's copy of a listener that accepts nothing once the gate is closed.

    gunicorn's workers treat ``EAGAIN`` from ``accept`` as "another worker took the
    connection", so a closed gate leaves every connection in the kernel's queue.
    """

    def __init__(self, listener: _Listener, gate: WorkerGate) -> None:
        self._listener = listener
        self._gate = gate

    def accept(self) -> tuple[socket.socket, Any]:
        with self._gate._accept_lock:
            if not self._gate.accepting:
                raise BlockingIOError(errno.EAGAIN, "this worker has stopped accepting")
            return self._listener.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)

    def __str__(self) -> str:
        return str(self._listener)


class WorkerGate:
    """One gunicorn worker's side of a handoff: its holds, its forwarding, and its
    :class:`~statemigrate.handoff.ServerControl`.

    The hooks make one per worker (``worker.statemigrate_gate``); use it directly only
    to build other hooks around it.

    Args:
        worker: the gunicorn worker.
        on_moved: called once the state moved, before the worker stops.
        safe_methods: the methods that never change the state: they run during the
            pause, beside the export; every other request is held. ``()`` holds
            every request.
        timeouts: the handoff's waits; :meth:`pause` uses ``writes``.

    Raises:
        ConfigurationError: ``safe_methods`` is not a collection of method names.
    """

    def __init__(
        self,
        worker: _Worker,
        *,
        on_moved: Callable[[], None] | None = None,
        safe_methods: Iterable[str] = SAFE_METHODS,
        timeouts: HandoffTimeouts | None = None,
    ) -> None:
        self._worker = worker
        self.timeouts = timeouts if timeouts is not None else HandoffTimeouts()
        self.safe_methods = safe_methods_of(safe_methods)
        self._on_moved = on_moved
        self._log: Any = getattr(worker, "log", logger)
        self._cond = threading.Condition()
        self._accept_lock = threading.Lock()
        self._local = threading.local()
        self._pauses = 0  # pauses of the writes; they nest
        self._stills = 0  # holds of every request (a checkpoint's snapshot)
        self._writers = 0
        self._running = 0
        self.accepting = True
        self.moved = False
        self.successor: int | None = None
        """The pid of the process taking the state over, once known: a request
        forwarded is given up on as soon as it is gone."""
        self._addresses: list[tuple[str, Address]] = []
        for listener in worker.sockets:
            sock = getattr(listener, "sock", listener)
            port = sock.getsockname()[1] if sock.family != socket.AF_UNIX else ""
            self._addresses.append((str(port), forwarding_address(sock)))

    def install(self) -> None:
        """Wrap the worker's application and its copies of the listeners."""
        worker = self._worker
        worker.wsgi = self.wrap(worker.wsgi)
        gated = {id(s): _GatedListener(s, self) for s in worker.sockets}
        worker.sockets[:] = [gated[id(s)] for s in worker.sockets]
        # The sync worker selects on this list and accepts on what select returns.
        wait_fds = getattr(worker, "wait_fds", None)
        if isinstance(wait_fds, list):
            wait_fds[:] = [gated.get(id(s), s) for s in wait_fds]

    # -- requests: pre_request / post_request ----------------------------------------

    def hold(self, req: _Request) -> None:
        """Before a request runs: hold it during a pause if it may change the state,
        and during :meth:`still` whatever it is."""
        if self.moved:
            req.must_close = True
            return
        write = req.method not in self.safe_methods
        with self._cond:
            while (self._stills or (write and self._pauses)) and not self.moved:
                self._cond.wait()
            if self.moved:
                req.must_close = True  # forwarded: the client's next request goes elsewhere
                return
            self._running += 1
            if write:
                self._writers += 1
        self._local.running = "write" if write else "read"

    def release(self) -> None:
        """After a request was answered: it no longer keeps a pause waiting."""
        running = getattr(self._local, "running", None)
        if running is None:
            return
        self._local.running = None
        with self._cond:
            self._running -= 1
            if running == "write":
                self._writers -= 1
            if not self._writers or not self._running:
                self._cond.notify_all()

    def wrap(self, app: WSGIApp) -> WSGIApp:
        """The application, forwarding every request once the state has moved."""

        def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if self.moved:
                return self._forward(environ, start_response)
            return app(environ, start_response)

        return application

    def _address(self, environ: dict[str, Any]) -> Address:
        port = str(environ.get("SERVER_PORT", ""))
        for listened, address in self._addresses:
            if listened == port:
                return address
        return self._addresses[0][1]

    def _forward(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        target = environ.get("RAW_URI") or quote(
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        ) + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        headers = [
            (key[5:].replace("_", "-").title(), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        body = environ["wsgi.input"].read()
        try:
            answer = forward(
                self._address(environ),
                method,
                target,
                headers,
                body,
                client=environ.get("REMOTE_ADDR"),
                abandoned=self._successor_gone,
            )
        except HandoffError as exc:
            self._log.error("%s", exc)
            text = failure_text(exc, successor_died=self._successor_gone())
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))],
            )
            return [text]
        headers = list(answer.headers)
        if method != "HEAD":
            headers.append(("Content-Length", str(len(answer.body))))
        start_response(f"{answer.status} {answer.reason}", headers)
        return [answer.body]

    def _successor_gone(self) -> bool:
        return self.successor is not None and gone(self.successor)

    # -- ServerControl ------------------------------------------------------------------

    def pause(self) -> None:
        """Hold new writes, and wait for the writes already running to end, at most
        ``timeouts.writes`` seconds: a client trickling its body would otherwise hold
        every other write for as long as it likes.

        Pauses nest: writes go on once each pause is resumed (a checkpoint's hold may
        end while a handoff's goes on).

        Raises:
            HandoffError: stage ``writes``, some were still running after
                ``timeouts.writes``. This pause is over: the held writes go on here.
        """
        bound = self.timeouts.writes
        with self._cond:
            self._pauses += 1
            if self._cond.wait_for(lambda: not self._writers, min(bound, TELL_AFTER)):
                return
            if bound > TELL_AFTER:
                logger.warning("%s", waiting_for_writes(self._writers, bound))
                if self._cond.wait_for(lambda: not self._writers, bound - TELL_AFTER):
                    return
            count = self._writers
            self._pauses -= 1
            self._cond.notify_all()
        raise writes_still_running(count, bound)

    def resume(self) -> None:
        """End one pause: the held writes go on once none is left (a handoff that
        failed, a checkpoint's snapshot taken)."""
        with self._cond:
            self._pauses = max(0, self._pauses - 1)
            self._cond.notify_all()

    @contextmanager
    def still(self) -> Iterator[None]:
        """Hold every request, reads too, and wait for those running to end: the
        checkpoints' hold by default, since an application's reads may change its
        state (an LRU cache's order)."""
        with self._cond:
            self._stills += 1
            while self._running:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._stills -= 1
                self._cond.notify_all()

    def stop_accepting(self) -> None:
        """The state moved: accept nothing more, forward from now on, and stop."""
        self.close()
        with self._cond:
            self.moved = True
            self._cond.notify_all()
        if self._on_moved is not None:
            # Before the worker stops: its master must not fork a stale replacement.
            self._on_moved()
        # gunicorn's own graceful stop: the worker's loop ends, requests in flight
        # finish and kept-alive connections get their last request.
        os.kill(os.getpid(), signal.SIGTERM)

    def close(self) -> None:
        """Accept nothing more on this worker's copies of the listeners."""
        with self._accept_lock:
            self.accepting = False
