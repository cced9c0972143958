"""Forwarding a request to the successor: what is passed on, what is dropped, and a
clear error when nobody answers."""

from __future__ import annotations

import asyncio
import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemigrate import HandoffError
from statemigrate.integrations._forward import (
    ForwardError,
    failure_text,
    forward,
    forward_async,
    forwarding_address,
)

Seen = list[tuple[str, str, dict[str, str], bytes]]


def _handler(seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            seen.append((self.command, self.path, dict(self.headers.items()), body))
            answer = b"stored " + body
            self.send_response(201, "Made")
            self.send_header("Content-Length", str(len(answer)))
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("X-Cache", "v2")
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_any

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Recorder


@pytest.fixture
def tcp_server() -> Iterator[tuple[socket.socket, Seen]]:
    seen: Seen = []
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _handler(seen))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.socket, seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_write_is_passed_on_without_hop_by_hop_headers(
    tcp_server: tuple[socket.socket, Seen],
) -> None:
    listener, seen = tcp_server
    address = forwarding_address(listener)
    assert address == ("127.0.0.1", listener.getsockname()[1])
    answer = forward(
        address,
        "PUT",
        "/cache/k?ttl=3",
        [
            ("Host", "example.test"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Trace", "abc"),
        ],
        b"value",
        client="10.0.0.2",
    )
    assert (answer.status, answer.reason, answer.body) == (201, "Made", b"stored value")
    names = {name.lower() for name, _ in answer.headers}
    assert "x-cache" in names
    assert names.isdisjoint({"keep-alive", "connection", "content-length"})
    [(method, path, headers, body)] = seen
    assert (method, path, body) == ("PUT", "/cache/k?ttl=3", b"value")
    assert headers["Host"] == "example.test"
    assert headers["X-Trace"] == "abc"
    assert headers["X-Forwarded-For"] == "10.0.0.1, 10.0.0.2"
    assert headers["Content-Length"] == "5"
    assert "Transfer-Encoding" not in headers


def test_the_async_flavour_gives_the_same_answer(
    tcp_server: tuple[socket.socket, Seen],
) -> None:
    listener, seen = tcp_server
    answer = asyncio.run(
        forward_async(forwarding_address(listener), "GET", "/cache/k", [("Host", "h")])
    )
    assert answer.status == 201
    assert seen[0][:2] == ("GET", "/cache/k")
    assert "Content-Length" not in seen[0][2]


def test_a_unix_socket_listener_is_reached_by_its_path(tmp_path: Path) -> None:
    seen: Seen = []
    path = str(tmp_path / "http.sock")

    class UnixServer(socketserver.ThreadingUnixStreamServer):
        def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
            conn, _ = self.socket.accept()
            return conn, ("local", 0)  # the handler expects an IP pair

    server = UnixServer(path, _handler(seen))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert forwarding_address(server.socket) == path
        answer = forward(path, "POST", "/x", [("Host", "h")], b"1")
    finally:
        server.shutdown()
        server.server_close()
    assert answer.body == b"stored 1"
    assert seen[0][3] == b"1"


def test_nobody_listening_is_one_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(HandoffError) as caught:
            forward(("127.0.0.1", port), "POST", "/cache/k", [], b"v", timeout=5)
    message = str(caught.value)
    assert "POST /cache/k could not be passed on" in message
    # The handoff succeeded; only passing this request on failed.
    assert message.startswith("after the handoff, POST /cache/k"), message
    assert caught.value.stage == "forward"
    assert "\n" not in message
    assert isinstance(caught.value, ForwardError) and not caught.value.sent
    assert failure_text(caught.value, successor_died=False) == (
        b"the service's new process could not be reached; the request was not applied\n"
    )


def test_a_request_queued_where_nobody_accepts_is_given_up_once_abandoned() -> None:
    """The connection succeeds into the listener's queue; only ``abandoned`` ends the
    wait before the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepted
        asked: list[bool] = []

        def abandoned() -> bool:
            asked.append(True)
            return len(asked) >= 2

        with pytest.raises(HandoffError, match="the successor is gone") as caught:
            forward(
                forwarding_address(listener), "PUT", "/k", [], b"v", timeout=600.0,
                abandoned=abandoned,
            )  # fmt: skip
        assert len(asked) == 2
    # The whole request went out: whoever took it may have applied it before dying.
    assert isinstance(caught.value, ForwardError) and caught.value.sent
    assert failure_text(caught.value, successor_died=True) == (
        b"the service's new process died after taking over;"
        b" the request was sent to it and may have been applied\n"
    )


def test_a_successor_that_applies_a_request_and_dies_is_not_said_to_have_refused_it() -> None:
    """The successor reads the whole request (and may act on it), then closes the
    connection without an answer, as a process that died at that moment would."""
    read: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def take_and_drop() -> None:
            connection, _ = listener.accept()
            with connection:
                while b"\r\n\r\nv" not in b"".join(read):
                    read.append(connection.recv(4096))

        taker = threading.Thread(target=take_and_drop)
        taker.start()
        with pytest.raises(ForwardError) as caught:
            forward(forwarding_address(listener), "PUT", "/k", [], b"v", timeout=30.0)
        taker.join()
    assert b"".join(read).startswith(b"PUT /k HTTP/1.1")
    assert caught.value.sent and caught.value.closed
    assert b"may have been applied" in failure_text(caught.value, successor_died=True)
    assert failure_text(caught.value, successor_died=False) == (
        b"the service's new process closed the connection without answering;"
        b" the request was sent to it and may have been applied\n"
    )


def test_forty_requests_passed_on_at_once_wait_for_their_answers_together() -> None:
    """At the switch every keep-alive connection's next request is passed on at once.
    The successor here answers none until all 40 have arrived: more than any loop's
    default executor holds threads (at most 32), which answered them a few at a time.
    The barrier's timeout only turns a hang into a failure."""
    arrived = threading.Barrier(40, timeout=60)

    class Gathering(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                arrived.wait()
                status = 200
            except threading.BrokenBarrierError:
                status = 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gathering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = forwarding_address(server.socket)

        async def pass_on_all() -> list[int]:
            answers = await asyncio.gather(
                *(forward_async(address, "GET", f"/{n}", [("Host", "svc")]) for n in range(40))
            )
            return [answer.status for answer in answers]

        assert asyncio.run(pass_on_all()) == [200] * 40
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("descriptors_above_fd_setsize")
def test_an_answer_is_awaited_on_a_socket_above_fd_setsize() -> None:
    """A busy server's forwarding socket has a descriptor above 1024, which
    ``select.select`` refuses with a bare ``ValueError`` that no adapter catches."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        received: list[bytes] = []

        def answer() -> None:
            connection, _ = listener.accept()
            with connection:
                while not b"".join(received).endswith(b"\r\n\r\nv"):
                    received.append(connection.recv(4096))
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        answerer = threading.Thread(target=answer)
        answerer.start()
        try:
            response = forward(
                forwarding_address(listener), "PUT", "/k", [], b"v", timeout=30.0,
                abandoned=lambda: False,
            )  # fmt: skip
        finally:
            answerer.join()
    assert (response.status, response.body) == (200, b"ok")
