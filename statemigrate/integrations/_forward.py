"""Passing a request on to the successor once the state has moved to it.

After a handoff the old process may still hold requests: writes it held during the
pause, and requests that arrive later on keep-alive connections it accepted before.
Answering them itself would be wrong (a write would change a state nobody owns any
more, a read could be stale), and refusing them shows the client an error it did not
cause. So the adapters send each one, unchanged, to the listening address the
successor now accepts on, and relay the answer, with ``Connection: close`` so that the
client's next request goes to the successor directly.

The old process must have stopped accepting before it forwards: otherwise the kernel
could hand the forwarded connection back to it.

Bodies are read whole both ways: forwarded requests are the few that were in the
old process at the switch, not a stream.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from statemigrate._errors import HandoffError
from statemigrate._runtime._wait import WaitReadable, poll_readable

__all__ = [
    "ForwardError",
    "ForwardedResponse",
    "failure_text",
    "forward",
    "forward_async",
    "forwarding_address",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # Recomputed from the body actually sent or received.
        "content-length",
    }
)
"""Headers that describe one connection, not the message: never passed on."""

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ForwardedResponse:
    """The successor's answer: status, reason, end-to-end headers and the whole body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class ForwardError(HandoffError):
    """A request could not be passed on, or got no answer. Its stage is ``forward``,
    and its message starts ``after the handoff,``: the handoff itself succeeded.

    Attributes:
        sent: the whole request went out before the failure, so the successor may have
            applied it (it died, or was too slow, before it answered). Otherwise it
            cannot have: what reached it was no whole request.
        closed: the connection was closed or reset without an answer, rather than
            left without one until the timeout. A listener closed with connections
            still in its queue resets them unread, but so does a process that closes
            a connection whose request it had begun to act on before reading all of
            it: the request may still have been applied.
    """

    def __init__(self, detail: str, *, sent: bool, closed: bool = False) -> None:
        super().__init__("forward", detail)
        self.sent = sent
        self.closed = closed
        # The handoff itself succeeded: "handoff failed at forward" misled readers of
        # the log into looking for a failed handoff.
        self.args = (f"after the handoff, {detail}",)


def failure_text(exc: HandoffError, *, successor_died: bool) -> bytes:
    """The body that answers a request that could not be passed on: what happened,
    and whether the request may have been applied, which a client needs to know
    before it retries a write."""
    sent = isinstance(exc, ForwardError) and exc.sent
    if successor_died:
        what = "the service's new process died after taking over"
    elif sent and isinstance(exc, ForwardError) and exc.closed:
        # Not "not applied": a reset does not prove that nothing of it was acted on.
        what = "the service's new process closed the connection without answering"
    elif sent:
        what = "the service's new process did not answer"
    else:
        what = "the service's new process could not be reached"
    if sent:
        return f"{what}; the request was sent to it and may have been applied\n".encode()
    return f"{what}; the request was not applied\n".encode()


Address = tuple[str, int] | str
"""An IP listener's ``(host, port)`` as the successor should be reached, or the path
of a Unix socket."""


def forwarding_address(listener: socket.socket) -> Address:
    """Where to reach whoever accepts on ``listener``.

    A listener bound to every address (``0.0.0.0``, ``::``) is reached on the loopback
    of its family.
    """
    if listener.family == socket.AF_UNIX:
        path = listener.getsockname()
        if not isinstance(path, str) or not path:
            raise HandoffError("forward", "an unnamed Unix socket cannot be reached")
        return path
    host, port = listener.getsockname()[:2]
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return (host, port)


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket (the host name is only for Host:)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(address: Address, timeout: float) -> http.client.HTTPConnection:
    if isinstance(address, str):
        return _UnixConnection(address, timeout)
    host, port = address
    return http.client.HTTPConnection(host, port, timeout=timeout)


def forward(
    address: Address,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    client: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    abandoned: Callable[[], bool] | None = None,
) -> ForwardedResponse:
    """Send one request to ``address`` and return the whole answer (blocking).

    Args:
        address: from :func:`forwarding_address`.
        method: the request's method, as received.
        target: the request target (path and query), as received.
        headers: the request's headers, as received; hop-by-hop ones are dropped and
            the Host header is kept.
        body: the request's whole body.
        client: the original client's address, appended to ``X-Forwarded-For``.
        timeout: seconds for the connection and for each read.
        abandoned: asked about once a second while the answer is awaited: True
            gives up at once (whoever should accept the request is gone: the kernel
            queues a connection on a listener nobody accepts on, and only the
            timeout would end the wait).

    Raises:
        ForwardError: the successor could not be reached, did not answer, or was
            abandoned; whether the whole request went out before, in its ``sent``.
    """
    connection = _connection(address, timeout)
    sent = False
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        forwarded_for: list[str] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            if lowered == "x-forwarded-for":
                forwarded_for.append(value)
                continue
            connection.putheader(name, value)
        if client:
            forwarded_for.append(client)
        if forwarded_for:
            connection.putheader("X-Forwarded-For", ", ".join(forwarded_for))
        if body or method.upper() not in {"GET", "HEAD", "OPTIONS", "DELETE"}:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        sent = True
        if abandoned is not None and connection.sock is not None:
            _await_answer(connection.sock, timeout, abandoned)
        response = connection.getresponse()
        data = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return ForwardedResponse(response.status, response.reason, kept, data)
    except (OSError, http.client.HTTPException) as exc:
        raise ForwardError(
            f"{method} {target} could not be passed on to {address!r}: {exc}",
            sent=sent,
            # http.client.RemoteDisconnected is a ConnectionResetError too.
            closed=isinstance(exc, ConnectionError),
        ) from exc
    finally:
        connection.close()


def _await_answer(sock: socket.socket, timeout: float, abandoned: Callable[[], bool]) -> None:
    """Wait until ``sock`` has an answer to read, giving up once ``abandoned()``.

    The wait is ``poll(2)``, not ``select(2)``: a busy server's sockets have descriptors
    above ``FD_SETSIZE`` (1024), which ``select.select`` refuses with a ``ValueError``.
    """
    deadline = time.monotonic() + timeout
    fd = sock.fileno()
    while poll_readable(WaitReadable((fd,), min(deadline, time.monotonic() + 1.0))) is None:
        if abandoned():
            raise TimeoutError("nobody took the request: the successor is gone")
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out")


async def forward_async(
    address: Address,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    client: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    abandoned: Callable[[], bool] | None = None,
) -> ForwardedResponse:
    """:func:`forward` in a worker thread, so the event loop goes on meanwhile
    (``abandoned`` is asked in that thread)."""
    call = functools.partial(
        forward,
        address,
        method,
        target,
        list(headers),
        body,
        client=client,
        timeout=timeout,
        abandoned=abandoned,
    )
    return await asyncio.get_running_loop().run_in_executor(_forwarding_threads(), call)


# Every keep-alive connection's next request is passed on at once when the state moves,
# and each waits in its thread for the successor's answer. The loop's default executor
# has cpu_count + 4 threads (6 on two cores), so 16 connections' requests went through
# it in three waves, each as long as the successor's answer; these threads only wait on
# sockets, and are made as requests need them.
FORWARDING_THREADS = 128
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _forwarding_threads() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                FORWARDING_THREADS, thread_name_prefix="statemigrate-forward"
            )
        return _executor
