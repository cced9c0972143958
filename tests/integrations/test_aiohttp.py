"""The aiohttp adapter: the switch in one process (held writes, keep-alive requests after
the move, websockets held and restarted with 1012, the drain, the late writes), and end
to end the example cache upgraded v1 -> v2 and rolled back v2 -> v1 by SIGUSR2 under a
load that never retries."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from handoff_children.precopy import build_service
from integrations.loadclient import Tally, ask, load, lost_writes, read_value, wait_for_requests

import statemigrate as sm
from statemigrate.handoff import hand_over_async, receive_handoff, take_over
from statemigrate.integrations._forward import forwarding_address
from statemigrate.integrations.aiohttp import SAFE_METHODS, Handler, HotRestart, serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aiohttp_cache"
REAPER = ROOT / "tests" / "handoff_children" / "reaper.py"
KEYS = 100

# -- the switch, in one process ---------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One client connection speaking HTTP/1.1 by hand, so that the test decides when
    each request is sent on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: cache\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)

    async def answer(self) -> Answer:
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Answer(status, headers, body)

    async def closed_by_server(self) -> bool:
        return await self.reader.read(1) == b""

    def close(self) -> None:
        self.writer.close()


def _echo_app(who: str, *, websocket: Handler | None = None) -> web.Application:
    async def any_request(request: web.Request) -> web.Response:
        body = await request.text()
        return web.json_response(
            {
                "by": who,
                "method": request.method,
                "path": request.path_qs,
                "body": body,
                "forwarded_for": request.headers.get("X-Forwarded-For"),
            }
        )

    app = web.Application()
    if websocket is not None:
        app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", any_request)
    return app


@dataclass
class Switch:
    hot: HotRestart
    runner: web.AppRunner
    listener: socket.socket
    port: int


@asynccontextmanager
async def old_and_successor(
    *,
    successor_up: bool = True,
    websocket: Handler | None = None,
    safe_methods: Iterable[str] = SAFE_METHODS,
) -> AsyncIterator[Switch]:
    """The old process's app on a listener of its own, and a successor app on another
    listener that stands for the shared one (where forwarded requests land)."""
    successor = web.AppRunner(_echo_app("successor"))
    await successor.setup()
    successor_listener = socket.create_server(("127.0.0.1", 0))
    address = forwarding_address(successor_listener)
    if successor_up:
        await web.SockSite(successor, successor_listener).start()
    else:
        successor_listener.close()  # nobody answers there any more

    hot = HotRestart(forward_timeout=5.0, safe_methods=safe_methods)
    hot.address = address

    @web.middleware
    async def switch(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await hot.middleware(request, handler)

    app = _echo_app("old", websocket=websocket)
    app.middlewares.append(switch)
    app.on_response_prepare.append(hot.on_response_prepare)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))
    hot.accepting = listener.dup()
    hot.site = web.SockSite(runner, hot.accepting)
    await hot.site.start()
    try:
        yield Switch(hot, runner, listener, listener.getsockname()[1])
    finally:
        await runner.cleanup()
        await successor.cleanup()
        listener.close()


async def _settle() -> None:
    """Let the loop run every callback that is ready (the server's reads and writes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_held_writes_are_passed_on_and_answered_with_connection_close() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            reading = await Connection.open(switch.port)
            writing = await Connection.open(switch.port)
            await switch.hot.pause()
            writing.send("PUT", "/cache/a", b"one")
            reading.send("GET", "/cache/b")
            read = await reading.answer()  # reads go on during the pause
            assert json.loads(read.body)["by"] == "old"
            assert read.headers.get("connection") != "close"
            await _settle()
            held = asyncio.ensure_future(writing.answer())
            await _settle()
            assert not held.done()  # held, not refused
            await switch.hot.stop_accepting()
            written = await held
            assert written.status == 200
            assert written.headers["connection"] == "close"
            seen = json.loads(written.body)
            assert seen["by"] == "successor"
            assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/cache/a", "one")
            assert seen["forwarded_for"] == "127.0.0.1"
            assert await writing.closed_by_server()
            assert switch.hot.forwarded == 1
            reading.close()
            writing.close()

    asyncio.run(scenario())


def test_a_failed_handoff_lets_the_held_writes_go_on_here() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            writing = await Connection.open(switch.port)
            await switch.hot.pause()
            writing.send("PUT", "/cache/a", b"one")
            held = asyncio.ensure_future(writing.answer())
            await _settle()
            assert not held.done()
            await switch.hot.resume()
            written = await held
            assert json.loads(written.body)["by"] == "old"
            assert written.headers.get("connection") != "close"
            writing.close()

    asyncio.run(scenario())


def test_every_request_on_a_kept_alive_connection_is_passed_on_after_the_move() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            kept = {"GET": await Connection.open(switch.port)}
            kept["PUT"] = await Connection.open(switch.port)
            for connection in kept.values():
                connection.send("GET", "/cache/a")
                assert json.loads((await connection.answer()).body)["by"] == "old"
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            for method, connection in kept.items():
                connection.send(method, "/cache/a", b"" if method == "GET" else b"two")
                answer = await connection.answer()
                assert json.loads(answer.body)["by"] == "successor", method
                assert answer.headers["connection"] == "close"
                assert await connection.closed_by_server()
                connection.close()

    asyncio.run(scenario())


def test_after_the_move_new_connections_stay_in_the_accept_queue() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            before = len(switch.runner.server.connections) if switch.runner.server else -1
            late = socket.create_connection(("127.0.0.1", switch.port))
            await _settle()
            assert switch.runner.server is not None
            assert len(switch.runner.server.connections) == before == 0
            switch.listener.setblocking(True)
            switch.listener.settimeout(30)
            taken, _ = switch.listener.accept()  # still queued, for the successor
            taken.close()
            late.close()

    asyncio.run(scenario())


def _accept_queue(listener: socket.socket) -> int:
    # Linux's TCP_INFO gives a listening socket's accept queue length as tcpi_unacked.
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    queued: int = struct.unpack_from("I", info, 24)[0]
    return queued


def test_connections_accepted_just_before_the_move_are_passed_on_not_dropped() -> None:
    """The loop accepts a burst of connections in one pass and gives each its transport
    in a task of its own; the move comes between the two."""

    async def scenario() -> None:
        async with old_and_successor() as switch:
            clients = []
            for i in range(8):
                client = socket.create_connection(("127.0.0.1", switch.port))
                client.sendall(
                    f"PUT /cache/{i} HTTP/1.1\r\nHost: c\r\nContent-Length: 1\r\n\r\nx".encode()
                )
                clients.append(client)
            await switch.hot.pause()
            # Each pass of the loop runs this task first, then the accept that the
            # burst made ready: once the queue is empty, the connections are accepted
            # and their transports not made yet.
            while _accept_queue(switch.listener):
                await asyncio.sleep(0)
            await switch.hot.stop_accepting()
            for client in clients:
                connection = Connection(*await asyncio.open_connection(sock=client))
                # Bounded: a connection dropped unanswered may never be closed either.
                answer = await asyncio.wait_for(connection.answer(), 30)
                assert answer.status == 200
                assert json.loads(answer.body)["by"] == "successor"
                connection.close()

    asyncio.run(scenario())


def test_the_drain_waits_for_an_idle_connection_to_send_its_next_request() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            idle = await Connection.open(switch.port)
            idle.send("GET", "/cache/a")
            await idle.answer()
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            assert switch.runner.server is not None
            drain = asyncio.ensure_future(switch.hot.drain(switch.runner.server, 60.0))
            await _settle()
            await asyncio.sleep(0.1)  # several polls of the drain: the connection stays
            assert not drain.done()
            idle.send("PUT", "/cache/a", b"late")
            answer = await idle.answer()
            assert json.loads(answer.body)["by"] == "successor"
            assert await idle.closed_by_server()
            assert await drain == (1, 0)
            idle.close()

    asyncio.run(scenario())


def test_the_drain_leaves_a_silent_connection_at_its_deadline() -> None:
    async def scenario() -> None:
        async with old_and_successor() as switch:
            idle = await Connection.open(switch.port)
            idle.send("GET", "/cache/a")
            await idle.answer()
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            assert switch.runner.server is not None
            assert await switch.hot.drain(switch.runner.server, 0.05) == (0, 1)
            idle.close()

    asyncio.run(scenario())


def test_a_successor_that_does_not_answer_gives_502_not_a_reset() -> None:
    async def scenario() -> None:
        async with old_and_successor(successor_up=False) as switch:
            writing = await Connection.open(switch.port)
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            writing.send("PUT", "/cache/a", b"one")
            answer = await writing.answer()
            assert answer.status == 502
            assert answer.headers["connection"] == "close"
            assert switch.hot.forward_failures == 1
            writing.close()

    asyncio.run(scenario())


async def _until(done: Callable[[], bool]) -> None:
    """Let the loop run until ``done()`` (a bounded number of turns, not a time)."""
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the loop did not get there")


def _counting_websocket(written: list[str], ended: list[bool]) -> Handler:
    """A websocket whose every message writes the state, then is answered."""

    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            written.append(message.data)
            await ws.send_str(message.data)
        ended.append(True)
        return ws

    return websocket


@pytest.mark.parametrize("safe_methods", [SAFE_METHODS, ()], ids=["reads-served", "all-held"])
@pytest.mark.parametrize("in_the_pause", ["a message", "nothing"])
def test_websocket_messages_are_held_in_the_pause_then_returned_or_restarted(
    in_the_pause: str, safe_methods: Iterable[str]
) -> None:
    """Held from the pause on; returned here when the handoff fails; once the successor
    serves, never returned: the client is closed with 1012 and the application's
    receive ends, whether it waited for a message or had one held. The websocket open
    is no write running, which the pause would wait for, even if no method is safe."""
    written: list[str] = []
    ended: list[bool] = []

    async def scenario() -> None:
        async with (
            old_and_successor(
                websocket=_counting_websocket(written, ended), safe_methods=safe_methods
            ) as switch,
            aiohttp.ClientSession() as session,
        ):
            async with session.ws_connect(f"http://127.0.0.1:{switch.port}/ws") as ws:
                await ws.send_str("before")
                assert await ws.receive_str() == "before"
                await switch.hot.pause()
                await ws.send_str("failed")
                await _settle()
                assert written == ["before"]
                await switch.hot.resume()  # the handoff failed: returned here
                assert await ws.receive_str() == "failed"

                await switch.hot.pause()
                if in_the_pause == "a message":
                    await ws.send_str("moved")
                    await _settle()
                await switch.hot.stop_accepting()  # the successor serves
                closed = await ws.receive(timeout=30)  # bounded: an open one would hang
                assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1012)
            await _until(lambda: ended == [True])
            assert written == ["before", "failed"]

    asyncio.run(scenario())


