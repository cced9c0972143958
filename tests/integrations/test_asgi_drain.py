"""The ASGI wrapper after a handoff's move: websockets held and restarted with 1012, the
drain bounded by drain_timeout or a stop signal, and the late writes told at its end."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from handoff_children.precopy import build_service

from statemigrate._errors import ConfigurationError
from statemigrate._runtime._latewrites import LateWrites
from statemigrate.integrations import asgi
from statemigrate.integrations._forward import ForwardedResponse
from statemigrate.integrations.asgi import HotRestart, Receive, Scope, Send

Message = dict[str, Any]


def on_loop(check: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """The test ``check`` run in a new event loop (fixtures and parameters pass)."""

    @functools.wraps(check)
    def test(*args: Any, **kwargs: Any) -> None:
        asyncio.run(check(*args, **kwargs))

    return test


class Hooks:
    """A server whose drain never ends by itself (a response streams forever), unless
    ``drained``."""

    def __init__(self, drained: bool = False) -> None:
        self.shut = False
        self.drained = drained

    async def stop_accepting(self) -> None:
        return None

    async def drain(self, active: Callable[[], int]) -> None:
        if not self.drained:
            await asyncio.Event().wait()

    def shut_down(self) -> None:
        self.shut = True

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        return None


async def settle(done: Callable[[], bool]) -> None:
    """Let the loop run until ``done()`` (a bounded number of turns, not a time)."""
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the loop did not get there")


class Client:
    """One connection's ASGI side as the server gives it to the application."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close":
            # Writing a close frame takes the server a few turns of the loop (uvicorn's
            # websockets implementation awaits the closing handshake).
            for _ in range(5):
                await asyncio.sleep(0)
        self.sent.append(dict(message))

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


@asynccontextmanager
async def wrapped(
    app: Any, drained: bool = False, **options: Any
) -> AsyncIterator[tuple[HotRestart, Hooks, Any]]:
    service, counters = build_service(1)
    hot = HotRestart(app, service, **options)
    hooks = Hooks(drained)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        hot.attach(hooks, listener, None)
        yield hot, hooks, counters


def counting_websocket(counters: list[Any], seen: list[Any]) -> Any:
    """A websocket application whose every message writes the state, then is answered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.append(message)
                return
            counters[0].entries[message["text"]] = 1
            await send({"type": "websocket.send", "text": message["text"]})

    return app


@on_loop
async def test_websocket_messages_are_held_in_the_pause_then_delivered_or_restarted() -> None:
    """Held from the pause on; delivered when the handoff fails; once the successor
    serves, never delivered: the client is closed with 1012 and the application's
    receive gets a disconnect with 1012."""
    holder: list[Any] = []
    seen: list[Message] = []
    async with wrapped(counting_websocket(holder, seen)) as (hot, _, counters):
        holder.append(counters)
        client = Client()
        scope = {"type": "websocket", "path": "/ws", "headers": []}
        task = asyncio.ensure_future(hot(scope, client.inbox.get, client.send))
        await client.inbox.put({"type": "websocket.connect"})
        await client.inbox.put({"type": "websocket.receive", "text": "before"})
        await settle(lambda: client.texts() == ["before"])

        await hot.pause()
        await client.inbox.put({"type": "websocket.receive", "text": "failed"})
        await settle(client.inbox.empty)
        for _ in range(20):
            await asyncio.sleep(0)
        assert client.texts() == ["before"] and "failed" not in counters.entries
        await hot.resume()  # the handoff failed: delivered here
        await settle(lambda: client.texts() == ["before", "failed"])

        await hot.pause()
        await client.inbox.put({"type": "websocket.receive", "text": "moved"})
        await settle(client.inbox.empty)
        await hot.stop_accepting()  # the successor serves
        await task
        # Sent before the call returned: the server drops the connection then, and a
        # close frame not written by that time never reaches the client (1006).
        assert {"type": "websocket.close", "code": 1012} in client.sent
        assert "moved" not in counters.entries and client.texts() == ["before", "failed"]
        assert seen == [{"type": "websocket.disconnect", "code": 1012}]


@on_loop
async def test_a_websocket_opened_after_the_move_is_refused_with_1012() -> None:
    holder: list[Any] = []
    async with wrapped(counting_websocket(holder, [])) as (hot, _, _counters):
        await hot.stop_accepting()
        client = Client()
        await client.inbox.put({"type": "websocket.connect"})
        await client.inbox.put({"type": "websocket.receive", "text": "after"})
        await client.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await hot({"type": "websocket", "path": "/ws", "headers": []}, client.inbox.get,
                  client.send)
        assert client.sent == [{"type": "websocket.close", "code": 1012}]


async def endless_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """Server-sent events that never end, each one a write (a presence heartbeat)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        STREAMED.append(1)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0)


