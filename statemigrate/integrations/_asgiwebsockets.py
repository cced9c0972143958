"""The ASGI websockets of the old process across a handoff: held, then restarted.

A websocket is no request the pause can hold: it stays open, and each message a
client sends may write the state. So its messages are held from the pause on (the
application's ``receive`` waits), delivered if the handoff fails, and once the
successor serves each websocket here is closed with code 1012 (service restart): the
application's pending ``receive`` gets ``websocket.disconnect`` with 1012, and a
message it never saw was never answered, so the client, reconnecting, lands on the
successor and sends it again. A websocket only acknowledges a message by the
application's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["SERVICE_RESTART", "WebSockets"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The close code of a websocket the old process ends after the move (RFC 6455, 7.4.1
#: as registered by IANA: "Service Restart"); clients should reconnect on it.
SERVICE_RESTART = 1012


class _Restarted(Exception):
    """Cancels a ``receive`` the move interrupted (the message it waits for, if any,
    was never delivered)."""


class _Socket:
    """One websocket: ``receive`` and ``send`` as the application sees them."""

    def __init__(self, receive: Receive, send: Send, held: Callable[[], Awaitable[None]]) -> None:
        self._receive = receive
        self._send = send
        self._held = held
        self.restarted = False
        self._closed = False  # a websocket.close was sent, by the application or us
        self._waiting: asyncio.Task[Any] | None = None
        self._closing: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self.restarted:
            return _disconnect()
        self._waiting = asyncio.current_task()
        try:
            message = await self._receive()
            if message["type"] == "websocket.receive":
                await self._held()  # at once, unless a pause holds the writes
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if not (self.restarted and exc.args == (_Restarted.__name__,)) or task is None:
                raise
            task.uncancel()
            return _disconnect()
        finally:
            self._waiting = None
        if self.restarted:
            return _disconnect()  # held until the move: the successor's to answer
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.close":
            if self._closed:
                return  # closed with 1012 already
            self._closed = True
        await self._send(message)

    def restart(self) -> None:
        """Close it with 1012 and end the application's pending ``receive``."""
        if self.restarted:
            return
        self.restarted = True
        if self._waiting is not None:
            self._waiting.cancel(_Restarted.__name__)
        if not self._closed:
            self._closing = asyncio.get_running_loop().create_task(
                self.send({"type": "websocket.close", "code": SERVICE_RESTART})
            )

    async def closed(self) -> None:
        """Wait until the 1012 close is sent: once the application returns, the server
        drops the connection, and a close not sent by then never reaches the client
        (it sees 1006)."""
        if self._closing is not None:
            await asyncio.wait((self._closing,))
            if not self._closing.cancelled():
                self._closing.exception()  # a client gone already is no error here


def _disconnect() -> Message:
    return {"type": "websocket.disconnect", "code": SERVICE_RESTART}


class WebSockets:
    """The websockets open in this process.

    Args:
        held: awaited before a client's message is delivered: returns at once unless
            a handoff's pause holds the writes.
    """

    def __init__(self, held: Callable[[], Awaitable[None]]) -> None:
        self._held = held
        self._open: set[_Socket] = set()
        self.moved = False

    async def serve(
        self, app: Callable[[Receive, Send], Awaitable[None]], receive: Receive, send: Send
    ) -> None:
        """Run the application on one websocket; after the move, refuse it with 1012
        (a client opening one on a connection this process still holds)."""
        if self.moved:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": SERVICE_RESTART})
            return
        socket = _Socket(receive, send, self._held)
        self._open.add(socket)
        try:
            await app(socket.receive, socket.send)
        finally:
            self._open.discard(socket)
        await socket.closed()

    def restart(self) -> int:
        """The successor serves: close every websocket here with 1012; how many."""
        self.moved = True
        sockets = list(self._open)
        for socket in sockets:
            socket.restart()
        return len(sockets)

    def __len__(self) -> int:
        return len(self._open)