def test_a_websocket_opened_after_the_move_is_closed_with_1012() -> None:
    """On a keep-alive connection the old process still holds: passed on, it could not
    become a websocket; closed with 1012, its client reconnects to the successor."""

    async def scenario() -> None:
        async with old_and_successor(websocket=_counting_websocket([], [])) as switch:
            kept = await Connection.open(switch.port)
            kept.send("GET", "/cache/a")
            await kept.answer()
            await switch.hot.pause()
            await switch.hot.stop_accepting()
            kept.writer.write(
                b"GET /ws HTTP/1.1\r\nHost: cache\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await kept.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            # A close frame: FIN and opcode 8, a payload of 2 bytes, the code 1012.
            assert await kept.reader.readexactly(4) == b"\x88\x02" + (1012).to_bytes(2, "big")
            kept.close()

    asyncio.run(scenario())


def test_late_writes_are_counted_until_the_drain_ends(caplog: pytest.LogCaptureFixture) -> None:
    """The handoff leaves its marks to the adapter, which drains after the move: no
    warning at SERVING; what is written while it drains (by a stream or a websocket
    left here) is told once it has ended, and the marks are closed."""
    service, counters = build_service(1)
    successor, _ = build_service(1)
    hot = HotRestart()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def take() -> None:
        with receive_handoff(theirs) as inheritance:
            take_over(successor, inheritance)

    def late_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "after the last piece" in r.getMessage()]

    thread = threading.Thread(target=take)
    with ours, theirs, caplog.at_level(logging.INFO, logger="statemigrate"):
        thread.start()
        report = asyncio.run(hand_over_async(service, ours, listeners={}, control=hot))
        thread.join(60)  # only stops a hang
        assert report.ok and late_lines() == []
        counters.entries["draining"] = 1
        counters.entries["draining"] = 2  # a record written twice counts once
        hot.late_writes.tell()
    [line] = late_lines()
    assert line.startswith(
        "handoff: component counters/default had 1 distinct record(s) (keys) written,"
        " 2 write(s) in all,"
    )
    assert "until this process ended its drain" in line
    assert not counters.entries.tracking


