"""How the engines' hooks stop accepting: a connection accepted just before is served."""

from __future__ import annotations

import asyncio
import select
import socket
from types import SimpleNamespace
from typing import Any

from statemigrate.integrations.hypercorn import HypercornHooks
from statemigrate.integrations.uvicorn import UvicornHooks


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"answer to " + data)
        self.transport.close()


async def accepted_just_before_stopping(stop: Any) -> bytes:
    """Connect, and stop accepting in the very loop iteration that accepted the
    connection, before asyncio gave it a transport; then send on it."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    server = await loop.create_server(Answer, sock=listener.dup())
    trigger, pull = socket.socketpair()
    client = socket.socket()
    try:

        def stop_now() -> None:
            pull.recv(1)
            loop.remove_reader(pull.fileno())
            coroutine = stop(server)
            try:  # the hooks' stop_accepting never waits: run it right here
                coroutine.send(None)
            except StopIteration:
                pass

        loop.add_reader(pull.fileno(), stop_now)
        client.connect(listener.getsockname())
        select.select([listener], [], [], 10)  # the connection is in the accept queue
        # epoll reports ready descriptors in the order they became ready: the listener
        # first, so asyncio accepts, then stop_now runs before the new connection's
        # transport is made.
        trigger.send(b"!")
        await asyncio.sleep(0.1)
        client.setblocking(False)
        await loop.sock_sendall(client, b"question")
        answer = b""
        try:  # bounded: a dropped connection may never be closed, only leaked
            while chunk := await asyncio.wait_for(loop.sock_recv(client, 100), 10):
                answer += chunk
        except (TimeoutError, ConnectionResetError) as exc:
            return repr(exc).encode()
        return answer
    finally:
        client.close()
        trigger.close()
        pull.close()
        server.close()
        listener.close()


def test_uvicorn_hooks_serve_a_connection_accepted_as_they_stop_accepting() -> None:
    async def stop(server: asyncio.Server) -> None:
        hooks = UvicornHooks(SimpleNamespace(servers=[server]))  # type: ignore[arg-type]
        await hooks.stop_accepting()

    assert asyncio.run(accepted_just_before_stopping(stop)) == b"answer to question"


def test_hypercorn_hooks_serve_a_connection_accepted_as_they_stop_accepting() -> None:
    async def stop(server: asyncio.Server) -> None:
        (sock,) = server.sockets
        await HypercornHooks(sock.fileno(), 5.0, asyncio.Event()).stop_accepting()

    assert asyncio.run(accepted_just_before_stopping(stop)) == b"answer to question"