STREAMED: list[int] = []


@on_loop
async def test_drain_timeout_cuts_a_stream_and_stops_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with wrapped(endless_stream, drain_timeout=0.05) as (hot, hooks, _):
        client = Client()
        scope = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
        task = asyncio.ensure_future(hot(scope, client.inbox.get, client.send))
        await settle(lambda: len(client.sent) > 1)
        await hot.stop_accepting()
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            await hot._drain_and_stop()
        assert task.done() and not task.cancelled()  # cut: the server closes it
        assert hooks.shut
        assert "drain ended at drain_timeout (0.05 s)" in caplog.text
        assert "cut at the end of the drain: 1 response(s) still streaming" in caplog.text
        assert "nothing cut" not in caplog.text


@on_loop
async def test_a_drain_that_ends_by_itself_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async with wrapped(endless_stream, drained=True) as (hot, hooks, _):
        await hot.stop_accepting()
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            await hot._drain_and_stop()
        assert hooks.shut
        [line] = [r.getMessage() for r in caplog.records if "drain ended" in r.getMessage()]
        assert line.startswith("handoff: drain ended after ") and line.endswith(" s, nothing cut")


async def post(hot: HotRestart, *bodies: Message) -> tuple[Client, asyncio.Future[None]]:
    """A POST on a connection this process holds, its body messages already received."""
    client = Client()
    for body in bodies:
        await client.inbox.put(body)
    scope = {"type": "http", "method": "POST", "path": "/incr", "headers": [],
             "query_string": b""}
    return client, asyncio.ensure_future(hot(scope, client.inbox.get, client.send))