def _listen_backlog(listener: socket.socket) -> int:
    # Linux's TCP_INFO gives a listening socket's backlog as tcpi_sacked.
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    backlog: int = struct.unpack_from("I", info, 28)[0]
    return backlog


def test_serve_keeps_the_backlog_it_binds_with() -> None:
    """The listener is shared with every later release: its accept queue holds the
    connections that arrive while no process accepts, so aiohttp's own default must
    not shrink it."""
    seen: list[int] = []

    def serving(listener: socket.socket) -> None:
        seen.append(_listen_backlog(listener))
        # Once serve() waits (its signal handlers are in place by then): stop serving.
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    service = sm.Service("backlog")
    outcome = asyncio.run(
        serve(_echo_app("old"), service, port=0, backlog=1000, on_serving=serving)
    )
    assert outcome is None
    assert seen == [1000]


def test_on_serving_is_told_once_the_handoff_signal_is_handled() -> None:
    """Whoever on_serving tells (a pidfile's reader) may send the signal at once; its
    default action would end the process."""
    seen: list[object] = []

    def serving(listener: socket.socket) -> None:
        seen.append(signal.getsignal(signal.SIGUSR1))
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    service = sm.Service("told")
    before = signal.getsignal(signal.SIGUSR1)
    outcome = asyncio.run(
        serve(_echo_app("old"), service, port=0, signum=signal.SIGUSR1, on_serving=serving)
    )
    assert outcome is None
    assert len(seen) == 1 and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, None, before)


