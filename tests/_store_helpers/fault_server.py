"""For the object store's tests: a tiny HTTP server on loopback that answers every
request with one error status, as S3 does when overloaded, takes each connection and
never answers, as a hung server does, or resets each connection once it has read the
request, as a proxy or a load balancer that drops connections does."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from _store_helpers.object_server import HOST


class FaultServer:
    """Answers every request alike: ``status`` with S3's XML error body naming
    ``code`` (or an HTML page when there is no code), or, when ``status`` is None,
    nothing at all until :meth:`close`; with ``reset``, a TCP reset (RST) instead of
    any answer."""

    def __init__(
        self,
        status: int | None,
        reason: str = "",
        code: str | None = None,
        *,
        reset: bool = False,
    ) -> None:
        self._reset = reset
        self._status = status
        self._reason = reason
        self._code = code
        self._closed = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"http://{HOST}:{self.port}"
        self.requests = 0
        self.request_lines: list[str] = []  # "GET /bucket/key HTTP/1.1", in order
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed.set()  # lets every hung connection go
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with client:
            try:
                line = _read_request(client)
            except OSError:
                return
            self.requests += 1
            self.request_lines.append(line)
            if self._reset:
                # A zero linger time makes close() send RST instead of FIN.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self._status is None:
                self._closed.wait()
                return
            if self._code is not None:
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                    f"{self._code}</Code><Message>try again</Message></Error>"
                ).encode()
            else:
                body = b"<html><body>the server failed</body></html>"
            head = (
                f"HTTP/1.1 {self._status} {self._reason}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            try:
                client.sendall(head.encode() + body)
            except OSError:
                pass


def _read_request(client: socket.socket) -> str:
    """Read one request, its body included, so that answering it resets nothing;
    return its request line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(1 << 16)
        if not chunk:
            return data.split(b"\r\n", 1)[0].decode("latin-1")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = client.recv(1 << 16)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n", 1)[0].decode("latin-1")


@contextmanager
def failing_server(status: int, reason: str, code: str | None = None) -> Iterator[FaultServer]:
    """A server that answers every request with ``status``."""
    server = FaultServer(status, reason, code)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def hung_server() -> Iterator[FaultServer]:
    """A server that accepts every connection and never answers."""
    server = FaultServer(None)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def resetting_server() -> Iterator[FaultServer]:
    """A server that reads each request, then resets its connection."""
    server = FaultServer(None, reset=True)
    try:
        yield server
    finally:
        server.close()