@pytest.mark.parametrize("ending", ["drain_timeout", "stop signal"])
@on_loop
async def test_the_drains_end_lets_requests_being_passed_on_get_their_answer(
    ending: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut, a held write the successor applies would be answered 500 by the server, and a
    client that retries applies it twice: the drain's end waits for the successor's
    answer. A request whose body has not all arrived is cut, answered 502: not applied."""
    answer = asyncio.Event()
    passed_on: list[bytes] = []

    async def successor(*request: Any, **options: Any) -> ForwardedResponse:
        passed_on.append(request[4])
        await answer.wait()
        return ForwardedResponse(200, "OK", [("content-type", "text/plain")], b"applied")

    monkeypatch.setattr(asgi, "forward_async", successor)
    drain_timeout = 0.01 if ending == "drain_timeout" else 3600
    async with wrapped(endless_stream, drain_timeout=drain_timeout) as (hot, hooks, _):
        stream = Client()
        sse = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
        streaming = asyncio.ensure_future(hot(sse, stream.inbox.get, stream.send))
        await hot.pause()
        held, write = await post(hot, {"type": "http.request", "body": b"w"})
        trickled, upload = await post(
            hot, {"type": "http.request", "body": b"part", "more_body": True}
        )
        await settle(lambda: len(stream.sent) > 1)  # the writes are held meanwhile
        await hot.stop_accepting()  # the successor serves: the held write is passed on
        await settle(lambda: passed_on == [b"w"] and trickled.inbox.empty())
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            draining = asyncio.ensure_future(hot._drain_and_stop())
            if ending == "stop signal":
                hot._stop(lambda: None)
            for _ in range(1000):  # drain_timeout is a time: wait for its end, unbounded
                if "waits for 1 request(s) being passed on" in caplog.text:
                    break
                await asyncio.sleep(0.01)
            for _ in range(20):
                await asyncio.sleep(0)
            assert not write.done() and not hooks.shut  # not cut: waiting for its answer
            answer.set()
            await draining
        assert write.done() and upload.done() and streaming.done() and hooks.shut
        assert [m.get("status") for m in held.sent] == [200, None]
        assert held.sent[1]["body"] == b"applied"
        assert [m.get("status") for m in trickled.sent] == [502, None]
        assert b"not applied" in trickled.sent[1]["body"] and passed_on == [b"w"]
        assert (
            "cut at the end of the drain: 1 response(s) still streaming, 1 request(s) to pass"
            " on whose body had not all arrived (answered 502, not applied)" in caplog.text
        )


@pytest.mark.parametrize("during", ["handoff", "drain"])
@on_loop
async def test_a_stop_signal_ends_the_drain_once_the_handoff_ended(during: str) -> None:
    """Held during the handoff, a stop takes effect when it ends, as its log line says:
    the drain, which a stream would keep going until drain_timeout, ends at once."""
    async with wrapped(endless_stream, drain_timeout=3600) as (hot, hooks, _):
        client = Client()
        scope = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
        task = asyncio.ensure_future(hot(scope, client.inbox.get, client.send))
        await settle(lambda: len(client.sent) > 1)
        stopped: list[bool] = []
        if during == "handoff":
            async with hot._stops.handing_over():
                await hot.stop_accepting()
                hot._stop(lambda: stopped.append(True))
                assert not stopped  # held until the handoff ends
            await hot._drain_and_stop()
        else:
            await hot.stop_accepting()
            draining = asyncio.ensure_future(hot._drain_and_stop())
            await settle(lambda: len(client.sent) > 10)
            hot._stop(lambda: stopped.append(True))
            await draining
        assert stopped == [True] and hooks.shut and task.done()


@on_loop
async def test_late_writes_are_counted_until_the_drain_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream left on the old process writes all along the drain: each record is
    told at its end, and the marks are closed then."""
    moved = asyncio.Event()

    async def heartbeat(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await moved.wait()
        for i in range(5):
            counters.entries[f"beat{i % 2}"] = i  # a record written again and again
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with wrapped(heartbeat) as (hot, hooks, counters):
        client = Client()
        scope = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
        stream = asyncio.ensure_future(hot(scope, client.inbox.get, client.send))
        await settle(lambda: len(client.sent) == 1)
        hot.keep_late_writes(LateWrites(hot.service.components))  # as the handoff does
        await hot.stop_accepting()
        draining = asyncio.ensure_future(hot._drain_and_stop())
        moved.set()
        await stream
        hot._stop_draining.set()  # the fake server's drain never ends by itself
        with caplog.at_level(logging.WARNING, logger="statemigrate"):
            await draining
        told = [r.getMessage() for r in caplog.records]
        [line] = [message for message in told if "after the last piece" in message]
        assert line.startswith(
            "handoff: component counters/default had 2 distinct record(s) (keys) written,"
            " 5 write(s) in all, after the last piece was taken"
        )
        assert "until this process ended its drain" in line and "websocket" in line
        assert not counters.entries.tracking


@pytest.mark.parametrize("value", [0, -1, float("inf"), True, "5"])
def test_drain_timeout_must_be_a_positive_number_of_seconds(value: object) -> None:
    service, _ = build_service(1)
    with pytest.raises(ConfigurationError, match="drain_timeout"):
        HotRestart(endless_stream, service, drain_timeout=value)  # type: ignore[arg-type]