# -- end to end: the example, upgraded and rolled back under load --------------------------

_SERVING = re.compile(r"release (\d+) serving on http://[^:]+:(\d+) \(pid (\d+)\)")
_HANDED_OVER = re.compile(r"release (\d+) \(pid (\d+)\) handoff ready: .*")


class Deployment:
    """The example served from ``app.py``, a link to the release deployed, as a
    deployment tool would lay it out; each release is a new process on the same
    listener. The generations run under a reaper, since each is the child of one
    that exits."""

    def __init__(self, folder: Path, *options: str) -> None:
        self.link = folder / "app.py"
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.deploy(1)
        self.process = subprocess.Popen(
            [sys.executable, str(REAPER), sys.executable, str(self.link), "--port", "0", *options],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def deploy(self, release: int) -> None:
        staged = self.link.with_name("app.py.new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(EXAMPLE / f"app_v{release}.py")
        staged.replace(self.link)

    def generations(self) -> list[tuple[int, int, int]]:
        """(release, port, pid) of every generation that served, in order."""
        with self.changed:
            found = [_SERVING.search(line) for line in self.lines]
        return [(int(m[1]), int(m[2]), int(m[3])) for m in found if m]

    def wait_line(self, pattern: re.Pattern[str], count: int, deadline: float = 60.0) -> None:
        end = time.monotonic() + deadline
        with self.changed:
            while sum(1 for line in self.lines if pattern.search(line)) < count:
                assert self.process.poll() is None, f"the servers are gone: {self.lines}"
                assert time.monotonic() < end, f"no {pattern.pattern!r} yet: {self.lines}"
                self.changed.wait(0.1)

    def switch_to(self, release: int) -> tuple[float, float, str]:
        """Deploy ``release`` and hand over to it; wait until the old generation has
        drained and exited. Returns when it started and ended, and the old side's report."""
        count = len(self.generations())
        _, _, old = self.generations()[-1]
        started = time.monotonic()
        self.deploy(release)
        os.kill(old, signal.SIGUSR2)
        self.wait_line(_SERVING, count + 1)
        assert self.generations()[-1][0] == release
        self.wait_line(_HANDED_OVER, count)
        _wait_gone(old)
        handed = [line for line in self.lines if _HANDED_OVER.search(line)][-1]
        return started, time.monotonic(), handed

    def stop(self) -> None:
        for _, _, pid in self.generations():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=30)  # ends when the last generation's stdout closes
        assert self.process.stdout is not None
        self.process.stdout.close()


def _wait_gone(pid: int, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < end, f"pid {pid} never exited"
        time.sleep(0.01)


@contextmanager
def deployed(folder: Path, *options: str) -> Iterator[tuple[Deployment, int]]:
    deployment = Deployment(folder, *options)
    try:
        deployment.wait_line(_SERVING, 1)
        yield deployment, deployment.generations()[0][1]
    finally:
        deployment.stop()


def _release(port: int) -> int:
    status, body = ask(port, "GET", "/cache/k0")
    assert status == 200, (status, body)
    release = json.loads(body)["release"]
    assert isinstance(release, int)
    return release


@pytest.mark.slow
@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "fresh-connections"])
def test_the_example_upgrades_and_rolls_back_under_load(tmp_path: Path, keep_alive: bool) -> None:
    with deployed(tmp_path) as (deployment, port):
        windows = []
        tally: Tally
        with load(port, clients=4, keep_alive=keep_alive, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            windows.append(deployment.switch_to(2))
            assert _release(port) == 2
            wait_for_requests(tally, 300)
            windows.append(deployment.switch_to(1))
            wait_for_requests(tally, 300)
        mode = "keep-alive" if keep_alive else "fresh connections"
        print(f"\naiohttp, {mode}: {tally.line()}")
        names = ("upgrade 1 -> 2", "rollback 2 -> 1")
        for (start, end, report), name in zip(windows, names, strict=True):
            print(f"  {name}: {report}")
            print(f"    latency during the handoff: {tally.latency_summary(start, end)}")
        assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
        assert tally.acknowledged
        assert lost_writes(port, tally) == []
        # The preloaded cache survived the upgrade and the rollback, served by release 1.
        assert _release(port) == 1
        assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]
        assert [release for release, _, _ in deployment.generations()] == [1, 2, 1]


@pytest.mark.slow
def test_sigterm_during_a_handoff_waits_for_it_to_end(tmp_path: Path) -> None:
    """A service manager's SIGTERM right after SIGUSR2 must not abandon the successor."""
    with deployed(tmp_path) as (deployment, port):
        assert ask(port, "PUT", "/cache/kept", "yes")[0] == 204
        _, _, old = deployment.generations()[-1]
        deployment.deploy(2)
        os.kill(old, signal.SIGUSR2)
        time.sleep(0.05)  # the successor is starting: well inside the handoff
        os.kill(old, signal.SIGTERM)
        deployment.wait_line(_SERVING, 2)
        _wait_gone(old)
        assert deployment.generations()[-1][0] == 2
        status, body = ask(port, "GET", "/cache/kept")
        assert (status, json.loads(body)) == (200, {"key": "kept", "value": "yes", "release": 2})
