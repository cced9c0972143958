"""The aiohttp websockets of the old process across a handoff: held, then restarted.

The same switch as the ASGI adapters' (:mod:`statemigrate.integrations._asgiwebsockets`),
on aiohttp's ``web.WebSocketResponse``. A websocket is no request the pause can hold:
it stays open, and each message a client sends may write the state. So from the pause
on its ``receive`` (which ``async for``, ``receive_str`` and ``receive_json`` call)
waits before returning a client's message; if the handoff fails the message is
returned here. Once the successor serves, each websocket here is closed with code 1012
(``WSCloseCode.SERVICE_RESTART``) and its ``receive`` returns a ``CLOSING`` message
(``async for`` ends): a message the application never saw was never answered, so the
client, reconnecting, lands on the successor and sends it again. A websocket
acknowledges a message only by the application's reply.

The websockets are found as they are prepared (``on_response_prepare``), and are this
process's until their request's handler has returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import WSMessage, web

__all__ = ["WebSockets", "is_websocket"]

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def is_websocket(request: web.BaseRequest) -> bool:
    """Whether ``request`` asks to open a websocket (the header aiohttp's handshake
    checks first)."""
    return request.headers.get("Upgrade", "").lower().strip() == "websocket"


async def _close_restarting(response: web.WebSocketResponse) -> None:
    """Close ``response`` with 1012, "Service Restart" (RFC 6455, 7.4.1 as registered by
    IANA): its client should reconnect, and lands on the successor."""
    from aiohttp import WSCloseCode

    await response.close(code=WSCloseCode.SERVICE_RESTART)


def _closing() -> WSMessage:
    from aiohttp import WSMessage, WSMsgType

    return WSMessage(WSMsgType.CLOSING, None, None)


class _Socket:
    """One websocket, its ``receive`` replaced by one that holds a client's messages."""

    def __init__(
        self, response: web.WebSocketResponse, held: Callable[[], Awaitable[None]]
    ) -> None:
        self.response = response
        self._receive = response.receive
        self._held = held
        self.restarted = False
        self.closing: asyncio.Task[None] | None = None
        response.receive = self.receive  # type: ignore[method-assign]

    async def receive(self, timeout: float | None = None) -> Any:
        from aiohttp import WSMsgType

        if self.restarted:
            await self._close()  # prepared after the move, if not closed yet
            return _closing()
        message = await self._receive(timeout)
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await self._held()  # at once, unless a pause holds the writes
            if self.restarted:
                return _closing()  # held until the move: the successor's to answer
        return message

    async def _close(self) -> None:
        if self.response.prepared and not self.response.closed:
            await _close_restarting(self.response)

    def restart(self) -> None:
        """Close it with 1012; its pending ``receive`` returns ``CLOSING`` (aiohttp's
        ``close`` ends it), and so does every later one."""
        if self.restarted:
            return
        self.restarted = True
        if self.response.prepared and not self.response.closed:
            self.closing = asyncio.get_running_loop().create_task(self._close())


class WebSockets:
    """The websockets open in this process.

    Args:
        held: awaited before a client's message is returned: returns at once unless
            a handoff's pause holds the writes.
    """

    def __init__(self, held: Callable[[], Awaitable[None]]) -> None:
        self._held = held
        #: By the id of their request, which lives while its handler runs.
        self._open: dict[int, _Socket] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.moved = False

    async def refuse(self, request: web.Request) -> web.WebSocketResponse | None:
        """After the move, answer a request that opens a websocket (a client opening
        one on a connection this process still holds) with a websocket closed with
        1012 at once; ``None`` if it is no valid handshake."""
        from aiohttp import web

        refused = web.WebSocketResponse()
        if not refused.can_prepare(request):
            return None
        await refused.prepare(request)
        await _close_restarting(refused)
        return refused

    async def serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run ``handler`` on a request that opens a websocket, not held: the messages
        of the websocket it opens are (:meth:`track`)."""
        try:
            return await handler(request)
        finally:
            self._open.pop(id(request), None)

    def track(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """``on_response_prepare``: hold the messages of a websocket being opened. One
        opened after the move (its handler ran before) is closed at its first
        ``receive``."""
        from aiohttp import web

        if not isinstance(response, web.WebSocketResponse) or id(request) in self._open:
            return
        socket = _Socket(response, self._held)
        socket.restarted = self.moved
        self._open[id(request)] = socket

    def restart(self) -> int:
        """The successor serves: close every websocket here with 1012; how many."""
        self.moved = True
        sockets = list(self._open.values())
        for socket in sockets:
            socket.restart()
            if socket.closing is not None:
                # Kept until done: the loop holds only weak references to tasks.
                self._closing.add(socket.closing)
                socket.closing.add_done_callback(self._closing.discard)
        return len(sockets)

    def __len__(self) -> int:
        return len(self._open)
